//! Peer addresses as backends write them: `tcp://host:port`,
//! `tls://host:port`, `udp://host`, `unix:///path`, `unix-dgram:///path`,
//! `mirror://`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::proxy_protocol::Version as ProxyVersion;

/// Where a connection's peer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAddress {
    Tcp(HostPort),
    /// TCP, then a TLS handshake (SNI and verification against `host`).
    Tls(HostPort),
    Udp(HostPort),
    Unix(PathBuf),
    UnixDgram(PathBuf),
    /// Echo every message back to the client, boundaries and opcode kept.
    Mirror,
}

/// A host (name or IP literal, without brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// The socket address when the host is an IP literal, so no resolver
    /// round trip is needed.
    pub fn literal(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddress::Tcp(hp) => write!(f, "tcp://{hp}"),
            PeerAddress::Tls(hp) => write!(f, "tls://{hp}"),
            PeerAddress::Udp(hp) => write!(f, "udp://{hp}"),
            PeerAddress::Unix(p) => write!(f, "unix://{}", p.display()),
            PeerAddress::UnixDgram(p) => write!(f, "unix-dgram://{}", p.display()),
            PeerAddress::Mirror => f.write_str("mirror://"),
        }
    }
}

impl PeerAddress {
    /// [`parse`](Self::parse), plus the `?proxy-protocol=v1|v2` suffix any
    /// backend may put after the address to have a PROXY header sent to
    /// the peer before anything else. Whether the peer can take one (a
    /// stream) is the caller's to decide: a start-up error for a
    /// configured peer, a 502 for a backend's answer.
    pub fn parse_with_options(
        host: &str,
        port: Option<&str>,
    ) -> Result<(PeerAddress, Option<ProxyVersion>), String> {
        let host = host.trim();
        match host.rsplit_once("?proxy-protocol=") {
            Some((address, version)) => Ok((
                PeerAddress::parse(address, port)?,
                Some(ProxyVersion::parse(version)?),
            )),
            None => Ok((PeerAddress::parse(host, port)?, None)),
        }
    }

    /// A byte stream, which a PROXY header can precede.
    pub fn is_stream(&self) -> bool {
        matches!(
            self,
            PeerAddress::Tcp(_) | PeerAddress::Tls(_) | PeerAddress::Unix(_)
        )
    }

    /// Parse `host` as a backend gives it, with `port` as the fallback port
    /// when the host carries none. A port inside `host` wins: the original
    /// could not use `tcp://h:7000` at all because its separate port always
    /// had a value.
    ///
    /// A host without a scheme is TCP, as in the original.
    pub fn parse(host: &str, port: Option<&str>) -> Result<PeerAddress, String> {
        let host = host.trim();
        let (scheme, rest) = match host.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("tcp".to_string(), host),
        };
        match scheme.as_str() {
            "tcp" => Ok(PeerAddress::Tcp(parse_host_port(rest, port)?)),
            "tls" => Ok(PeerAddress::Tls(parse_host_port(rest, port)?)),
            "udp" => Ok(PeerAddress::Udp(parse_host_port(rest, port)?)),
            "unix" => Ok(PeerAddress::Unix(parse_path(rest)?)),
            "unix-dgram" => Ok(PeerAddress::UnixDgram(parse_path(rest)?)),
            "mirror" if rest.is_empty() => Ok(PeerAddress::Mirror),
            "mirror" => Err(format!("'{host}': mirror:// takes no address")),
            "fifotx" | "fiforx" => Err(format!("'{host}': FIFO peers are not supported")),
            _ => Err(format!(
                "'{host}': unknown scheme '{scheme}://' (expected tcp, tls, udp, unix, unix-dgram or mirror)"
            )),
        }
    }
}

fn parse_path(rest: &str) -> Result<PathBuf, String> {
    if rest.is_empty() {
        return Err("unix socket address has an empty path".into());
    }
    // sun_path holds 108 bytes including the terminating NUL.
    if rest.len() > 107 {
        return Err(format!(
            "unix socket path '{rest}' is longer than 107 bytes"
        ));
    }
    Ok(PathBuf::from(rest))
}

fn parse_port(p: &str, what: &str) -> Result<u16, String> {
    match p.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("invalid port '{p}' in {what}")),
        Ok(n) => Ok(n),
    }
}

fn parse_host_port(rest: &str, port: Option<&str>) -> Result<HostPort, String> {
    let rest = rest.trim_end_matches('/');
    let (host, embedded) = if let Some(after) = rest.strip_prefix('[') {
        let (h, tail) = after
            .split_once(']')
            .ok_or_else(|| format!("'{rest}': unterminated '[' in IPv6 address"))?;
        match tail {
            "" => (h, None),
            t => match t.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(format!("'{rest}': unexpected '{t}' after ']'")),
            },
        }
    } else if rest.matches(':').count() > 1 {
        // A bare IPv6 literal: no port can be told apart from it.
        (rest, None)
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("'{rest}': empty host"));
    }
    let port = match (embedded, port) {
        (Some(p), _) => parse_port(p, rest)?,
        (None, Some(p)) => parse_port(p, "port")?,
        (None, None) => return Err(format!("'{rest}': no port given")),
    };
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(h: &str, p: u16) -> HostPort {
        HostPort {
            host: h.into(),
            port: p,
        }
    }

    #[test]
    fn schemes_and_ports() {
        assert_eq!(
            PeerAddress::parse("tcp://127.0.0.1:7000", None),
            Ok(PeerAddress::Tcp(hp("127.0.0.1", 7000)))
        );
        assert_eq!(
            PeerAddress::parse("tcp://127.0.0.1:7000", Some("5900")),
            Ok(PeerAddress::Tcp(hp("127.0.0.1", 7000)))
        );
        assert_eq!(
            PeerAddress::parse("tcp://localhost", Some("5900")),
            Ok(PeerAddress::Tcp(hp("localhost", 5900)))
        );
        assert_eq!(
            PeerAddress::parse("127.0.0.1", Some("80")),
            Ok(PeerAddress::Tcp(hp("127.0.0.1", 80)))
        );
        assert_eq!(
            PeerAddress::parse("udp://[::1]:53", None),
            Ok(PeerAddress::Udp(hp("::1", 53)))
        );
        assert_eq!(
            PeerAddress::parse("tcp://::1", Some("80")),
            Ok(PeerAddress::Tcp(hp("::1", 80)))
        );
        assert_eq!(
            PeerAddress::parse("TCP://[fe80::1]", Some("1")),
            Ok(PeerAddress::Tcp(hp("fe80::1", 1)))
        );
        assert_eq!(
            PeerAddress::parse("unix:///tmp/x.sock", None),
            Ok(PeerAddress::Unix("/tmp/x.sock".into()))
        );
        assert_eq!(
            PeerAddress::parse("unix-dgram:///tmp/d", Some("1")),
            Ok(PeerAddress::UnixDgram("/tmp/d".into()))
        );
        assert_eq!(
            PeerAddress::parse("mirror://", None),
            Ok(PeerAddress::Mirror)
        );
        let tls = PeerAddress::parse("tls://example.com", Some("443"));
        assert_eq!(tls, Ok(PeerAddress::Tls(hp("example.com", 443))));
        assert_eq!(tls.unwrap().to_string(), "tls://example.com:443");
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(PeerAddress::parse("tcp://h", None)
            .unwrap_err()
            .contains("no port"));
        assert!(PeerAddress::parse("tcp://h:99999", None)
            .unwrap_err()
            .contains("invalid port"));
        assert!(PeerAddress::parse("tcp://[::1", None)
            .unwrap_err()
            .contains("unterminated"));
        assert!(PeerAddress::parse("fifotx://x", None)
            .unwrap_err()
            .contains("not supported"));
        assert!(PeerAddress::parse("gopher://x", None)
            .unwrap_err()
            .contains("unknown scheme"));
        assert!(PeerAddress::parse("unix://", None).is_err());
    }

    #[test]
    fn proxy_protocol_suffix() {
        assert_eq!(
            PeerAddress::parse_with_options("tcp://127.0.0.1:5000?proxy-protocol=v2", None),
            Ok((
                PeerAddress::Tcp(hp("127.0.0.1", 5000)),
                Some(ProxyVersion::V2)
            ))
        );
        assert_eq!(
            PeerAddress::parse_with_options("unix:///tmp/s?proxy-protocol=v1", None),
            Ok((PeerAddress::Unix("/tmp/s".into()), Some(ProxyVersion::V1)))
        );
        assert_eq!(
            PeerAddress::parse_with_options("tcp://h", Some("1")),
            Ok((PeerAddress::Tcp(hp("h", 1)), None))
        );
        assert!(
            PeerAddress::parse_with_options("tcp://h:1?proxy-protocol=v3", None)
                .unwrap_err()
                .contains("expected v1 or v2")
        );
        assert!(!PeerAddress::Udp(hp("h", 1)).is_stream());
    }

    #[test]
    fn literal_addresses_skip_the_resolver() {
        assert_eq!(hp("::1", 80).literal(), Some("[::1]:80".parse().unwrap()));
        assert_eq!(hp("localhost", 80).literal(), None);
        assert_eq!(hp("::1", 80).to_string(), "[::1]:80");
    }
}
