//! Value parsers, shared by the command line and the file so that both
//! give the same reason; the caller adds which option or line it was.

use std::path::PathBuf;
use std::time::Duration;

use super::{BindAddr, BindSpec, ClientCertMode};

pub(super) fn port_value(v: &str) -> Result<u16, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a port number 0-65535".into());
    }
    v.parse()
        .map_err(|_| "out of range, a port is 0-65535".to_string())
}

pub(super) fn listen_value(v: &str) -> Result<String, String> {
    let host = match v.strip_prefix('[') {
        None => v,
        Some(rest) => match rest.split_once(']') {
            None => return Err("missing ']' after an IPv6 address".into()),
            Some((host, "")) => host,
            // `[::1]:8000` would otherwise reach getaddrinfo and fail obscurely.
            Some((_, tail)) => {
                return Err(format!(
                    "unexpected '{tail}' after ']' (the port is a separate setting)"
                ))
            }
        },
    };
    if host.is_empty() {
        return Err("expected a host name or address".into());
    }
    // Refused here rather than by the resolver, so that a typo is a
    // configuration error (exit status 2) and only a well-formed address
    // that cannot be resolved or bound is a listener failure (1).
    if host.contains(':') || host.len() != v.len() {
        ipv6_literal(host)?;
    } else if let Some(c) = host
        .chars()
        .find(|&c| !(c.is_alphanumeric() || matches!(c, '-' | '.' | '_')))
    {
        return Err(format!(
            "'{}' cannot appear in a host name or IPv4 address",
            c.escape_default()
        ));
    }
    Ok(host.to_string())
}

/// An IPv6 address, with an optional `%zone` (a scope for link-local
/// addresses, which the resolver turns into an interface index).
fn ipv6_literal(v: &str) -> Result<(), String> {
    let (addr, zone) = match v.split_once('%') {
        Some((addr, zone)) => (addr, Some(zone)),
        None => (v, None),
    };
    // Brackets were stripped (and checked) by the caller, so a ']' here has no '['.
    if v.contains(']') {
        return Err("unexpected ']' without a '[' before the address".into());
    }
    if addr.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(format!("'{addr}' is not an IPv6 address"));
    }
    match zone {
        Some(z) if z.is_empty() || z.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Err(format!("invalid zone '{z}' after '%'"))
        }
        _ => Ok(()),
    }
}

pub(super) fn path_value(v: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        return Err("expected a path".into());
    }
    Ok(PathBuf::from(v))
}

pub(super) fn backend_value(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Err("expected a backend name".into());
    }
    Ok(v.to_string())
}

/// Not trimmed: on the command line, spaces are deliberate (a separator
/// framing may need a value of " ").
pub(super) fn backend_option_value(v: &str) -> Result<(String, String), String> {
    match v.split_once('=') {
        Some(("", _)) => Err("expected KEY=VALUE, the key is empty".into()),
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
        None => Err("expected KEY=VALUE".into()),
    }
}

/// A framing name as `framing = NAME` gives it: not empty, no whitespace,
/// no control characters (the host refuses such names at registration).
pub(super) fn framing_name_value(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Err("the framing name is empty".into());
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("the framing name '{v}' has spaces"));
    }
    Ok(v.to_string())
}

/// `NAME:KEY=VALUE`, split at the first ':' and the first '=' after it. Not
/// trimmed, like `-c`.
pub(super) fn framing_option_value(v: &str) -> Result<(String, String, String), String> {
    const EXPECTED: &str = "expected NAME:KEY=VALUE";
    let Some((name, option)) = v.split_once(':') else {
        return Err(EXPECTED.into());
    };
    let name = framing_name_value(name).map_err(|why| format!("{EXPECTED}, {why}"))?;
    match option.split_once('=') {
        Some(("", _)) => Err(format!("{EXPECTED}, the key is empty")),
        Some((key, value)) => Ok((name, key.to_string(), value.to_string())),
        None => Err(EXPECTED.into()),
    }
}

/// Beyond this, `Instant::now() + timeout` could overflow and panic in the
/// event loop; about 31 years is not a meaningful limit to anyone.
const MAX_SECONDS: f64 = 1e9;

/// A duration where 0 means "off" (`None`).
pub(crate) fn seconds_or_off(v: &str) -> Result<Option<Duration>, String> {
    let secs = seconds_f64(v)?;
    if secs == 0.0 {
        return Ok(None);
    }
    positive_duration(secs).map(Some)
}

/// Microseconds, 0 to 1 s.
pub(super) fn micros_value(v: &str) -> Result<Duration, String> {
    match v.trim().parse::<u64>() {
        Ok(n) if n <= 1_000_000 => Ok(Duration::from_micros(n)),
        _ => Err("expected a number of microseconds from 0 to 1000000".into()),
    }
}

pub(super) fn seconds(v: &str) -> Result<Duration, String> {
    let secs = seconds_f64(v)?;
    if secs == 0.0 {
        return Err("must be greater than 0".into());
    }
    positive_duration(secs)
}

fn seconds_f64(v: &str) -> Result<f64, String> {
    let secs: f64 = v
        .parse()
        .map_err(|_| "expected a number of seconds, e.g. 10 or 0.5".to_string())?;
    if !secs.is_finite() || secs < 0.0 {
        return Err("expected a number of seconds, e.g. 10 or 0.5".into());
    }
    Ok(secs)
}

fn positive_duration(secs: f64) -> Result<Duration, String> {
    if secs > MAX_SECONDS {
        return Err(format!("too large, at most {MAX_SECONDS} seconds"));
    }
    let d = Duration::from_secs_f64(secs);
    // Otherwise a tiny value would silently become 0, which means "off".
    if d.is_zero() {
        return Err("too small, the resolution is 1 ns".into());
    }
    Ok(d)
}

pub(crate) fn size_value(v: &str) -> Result<usize, String> {
    const EXPECTED: &str =
        "expected a number of bytes, optionally with a K, M or G suffix (e.g. 64M)";
    let digits_end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, suffix) = v.split_at(digits_end);
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(EXPECTED.into()),
    };
    if digits.is_empty() {
        return Err(EXPECTED.into());
    }
    let n: usize = digits.parse().map_err(|_| "too large".to_string())?;
    let bytes = n.checked_mul(1 << shift).ok_or("too large")?;
    if bytes == 0 {
        return Err("must be at least 1 byte".into());
    }
    Ok(bytes)
}

pub(super) fn count_value(v: &str) -> Result<usize, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a whole number of at least 1".into());
    }
    match v.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("too large".into()),
    }
}

/// `--auth SPEC`: `$NAME` (an environment variable holding `user:password`)
/// or a credentials file. Read at start-up, not here, so the settings stay a
/// plain description; what can be told from the text alone is refused now.
pub(super) fn auth_value(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Err("expected $NAME (an environment variable) or a credentials file".into());
    }
    if let Some(name) = v.strip_prefix('$') {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(format!("'{v}' is not an environment variable name"));
        }
        return Ok(v.to_string());
    }
    // Credentials in clear on a command line end up in `ps` and shell
    // histories: refuse what looks like them rather than guess.
    if v.contains(':') && !std::path::Path::new(v).exists() {
        return Err(
            "this looks like user:password and is not a file; credentials never go \
                    on the command line: put them in an environment variable and give \
                    $NAME, or in a file"
                .into(),
        );
    }
    Ok(v.to_string())
}

/// `--origin`: checked (and normalised) by the allow-list's own parser.
pub(super) fn origin_value(v: &str) -> Result<String, String> {
    crate::admission::origin::Pattern::parse(v).map(|p| p.to_string())
}

/// `--trusted-proxy`: a CIDR block, one address (/32 or /128), or `unix`
/// (`None`: the clients of Unix-socket listeners, such as a local nginx).
pub(super) fn trusted_proxy_value(v: &str) -> Result<Option<ipnet::IpNet>, String> {
    if v == "unix" {
        return Ok(None);
    }
    if let Ok(net) = v.parse::<ipnet::IpNet>() {
        return Ok(Some(net.trunc()));
    }
    v.parse::<std::net::IpAddr>()
        .map(|ip| Some(ipnet::IpNet::from(ip)))
        .map_err(|_| "expected an IP address, a CIDR block such as 10.0.0.0/8, or unix".to_string())
}

pub(crate) fn bool_value(v: &str) -> Result<bool, String> {
    match v {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// `require` or `optional`.
pub(super) fn client_cert_value(v: &str) -> Result<ClientCertMode, String> {
    match v {
        "require" => Ok(ClientCertMode::Require),
        "optional" => Ok(ClientCertMode::Optional),
        _ => Err("expected 'require' or 'optional'".into()),
    }
}

/// `ws://ADDR:PORT`, `wss://ADDR:PORT` or `unix:/path`, then options
/// after `?`, `&`-separated: `mode=0660` (Unix only) and `proxy-protocol`.
pub(super) fn bind_value(v: &str) -> Result<BindSpec, String> {
    let (base, options) = match v.split_once('?') {
        Some((b, o)) => (b, Some(o)),
        None => (v, None),
    };
    let (addr, tls) = if let Some(rest) = base.strip_prefix("ws://") {
        (bind_host_port(rest)?, false)
    } else if let Some(rest) = base.strip_prefix("wss://") {
        (bind_host_port(rest)?, true)
    } else if let Some(rest) = base.strip_prefix("unix:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err("expected a socket path after 'unix:'".into());
        }
        // sun_path holds 108 bytes including the terminating NUL.
        if path.len() > 107 {
            return Err(format!("socket path '{path}' is longer than 107 bytes"));
        }
        (BindAddr::Unix(PathBuf::from(path)), false)
    } else {
        return Err("expected ws://ADDR:PORT, wss://ADDR:PORT or unix:/PATH".into());
    };
    let mut spec = BindSpec {
        addr,
        tls,
        mode: None,
        proxy_protocol: false,
    };
    for opt in options.into_iter().flat_map(|o| o.split('&')) {
        match opt.split_once('=') {
            None if opt == "proxy-protocol" => spec.proxy_protocol = true,
            Some(("proxy-protocol", b)) => {
                spec.proxy_protocol =
                    bool_value(b).map_err(|e| format!("proxy-protocol: {e}, not '{b}'"))?
            }
            Some(("mode", m)) => {
                if !matches!(spec.addr, BindAddr::Unix(_)) {
                    return Err("'mode' applies to unix: listeners only".into());
                }
                match u32::from_str_radix(m, 8) {
                    Ok(n) if n <= 0o777 && !m.is_empty() => spec.mode = Some(n),
                    _ => return Err(format!("'{m}' is not an octal mode like 0660")),
                }
            }
            _ => {
                return Err(format!(
                    "unknown listener option '{opt}' (expected mode=OCTAL or proxy-protocol)"
                ))
            }
        }
    }
    Ok(spec)
}

/// `HOST:PORT` or `[IPv6]:PORT`; port 0 picks a free one.
fn bind_host_port(v: &str) -> Result<BindAddr, String> {
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (h, tail) = rest
            .split_once(']')
            .ok_or("missing ']' after an IPv6 address")?;
        let p = tail.strip_prefix(':').ok_or("expected ':PORT' after ']'")?;
        ipv6_literal(h)?;
        (h, p)
    } else {
        let (h, p) = v.rsplit_once(':').ok_or("expected ADDR:PORT")?;
        if h.contains(':') {
            return Err("an IPv6 address needs brackets: [ADDR]:PORT".into());
        }
        listen_value(h)?;
        (h, p)
    };
    Ok(BindAddr::Tcp {
        host: host.to_string(),
        port: port_value(port)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;

    #[test]
    fn listen_brackets_are_stripped() {
        assert_eq!(run(&["-l", "[::1]"]).listen, "::1");
        assert_eq!(run(&["-l", "::1"]).listen, "::1");
        assert_eq!(run(&["-l", "localhost"]).listen, "localhost");
        assert_eq!(run(&["-l", "[fe80::1%eth0]"]).listen, "fe80::1%eth0");
        assert!(fail(&["-l", "[::1"]).contains("missing ']'"));
        assert!(fail(&["-l", "[::1]:80"]).contains("':80'"));
        fail(&["-l", "[]"]);
        fail(&["-l", ""]);
    }

    #[test]
    fn malformed_listen_is_a_configuration_error() {
        // Well-formed, even if unresolvable: left to the listener.
        for ok in [
            "127.1",
            "1.2.3.4.5",
            "no-such_host.invalid.",
            "::ffff:1.2.3.4",
            "::",
        ] {
            assert_eq!(run(&["-l", ok]).listen, ok);
        }
        let msg = fail(&["-l", "::1]"]);
        assert_eq!(
            msg,
            "invalid value '::1]' for '--listen <ADDR>': \
             unexpected ']' without a '[' before the address"
        );
        for (bad, why) in [
            (":::", "':::' is not an IPv6 address"),
            ("[localhost]", "'localhost' is not an IPv6 address"),
            ("[127.0.0.1]", "'127.0.0.1' is not an IPv6 address"),
            ("fe80::1%", "invalid zone '' after '%'"),
            ("a b", "' ' cannot appear in a host name or IPv4 address"),
            ("host:80", "'host:80' is not an IPv6 address"),
            ("tcp://x", "'tcp://x' is not an IPv6 address"),
            ("a/b", "'/' cannot appear in a host name or IPv4 address"),
            ("a\tb", "'\\t' cannot appear in a host name or IPv4 address"),
        ] {
            let msg = fail(&["-l", bad]);
            assert!(msg.ends_with(why), "{bad}: {msg}");
        }
        let file = TempFile::new(b"[core]\nlisten = ::1]\n");
        assert_eq!(
            fail(&[&file.path()]),
            format!(
                "{}:2: invalid value '::1]' for 'listen': \
                 unexpected ']' without a '[' before the address",
                file.path()
            )
        );
    }

    #[test]
    fn message_size_suffixes() {
        assert_eq!(size_value("65536"), Ok(65536));
        assert_eq!(size_value("64M"), Ok(64 << 20));
        assert_eq!(size_value("64m"), Ok(64 << 20));
        assert_eq!(size_value("64MiB"), Ok(64 << 20));
        assert_eq!(size_value("16k"), Ok(16 << 10));
        assert_eq!(size_value("1G"), Ok(1 << 30));
        assert_eq!(size_value("100b"), Ok(100));
        for bad in ["", "M", "0", "0K", "1.5M", "-1", "1T", "64 M", "1x"] {
            assert!(size_value(bad).is_err(), "{bad}");
        }
        assert_eq!(
            size_value("99999999999999999999G"),
            Err("too large".to_string())
        );
        let max = format!("{}G", usize::MAX >> 20);
        assert_eq!(size_value(&max), Err("too large".to_string()));
        assert_eq!(
            run(&["--max-message-size", "64M"]).max_message_size,
            64 << 20
        );
    }

    #[test]
    fn max_connections_is_at_least_one() {
        assert!(fail(&["--max-connections", "0"]).contains("at least 1"));
        fail(&["--max-connections", "ten"]);
        assert_eq!(run(&["--max-connections", "1"]).max_connections, Some(1));
    }

    #[test]
    fn bind_specs() {
        use super::{bind_value, BindAddr};
        let b = bind_value("wss://[::1]:0?proxy-protocol").unwrap();
        assert_eq!(
            b.addr,
            BindAddr::Tcp {
                host: "::1".into(),
                port: 0
            }
        );
        assert!(b.tls && b.proxy_protocol);
        assert_eq!(b.to_string(), "wss://[::1]:0");
        let b = bind_value("unix:/run/w.sock?mode=0660").unwrap();
        assert_eq!(b.addr, BindAddr::Unix("/run/w.sock".into()));
        assert_eq!(b.mode, Some(0o660));
        assert!(!b.tls && !b.proxy_protocol);
        assert_eq!(
            bind_value("ws://localhost:80").unwrap().to_string(),
            "ws://localhost:80"
        );
        for bad in [
            "tcp://x:1",
            "ws://::1:80",
            "ws://x",
            "ws://x:99999",
            "unix:",
            "unix:/a?mode=999",
            "ws://x:1?mode=0600",
            "ws://x:1?bogus",
        ] {
            assert!(bind_value(bad).is_err(), "{bad}");
        }
    }
}
