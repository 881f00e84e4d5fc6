//! Value parsers, shared by the command line and the file so that both
//! give the same reason; the caller adds which option or line it was.

use std::path::PathBuf;
use std::time::Duration;

use super::{BindAddr, BindSpec, ClientCertMode, Local};
use crate::peer::PeerAddress;
use crate::spin::BusyPoll;
use crate::ws::url::Url;

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

/// `--busy-poll`: `auto`, or microseconds from 0 (off) to 1 s.
pub(super) fn busy_poll_value(v: &str) -> Result<BusyPoll, String> {
    match v.trim() {
        "auto" => Ok(BusyPoll::Auto(crate::spin::AUTO_MAX)),
        n => match n.parse::<u64>() {
            Ok(0) => Ok(BusyPoll::Off),
            Ok(n) if n <= 1_000_000 => Ok(BusyPoll::Fixed(Duration::from_micros(n))),
            _ => Err("expected auto or a number of microseconds from 0 to 1000000".into()),
        },
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

/// `--threads`: event loops, 1 to 1024 (each is a thread with its own
/// poll and buffers; far more loops than cores only costs).
pub(super) fn threads_value(v: &str) -> Result<usize, String> {
    match count_value(v)? {
        n if n > 1024 => Err("at most 1024 event loops".into()),
        n => Ok(n),
    }
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
    let (host, port) = listen_host_port(v)?;
    Ok(BindAddr::Tcp { host, port })
}

/// `HOST:PORT` or `[IPv6]:PORT` to listen on: the host without brackets.
fn listen_host_port(v: &str) -> Result<(String, u16), String> {
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
    Ok((host.to_string(), port_value(port)?))
}

// Client connections (`websocksy connect`, `[connect]` sections).

/// `--from LOCAL`: a local listener, one peer, the mirror, or `-`.
pub(super) fn local_value(v: &str) -> Result<Local, String> {
    const EXPECTED: &str = "expected tcp-listen://ADDR:PORT, unix-listen:///PATH, \
                            udp-listen://ADDR:PORT, tcp://, udp://, unix://, unix-dgram://, \
                            tls://, mirror:// or - (standard input and output)";
    if v == "-" {
        return Ok(Local::Stdio);
    }
    let Some((scheme, rest)) = v.split_once(':') else {
        return Err(EXPECTED.into());
    };
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "tcp-listen" | "udp-listen" => {
            let rest = rest
                .strip_prefix("//")
                .ok_or_else(|| format!("expected {scheme}://ADDR:PORT"))?;
            let (host, port) = listen_host_port(rest.strip_suffix('/').unwrap_or(rest))?;
            Ok(if scheme == "tcp-listen" {
                Local::TcpListen { host, port }
            } else {
                Local::UdpListen { host, port }
            })
        }
        "unix-listen" => {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err("expected a socket path after 'unix-listen:'".into());
            }
            // sun_path holds 108 bytes including the terminating NUL.
            if path.len() > 107 {
                return Err(format!("socket path '{path}' is longer than 107 bytes"));
            }
            Ok(Local::UnixListen(PathBuf::from(path)))
        }
        // `unix:/path`, as --bind writes it, is taken too.
        "unix" | "unix-dgram" if !rest.starts_with("//") => {
            PeerAddress::parse(&format!("{scheme}://{rest}"), None).map(Local::Peer)
        }
        "tcp" | "udp" | "unix" | "unix-dgram" | "tls" | "mirror" => {
            if !rest.starts_with("//") {
                return Err(format!("expected {scheme}://..."));
            }
            PeerAddress::parse(v, None).map(Local::Peer)
        }
        _ => Err(format!("unknown scheme '{scheme}:', {EXPECTED}")),
    }
}

/// The server's URL; an error never shows the password of its user info.
pub(super) fn url_value(v: &str) -> Result<Url, String> {
    Url::parse(v).map_err(|why| why.replace(v, &url_shown(v)))
}

/// Where the user info of a URL is (`user:password` before the host's
/// `@`), with or without a scheme (a forgotten `ws://` must not make the
/// password show up in the error).
fn userinfo_range(url: &str) -> Option<std::ops::Range<usize>> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.rfind('@').map(|end| start..start + end)
}

/// A URL as messages show it: the user info hidden.
pub(super) fn url_shown(v: &str) -> String {
    match userinfo_range(v) {
        Some(r) => format!("{}<hidden>{}", &v[..r.start], &v[r.end..]),
        None => v.to_string(),
    }
}

/// RFC 9110 `token`: header names and subprotocols.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Headers the bridge writes itself in the upgrade request; a second
/// copy would make the request ambiguous, or invalid.
const BRIDGE_HEADERS: &[&str] = &[
    "Host",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
];

/// `--header 'Name: value'`: the value trimmed of blanks at both ends.
pub(super) fn header_value(v: &str) -> Result<(String, String), String> {
    let Some((name, value)) = v.split_once(':') else {
        return Err("expected 'Name: value'".into());
    };
    if name.is_empty() {
        return Err("expected 'Name: value', the name is empty".into());
    }
    if !is_token(name) {
        return Err("the name is not a valid header name \
                    (letters, digits and !#$%&'*+-.^_`|~, no spaces)"
            .into());
    }
    if let Some(h) = BRIDGE_HEADERS.iter().find(|h| h.eq_ignore_ascii_case(name)) {
        return Err(format!("{h} is set by websocksy itself"));
    }
    if name.eq_ignore_ascii_case("Sec-WebSocket-Protocol") {
        return Err("Sec-WebSocket-Protocol is set by websocksy: give each \
                    subprotocol with --protocol (protocol = in a file)"
            .into());
    }
    if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("Transfer-Encoding")
    {
        return Err(format!(
            "{name} does not apply: the upgrade request has no body"
        ));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.contains(['\r', '\n']) {
        return Err("the value has a line break".into());
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err("the value has a control character".into());
    }
    Ok((name.to_string(), value.to_string()))
}

/// A header as messages show it: the name only, since values are often
/// tokens or cookies.
pub(super) fn header_shown(v: &str) -> String {
    match v.split_once(':') {
        Some((name, _)) if is_token(name) => format!("{name}: ..."),
        _ => "<hidden>".into(),
    }
}

/// `--protocol NAME`: a subprotocol to offer.
pub(super) fn protocol_value(v: &str) -> Result<String, String> {
    if !is_token(v) {
        return Err(
            "expected a subprotocol name: a token of letters, digits and \
                    !#$%&'*+-.^_`|~ (no spaces or commas)"
                .into(),
        );
    }
    Ok(v.to_string())
}

/// `--origin` of a client: what the header will say, as given.
pub(super) fn client_origin_value(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Err("expected an origin such as https://app.example".into());
    }
    if v.chars().any(char::is_control) {
        return Err("the origin has a line break or control character".into());
    }
    Ok(v.to_string())
}

/// `--sni NAME`: a DNS name; RFC 6066 has no room for an IP address.
pub(super) fn sni_value(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Err("expected a host name".into());
    }
    if v.parse::<std::net::IpAddr>().is_ok() {
        return Err("an IP address cannot be sent as SNI (RFC 6066); give a host name".into());
    }
    if v.len() > 253 {
        return Err("a host name is at most 253 bytes".into());
    }
    if let Some(c) = v
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
    {
        return Err(format!(
            "'{}' cannot appear in a host name (non-ASCII names go in their xn-- form)",
            c.escape_default()
        ));
    }
    Ok(v.to_string())
}

/// Text that must not be empty (an opening message, a framing's
/// configuration): leaving the option out is how to give none.
pub(super) fn text_value(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Err("empty; leave the option out instead".into());
    }
    Ok(v.to_string())
}

/// `--retry-growth`: how much each wait grows. Bounded so that a wait
/// computed as a `Duration` cannot overflow before the maximum caps it
/// (no one needs a factor of 1000).
pub(super) fn growth_value(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(g) if (1.0..=100.0).contains(&g) => Ok(g),
        _ => Err("expected a factor from 1 to 100, e.g. 2 or 1.5".into()),
    }
}

/// `--retry-max N`: attempts after the first failure, 0 for no limit.
pub(super) fn retry_max_value(v: &str) -> Result<u32, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a whole number of attempts, 0 for no limit".into());
    }
    v.parse()
        .map_err(|_| format!("too large, at most {}", u32::MAX))
}

/// `%XX` escapes of a URL's user info; the result must be UTF-8.
pub(super) fn percent_decode(v: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(v.len());
    let mut bytes = v.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = |b: Option<u8>| b.and_then(|b| (b as char).to_digit(16));
        match (hex(bytes.next()), hex(bytes.next())) {
            (Some(hi), Some(lo)) => out.push((hi * 16 + lo) as u8),
            _ => return Err("a '%' not followed by two hex digits".into()),
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".into())
}

/// Basic credentials for a client: `$NAME`, an environment variable
/// holding `user:password`, or a file whose first line that is neither
/// blank nor a `#` comment is `user:password`. Messages never show the
/// password (nor the line: it would be the password whenever the colon is
/// missing).
pub(super) fn client_credentials(spec: &str) -> Result<(String, String), String> {
    let (line, whose) = if let Some(name) = spec.strip_prefix('$') {
        let v = std::env::var(name).map_err(|_| {
            format!("--auth ${name}: the environment variable {name} is not set or not UTF-8")
        })?;
        (
            v.trim_end_matches(['\r', '\n']).to_string(),
            format!("--auth ${name}"),
        )
    } else {
        let bytes = super::file::read_start_up_file(std::path::Path::new(spec), 64 << 10)
            .map_err(|why| format!("cannot read auth file '{spec}': {why}"))?;
        let text =
            String::from_utf8(bytes).map_err(|_| format!("auth file '{spec}': not UTF-8"))?;
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| format!("auth file '{spec}' has no user:password line"))?;
        (first.to_string(), format!("auth file '{spec}'"))
    };
    match line.split_once(':') {
        Some((user, password)) if !user.is_empty() => Ok((user.into(), password.into())),
        Some(_) => Err(format!("{whose}: the user name before ':' is empty")),
        None => Err(format!("{whose}: expected user:password")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;

    #[test]
    fn threads_are_1_to_1024() {
        assert_eq!(run(&["--threads", "1024"]).threads, Some(1024));
        assert!(fail(&["--threads", "1025"]).contains("at most 1024"));
        assert!(fail(&["--threads", "0"]).contains("at least 1"));
    }

    #[test]
    fn busy_poll_takes_auto_or_microseconds() {
        use crate::spin::{BusyPoll, AUTO_MAX};
        use std::time::Duration;
        assert_eq!(run(&[]).busy_poll, BusyPoll::Off);
        assert_eq!(run(&["--busy-poll", "0"]).busy_poll, BusyPoll::Off);
        assert_eq!(
            run(&["--busy-poll", "40"]).busy_poll,
            BusyPoll::Fixed(Duration::from_micros(40))
        );
        assert_eq!(
            run(&["--busy-poll", "auto"]).busy_poll,
            BusyPoll::Auto(AUTO_MAX)
        );
        for bad in ["fast", "-1", "2000000", ""] {
            assert!(
                fail(&["--busy-poll", bad]).contains("expected auto or"),
                "{bad}"
            );
        }
    }

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
