//! The `Origin` allow-list (`--origin`): exact origins, `https://*.example.com`
//! patterns and `null`.
//!
//! Scheme and host compare case-insensitively (RFC 6454 serialises them in
//! lower case; a proxy or a hand-written client may not); a default port
//! (80 for http/ws, 443 for https/wss) is dropped on both sides, so
//! `https://a.example:443` and `https://a.example` are one origin. A
//! wildcard stands for one or more whole labels: `https://*.example.com`
//! matches `https://a.example.com` and `https://a.b.example.com`, never
//! `https://example.com` nor `https://badexample.com`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// The opaque origin browsers send from sandboxes, `file:` pages and
    /// redirects; accepted only when listed.
    Null,
    Exact {
        scheme: String,
        host: String,
        port: Option<u16>,
    },
    /// `scheme://*.SUFFIX[:port]`; `suffix` keeps its leading dot.
    Wildcard {
        scheme: String,
        suffix: String,
        port: Option<u16>,
    },
}

/// An origin as sent, split and normalised.
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

fn split(v: &str) -> Result<Origin, String> {
    let (scheme, rest) = v
        .split_once("://")
        .ok_or_else(|| format!("'{v}' is not an origin: expected scheme://host[:port] or null"))?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return Err(format!("'{v}': invalid scheme"));
    }
    if rest.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "'{v}': an origin is scheme://host[:port], without path, query or user"
        ));
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(r) => {
            let (h, tail) = r
                .split_once(']')
                .ok_or_else(|| format!("'{v}': unterminated '['"))?;
            (format!("[{h}]"), tail.strip_prefix(':'))
        }
        None => match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        },
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("'{v}': invalid host"));
    }
    let scheme = scheme.to_ascii_lowercase();
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("'{v}': invalid port '{p}'"))?,
        ),
    };
    let port = port.filter(|&p| Some(p) != default_port(&scheme));
    Ok(Origin {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
    })
}

impl Pattern {
    pub fn parse(v: &str) -> Result<Pattern, String> {
        if v.eq_ignore_ascii_case("null") {
            return Ok(Pattern::Null);
        }
        let o = split(v)?;
        match o.host.strip_prefix('*') {
            Some(suffix) => {
                if !suffix.starts_with('.') || suffix.len() < 2 || suffix.contains('*') {
                    return Err(format!(
                        "'{v}': a wildcard is a whole first label, as in https://*.example.com"
                    ));
                }
                Ok(Pattern::Wildcard {
                    scheme: o.scheme,
                    suffix: suffix.to_string(),
                    port: o.port,
                })
            }
            None if o.host.contains('*') => Err(format!(
                "'{v}': a wildcard is a whole first label, as in https://*.example.com"
            )),
            None => Ok(Pattern::Exact {
                scheme: o.scheme,
                host: o.host,
                port: o.port,
            }),
        }
    }

    fn matches(&self, origin: &str) -> bool {
        if let Pattern::Null = self {
            return origin == "null";
        }
        let Ok(o) = split(origin) else {
            return false;
        };
        match self {
            Pattern::Null => false,
            Pattern::Exact { scheme, host, port } => {
                *scheme == o.scheme && *host == o.host && *port == o.port
            }
            Pattern::Wildcard {
                scheme,
                suffix,
                port,
            } => {
                *scheme == o.scheme
                    && *port == o.port
                    && o.host.len() > suffix.len()
                    && o.host.ends_with(suffix.as_str())
                    // `*` is at least one label: no empty one before the dot.
                    && !o.host[..o.host.len() - suffix.len()].ends_with('.')
                    && !o.host.starts_with('.')
            }
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scheme, host, port) = match self {
            Pattern::Null => return f.write_str("null"),
            Pattern::Exact { scheme, host, port } => (scheme, host.clone(), port),
            Pattern::Wildcard {
                scheme,
                suffix,
                port,
            } => (scheme, format!("*{suffix}"), port),
        };
        write!(f, "{scheme}://{host}")?;
        match port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// The allow-list; empty means every origin (and none) is accepted.
#[derive(Debug, Default)]
pub struct Origins(Vec<Pattern>);

impl Origins {
    /// From the settings' values, already checked by [`Pattern::parse`].
    pub fn new(values: &[String]) -> Result<Origins, String> {
        values
            .iter()
            .map(|v| Pattern::parse(v))
            .collect::<Result<_, _>>()
            .map(Origins)
    }

    /// `None` if the request may go on, else why not. A missing `Origin`
    /// is refused once a list is set: browsers always send one on a
    /// WebSocket upgrade, so its absence means a client the list cannot
    /// vouch for, and "anything else is refused".
    pub fn check(&self, origin: Option<&str>) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        match origin {
            None => Some("no Origin header".into()),
            Some(o) if self.0.iter().any(|p| p.matches(o.trim())) => None,
            Some(o) => Some(format!("origin '{}' not allowed", o.trim())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Origins {
        Origins::new(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn exact_and_normalised() {
        let l = list(&["https://App.Example.com"]);
        assert_eq!(l.check(Some("https://app.example.com")), None);
        assert_eq!(l.check(Some("HTTPS://APP.EXAMPLE.COM:443")), None);
        assert!(l.check(Some("https://app.example.com:8443")).is_some());
        assert!(l.check(Some("http://app.example.com")).is_some());
        assert!(l.check(Some("https://evil.com")).is_some());
        assert!(l.check(None).is_some());
        assert!(l.check(Some("null")).is_some());
        assert!(l.check(Some("garbage")).is_some());
        assert_eq!(Origins::default().check(None), None);
    }

    #[test]
    fn wildcard_is_one_or_more_labels() {
        let l = list(&["https://*.example.com"]);
        assert_eq!(l.check(Some("https://a.example.com")), None);
        assert_eq!(l.check(Some("https://a.b.example.com")), None);
        assert!(l.check(Some("https://example.com")).is_some());
        assert!(l.check(Some("https://badexample.com")).is_some());
        assert!(l.check(Some("https://.example.com")).is_some());
        assert!(l.check(Some("http://a.example.com")).is_some());
    }

    #[test]
    fn null_only_when_listed() {
        assert_eq!(list(&["null"]).check(Some("null")), None);
    }

    #[test]
    fn bad_patterns() {
        for v in [
            "https://a*.example.com",
            "https://*",
            "example.com",
            "https://a.com/x",
            "",
        ] {
            assert!(Pattern::parse(v).is_err(), "{v}");
        }
        assert_eq!(
            Pattern::parse("HTTPS://*.Example.com:443")
                .unwrap()
                .to_string(),
            "https://*.example.com"
        );
    }
}
