//! TLS over a non-blocking TCP socket, for either role: the server side of
//! a `wss://` listener, or the client side of a `tls://` peer (and later of
//! a `wss://` dial). The role is only how the `Ssl` was made
//! (`set_accept_state` or `set_connect_state`); everything here is shared.
//!
//! The handshake is a state of the stream, driven by the same `read` and
//! `write` calls the session makes anyway (or by [`TlsStream::handshake`]
//! where nothing else would call them, before a peer counts as connected).
//! OpenSSL's WANT_READ / WANT_WRITE become `WouldBlock`, so the session's
//! readiness bits work unchanged; since either may need the other
//! direction, the session treats any event on a TLS socket as both
//! readable and writable (a spurious attempt only costs a WouldBlock).
//!
//! Writes: SSL_write is told it may be retried from a moved buffer and
//! may write part of what it is given, so a WANT_WRITE is reported as
//! WouldBlock with nothing written, and the session's queue retries with
//! the same bytes at its front, as OpenSSL requires.

use std::io::{self, IoSlice};
use std::net::Shutdown;

use openssl::ssl::{ErrorCode, Ssl, SslStream};
use openssl::x509::X509Ref;

/// One TLS record's worth of plaintext: the most a gathered write copies,
/// on the stack, so no connection keeps a buffer for it.
const RECORD: usize = 16 * 1024;

pub struct TlsStream {
    ssl: SslStream<mio::net::TcpStream>,
    /// The handshake finished; until then every call drives it first.
    established: bool,
    /// The handshake has been driven at least once: bytes in clear on the
    /// socket are no longer ours to read or write.
    started: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("established", &self.established)
            .finish()
    }
}

/// A handshake or record-layer failure, worded for one log line: the
/// first OpenSSL reason ("http request", "wrong version number",
/// "certificate verify failed", ...), plus the verification result when
/// a certificate was refused.
fn describe(e: &openssl::ssl::Error, ssl: &openssl::ssl::SslRef) -> String {
    let reason = e
        .ssl_error()
        .and_then(|s| s.errors().first())
        .and_then(|e| e.reason().map(str::to_string))
        .or_else(|| e.io_error().map(|e| e.to_string()))
        .unwrap_or_else(|| e.to_string());
    if reason == "http request" {
        return "plain HTTP request on a TLS port".into();
    }
    let verify = ssl.verify_result();
    if reason.contains("certificate verify failed") && verify.as_raw() != 0 {
        format!("{reason}: {}", verify.error_string())
    } else {
        reason
    }
}

impl TlsStream {
    /// Wrap a connected (or connecting) socket; `ssl` is in the accept or
    /// connect state already.
    pub fn new(ssl: Ssl, socket: mio::net::TcpStream) -> io::Result<TlsStream> {
        let ssl = SslStream::new(ssl, socket).map_err(io::Error::other)?;
        Ok(TlsStream {
            ssl,
            established: false,
            started: false,
        })
    }

    pub fn socket_mut(&mut self) -> &mut mio::net::TcpStream {
        self.ssl.get_mut()
    }

    pub fn socket(&self) -> &mio::net::TcpStream {
        self.ssl.get_ref()
    }

    /// Bytes in clear on the socket, before the handshake has touched it
    /// (a PROXY header in either direction); `None` once it has begun.
    fn before_handshake(&mut self) -> Option<&mut mio::net::TcpStream> {
        if self.started {
            return None;
        }
        Some(self.ssl.get_mut())
    }

    /// Read from the socket itself, bypassing TLS: only before the
    /// handshake starts.
    pub fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.before_handshake() {
            Some(s) => std::io::Read::read(s, buf),
            None => Err(io::Error::other("the TLS handshake has begun")),
        }
    }

    /// Write to the socket itself, bypassing TLS: only before the
    /// handshake starts.
    pub fn write_raw(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.before_handshake() {
            Some(s) => std::io::Write::write(s, buf),
            None => Err(io::Error::other("the TLS handshake has begun")),
        }
    }

    pub fn established(&self) -> bool {
        self.established
    }

    /// The client certificate the handshake verified, if any.
    pub fn peer_certificate(&self) -> Option<openssl::x509::X509> {
        self.ssl.ssl().peer_certificate()
    }

    /// Map an OpenSSL outcome: WANT_* is WouldBlock, a clean or abrupt
    /// end is EOF (`Ok(0)`), anything else an error with its reason.
    fn map(&self, e: openssl::ssl::Error) -> io::Result<usize> {
        match e.code() {
            ErrorCode::WANT_READ | ErrorCode::WANT_WRITE if e.io_error().is_none() => {
                Err(io::ErrorKind::WouldBlock.into())
            }
            ErrorCode::ZERO_RETURN => Ok(0),
            // The other side closed without close_notify: an EOF all the
            // same (the WebSocket and the peer's own framing say whether
            // anything was cut).
            ErrorCode::SYSCALL if e.io_error().is_none() => Ok(0),
            _ => match e.into_io_error() {
                Ok(io) => Err(io),
                Err(e) => {
                    let why = describe(&e, self.ssl.ssl());
                    if why.contains("unexpected eof") {
                        Ok(0)
                    } else {
                        Err(io::Error::new(io::ErrorKind::InvalidData, why))
                    }
                }
            },
        }
    }

    /// Drive the handshake: `Ok(true)` done, `Ok(false)` waiting for the
    /// socket, `Err` failed (the reason is the error's message).
    pub fn handshake(&mut self) -> io::Result<bool> {
        if self.established {
            return Ok(true);
        }
        self.started = true;
        match self.ssl.do_handshake() {
            Ok(()) => {
                self.established = true;
                Ok(true)
            }
            Err(e) => match self.map(e) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                Ok(_) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the handshake",
                )),
                Err(e) => Err(e),
            },
        }
    }

    fn ready(&mut self) -> io::Result<()> {
        if self.handshake()? {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.ready()?;
        match self.ssl.ssl_read(buf) {
            Ok(n) => Ok(n),
            Err(e) => self.map(e),
        }
    }

    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ready()?;
        if buf.is_empty() {
            return Ok(0);
        }
        match self.ssl.ssl_write(buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                // SSL_write never reports EOF; an "EOF" here means the
                // other side went away mid-write.
                self.map(e)?;
                Err(io::ErrorKind::BrokenPipe.into())
            }
        }
    }

    /// One SSL_write for the slices: a first slice of a record or more
    /// goes as it is; smaller ones are gathered on the stack up to one
    /// record, so small frames do not become one record each.
    pub fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut nonempty = bufs.iter().filter(|b| !b.is_empty());
        let Some(first) = nonempty.next() else {
            return Ok(0);
        };
        if first.len() >= RECORD || bufs.iter().filter(|b| !b.is_empty()).count() == 1 {
            return self.write(first);
        }
        // The stack buffer is zero-filled before use (filling it only as far
        // as written would need `unsafe`): sized to what will be gathered,
        // in steps, so a few small frames do not pay for 16 KiB of zeroes;
        // at most 4 times the bytes gathered are ever zeroed.
        let total = bufs
            .iter()
            .fold(0usize, |n, b| n.saturating_add(b.len()))
            .min(RECORD);
        match total {
            0..=512 => self.gather_write::<512>(bufs),
            513..=2048 => self.gather_write::<2048>(bufs),
            2049..=8192 => self.gather_write::<8192>(bufs),
            _ => self.gather_write::<RECORD>(bufs),
        }
    }

    /// The slices' first `N` bytes (at most) in one SSL_write.
    fn gather_write<const N: usize>(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut gather = [0u8; N];
        let n = gather_into(&mut gather, bufs);
        self.write(&gather[..n])
    }

    /// close_notify, then FIN: the other side learns the end was meant.
    pub fn shutdown_write(&mut self) {
        if self.established {
            // Best effort: a full socket buffer loses only the notice, and
            // the FIN below still ends the stream.
            let _ = self.ssl.shutdown();
        }
        let _ = self.ssl.get_ref().shutdown(Shutdown::Write);
    }

    pub fn shutdown_both(&self) {
        let _ = self.ssl.get_ref().shutdown(Shutdown::Both);
    }

    /// Decrypted bytes OpenSSL holds that no readiness event will announce.
    pub fn has_buffered_input(&self) -> bool {
        self.ssl.ssl().pending() > 0
    }
}

/// Copy from `bufs` in order until `out` is full; the count copied.
fn gather_into(out: &mut [u8], bufs: &[IoSlice<'_>]) -> usize {
    let mut n = 0;
    for b in bufs {
        let take = b.len().min(out.len() - n);
        out[n..n + take].copy_from_slice(&b[..take]);
        n += take;
        if n == out.len() {
            break;
        }
    }
    n
}

/// `subject` as one line, `CN=alice,O=Example`: most specific first, as
/// RFC 4514 prints a name (certificates usually store it the other way).
pub fn subject_line(cert: &X509Ref) -> String {
    let entries: Vec<_> = cert.subject_name().entries().collect();
    entries
        .into_iter()
        .rev()
        .map(|e| {
            let key = e
                .object()
                .nid()
                .short_name()
                .map(str::to_string)
                .unwrap_or_else(|_| e.object().to_string());
            let value = e
                .data()
                .to_string()
                .unwrap_or_else(|_| String::from_utf8_lossy(e.data().as_slice()).into_owned());
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Subject alternative names as `DNS:x`, `IP:x`, `email:x`, `URI:x`.
pub fn sans(cert: &X509Ref) -> Vec<String> {
    let Some(names) = cert.subject_alt_names() else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|n| {
            if let Some(d) = n.dnsname() {
                Some(format!("DNS:{d}"))
            } else if let Some(ip) = n.ipaddress() {
                let ip = match ip.len() {
                    4 => <[u8; 4]>::try_from(ip).ok().map(std::net::IpAddr::from),
                    16 => <[u8; 16]>::try_from(ip).ok().map(std::net::IpAddr::from),
                    _ => None,
                };
                ip.map(|ip| format!("IP:{ip}"))
            } else if let Some(e) = n.email() {
                Some(format!("email:{e}"))
            } else {
                n.uri().map(|u| format!("URI:{u}"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509Builder, X509NameBuilder};

    use std::io::IoSlice;

    use super::{gather_into, sans, subject_line, RECORD};

    /// Every size class gets the slices' bytes in order, cut at its end.
    #[test]
    fn gathering_keeps_order_and_stops_at_the_buffer() {
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        for cut in [
            &[1usize, 2][..],
            &[300, 212],
            &[512, 1],
            &[7, 2041, 9],
            &[3000, 20_000],
        ] {
            let mut at = 0;
            let slices: Vec<IoSlice> = cut
                .iter()
                .map(|&l| {
                    at += l;
                    IoSlice::new(&data[at - l..at])
                })
                .collect();
            for size in [512, 2048, 8192, RECORD] {
                let mut out = vec![0u8; size];
                let n = gather_into(&mut out, &slices);
                assert_eq!(n, at.min(size), "{cut:?} into {size}");
                assert_eq!(&out[..n], &data[..n], "{cut:?} into {size}");
            }
        }
    }

    #[test]
    fn identity_lines() {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("O", "Example").unwrap();
        name.append_entry_by_text("CN", "alice").unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        let san = SubjectAlternativeName::new()
            .dns("alice.example")
            .ip("127.0.0.1")
            .ip("::1")
            .email("alice@example.com")
            .uri("spiffe://example/alice")
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(san).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        assert_eq!(subject_line(&cert), "CN=alice,O=Example");
        assert_eq!(
            sans(&cert),
            [
                "DNS:alice.example",
                "IP:127.0.0.1",
                "IP:::1",
                "email:alice@example.com",
                "URI:spiffe://example/alice"
            ]
        );
    }
}
