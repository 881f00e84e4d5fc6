//! The real client address behind trusted proxies (`--trusted-proxy`).
//!
//! Only when the direct peer is a trusted proxy is a header believed, and
//! only the one header the proxies are said to set
//! (`--trusted-proxy-header`: `X-Forwarded-For` by default, `Forwarded`
//! (RFC 7239) or `X-Real-IP`). A proxy rewrites or appends to the header it
//! sets and passes the others on from the client untouched, so believing a
//! second header, even as a fallback, would believe the client. In a list,
//! walking from the right past the hops that are themselves trusted
//! proxies, the first other hop is the client: each proxy appends what it
//! saw, so anything left of it could be forged by the client. If that hop
//! is not an address (`for=unknown`, an obfuscated `for=_name`, garbage),
//! the header gives none and the direct address stands: looking further
//! left would believe the client. A forwarded address without a port gets
//! port 0.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The header trusted proxies set, the only one believed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    #[default]
    XForwardedFor,
    Forwarded,
    XRealIp,
}

impl ForwardedHeader {
    pub fn parse(v: &str) -> Result<ForwardedHeader, String> {
        match v.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            "x-real-ip" => Ok(ForwardedHeader::XRealIp),
            _ => Err("expected x-forwarded-for, forwarded or x-real-ip".into()),
        }
    }
}

#[derive(Debug, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardedHeader,
    /// `--trusted-proxy unix`: a Unix-socket client is a proxy (a local
    /// nginx); its address says nothing, so the listener's kind decides.
    unix: bool,
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, what a dual-stack listener reports
/// for IPv4 clients) is the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl TrustedProxies {
    pub fn new(nets: &[IpNet], unix: bool, header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies {
            nets: nets.to_vec(),
            header,
            unix,
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Whether headers from `direct` are believed.
    pub fn trusted(&self, direct: SocketAddr) -> bool {
        self.contains(direct.ip())
    }

    /// The client address for a request from `direct` with these headers.
    /// `via_unix`: `direct` is the placeholder of a Unix-socket client,
    /// trusted by `--trusted-proxy unix` rather than by address.
    pub fn client(
        &self,
        direct: SocketAddr,
        via_unix: bool,
        headers: &[(String, String)],
    ) -> SocketAddr {
        let trusted = if via_unix {
            self.unix
        } else {
            self.trusted(direct)
        };
        if !trusted {
            return direct;
        }
        let all = |name: &'static str| {
            headers
                .iter()
                .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        // Several headers of one name are one list, in order (RFC 9110 5.3).
        let hops: Vec<Option<SocketAddr>> = match self.header {
            ForwardedHeader::Forwarded => all("forwarded")
                .flat_map(|v| v.split(','))
                .filter(|e| !e.trim().is_empty())
                // An element without `for=` is a hop that named nobody:
                // unusable, so nothing to its left is believed.
                .map(|e| forwarded_for(e).flatten())
                .collect(),
            ForwardedHeader::XForwardedFor => all("x-forwarded-for")
                .flat_map(|v| v.split(','))
                .map(|n| n.trim())
                .filter(|n| !n.is_empty())
                .map(node)
                .collect(),
            // One address, set (not appended) by the last proxy: a repeated
            // header is two claims, and the last one is the proxy's.
            ForwardedHeader::XRealIp => all("x-real-ip")
                .next_back()
                .map(|v| node(v.trim()))
                .into_iter()
                .collect(),
        };
        self.rightmost_untrusted(&hops).unwrap_or(direct)
    }

    /// The rightmost hop not itself a trusted proxy, if it is an address;
    /// if all of them are trusted, the leftmost (the furthest the chain of
    /// trust reaches).
    fn rightmost_untrusted(&self, hops: &[Option<SocketAddr>]) -> Option<SocketAddr> {
        match hops
            .iter()
            .rev()
            .find(|a| a.is_none_or(|a| !self.contains(a.ip())))
        {
            Some(hop) => *hop,
            None => hops.first().copied().flatten(),
        }
    }
}

/// The `for=` of one `Forwarded` element (`for=1.2.3.4;proto=https`):
/// `None` if it has none, `Some(None)` if it names no address.
fn forwarded_for(element: &str) -> Option<Option<SocketAddr>> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        Some(node(v))
    })
}

/// `1.2.3.4`, `1.2.3.4:5`, `[v6]`, `[v6]:5` or a bare v6; `unknown`,
/// obfuscated names (`_hidden`) and obfuscated ports give `None` or port 0.
fn node(v: &str) -> Option<SocketAddr> {
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Some(SocketAddr::new(canonical(ip), 0));
    }
    if let Ok(a) = v.parse::<SocketAddr>() {
        return Some(SocketAddr::new(canonical(a.ip()), a.port()));
    }
    // `[v6]` or `[v6]:_obf` / `1.2.3.4:_obf`: keep the address, port 0.
    let host = match v.strip_prefix('[') {
        Some(r) => r.split_once(']')?.0,
        None => v.split_once(':').map_or(v, |(h, _)| h),
    };
    host.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(canonical(ip), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn proxies() -> TrustedProxies {
        with_header(ForwardedHeader::XForwardedFor)
    }

    fn with_header(header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies::new(
            &["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            false,
            header,
        )
    }

    #[test]
    fn untrusted_headers_are_ignored() {
        let p = proxies();
        let hs = h(&[("X-Forwarded-For", "1.2.3.4")]);
        assert_eq!(p.client(a("192.0.2.1:5"), false, &hs), a("192.0.2.1:5"));
    }

    #[test]
    fn unix_clients_are_trusted_only_when_listed() {
        let hs = h(&[("X-Forwarded-For", "1.2.3.4")]);
        let placeholder = a("127.0.0.1:0");
        assert_eq!(proxies().client(placeholder, true, &hs), placeholder);
        let p = TrustedProxies::new(&[], true, ForwardedHeader::XForwardedFor);
        assert_eq!(p.client(placeholder, true, &hs), a("1.2.3.4:0"));
        assert_eq!(p.client(placeholder, false, &hs), placeholder);
    }

    /// A client behind a proxy that sets one header sends the others
    /// itself: only the configured one is believed, with no fallback.
    #[test]
    fn only_the_configured_header_is_believed() {
        let d = a("10.1.1.1:9");
        let hs = h(&[
            ("X-Real-IP", "9.9.9.9"),
            ("X-Forwarded-For", "6.6.6.6, 7.7.7.7, 10.2.2.2"),
            (
                "Forwarded",
                "for=unknown, for=\"[2001:db8::1]:4711\";proto=https",
            ),
        ]);
        let xff = proxies();
        assert_eq!(xff.client(d, false, &hs), a("7.7.7.7:0"));
        let fwd = with_header(ForwardedHeader::Forwarded);
        assert_eq!(fwd.client(d, false, &hs), a("[2001:db8::1]:4711"));
        let real = with_header(ForwardedHeader::XRealIp);
        assert_eq!(real.client(d, false, &hs), a("9.9.9.9:0"));
        // The configured header missing: the direct address, never another.
        assert_eq!(xff.client(d, false, &hs[..1]), d);
        assert_eq!(fwd.client(d, false, &hs[..2]), d);
        assert_eq!(real.client(d, false, &hs[1..]), d);
        // X-Real-IP repeated: the last one is the proxy's.
        let two = h(&[("X-Real-IP", "6.6.6.6"), ("X-Real-IP", "9.9.9.9")]);
        assert_eq!(real.client(d, false, &two), a("9.9.9.9:0"));
    }

    #[test]
    fn lists() {
        let p = proxies();
        let d = a("10.1.1.1:9");
        let fwd = with_header(ForwardedHeader::Forwarded);
        assert_eq!(fwd.client(d, false, &h(&[("Forwarded", "for=_hidden")])), d);
        // An unusable rightmost hop: nothing to its left is believed.
        assert_eq!(
            p.client(d, false, &h(&[("X-Forwarded-For", "6.6.6.6, unknown")])),
            d
        );
        assert_eq!(
            fwd.client(d, false, &h(&[("Forwarded", "for=6.6.6.6, for=unknown")])),
            d
        );
        // A trusted proxy that appends an element without `for=`: the
        // client's element to its left is not believed.
        assert_eq!(
            fwd.client(d, false, &h(&[("Forwarded", "for=6.6.6.6, proto=https")])),
            d
        );
        assert_eq!(
            p.client(
                a("[::ffff:10.0.0.1]:1"),
                false,
                &h(&[("x-forwarded-for", "5.5.5.5:80")])
            ),
            a("5.5.5.5:80")
        );
        // All hops trusted: the furthest one.
        assert_eq!(
            p.client(d, false, &h(&[("X-Forwarded-For", "10.3.3.3, 10.4.4.4")])),
            a("10.3.3.3:0")
        );
    }
}
