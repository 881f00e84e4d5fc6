//! The server URL a client-role session dials: `ws://` and `wss://`, and
//! `http://`/`https://` taken as the same (as pipeline tools accept them),
//! with IPv6 literals in brackets and the scheme's default port. Host names
//! are kept as written: they are resolved off the event loop, like peers'.

use crate::peer::HostPort;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `wss://` or `https://`.
    pub tls: bool,
    /// Where to connect; the host without brackets.
    pub addr: HostPort,
    /// The `Host` header: the host as written (brackets kept), with the
    /// port only when it is not the scheme's default.
    pub host_header: String,
    /// Path and query, `/` when the URL has none; a fragment is dropped
    /// (RFC 6455 3: it must not be sent).
    pub target: String,
    /// `user:password` from the URL's user info, for Basic credentials.
    pub userinfo: Option<String>,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("'{url}' is not a URL (expected ws://HOST[:PORT]/PATH)"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            other => {
                return Err(format!(
                    "unsupported scheme '{other}' (ws, wss, http, https)"
                ))
            }
        };
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, authority),
        };
        let default_port = if tls { 443 } else { 80 };
        let (host, port, bracketed) = if let Some(r) = hostport.strip_prefix('[') {
            let (h, tail) = r
                .split_once(']')
                .ok_or_else(|| format!("missing ']' in '{url}'"))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("'{h}' is not an IPv6 address"));
            }
            let port = match tail.strip_prefix(':') {
                Some(p) => Some(p),
                None if tail.is_empty() => None,
                None => return Err(format!("unexpected '{tail}' after ']' in '{url}'")),
            };
            (h, port, true)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(format!("an IPv6 address needs brackets in '{url}'"))
                }
                Some((h, p)) => (h, Some(p), false),
                None => (hostport, None, false),
            }
        };
        if host.is_empty() {
            return Err(format!("no host in '{url}'"));
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("bad port '{p}' in '{url}'"))?,
        };
        let shown = if bracketed {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let host_header = if port == default_port {
            shown
        } else {
            format!("{shown}:{port}")
        };
        Ok(Url {
            tls,
            addr: HostPort {
                host: host.to_string(),
                port,
            },
            host_header,
            target,
            userinfo,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn schemes_ports_and_targets() {
        let a = u("ws://example.com/feed?x=1#frag");
        assert_eq!(
            (
                a.tls,
                a.addr.port,
                a.host_header.as_str(),
                a.target.as_str()
            ),
            (false, 80, "example.com", "/feed?x=1")
        );
        let b = u("WSS://example.com:8443");
        assert_eq!(
            (
                b.tls,
                b.addr.port,
                b.host_header.as_str(),
                b.target.as_str()
            ),
            (true, 8443, "example.com:8443", "/")
        );
        assert!(u("https://example.com").tls);
        assert!(!u("http://example.com").tls);
        assert_eq!(u("ws://h?q=1").target, "/?q=1");
        assert_eq!(u("wss://h:443/").host_header, "h");
    }

    #[test]
    fn ipv6_literals_and_user_info() {
        let a = u("ws://alice:s3cret@[::1]:9000/x");
        assert_eq!(a.addr.host, "::1");
        assert_eq!(a.addr.port, 9000);
        assert_eq!(a.host_header, "[::1]:9000");
        assert_eq!(a.userinfo.as_deref(), Some("alice:s3cret"));
        assert_eq!(u("wss://[2001:db8::1]").host_header, "[2001:db8::1]");
    }

    #[test]
    fn mistakes_are_one_line_errors() {
        for bad in [
            "example.com",
            "tcp://example.com",
            "ws://",
            "ws://::1:80/",
            "ws://[::1/",
            "ws://[nothex]:1/",
            "ws://h:0/",
            "ws://h:99999/",
            "ws://h:x/",
        ] {
            let e = Url::parse(bad).expect_err(bad);
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
