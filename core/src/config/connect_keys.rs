//! The options of a client connection: one table that both `websocksy
//! connect` (each key is also a long option, `url` the positional URL) and
//! `[connect]` sections read, like `keys.rs` for `[core]`.
//!
//! A connection is collected into a [`Draft`] key by key, then checked as a
//! whole by [`Draft::finish`] once the file and the command line are both
//! applied: options that exclude or need each other, and the files read at
//! start-up (credentials, the opening message, which is bounded by the
//! final `--max-message-size`).

use std::path::PathBuf;
use std::time::Duration;

use super::values::{
    auth_value, client_credentials, client_origin_value, framing_name_value, growth_value,
    header_shown, header_value, local_value, path_value, percent_decode, protocol_value,
    retry_max_value, seconds, seconds_or_off, size_value, sni_value, text_value, url_shown,
    url_value,
};
use super::{ConfigError, ConnectSettings, Direction, Local, OpenMessage, Settings, LOG_TARGET};
use crate::peer::HostPort;
use crate::ws::url::Url;

/// `at` of the connection `websocksy connect` describes.
pub(super) const COMMAND_LINE: &str = "command line";

/// One option of a client connection: `--NAME` after `websocksy connect`,
/// `NAME =` in a `[connect]` section.
pub(super) struct ConnectKey {
    pub name: &'static str,
    /// The positional argument (`url`) rather than `--NAME`.
    pub positional: bool,
    pub value_name: &'static str,
    pub help: &'static str,
    /// See the field of the same name in `keys::Key`.
    pub numeric: bool,
    pub repeatable: bool,
    pub flag: bool,
    apply: fn(&mut Draft, &str) -> Result<(), String>,
}

impl ConnectKey {
    /// The value as messages show it: no credentials, no header values
    /// (tokens, cookies), no password from a URL.
    pub fn shown(&self, v: &str) -> String {
        let v = match self.name {
            "auth" => "<hidden>".into(),
            "header" => header_shown(v),
            "url" => url_shown(v),
            _ => v.to_string(),
        };
        // A line break would split the one-line message.
        if v.chars().any(char::is_control) {
            return v
                .chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect();
        }
        v
    }

    /// Whether clap's own message may quote `v`; otherwise it is checked
    /// when applied, and quoted as [`shown`](Self::shown).
    pub fn may_echo(&self, v: &str) -> bool {
        !matches!(self.name, "auth" | "header" | "url") && !v.chars().any(char::is_control)
    }

    /// Parses `v` without keeping it.
    pub fn check(&self, v: &str) -> Result<(), String> {
        (self.apply)(&mut Draft::new(COMMAND_LINE.into(), None, 0), v)
    }

    /// Parses `v` into `d`; `line` is its line in the file (0 on the
    /// command line). The error is the reason only.
    pub fn apply(&self, d: &mut Draft, v: &str, line: usize) -> Result<(), String> {
        (self.apply)(d, v)?;
        d.given.retain(|(k, _)| *k != self.name);
        d.given.push((self.name, line));
        Ok(())
    }
}

/// The key named `name` (case-sensitive).
pub(super) fn find(name: &str) -> Option<&'static ConnectKey> {
    CONNECT_KEYS.iter().find(|k| k.name == name)
}

/// In `--help` order.
pub(super) static CONNECT_KEYS: &[ConnectKey] = &[
    ConnectKey {
        name: "url",
        positional: true,
        value_name: "URL",
        help: "The server: ws://, wss://, http:// or https://; user:password@HOST gives \
               Basic credentials",
        numeric: false,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.url = Some(url_value(v)?);
            Ok(())
        },
    },
    ConnectKey {
        name: "from",
        positional: false,
        value_name: "LOCAL",
        help: "The local side: a listener (tcp-listen://...), a peer (tcp://...) or - \
               (see below)",
        numeric: false,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.from = Some(local_value(v)?);
            Ok(())
        },
    },
    ConnectKey {
        name: "framing",
        positional: false,
        value_name: "NAME",
        help: "Cut the local stream into messages with this framing (built-in or plugin) \
               [default: auto]",
        numeric: false,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.c.framing = framing_name_value(v)?;
            Ok(())
        },
    },
    ConnectKey {
        name: "framing-config",
        positional: false,
        value_name: "CFG",
        help: "The framing's configuration, as framing-config of the default backend",
        numeric: false,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.c.framing_config = Some(text_value(v)?);
            Ok(())
        },
    },
    ConnectKey {
        name: "header",
        positional: false,
        value_name: "NAME: VALUE",
        help: "Add this header to the upgrade request; repeatable, kept in order",
        numeric: false,
        repeatable: true,
        flag: false,
        apply: |d, v| {
            d.c.headers.push(header_value(v)?);
            Ok(())
        },
    },
    ConnectKey {
        name: "auth",
        positional: false,
        value_name: "SPEC",
        help: "Basic credentials: $NAME (holding user:password) or a file of one \
               user:password line",
        numeric: false,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.auth = Some(auth_value(v)?);
            Ok(())
        },
    },
    ConnectKey {
        name: "protocol",
        positional: false,
        value_name: "NAME",
        help: "Offer this subprotocol (Sec-WebSocket-Protocol); repeatable, in order of \
               preference",
        numeric: false,
        repeatable: true,
        flag: false,
        apply: |d, v| {
            d.c.protocols.push(protocol_value(v)?);
            Ok(())
        },
    },
    ConnectKey {
        name: "origin",
        positional: false,
        value_name: "ORIGIN",
        help: "Send this Origin header (https://app.example)",
        numeric: false,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.c.origin = Some(client_origin_value(v)?);
            Ok(())
        },
    },
    ConnectKey {
        name: "open-message",
        positional: false,
        value_name: "TEXT",
        help: "Send TEXT first on every new connection",
        numeric: false,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.open_text = Some(text_value(v)?);
            Ok(())
        },
    },
    ConnectKey {
        name: "open-message-file",
        positional: false,
        value_name: "FILE",
        help: "Send the contents of FILE (read at start-up) first on every new connection",
        numeric: false,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.open_file = Some(path_value(v)?);
            Ok(())
        },
    },
    ConnectKey {
        name: "open-message-binary",
        positional: false,
        value_name: "BOOL",
        help: "Send the opening message as a binary message, not text",
        numeric: false,
        repeatable: false,
        flag: true,
        apply: |d, v| {
            d.open_binary = bool_of(v)?;
            Ok(())
        },
    },
    ConnectKey {
        name: "timeout",
        positional: false,
        value_name: "SECS",
        help: "Give up an attempt whose connect, TLS and upgrade take longer than SECS \
               [default: 10]",
        numeric: true,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.c.timeout = seconds(v)?;
            Ok(())
        },
    },
    ConnectKey {
        name: "ca",
        positional: false,
        value_name: "FILE",
        help: "Verify the wss:// server with these CAs (PEM) instead of the system's",
        numeric: false,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.c.ca = Some(path_value(v)?);
            Ok(())
        },
    },
    ConnectKey {
        name: "cert",
        positional: false,
        value_name: "FILE",
        help: "Client certificate chain (PEM) shown to the wss:// server; needs --key",
        numeric: false,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.c.cert = Some(path_value(v)?);
            Ok(())
        },
    },
    ConnectKey {
        name: "key",
        positional: false,
        value_name: "FILE",
        help: "Private key (PEM) of --cert",
        numeric: false,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.c.key = Some(path_value(v)?);
            Ok(())
        },
    },
    ConnectKey {
        name: "sni",
        positional: false,
        value_name: "NAME",
        help: "Send NAME as SNI and verify the certificate for it [default: the URL's host \
               name]",
        numeric: false,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.c.sni = Some(sni_value(v)?);
            Ok(())
        },
    },
    ConnectKey {
        name: "insecure",
        positional: false,
        value_name: "BOOL",
        help: "Do not verify the wss:// server's certificate (logs a warning)",
        numeric: false,
        repeatable: false,
        flag: true,
        apply: |d, v| {
            d.c.insecure = bool_of(v)?;
            Ok(())
        },
    },
    ConnectKey {
        name: "ping",
        positional: false,
        value_name: "SECS",
        help: "Send a keep-alive ping after this much silence from the server; 0 disables \
               [default: 30]",
        numeric: true,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.c.ping = seconds_or_off(v)?;
            Ok(())
        },
    },
    ConnectKey {
        name: "pong-timeout",
        positional: false,
        value_name: "SECS",
        help: "Close when the server sends nothing within SECS of a keep-alive ping \
               [default: 10]",
        numeric: true,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.c.pong_timeout = seconds(v)?;
            Ok(())
        },
    },
    ConnectKey {
        name: "idle-timeout",
        positional: false,
        value_name: "SECS",
        help: "Close after SECS without traffic either way; 0 disables \
               [default: 0, udp-listen 60]",
        numeric: true,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.c.idle_timeout = seconds_or_off(v)?;
            Ok(())
        },
    },
    ConnectKey {
        name: "write-only",
        positional: false,
        value_name: "BOOL",
        help: "Only send local data; what the server sends is read and dropped",
        numeric: false,
        repeatable: false,
        flag: true,
        apply: |d, v| {
            d.write_only = bool_of(v)?;
            Ok(())
        },
    },
    ConnectKey {
        name: "read-only",
        positional: false,
        value_name: "BOOL",
        help: "Only write what the server sends to the local side; the local side is not read",
        numeric: false,
        repeatable: false,
        flag: true,
        apply: |d, v| {
            d.read_only = bool_of(v)?;
            Ok(())
        },
    },
    ConnectKey {
        name: "retry",
        positional: false,
        value_name: "BOOL",
        help: "Reconnect after a failed attempt or a dropped connection, with backoff \
               [default: off]",
        numeric: false,
        repeatable: false,
        flag: true,
        apply: |d, v| {
            d.c.retry.enabled = bool_of(v)?;
            Ok(())
        },
    },
    ConnectKey {
        name: "retry-interval",
        positional: false,
        value_name: "SECS",
        help: "First wait before a reconnect (waits are drawn below the bound) [default: 0.5]",
        numeric: true,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.c.retry.interval = seconds(v)?;
            Ok(())
        },
    },
    ConnectKey {
        name: "retry-growth",
        positional: false,
        value_name: "FACTOR",
        help: "Multiply the wait by FACTOR (1 to 100) after each failed attempt [default: 2]",
        numeric: true,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.c.retry.growth = growth_value(v)?;
            Ok(())
        },
    },
    ConnectKey {
        name: "retry-max-interval",
        positional: false,
        value_name: "SECS",
        help: "Longest wait between attempts [default: 30]",
        numeric: true,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.c.retry.max_interval = seconds(v)?;
            Ok(())
        },
    },
    ConnectKey {
        name: "retry-max",
        positional: false,
        value_name: "N",
        help: "Give up (exit status 1) after N retries in a row fail; 0 = never [default: 0]",
        numeric: true,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.c.retry.max = retry_max_value(v)?;
            Ok(())
        },
    },
    ConnectKey {
        name: "retry-buffer",
        positional: false,
        value_name: "BYTES",
        help: "Hold this much local data while disconnected, then stop reading; K, M, G \
               [default: 1M]",
        numeric: true,
        repeatable: false,
        flag: false,
        apply: |d, v| {
            d.c.retry.buffer = size_value(v)?;
            Ok(())
        },
    },
    ConnectKey {
        name: "retry-on-auth-failure",
        positional: false,
        value_name: "BOOL",
        help: "Retry after 401 and 403 answers too",
        numeric: false,
        repeatable: false,
        flag: true,
        apply: |d, v| {
            d.c.retry.on_auth_failure = bool_of(v)?;
            Ok(())
        },
    },
];

fn bool_of(v: &str) -> Result<bool, String> {
    super::values::bool_value(v)
}

/// TLS options, which a `ws://` URL does not use.
const TLS_KEYS: &[&str] = &["ca", "cert", "key", "sni", "insecure"];

/// Reconnect knobs, which do nothing without `retry`.
const RETRY_KNOBS: &[&str] = &[
    "retry-interval",
    "retry-growth",
    "retry-max-interval",
    "retry-max",
    "retry-buffer",
    "retry-on-auth-failure",
];

/// A connection as given so far.
pub(super) struct Draft {
    /// The file of a `[connect]` section; `None` for the command line.
    file: Option<String>,
    /// Line of the `[connect]` header.
    line: usize,
    /// Keys given, with the line of the last occurrence (0 on the
    /// command line).
    given: Vec<(&'static str, usize)>,
    url: Option<Url>,
    from: Option<Local>,
    auth: Option<String>,
    open_text: Option<String>,
    open_file: Option<PathBuf>,
    open_binary: bool,
    write_only: bool,
    read_only: bool,
    /// Everything else, at the defaults until given; `url` and `from` are
    /// placeholders until [`finish`](Self::finish).
    c: ConnectSettings,
}

impl Draft {
    fn new(at: String, file: Option<String>, line: usize) -> Draft {
        let placeholder = Url {
            tls: false,
            addr: HostPort {
                host: String::new(),
                port: 0,
            },
            host_header: String::new(),
            target: "/".into(),
            userinfo: None,
        };
        Draft {
            file,
            line,
            given: Vec::new(),
            url: None,
            from: None,
            auth: None,
            open_text: None,
            open_file: None,
            open_binary: false,
            write_only: false,
            read_only: false,
            c: ConnectSettings::new(placeholder, Local::Stdio, at),
        }
    }

    /// The connection of `websocksy connect`.
    pub fn command_line() -> Draft {
        Draft::new(COMMAND_LINE.into(), None, 0)
    }

    /// A `[connect]` section whose header is at `file:line`.
    pub fn section(file: &str, line: usize) -> Draft {
        Draft::new(format!("{file}:{line}"), Some(file.into()), line)
    }

    /// The line `key` was given on, if it was.
    pub fn given_at(&self, key: &str) -> Option<usize> {
        self.given.iter().find(|(k, _)| *k == key).map(|(_, l)| *l)
    }

    /// The key as the user wrote it: `--key` or `key`.
    fn name(&self, key: &str) -> String {
        match self.file {
            None if key == "url" => "URL".into(),
            None => format!("--{key}"),
            Some(_) => key.to_string(),
        }
    }

    /// The prefix of a message about `key`: its file and line, nothing on
    /// the command line (the option's name says where).
    fn place(&self, key: &str) -> String {
        match &self.file {
            None => String::new(),
            Some(f) => format!("{f}:{}: ", self.given_at(key).unwrap_or(self.line)),
        }
    }

    fn error(&self, key: &str, why: &str) -> ConfigError {
        ConfigError(format!("{}{}: {why}", self.place(key), self.name(key)))
    }

    fn conflict(&self, a: &str, b: &str) -> ConfigError {
        self.error(b, &format!("cannot be used with {}", self.name(a)))
    }

    fn missing(&self, key: &str) -> ConfigError {
        match &self.file {
            None if key == "url" => ConfigError(
                "'websocksy connect' needs the server's URL: \
                 websocksy connect URL --from LOCAL [OPTIONS]"
                    .into(),
            ),
            None => ConfigError(format!(
                "'websocksy connect' needs --{key}: websocksy connect URL --from LOCAL [OPTIONS]"
            )),
            Some(_) => ConfigError(format!(
                "{}: [connect] section without '{key} ='",
                self.c.at
            )),
        }
    }

    /// Checks the connection as a whole and reads its start-up files;
    /// `s` is final (its `max_message_size` bounds the opening message).
    pub fn finish(mut self, s: &Settings) -> Result<ConnectSettings, ConfigError> {
        let url = self.url.take().ok_or_else(|| self.missing("url"))?;
        let from = self.from.take().ok_or_else(|| self.missing("from"))?;
        self.c.direction = match (self.write_only, self.read_only) {
            (true, true) => return Err(self.conflict("write-only", "read-only")),
            (true, false) => Direction::WriteOnly,
            (false, true) => Direction::ReadOnly,
            (false, false) => Direction::Both,
        };
        self.c.open_message = self.open_message(s.max_message_size)?;
        self.c.auth = match (&self.auth, &url.userinfo) {
            (Some(spec), _) => Some(
                client_credentials(spec)
                    .map_err(|why| ConfigError(format!("{}{why}", self.place("auth"))))?,
            ),
            (None, Some(info)) => Some(
                userinfo_credentials(info)
                    .map_err(|why| self.error("url", &format!("bad user info: {why}")))?,
            ),
            (None, None) => None,
        };
        let header = |name: &str| {
            self.c
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        if self.c.auth.is_some() && header("Authorization") {
            let source = if self.auth.is_some() {
                self.name("auth")
            } else {
                "the URL's user info".into()
            };
            return Err(self.error(
                "header",
                &format!("Authorization is set by {source} already"),
            ));
        }
        if self.c.origin.is_some() && header("Origin") {
            return Err(self.error(
                "header",
                &format!("Origin is set by {} already", self.name("origin")),
            ));
        }
        for (i, p) in self.c.protocols.iter().enumerate() {
            if self.c.protocols[..i].contains(p) {
                return Err(self.error("protocol", &format!("'{p}' is offered twice")));
            }
        }
        match (&self.c.cert, &self.c.key) {
            (Some(_), None) => {
                return Err(self.error("cert", &format!("needs {} too", self.name("key"))))
            }
            (None, Some(_)) => {
                return Err(self.error("key", &format!("needs {} too", self.name("cert"))))
            }
            _ => {}
        }
        for (key, what, path) in [
            ("ca", "CA file", &self.c.ca),
            ("cert", "certificate", &self.c.cert),
            ("key", "key", &self.c.key),
        ] {
            if let Some(p) = path {
                std::fs::File::open(p).map_err(|e| {
                    self.error(key, &format!("cannot read {what} '{}': {e}", p.display()))
                })?;
            }
        }
        if matches!(from, Local::UdpListen { .. })
            && self.c.idle_timeout.is_none()
            && self.given_at("idle-timeout").is_some()
        {
            return Err(self.error(
                "idle-timeout",
                "cannot be 0 with udp-listen: a datagram source never says it is done",
            ));
        }
        self.warn_unused(&url);
        self.c.url = url;
        self.c.from = from;
        Ok(self.c)
    }

    fn open_message(&self, max: usize) -> Result<Option<OpenMessage>, ConfigError> {
        let bytes = match (&self.open_text, &self.open_file) {
            (Some(_), Some(_)) => return Err(self.conflict("open-message", "open-message-file")),
            (Some(text), None) => text.clone().into_bytes(),
            (None, Some(path)) => {
                let name = path.display();
                let read = super::file::read_start_up_file(path, max as u64);
                let bytes = read.map_err(|why| {
                    self.error("open-message-file", &format!("cannot read '{name}': {why}"))
                })?;
                if bytes.is_empty() {
                    return Err(self.error("open-message-file", &format!("'{name}' is empty")));
                }
                if !self.open_binary && std::str::from_utf8(&bytes).is_err() {
                    return Err(self.error(
                        "open-message-file",
                        &format!(
                            "'{name}' is not UTF-8, as a text message must be; \
                             send it as a binary one with {}",
                            self.name("open-message-binary")
                        ),
                    ));
                }
                bytes
            }
            (None, None) if self.open_binary => {
                return Err(self.error(
                    "open-message-binary",
                    &format!(
                        "needs {} or {}",
                        self.name("open-message"),
                        self.name("open-message-file")
                    ),
                ))
            }
            (None, None) => return Ok(None),
        };
        if bytes.len() > max {
            let key = match self.open_file {
                Some(_) => "open-message-file",
                None => "open-message",
            };
            return Err(self.error(
                key,
                &format!("longer than the largest message ({max} bytes, max-message-size)"),
            ));
        }
        Ok(Some(OpenMessage {
            bytes,
            binary: self.open_binary,
        }))
    }

    /// Options the URL or a missing `retry` make pointless: a warning, not
    /// an error, so a file can switch `wss://` to `ws://` (or retries off)
    /// for a test without losing the rest.
    fn warn_unused(&self, url: &Url) {
        let given = |keys: &[&str]| -> Vec<String> {
            keys.iter()
                .filter(|k| self.given_at(k).is_some())
                .map(|k| self.name(k))
                .collect()
        };
        let tls = given(TLS_KEYS);
        if !url.tls && !tls.is_empty() {
            log::warn!(
                target: LOG_TARGET,
                "{}: {} ignored: the URL is not wss://",
                self.c.at,
                tls.join(", ")
            );
        }
        let knobs = given(RETRY_KNOBS);
        if !self.c.retry.enabled && !knobs.is_empty() {
            log::warn!(
                target: LOG_TARGET,
                "{}: {} ignored without {}",
                self.c.at,
                knobs.join(", "),
                self.name("retry")
            );
        }
    }
}

/// `user:password` of a URL, each side percent-decoded; a user alone
/// has an empty password.
fn userinfo_credentials(info: &str) -> Result<(String, String), String> {
    let (user, password) = info.split_once(':').unwrap_or((info, ""));
    let user = percent_decode(user)?;
    if user.is_empty() {
        return Err("the user name is empty".into());
    }
    Ok((user, percent_decode(password)?))
}

impl ConnectSettings {
    /// The URL for log lines: never the user info's password.
    pub fn url_shown(&self) -> String {
        let scheme = if self.url.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.url.host_header, self.url.target)
    }

    /// An option of this connection as messages name it: `--cert` on the
    /// command line, `FILE:LINE: [connect] cert` (the section's header) in
    /// a file.
    pub fn option_at(&self, key: &str) -> String {
        if self.at == COMMAND_LINE {
            format!("--{key}")
        } else {
            format!("{}: [connect] {key}", self.at)
        }
    }

    /// The idle timeout in effect: a `udp-listen` source never says it is
    /// done, so its sessions end after 60 s without traffic unless told.
    pub fn idle_timeout_in_effect(&self) -> Option<Duration> {
        match (&self.from, self.idle_timeout) {
            (_, Some(t)) => Some(t),
            (Local::UdpListen { .. }, None) => Some(Duration::from_secs(60)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CONNECT_KEYS;
    use crate::config::testing::*;
    use crate::config::*;
    use crate::peer::{HostPort, PeerAddress};
    use crate::ws::url::Url;

    /// `websocksy connect ws://h/ --from - ARGS...`: its one connection.
    fn connect(args: &[&str]) -> ConnectSettings {
        let mut argv = vec!["connect", "ws://h/", "--from", "-"];
        argv.extend_from_slice(args);
        let s = run(&argv);
        assert!(!s.serve);
        assert_eq!(s.connects.len(), 1);
        s.connects[0].clone()
    }

    fn connect_fail(args: &[&str]) -> String {
        let mut argv = vec!["connect", "ws://h/", "--from", "-"];
        argv.extend_from_slice(args);
        fail(&argv)
    }

    fn url(u: &str) -> Url {
        Url::parse(u).unwrap()
    }

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }

    fn from(local: &str) -> Local {
        run(&["connect", "ws://h/", "--from", local]).connects[0]
            .from
            .clone()
    }

    /// A value each key accepts that differs from its default.
    fn sample(name: &str) -> &'static str {
        match name {
            "url" => "wss://example.com:8443/feed",
            "from" => "tcp-listen://127.0.0.1:9000",
            "framing" => "newline",
            "framing-config" => "crlf",
            "header" => "X-Token: abc",
            "auth" => "$WEBSOCKSY_TEST_SAMPLE_AUTH",
            "protocol" => "chat.v1",
            "origin" => "https://app.example",
            "open-message" => "hello",
            "ca" | "cert" | "key" => "/dev/null",
            "sni" => "name.example",
            "retry-growth" => "1.5",
            "retry-max" => "3",
            "retry-buffer" => "64K",
            "ping" | "idle-timeout" => "0.25",
            k if CONNECT_KEYS.iter().any(|c| c.name == k && c.flag) => "true",
            _ => "2.5",
        }
    }

    #[test]
    fn defaults() {
        let s = run(&["connect", "ws://h/", "--from", "-"]);
        let c = ConnectSettings::new(url("ws://h/"), Local::Stdio, "command line".into());
        assert_eq!(
            s,
            Settings {
                serve: false,
                connects: vec![c.clone()],
                ..Settings::default()
            }
        );
        let c = &s.connects[0];
        assert_eq!(c.at, "command line");
        assert_eq!(c.framing, "auto");
        assert_eq!(c.framing_config, None);
        assert!(c.headers.is_empty() && c.protocols.is_empty());
        assert_eq!((&c.auth, &c.origin, &c.open_message), (&None, &None, &None));
        assert_eq!(c.timeout, SECS(10));
        assert_eq!(
            (&c.ca, &c.cert, &c.key, &c.sni),
            (&None, &None, &None, &None)
        );
        assert!(!c.insecure);
        assert_eq!(c.ping, Some(SECS(30)));
        assert_eq!(c.pong_timeout, SECS(10));
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.direction, Direction::Both);
        let r = &c.retry;
        assert!(!r.enabled && !r.on_auth_failure);
        assert_eq!(r.interval, Duration::from_millis(500));
        assert_eq!(r.growth, 2.0);
        assert_eq!(r.max_interval, SECS(30));
        assert_eq!(r.max, 0);
        assert_eq!(r.buffer, 1 << 20);
    }

    #[test]
    fn every_option() {
        std::env::set_var("WEBSOCKSY_TEST_EVERY_OPTION", "bob:pa:ss");
        let cert = TempFile::new(b"not checked until TLS loads");
        let cert = cert.path();
        let c = run(&[
            "connect",
            "https://example.com/x?y=1",
            "--from",
            "tcp-listen://[::1]:0",
            "--framing=json",
            "--framing-config",
            "strict",
            "--header",
            "X-A:  1 ",
            "--header=X-B: two words",
            "--auth",
            "$WEBSOCKSY_TEST_EVERY_OPTION",
            "--protocol",
            "a",
            "--protocol",
            "b.v2",
            "--origin",
            "https://app.example",
            "--open-message",
            "{\"subscribe\": 1}",
            "--open-message-binary",
            "--timeout",
            "2.5",
            "--ca",
            &cert,
            "--cert",
            &cert,
            "--key",
            &cert,
            "--sni",
            "name.example",
            "--insecure",
            "--ping",
            "0",
            "--pong-timeout",
            "3",
            "--idle-timeout",
            "60",
            "--write-only",
            "--retry",
            "--retry-interval",
            "0.1",
            "--retry-growth",
            "1.5",
            "--retry-max-interval",
            "5",
            "--retry-max",
            "7",
            "--retry-buffer",
            "2M",
            "--retry-on-auth-failure",
        ])
        .connects
        .remove(0);
        let path = std::path::PathBuf::from(&cert);
        let mut want = ConnectSettings::new(
            url("https://example.com/x?y=1"),
            Local::TcpListen {
                host: "::1".into(),
                port: 0,
            },
            "command line".into(),
        );
        want.framing = "json".into();
        want.framing_config = Some("strict".into());
        want.headers = vec![
            ("X-A".into(), "1".into()),
            ("X-B".into(), "two words".into()),
        ];
        want.auth = Some(("bob".into(), "pa:ss".into()));
        want.protocols = vec!["a".into(), "b.v2".into()];
        want.origin = Some("https://app.example".into());
        want.open_message = Some(OpenMessage {
            bytes: b"{\"subscribe\": 1}".to_vec(),
            binary: true,
        });
        want.timeout = Duration::from_millis(2500);
        want.ca = Some(path.clone());
        want.cert = Some(path.clone());
        want.key = Some(path);
        want.sni = Some("name.example".into());
        want.insecure = true;
        want.ping = None;
        want.pong_timeout = SECS(3);
        want.idle_timeout = Some(SECS(60));
        want.direction = Direction::WriteOnly;
        want.retry = Retry {
            enabled: true,
            interval: Duration::from_millis(100),
            growth: 1.5,
            max_interval: SECS(5),
            max: 7,
            buffer: 2 << 20,
            on_auth_failure: true,
        };
        assert_eq!(c, want);
        assert_eq!(c.url_shown(), "wss://example.com/x?y=1");
        assert_eq!(connect(&["--read-only"]).direction, Direction::ReadOnly);
        assert_eq!(connect(&["--read-only=no"]).direction, Direction::Both);
        // A switch never takes the next word.
        assert_eq!(
            run(&["connect", "--retry", "ws://h/", "--from", "-"]).connects[0].url,
            url("ws://h/")
        );
    }

    #[test]
    fn every_option_reads_the_same_from_the_command_line_and_a_section() {
        std::env::set_var("WEBSOCKSY_TEST_SAMPLE_AUTH", "u:p");
        let message = TempFile::new(b"hello");
        for key in CONNECT_KEYS {
            let value = match key.name {
                "open-message-file" => message.path(),
                k => sample(k).to_string(),
            };
            let value = value.as_str();
            let mut args = vec![
                "connect".to_string(),
                "ws://h/".into(),
                "--from".into(),
                "-".into(),
            ];
            let mut lines = "[connect]\nurl = ws://h/\nfrom = -\n".to_string();
            match key.name {
                "url" => args[1] = value.into(),
                "from" => args[3] = value.into(),
                _ => args.push(format!("--{}={value}", key.name)),
            }
            if key.name == "open-message-binary" {
                args.push("--open-message=x".into());
                lines.push_str("open-message = x\n");
            }
            if key.name == "cert" || key.name == "key" {
                args.push("--cert=/dev/null".into());
                args.push("--key=/dev/null".into());
                lines.push_str("cert = /dev/null\nkey = /dev/null\n");
            }
            let lines = match key.name {
                "url" | "from" => lines.replace(
                    &format!(
                        "{} = {}",
                        key.name,
                        if key.name == "url" { "ws://h/" } else { "-" }
                    ),
                    &format!("{} = {value}", key.name),
                ),
                _ if key.name == "cert" || key.name == "key" => lines,
                _ => format!("{lines}{} = {value}\n", key.name),
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let from_cli = run(&args).connects.remove(0);
            let default = connect(&[]);
            assert_ne!(from_cli, default, "{}", key.name);
            let file = TempFile::new(lines.as_bytes());
            let from_file = run(&[&file.path()]).connects.remove(0);
            assert_eq!(from_file.at, format!("{}:1", file.path()));
            assert_eq!(
                ConnectSettings {
                    at: "command line".into(),
                    ..from_file
                },
                from_cli,
                "{}",
                key.name
            );
            // No key takes an empty value; the same reason both ways.
            if key.positional {
                continue;
            }
            let msg = match key.name {
                "from" => fail(&["connect", "ws://h/", "--from="]),
                _ => connect_fail(&[&format!("--{}=", key.name)]),
            };
            let why = msg
                .rsplit_once("': ")
                .map(|(_, why)| why)
                .unwrap_or_default();
            assert!(!why.is_empty(), "{msg}");
            let lines = match key.name {
                "from" => "[connect]\nurl = ws://h/\nfrom =\n".to_string(),
                k => format!("[connect]\nurl = ws://h/\nfrom = -\n{k} =\n"),
            };
            let file = TempFile::new(lines.as_bytes());
            assert_eq!(
                fail(&[&file.path()]),
                format!(
                    "{}:{}: invalid value '{}' for '{}': {why}",
                    file.path(),
                    lines.lines().count(),
                    key.shown(""),
                    key.name
                )
            );
        }
    }

    #[test]
    fn local_kinds() {
        assert_eq!(from("-"), Local::Stdio);
        assert_eq!(
            from("tcp-listen://0.0.0.0:9000"),
            Local::TcpListen {
                host: "0.0.0.0".into(),
                port: 9000
            }
        );
        assert_eq!(
            from("tcp-listen://[::]:0"),
            Local::TcpListen {
                host: "::".into(),
                port: 0
            }
        );
        assert_eq!(
            from("udp-listen://localhost:5514"),
            Local::UdpListen {
                host: "localhost".into(),
                port: 5514
            }
        );
        assert_eq!(
            from("unix-listen:///run/a.sock"),
            Local::UnixListen("/run/a.sock".into())
        );
        assert_eq!(
            from("unix-listen:/run/a.sock"),
            Local::UnixListen("/run/a.sock".into())
        );
        for (local, peer) in [
            (
                "tcp://127.0.0.1:5000",
                PeerAddress::Tcp(hp("127.0.0.1", 5000)),
            ),
            ("udp://[::1]:53", PeerAddress::Udp(hp("::1", 53))),
            (
                "tls://db.example:5433",
                PeerAddress::Tls(hp("db.example", 5433)),
            ),
            ("unix:///tmp/s", PeerAddress::Unix("/tmp/s".into())),
            ("unix:/tmp/s", PeerAddress::Unix("/tmp/s".into())),
            (
                "unix-dgram:///tmp/d",
                PeerAddress::UnixDgram("/tmp/d".into()),
            ),
            ("mirror://", PeerAddress::Mirror),
        ] {
            assert_eq!(from(local), Local::Peer(peer), "{local}");
        }
        for (bad, why) in [
            ("", "expected tcp-listen://ADDR:PORT"),
            ("localhost:80", "unknown scheme 'localhost:'"),
            ("gopher://x", "unknown scheme 'gopher:'"),
            ("tcp-listen:9000", "expected tcp-listen://ADDR:PORT"),
            ("tcp-listen://9000", "expected ADDR:PORT"),
            ("tcp-listen://::1:9000", "needs brackets"),
            ("udp-listen://h:70000", "out of range"),
            ("tcp-listen://a b:1", "cannot appear in a host name"),
            ("unix-listen:", "expected a socket path"),
            ("tcp://h", "no port"),
            ("tcp:h:1", "expected tcp://"),
            ("mirror://x", "takes no address"),
            ("fifotx://x", "unknown scheme"),
        ] {
            let msg = fail(&["connect", "ws://h/", "--from", bad]);
            assert!(
                msg.starts_with(&format!("invalid value '{bad}' for '--from <LOCAL>': ")),
                "{msg}"
            );
            assert!(msg.contains(why), "{bad}: {msg}");
        }
        let long = format!("unix-listen:/{}", "x".repeat(107));
        assert!(fail(&["connect", "ws://h/", "--from", &long]).contains("longer than 107"));
    }

    #[test]
    fn bad_values_are_one_line_errors_naming_the_option() {
        for (args, want) in [
            (
                &["--timeout", "0"][..],
                "'--timeout <SECS>': must be greater than 0",
            ),
            (
                &["--timeout", "-1"],
                "'--timeout <SECS>': expected a number of seconds",
            ),
            (
                &["--ping", "soon"],
                "'--ping <SECS>': expected a number of seconds",
            ),
            (
                &["--pong-timeout", "0"],
                "'--pong-timeout <SECS>': must be greater than 0",
            ),
            (
                &["--idle-timeout", "x"],
                "'--idle-timeout <SECS>': expected a number",
            ),
            (
                &["--retry-interval", "0"],
                "'--retry-interval <SECS>': must be greater",
            ),
            (
                &["--retry-max-interval", "nan"],
                "'--retry-max-interval <SECS>': expected",
            ),
            (
                &["--retry-growth", "0.5"],
                "'--retry-growth <FACTOR>': expected a factor from 1 to 100",
            ),
            (
                &["--retry-growth", "inf"],
                "'--retry-growth <FACTOR>': expected a factor",
            ),
            (
                &["--retry-max", "-1"],
                "'--retry-max <N>': expected a whole number",
            ),
            (
                &["--retry-max", "5000000000"],
                "'--retry-max <N>': too large",
            ),
            (
                &["--retry-buffer", "0"],
                "'--retry-buffer <BYTES>': must be at least 1 byte",
            ),
            (
                &["--retry-buffer", "1T"],
                "'--retry-buffer <BYTES>': expected a number of bytes",
            ),
            (
                &["--retry=maybe"],
                "'--retry[=<BOOL>]': expected true or false",
            ),
            (
                &["--framing", "a b"],
                "'--framing <NAME>': the framing name 'a b' has spaces",
            ),
            (
                &["--protocol", "a,b"],
                "'--protocol <NAME>': expected a subprotocol name",
            ),
            (
                &["--protocol", ""],
                "'--protocol <NAME>': expected a subprotocol name",
            ),
            (
                &["--sni", "10.0.0.1"],
                "'--sni <NAME>': an IP address cannot be sent as SNI",
            ),
            (
                &["--sni", "a/b"],
                "'--sni <NAME>': '/' cannot appear in a host name",
            ),
            (
                &["--origin", "a\nb"],
                "'a\\nb' for '--origin <ORIGIN>': the origin has a line break",
            ),
            (&["--open-message", ""], "'--open-message <TEXT>': empty"),
            (
                &["--max-message-size", "0"],
                "'--max-message-size <BYTES>': must be at least",
            ),
            (
                &["--framing-option", "x"],
                "'--framing-option <NAME:KEY=VALUE>'",
            ),
        ] {
            let msg = connect_fail(args);
            assert!(msg.contains(want), "{args:?}: {msg}");
            assert!(msg.starts_with("invalid value '"), "{msg}");
        }
        let msg = fail(&["connect", "wss://h:0/", "--from", "-"]);
        assert_eq!(
            msg,
            "invalid value 'wss://h:0/' for '<URL>': bad port '0' in 'wss://h:0/'"
        );
        assert!(fail(&["connect", "tcp://h/", "--from", "-"]).contains("unsupported scheme"));
        // Required arguments, by name.
        assert_eq!(
            fail(&["connect", "ws://h/"]),
            "the following required arguments were not provided: --from <LOCAL>"
        );
        assert!(fail(&["connect"]).contains("<URL>"));
        assert!(fail(&["connect", "ws://h/", "--from", "-", "--port", "1"])
            .starts_with("unexpected argument '--port'"));
    }

    #[test]
    fn headers() {
        let c = connect(&["--header", "X-Api-Key:k", "--header", "Cookie: a=1; b=2"]);
        assert_eq!(
            c.headers,
            [
                ("X-Api-Key".to_string(), "k".to_string()),
                ("Cookie".into(), "a=1; b=2".into())
            ]
        );
        assert_eq!(connect(&["--header", "X-Empty:"]).headers[0].1, "");
        for (header, why) in [
            ("X-Token abc", "expected 'Name: value'"),
            (": v", "the name is empty"),
            ("X Token: v", "not a valid header name"),
            ("X-A: 1\r\nX-B: 2", "the value has a line break"),
            ("X-A: 1\n", "the value has a line break"),
            ("X-A: \u{7f}", "control character"),
            ("host: x", "Host is set by websocksy itself"),
            ("Upgrade: x", "Upgrade is set by websocksy itself"),
            ("CONNECTION: x", "Connection is set by websocksy itself"),
            ("Sec-WebSocket-Key: x", "Sec-WebSocket-Key is set by"),
            (
                "Sec-WebSocket-Version: 8",
                "Sec-WebSocket-Version is set by",
            ),
            (
                "sec-websocket-extensions: x",
                "Sec-WebSocket-Extensions is set by",
            ),
            ("Sec-WebSocket-Protocol: x", "with --protocol"),
            ("Content-Length: 5", "has no body"),
        ] {
            let msg = connect_fail(&["--header", header]);
            assert!(msg.contains(why), "{header:?}: {msg}");
            assert!(msg.contains("for '--header <NAME: VALUE>'"), "{msg}");
        }
        // Values are never echoed: they are often tokens.
        let msg = connect_fail(&["--header", "X-Secret: s3cret\n"]);
        assert!(msg.starts_with("invalid value 'X-Secret: ...'"), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
        let msg = connect_fail(&["--header", "Bearer s3cret"]);
        assert!(!msg.contains("s3cret"), "{msg}");
        // Two sources for one header.
        std::env::set_var("WEBSOCKSY_TEST_HEADERS_AUTH", "u:p");
        let msg = connect_fail(&[
            "--header",
            "Authorization: Bearer x",
            "--auth",
            "$WEBSOCKSY_TEST_HEADERS_AUTH",
        ]);
        assert_eq!(msg, "--header: Authorization is set by --auth already");
        let msg = fail(&[
            "connect",
            "ws://u:p@h/",
            "--from",
            "-",
            "--header",
            "authorization: x",
        ]);
        assert_eq!(
            msg,
            "--header: Authorization is set by the URL's user info already"
        );
        assert_eq!(
            connect(&["--header", "Authorization: Bearer x"]).headers[0].0,
            "Authorization"
        );
        let msg = connect_fail(&["--origin", "https://a", "--header", "Origin: https://b"]);
        assert_eq!(msg, "--header: Origin is set by --origin already");
        let msg = connect_fail(&["--protocol", "a", "--protocol", "a"]);
        assert_eq!(msg, "--protocol: 'a' is offered twice");
    }

    #[test]
    fn credentials() {
        // The URL's user info, percent-decoded, when --auth is absent.
        let s = run(&["connect", "wss://al%40ce:p%3Ass%20w@h/", "--from", "-"]);
        let c = &s.connects[0];
        assert_eq!(c.auth, Some(("al@ce".into(), "p:ss w".into())));
        assert_eq!(c.url_shown(), "wss://h/");
        let c = run(&["connect", "ws://token@h/", "--from", "-"])
            .connects
            .remove(0);
        assert_eq!(c.auth, Some(("token".into(), String::new())));
        let msg = fail(&["connect", "ws://a:s3cret%zz@h/", "--from", "-"]);
        assert_eq!(
            msg,
            "URL: bad user info: a '%' not followed by two hex digits"
        );
        // Short user info is hidden where it is, not wherever it occurs.
        let msg = fail(&["connect", "ws://w@h:0/", "--from", "-"]);
        assert_eq!(
            msg,
            "invalid value 'ws://<hidden>@h:0/' for '<URL>': bad port '0' in 'ws://<hidden>@h:0/'"
        );
        let msg = fail(&["connect", "alice:s3cret@h/", "--from", "-"]);
        assert!(
            msg.contains("'<hidden>@h/'") && !msg.contains("s3cret"),
            "{msg}"
        );
        let msg = fail(&["connect", "ws://:s3cret@h/", "--from", "-"]);
        assert!(
            msg.contains("user name is empty") && !msg.contains("s3cret"),
            "{msg}"
        );
        // --auth $NAME wins over the URL's.
        std::env::set_var("WEBSOCKSY_TEST_CREDENTIALS", "carol:c:d\n");
        let c = run(&[
            "connect",
            "ws://a:b@h/",
            "--from",
            "-",
            "--auth",
            "$WEBSOCKSY_TEST_CREDENTIALS",
        ])
        .connects
        .remove(0);
        assert_eq!(c.auth, Some(("carol".into(), "c:d".into())));
        let msg = connect_fail(&["--auth", "$WEBSOCKSY_TEST_CREDENTIALS_UNSET"]);
        assert!(msg.contains("is not set"), "{msg}");
        std::env::set_var("WEBSOCKSY_TEST_CREDENTIALS_BAD", "s3cret");
        let msg = connect_fail(&["--auth", "$WEBSOCKSY_TEST_CREDENTIALS_BAD"]);
        assert_eq!(
            msg,
            "--auth $WEBSOCKSY_TEST_CREDENTIALS_BAD: expected user:password"
        );
        // A file: its first line that is not blank or a comment.
        let file = TempFile::new(b"# service account\n\n  dave:s3 cret  \nignored:line\n");
        let c = connect(&["--auth", &file.path()]);
        assert_eq!(c.auth, Some(("dave".into(), "s3 cret".into())));
        let file = TempFile::new(b"# nothing\n");
        let msg = connect_fail(&["--auth", &file.path()]);
        assert!(msg.ends_with("has no user:password line"), "{msg}");
        let file = TempFile::new(b"s3cret\n");
        let msg = connect_fail(&["--auth", &file.path()]);
        assert!(msg.ends_with("expected user:password") && !msg.contains("s3cret"));
        let msg = connect_fail(&["--auth", "/no/such/file"]);
        assert!(
            msg.starts_with("cannot read auth file '/no/such/file': "),
            "{msg}"
        );
        // Typed in clear: refused, never echoed.
        let msg = connect_fail(&["--auth", "eve:s3cret"]);
        assert!(
            msg.contains("'<hidden>'") && !msg.contains("s3cret"),
            "{msg}"
        );
        // In a section, the auth line names file and line.
        let file =
            TempFile::new(b"[connect]\nurl = ws://h/\nfrom = -\nauth = $WEBSOCKSY_TEST_X_UNSET\n");
        let msg = fail(&[&file.path()]);
        assert!(
            msg.starts_with(&format!("{}:4: --auth $", file.path())),
            "{msg}"
        );
    }

    #[test]
    fn opening_message() {
        let c = connect(&["--open-message", "hi"]);
        assert_eq!(
            c.open_message,
            Some(OpenMessage {
                bytes: b"hi".to_vec(),
                binary: false
            })
        );
        let file = TempFile::new(b"\xff\x00binary");
        let path = file.path();
        let c = connect(&["--open-message-file", &path, "--open-message-binary"]);
        assert_eq!(
            c.open_message,
            Some(OpenMessage {
                bytes: b"\xff\x00binary".to_vec(),
                binary: true
            })
        );
        let msg = connect_fail(&["--open-message-file", &path]);
        assert!(msg.starts_with("--open-message-file: '"), "{msg}");
        assert!(msg.contains("is not UTF-8"), "{msg}");
        assert_eq!(
            connect_fail(&["--open-message", "a", "--open-message-file", &path]),
            "--open-message-file: cannot be used with --open-message"
        );
        assert_eq!(
            connect_fail(&["--open-message-binary"]),
            "--open-message-binary: needs --open-message or --open-message-file"
        );
        assert!(connect(&["--open-message-binary=false"])
            .open_message
            .is_none());
        let msg = connect_fail(&["--open-message-file", "/no/such"]);
        assert!(msg.starts_with("--open-message-file: cannot read '/no/such': "));
        let empty = TempFile::new(b"");
        assert!(connect_fail(&["--open-message-file", &empty.path()]).ends_with("is empty"));
        // Bounded by the largest message, wherever that is given.
        let msg = connect_fail(&["--open-message", "12345", "--max-message-size", "4"]);
        assert_eq!(
            msg,
            "--open-message: longer than the largest message (4 bytes, max-message-size)"
        );
        let big = TempFile::new(b"12345");
        let msg = connect_fail(&["--open-message-file", &big.path(), "--max-message-size=4"]);
        assert!(msg.contains("larger than 4 bytes"), "{msg}");
    }

    #[test]
    fn options_that_go_together_or_not() {
        assert_eq!(
            connect_fail(&["--write-only", "--read-only"]),
            "--read-only: cannot be used with --write-only"
        );
        assert_eq!(
            connect_fail(&["--cert", "/dev/null"]),
            "--cert: needs --key too"
        );
        assert_eq!(
            connect_fail(&["--key", "/dev/null"]),
            "--key: needs --cert too"
        );
        let msg = connect_fail(&["--ca", "/no/such.pem"]);
        assert!(
            msg.starts_with("--ca: cannot read CA file '/no/such.pem': "),
            "{msg}"
        );
        let msg = connect_fail(&["--cert", "/dev/null", "--key", "/no/key.pem"]);
        assert!(
            msg.starts_with("--key: cannot read key '/no/key.pem'"),
            "{msg}"
        );
        let msg = fail(&[
            "connect",
            "ws://h/",
            "--from",
            "udp-listen://[::]:0",
            "--idle-timeout",
            "0",
        ]);
        assert!(
            msg.starts_with("--idle-timeout: cannot be 0 with udp-listen"),
            "{msg}"
        );
        let c = run(&["connect", "ws://h/", "--from", "udp-listen://[::]:0"])
            .connects
            .remove(0);
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.idle_timeout_in_effect(), Some(SECS(60)));
        assert_eq!(
            connect(&["--idle-timeout", "5"]).idle_timeout_in_effect(),
            Some(SECS(5))
        );
        assert_eq!(connect(&[]).idle_timeout_in_effect(), None);
        // Pointless but harmless: a warning, not an error.
        let c = connect(&["--ca", "/dev/null", "--retry-max", "3"]);
        assert_eq!(c.retry.max, 3);
    }

    #[test]
    fn process_wide_options_go_after_connect() {
        let s = run(&[
            "connect",
            "ws://h/",
            "--from",
            "tls://db.example:5433",
            "--plugin",
            "a.so",
            "--plugin-dir",
            "/p",
            "--max-message-size",
            "1M",
            "--drain-timeout",
            "2",
            "--busy-poll",
            "50",
            "--framing-option",
            "json:max-depth=3",
            "--peer-ca",
            "/ca.pem",
            "--peer-insecure",
        ]);
        assert!(!s.serve);
        assert_eq!(s.plugins, [std::path::PathBuf::from("a.so")]);
        assert_eq!(s.plugin_dir, Some("/p".into()));
        assert_eq!(s.max_message_size, 1 << 20);
        assert_eq!(s.drain_timeout, SECS(2));
        assert_eq!(
            s.busy_poll,
            crate::spin::BusyPoll::Fixed(Duration::from_micros(50))
        );
        assert_eq!(s.framing_options.len(), 1);
        assert_eq!(
            s.peer_ca.as_ref().map(|p| p.value.clone()),
            Some("/ca.pem".into())
        );
        assert!(s.peer_insecure);
        assert_eq!(
            fail(&["--plugin", "a.so", "connect", "ws://h/", "--from", "-"]),
            "'--plugin' goes after 'connect': websocksy connect URL --from LOCAL [OPTIONS]"
        );
        assert_eq!(
            fail(&["-p", "9", "connect", "ws://h/", "--from", "-"]),
            "'--port' is a server option; 'websocksy connect' does not take it"
        );
        assert!(fail(&["-c", "a=b", "connect", "ws://h/", "--from", "-"])
            .starts_with("'--backend-option' is a server option"));
        let file = TempFile::new(b"[core]\n");
        let msg = fail(&[&file.path(), "connect", "ws://h/", "--from", "-"]);
        assert!(
            msg.starts_with("'connect' takes no configuration file"),
            "{msg}"
        );
    }

    #[test]
    fn sections() {
        let file = TempFile::new(
            b"[core]\nmax-message-size = 1M\n\n[connect]\nurl = ws://a/\nfrom = -\n\
              header = X-A: 1\nheader = X-B: 2\nprotocol = p1\nprotocol = p2\n\
              # a comment\nretry = on\n\n[connect] ; second\nurl = wss://b:8443/\n\
              from = tcp-listen://127.0.0.1:0\nread-only = yes\n[backend]\nhost = tcp://x:1\n",
        );
        let path = file.path();
        let s = run(&[&path]);
        assert!(!s.serve, "no listener named");
        assert_eq!(s.max_message_size, 1 << 20);
        assert_eq!(s.backend_options.len(), 1, "[backend] after [connect]");
        let [a, b] = &s.connects[..] else {
            panic!("{:?}", s.connects)
        };
        assert_eq!(a.at, format!("{path}:4"));
        assert_eq!(a.url, url("ws://a/"));
        assert_eq!(a.from, Local::Stdio);
        assert_eq!(
            a.headers,
            [
                ("X-A".to_string(), "1".to_string()),
                ("X-B".into(), "2".into())
            ]
        );
        assert_eq!(a.protocols, ["p1", "p2"]);
        assert!(a.retry.enabled);
        assert_eq!(a.direction, Direction::Both);
        assert_eq!(b.at, format!("{path}:14"));
        assert!(b.url.tls);
        assert_eq!(b.direction, Direction::ReadOnly);
        assert!(!b.retry.enabled);
        assert_eq!(b.option_at("cert"), format!("{path}:14: [connect] cert"));
        assert_eq!(connect(&[]).option_at("cert"), "--cert");
        for v in ["on", "true", "yes", "1"] {
            let f =
                TempFile::new(format!("[connect]\nurl=ws://h/\nfrom=-\nretry={v}\n").as_bytes());
            assert!(run(&[&f.path()]).connects[0].retry.enabled, "{v}");
        }
        for v in ["off", "false", "no", "0"] {
            let f =
                TempFile::new(format!("[connect]\nurl=ws://h/\nfrom=-\nretry={v}\n").as_bytes());
            assert!(!run(&[&f.path()]).connects[0].retry.enabled, "{v}");
        }
    }

    #[test]
    fn section_mistakes_name_file_and_line() {
        let file = TempFile::new(b"[core]\n[connect]\nfrom = -\n");
        assert_eq!(
            fail(&[&file.path()]),
            format!("{}:2: [connect] section without 'url ='", file.path())
        );
        let file = TempFile::new(b"[connect]\nurl = ws://h/\n\n[connect]\nurl = ws://i/\n");
        assert_eq!(
            fail(&[&file.path()]),
            format!("{}:1: [connect] section without 'from ='", file.path())
        );
        let file = TempFile::new(b"[connect]\nurl = ws://h/\nfrom = -\nretry-intervall = 2\n");
        assert_eq!(
            fail(&[&file.path()]),
            format!(
                "{}:4: unknown [connect] key 'retry-intervall' (see websocksy connect --help)",
                file.path()
            )
        );
        let file = TempFile::new(b"[connect]\nurl = ws://h/\nfrom = -\nurl = ws://i/\n");
        assert_eq!(
            fail(&[&file.path()]),
            format!(
                "{}:4: 'url' given twice in one [connect] section (first on line 2); \
                 each connection starts with its own [connect] header",
                file.path()
            )
        );
        let file = TempFile::new(b"[connect]\nurl = ws://h/\nfrom = -\ntimeout = 0\n");
        assert_eq!(
            fail(&[&file.path()]),
            format!(
                "{}:4: invalid value '0' for 'timeout': must be greater than 0",
                file.path()
            )
        );
        let file = TempFile::new(b"[connect]\nurl = ws://u:s3cret@h:0/\nfrom = -\n");
        let msg = fail(&[&file.path()]);
        assert!(
            msg.starts_with(&format!(
                "{}:2: invalid value 'ws://<hidden>@h:0/'",
                file.path()
            )),
            "{msg}"
        );
        assert!(!msg.contains("s3cret"), "{msg}");
        let file =
            TempFile::new(b"[connect]\nurl = ws://h/\nfrom = -\nwrite-only = on\nread-only = on\n");
        assert_eq!(
            fail(&[&file.path()]),
            format!(
                "{}:5: read-only: cannot be used with write-only",
                file.path()
            )
        );
        let file = TempFile::new(b"[connect]\nurl = ws://h/\nfrom = -\ncert = /dev/null\n");
        assert_eq!(
            fail(&[&file.path()]),
            format!("{}:4: cert: needs key too", file.path())
        );
        let file = TempFile::new(b"[Connect]\n");
        assert!(fail(&[&file.path()]).contains("unknown section '[Connect]'"));
    }

    #[test]
    fn serve_follows_the_listeners() {
        let connects = "[connect]\nurl = ws://h/\nfrom = -\n";
        let file = TempFile::new(connects.as_bytes());
        let path = file.path();
        assert!(!run(&[&path]).serve);
        assert!(run(&[&path, "-p", "9000"]).serve);
        assert!(run(&[&path, "--listen", "::1"]).serve);
        assert!(run(&[&path, "--bind", "unix:/tmp/w.sock"]).serve);
        for core in ["port = 1", "listen = ::", "bind = ws://[::1]:0"] {
            let file = TempFile::new(format!("[core]\n{core}\n{connects}").as_bytes());
            let s = run(&[&file.path()]);
            assert!(s.serve, "{core}");
            assert_eq!(s.connects.len(), 1);
        }
        // Server-only options do not make a server.
        assert!(!run(&[&path, "--ping", "5", "-b", "x"]).serve);
        assert!(run(&[]).serve);
        assert!(run(&["--read-only"]).serve);
        assert!(!run(&["connect", "ws://h/", "--from", "-"]).serve);
    }

    #[test]
    fn server_read_only() {
        assert!(!run(&[]).read_only);
        assert!(run(&["--read-only"]).read_only);
        assert!(!run(&["--read-only=off"]).read_only);
        let file = TempFile::new(b"[core]\nread-only = yes\n");
        let s = run(&[&file.path()]);
        assert!(s.read_only && s.connects.is_empty() && s.serve);
    }

    #[test]
    fn help_lists_every_option_with_its_default() {
        let (text, code) = exit(&["connect", "--help"]);
        assert_eq!(code, 0);
        assert!(
            text.contains("Usage: websocksy connect URL --from LOCAL [OPTIONS]"),
            "{text}"
        );
        for key in CONNECT_KEYS {
            let arg = if key.positional {
                format!("<{}>", key.value_name)
            } else if key.flag {
                format!("--{}[=<{}>]", key.name, key.value_name)
            } else {
                format!("--{} <{}>", key.name, key.value_name)
            };
            assert_eq!(text.matches(&arg).count(), 1, "{arg}: {text}");
            assert!(text.contains(key.help), "{}: {text}", key.help);
        }
        let d = ConnectSettings::new(url("ws://h/"), Local::Stdio, String::new());
        let secs = |x: Duration| format!("[default: {}]", x.as_secs_f64());
        for (option, want) in [
            ("--framing", format!("[default: {}]", d.framing)),
            ("--timeout", secs(d.timeout)),
            ("--ping", secs(d.ping.unwrap_or_default())),
            ("--pong-timeout", secs(d.pong_timeout)),
            ("--idle-timeout", "[default: 0, udp-listen 60]".into()),
            ("--retry-interval", secs(d.retry.interval)),
            ("--retry-growth", format!("[default: {}]", d.retry.growth)),
            ("--retry-max-interval", secs(d.retry.max_interval)),
            ("--retry-max", format!("[default: {}]", d.retry.max)),
            (
                "--retry-buffer",
                format!("[default: {}M]", d.retry.buffer >> 20),
            ),
            ("--retry", "[default: off]".into()),
        ] {
            let line = text
                .split_once(&format!("{option} <"))
                .or_else(|| text.split_once(&format!("{option}[=<")))
                .and_then(|(_, rest)| rest.lines().nth(1))
                .unwrap_or_default();
            assert!(line.contains(&want), "{option}: {want} not in {line:?}");
        }
        assert_eq!(d.idle_timeout, None);
        assert!(!d.retry.enabled);
        assert_eq!(d.retry.buffer % (1 << 20), 0);
        for option in [
            "--plugin <PATH>",
            "--framing-option",
            "--max-message-size",
            "--peer-ca",
        ] {
            assert!(text.contains(option), "{option}");
        }
        for line in text.lines() {
            assert!(line.chars().count() <= 100, "long help line: {line}");
        }
        // The main help names the command in one line.
        let (text, _) = exit(&["--help"]);
        let lines: Vec<_> = text
            .lines()
            .filter(|l| l.contains("websocksy connect URL"))
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert!(text.contains("[connect]"), "{text}");
    }
}
