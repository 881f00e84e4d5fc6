//! The PROXY protocol (haproxy's `proxy-protocol.txt`), v1 and v2: reading
//! the header a load balancer puts before a client's bytes
//! (`--proxy-protocol`), and writing one before ours to a peer
//! (`proxy-protocol = v1|v2`, `?proxy-protocol=` on a peer address).
//! Parsing and encoding are the `ppp` crate's; this module only decides
//! what the addresses mean here.

use std::fmt;
use std::net::SocketAddr;

use ppp::v2::{self, Builder, Command, Protocol};
use ppp::{v1, HeaderResult, PartialResult};

use crate::forwarded::canonical;

/// The most bytes looked at for a header: a v1 header is at most 107
/// bytes; a v2 header is 16 plus its length, and with no TLVs we use at
/// most 52. 4 KiB leaves room for the TLVs load balancers add (TLS
/// details, ids) and refuses the 64 KiB a v2 length could claim.
pub const MAX_HEADER: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn parse(v: &str) -> Result<Version, String> {
        match v {
            "v1" | "1" => Ok(Version::V1),
            "v2" | "2" => Ok(Version::V2),
            _ => Err(format!("invalid proxy-protocol '{v}': expected v1 or v2")),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// What the first bytes of a connection say.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Not enough bytes yet to tell.
    Incomplete,
    /// A header of `len` bytes. `source` is the client it speaks for;
    /// `None` for v2 LOCAL (a health check from the proxy itself), v1
    /// UNKNOWN and non-IP families: the direct address stands.
    /// `destination` is the address the client connected to.
    Header {
        len: usize,
        source: Option<SocketAddr>,
        destination: Option<SocketAddr>,
    },
    Invalid(String),
}

/// Parse a header at the start of `buf`, which may hold more after it.
pub fn parse(buf: &[u8]) -> Received {
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        if buf.len() >= MAX_HEADER {
            return Received::Invalid("PROXY header too long".into());
        }
        return Received::Incomplete;
    }
    match result {
        HeaderResult::V1(Ok(h)) => {
            let (source, destination) = match h.addresses {
                v1::Addresses::Tcp4(a) => (
                    Some(SocketAddr::from((a.source_address, a.source_port))),
                    Some(SocketAddr::from((
                        a.destination_address,
                        a.destination_port,
                    ))),
                ),
                v1::Addresses::Tcp6(a) => (
                    Some(SocketAddr::from((a.source_address, a.source_port))),
                    Some(SocketAddr::from((
                        a.destination_address,
                        a.destination_port,
                    ))),
                ),
                v1::Addresses::Unknown => (None, None),
            };
            Received::Header {
                len: h.header.len(),
                source,
                destination,
            }
        }
        HeaderResult::V2(Ok(h)) => {
            let (source, destination) = match (h.command, h.addresses) {
                (Command::Proxy, v2::Addresses::IPv4(a)) => (
                    Some(SocketAddr::from((a.source_address, a.source_port))),
                    Some(SocketAddr::from((
                        a.destination_address,
                        a.destination_port,
                    ))),
                ),
                (Command::Proxy, v2::Addresses::IPv6(a)) => (
                    Some(SocketAddr::from((a.source_address, a.source_port))),
                    Some(SocketAddr::from((
                        a.destination_address,
                        a.destination_port,
                    ))),
                ),
                _ => (None, None),
            };
            Received::Header {
                len: h.len(),
                source,
                destination,
            }
        }
        HeaderResult::V1(Err(e)) => Received::Invalid(format!("bad PROXY header: {e}")),
        HeaderResult::V2(Err(e)) => Received::Invalid(format!("bad PROXY v2 header: {e}")),
    }
}

/// The header announcing `source` (the real client) connected to
/// `destination` (our address on the client's connection). A destination
/// of the other family, or none (a Unix-socket listener), becomes the
/// unspecified address of the source's family; only a placeholder source
/// (an unvouched Unix-socket client) gives v1 `UNKNOWN` / v2 `LOCAL`, and
/// the peer then sees our own connection's address, as the protocol
/// specifies.
pub fn encode(version: Version, source: SocketAddr, destination: Option<SocketAddr>) -> Vec<u8> {
    let canon = |a: SocketAddr| SocketAddr::new(canonical(a.ip()), a.port());
    // A Unix-socket client nobody vouched for has only a placeholder
    // address: say nothing rather than a made-up source. A real source
    // whose destination is unknown (a Unix listener) or of the other family
    // gets the unspecified address of its own family as destination: the
    // service behind wants the source, and PROXY has no half-known form.
    let source = canon(source);
    let pair = (!source.ip().is_unspecified()).then(|| {
        let unspecified = match source {
            SocketAddr::V4(_) => SocketAddr::from(([0u8; 4], 0)),
            SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
        };
        let d = destination
            .map(canon)
            .filter(|d| d.is_ipv4() == source.is_ipv4())
            .unwrap_or(unspecified);
        (source, d)
    });
    match version {
        Version::V1 => {
            let addresses = match pair {
                Some(p) => v1::Addresses::from(p),
                None => v1::Addresses::Unknown,
            };
            // Its Display is the whole line, CRLF included.
            addresses.to_string().into_bytes()
        }
        Version::V2 => {
            let built = match pair {
                Some(p) => Builder::with_addresses(
                    v2::Version::Two | Command::Proxy,
                    Protocol::Stream,
                    v2::Addresses::from(p),
                )
                .build(),
                None => Builder::with_addresses(
                    v2::Version::Two | Command::Local,
                    Protocol::Unspecified,
                    v2::Addresses::Unspecified,
                )
                .build(),
            };
            // Building into a Vec cannot fail; the fallback is the
            // smallest valid header (LOCAL, no addresses).
            built.unwrap_or_else(|_| {
                let mut h = v2::PROTOCOL_PREFIX.to_vec();
                h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
                h
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_round_trip_and_rest_untouched() {
        let mut h = encode(Version::V1, a("192.0.2.7:4000"), Some(a("10.0.0.1:443")));
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 10.0.0.1 4000 443\r\n");
        let len = h.len();
        h.extend_from_slice(b"\x16\x03\x01 tls");
        assert_eq!(
            parse(&h),
            Received::Header {
                len,
                source: Some(a("192.0.2.7:4000")),
                destination: Some(a("10.0.0.1:443"))
            }
        );
        assert_eq!(parse(&h[..10]), Received::Incomplete);
        // A destination of the other family, or none: the source's own
        // unspecified address stands in; a placeholder source says nothing.
        assert_eq!(
            encode(Version::V1, a("192.0.2.7:1"), Some(a("[::1]:2"))),
            b"PROXY TCP4 192.0.2.7 0.0.0.0 1 0\r\n"
        );
        assert_eq!(
            encode(Version::V1, a("192.0.2.7:1"), None),
            b"PROXY TCP4 192.0.2.7 0.0.0.0 1 0\r\n"
        );
        assert_eq!(
            encode(Version::V1, a("0.0.0.0:0"), None),
            b"PROXY UNKNOWN\r\n"
        );
        assert_eq!(
            encode(
                Version::V1,
                a("[::ffff:192.0.2.7]:1"),
                Some(a("[::ffff:10.0.0.1]:2"))
            ),
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\r\n"
        );
    }

    #[test]
    fn v2_round_trip_and_local() {
        let h = encode(Version::V2, a("[2001:db8::1]:5"), Some(a("[::1]:6")));
        assert_eq!(
            parse(&h),
            Received::Header {
                len: h.len(),
                source: Some(a("[2001:db8::1]:5")),
                destination: Some(a("[::1]:6"))
            }
        );
        let l = encode(Version::V2, a("0.0.0.0:0"), None);
        assert_eq!(
            parse(&l),
            Received::Header {
                len: 16,
                source: None,
                destination: None
            }
        );
        assert_eq!(parse(&h[..20]), Received::Incomplete);
    }

    #[test]
    fn garbage_is_invalid_at_once() {
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n"), Received::Invalid(_)));
        assert!(matches!(
            parse(b"\x16\x03\x01\x02\x00"),
            Received::Invalid(_)
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 x y 1 2\r\n"),
            Received::Invalid(_)
        ));
    }
}
