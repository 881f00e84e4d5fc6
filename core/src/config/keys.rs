//! The `[core]` keys: one table that both the command line (each key is
//! also a long option) and the file read, so a key is written once.
//!
//! `-c`/`--backend-option`, `--framing-option` and the file name are not
//! here: they have no `[core]` key (the file has `[backend]` and
//! `[framing:NAME]` sections instead), see `cli.rs`.

use std::fmt;

use super::values::{
    auth_value, backend_value, bind_value, bool_value, busy_poll_value, client_cert_value,
    count_value, listen_value, origin_value, path_value, port_value, seconds, seconds_or_off,
    size_value, threads_value, trusted_proxy_value,
};
use super::{Located, Settings, LOG_TARGET};

fn located<T>(value: T, at: &dyn fmt::Display) -> Option<Located<T>> {
    Some(Located {
        value,
        at: at.to_string(),
    })
}

/// One `[core]` key, which is also the long option `--NAME`.
pub(super) struct Key {
    /// The `[core]` key, and the long option without its dashes.
    pub name: &'static str,
    pub short: Option<char>,
    /// The placeholder in `--help` and in clap's messages (`--port <PORT>`).
    pub value_name: &'static str,
    /// The option's line in `--help`.
    pub help: &'static str,
    /// The value is a number: on the command line `-1` is then read as this
    /// option's value (refused by its parser, with its reason) rather than
    /// as an unknown flag.
    pub numeric: bool,
    /// Every occurrence applies, in order (`plugin`); otherwise the last
    /// one wins.
    pub repeatable: bool,
    /// A switch: on the command line the value may be left out (`--NAME`
    /// means `true`) and is otherwise attached (`--NAME=false`), so the
    /// word after it is never taken for its value.
    pub flag: bool,
    value: &'static dyn Value,
}

impl Key {
    /// Parses `value` without applying it, so the command line can refuse
    /// it while clap still knows which option it was.
    pub fn check(&self, value: &str) -> Result<(), String> {
        self.value.check(value)
    }

    /// The value as error messages show it: a key that may hold
    /// credentials (`auth` given `user:password` by mistake) never echoes
    /// them to a terminal or a log.
    pub fn shown<'a>(&self, value: &'a str) -> &'a str {
        if self.name == "auth" {
            "<hidden>"
        } else {
            value
        }
    }

    /// Parses `value` and applies it to `s`; `at` (the file and line, or
    /// the option) names it in warnings. The error is the reason only.
    pub fn apply(
        &self,
        s: &mut Settings,
        value: &str,
        at: &dyn fmt::Display,
    ) -> Result<(), String> {
        self.value.apply(s, value, at)
    }
}

/// The key named `name` (case-sensitive, like the original).
pub(super) fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

// Type-erased so that one table holds keys of every value type.
trait Value: Sync {
    fn check(&self, v: &str) -> Result<(), String>;
    fn apply(&self, s: &mut Settings, v: &str, at: &dyn fmt::Display) -> Result<(), String>;
}

/// A value parser and where its result goes.
struct Field<T> {
    parse: fn(&str) -> Result<T, String>,
    store: fn(&mut Settings, T, &dyn fmt::Display),
}

impl<T> Value for Field<T> {
    fn check(&self, v: &str) -> Result<(), String> {
        (self.parse)(v).map(drop)
    }

    fn apply(&self, s: &mut Settings, v: &str, at: &dyn fmt::Display) -> Result<(), String> {
        (self.store)(s, (self.parse)(v)?, at);
        Ok(())
    }
}

/// In `--help` order.
pub(super) static KEYS: &[Key] = &[
    Key {
        name: "port",
        short: Some('p'),
        value_name: "PORT",
        help: "Listen port for WebSocket clients, 0-65535; 0 picks a free port [default: 8001]",
        numeric: true,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: port_value,
            store: |s, v, _| {
                s.port = v;
                s.listen_given = true;
            },
        },
    },
    Key {
        name: "listen",
        short: Some('l'),
        value_name: "ADDR",
        help: "Listen address: host name or IP literal, IPv6 with or without brackets \
               [default: ::]",
        numeric: false,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: listen_value,
            store: |s, v, _| {
                s.listen = v;
                s.listen_given = true;
            },
        },
    },
    Key {
        name: "ping",
        short: Some('k'),
        value_name: "SECONDS",
        help: "Send a keep-alive ping after this much silence from a client; 0 disables \
               [default: 30]",
        numeric: true,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: seconds_or_off,
            store: |s, v, _| s.ping = v,
        },
    },
    Key {
        name: "backend",
        short: Some('b'),
        value_name: "NAME",
        help: "Peer discovery backend [default: defaultpeer]",
        numeric: false,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: backend_value,
            store: set_backend,
        },
    },
    Key {
        name: "connect-timeout",
        short: None,
        value_name: "SECS",
        help: "Give up connecting to a peer after SECS [default: 10]",
        numeric: true,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: seconds,
            store: |s, v, _| s.connect_timeout = v,
        },
    },
    Key {
        name: "handshake-timeout",
        short: None,
        value_name: "SECS",
        help: "Close a client that has not completed its upgrade request within SECS \
               [default: 10]",
        numeric: true,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: seconds,
            store: |s, v, _| s.handshake_timeout = v,
        },
    },
    Key {
        name: "idle-timeout",
        short: None,
        value_name: "SECS",
        help: "Close a connection with no traffic either way for SECS; 0 disables [default: 0]",
        numeric: true,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: seconds_or_off,
            store: |s, v, _| s.idle_timeout = v,
        },
    },
    Key {
        name: "pong-timeout",
        short: None,
        value_name: "SECS",
        help: "Close a client that sends nothing within SECS of a keep-alive ping [default: 10]",
        numeric: true,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: seconds,
            store: |s, v, _| s.pong_timeout = v,
        },
    },
    Key {
        name: "max-message-size",
        short: None,
        value_name: "BYTES",
        help: "Largest WebSocket message accepted or sent; K, M, G suffixes are binary \
               [default: 64M]",
        numeric: true,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: size_value,
            store: |s, v, _| s.max_message_size = v,
        },
    },
    Key {
        name: "max-connections",
        short: None,
        value_name: "N",
        help: "Stop accepting beyond N open connections [default: from the file descriptor limit]",
        numeric: true,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: count_value,
            store: |s, v, _| s.max_connections = Some(v),
        },
    },
    Key {
        name: "drain-timeout",
        short: None,
        value_name: "SECS",
        help: "On SIGINT/SIGTERM, give open connections SECS to finish closing [default: 5]",
        numeric: true,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: seconds,
            store: |s, v, _| s.drain_timeout = v,
        },
    },
    Key {
        name: "plugin-dir",
        short: None,
        value_name: "DIR",
        help: "Directory of plugin libraries loaded at start-up \
               [default: <exe dir>/plugins, ...]",
        numeric: false,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: path_value,
            store: |s, v, _| s.plugin_dir = Some(v),
        },
    },
    Key {
        name: "threads",
        short: None,
        value_name: "N",
        help: "Run N event loops, one per core [default: the CPUs this process may run on]",
        numeric: true,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: threads_value,
            store: |s, v, _| s.threads = Some(v),
        },
    },
    Key {
        name: "busy-poll",
        short: None,
        value_name: "auto|MICROS",
        help: "Spin MICROS after traffic, or auto: while it is fast [default: 0]",
        numeric: true,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: busy_poll_value,
            store: |s, v, _| s.busy_poll = v,
        },
    },
    Key {
        name: "plugin",
        short: None,
        value_name: "PATH",
        help: "Load this plugin library (.so) too; repeatable",
        numeric: false,
        repeatable: true,
        flag: false,
        value: &Field {
            parse: path_value,
            store: |s, v, _| s.plugins.push(v),
        },
    },
    Key {
        name: "auth",
        short: None,
        value_name: "SPEC",
        help: "Require HTTP Basic auth: $NAME (holding user:password) or a users file",
        numeric: false,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: auth_value,
            store: |s, v, _| s.auth = Some(v),
        },
    },
    Key {
        name: "origin",
        short: None,
        value_name: "ORIGIN",
        help: "Accept only this Origin (https://a.example, https://*.example, null); \
               repeatable",
        numeric: false,
        repeatable: true,
        flag: false,
        value: &Field {
            parse: origin_value,
            store: |s, v, _| s.origins.push(v),
        },
    },
    Key {
        name: "max-connections-per-ip",
        short: None,
        value_name: "N",
        help: "Refuse (429) a client address's connections beyond N open ones \
               [default: unlimited]",
        numeric: true,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: count_value,
            store: |s, v, _| s.max_connections_per_ip = Some(v),
        },
    },
    Key {
        name: "trusted-proxy",
        short: None,
        value_name: "CIDR",
        help: "Believe --trusted-proxy-header from these addresses or unix; \
               repeatable",
        numeric: false,
        repeatable: true,
        flag: false,
        value: &Field {
            parse: trusted_proxy_value,
            store: |s, v, _| match v {
                Some(net) => s.trusted_proxies.push(net),
                None => s.trusted_unix = true,
            },
        },
    },
    Key {
        name: "trusted-proxy-header",
        short: None,
        value_name: "NAME",
        help: "Trusted proxies' header: x-forwarded-for, forwarded, x-real-ip \
               [default: x-forwarded-for]",
        numeric: false,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: crate::forwarded::ForwardedHeader::parse,
            store: |s, v, _| s.trusted_proxy_header = v,
        },
    },
    Key {
        name: "proxy-protocol",
        short: None,
        value_name: "BOOL",
        help: "Require a PROXY protocol header (v1 or v2) on every connection of the \
               -l/-p listener",
        numeric: false,
        repeatable: false,
        flag: true,
        value: &Field {
            parse: bool_value,
            store: |s, v, _| s.proxy_protocol = v,
        },
    },
    Key {
        name: "read-only",
        short: None,
        value_name: "BOOL",
        help: "Clients only listen: what they send is read and dropped, never given to the peer",
        numeric: false,
        repeatable: false,
        flag: true,
        value: &Field {
            parse: bool_value,
            store: |s, v, _| s.read_only = v,
        },
    },
    Key {
        name: "bind",
        short: None,
        value_name: "SPEC",
        help: "Also listen on SPEC (ws://ADDR:PORT, wss://ADDR:PORT, unix:/PATH; see below); \
               repeatable",
        numeric: false,
        repeatable: true,
        flag: false,
        value: &Field {
            parse: bind_value,
            store: |s, v, at| {
                s.binds.push(Located {
                    value: v,
                    at: at.to_string(),
                })
            },
        },
    },
    Key {
        name: "cert",
        short: None,
        value_name: "FILE",
        help: "TLS certificate chain (PEM) for -l/-p and wss:// binds; reloaded on SIGHUP",
        numeric: false,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: path_value,
            store: |s, v, at| s.cert = located(v, at),
        },
    },
    Key {
        name: "key",
        short: None,
        value_name: "FILE",
        help: "Private key (PEM) of --cert",
        numeric: false,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: path_value,
            store: |s, v, at| s.key = located(v, at),
        },
    },
    Key {
        name: "client-ca",
        short: None,
        value_name: "FILE",
        help: "Ask TLS clients for a certificate signed by these CAs (PEM)",
        numeric: false,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: path_value,
            store: |s, v, at| s.client_ca = located(v, at),
        },
    },
    Key {
        name: "client-cert",
        short: None,
        value_name: "MODE",
        help: "With --client-ca: 'require' or 'optional' [default: require]",
        numeric: false,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: client_cert_value,
            store: |s, v, at| s.client_cert = located(v, at),
        },
    },
    Key {
        name: "peer-ca",
        short: None,
        value_name: "FILE",
        help: "Verify tls:// peers with these CAs (PEM) instead of the system's",
        numeric: false,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: path_value,
            store: |s, v, at| s.peer_ca = located(v, at),
        },
    },
    Key {
        name: "peer-cert",
        short: None,
        value_name: "FILE",
        help: "Client certificate chain (PEM) shown to tls:// peers; needs --peer-key",
        numeric: false,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: path_value,
            store: |s, v, at| s.peer_cert = located(v, at),
        },
    },
    Key {
        name: "peer-key",
        short: None,
        value_name: "FILE",
        help: "Private key (PEM) of --peer-cert",
        numeric: false,
        repeatable: false,
        flag: false,
        value: &Field {
            parse: path_value,
            store: |s, v, at| s.peer_key = located(v, at),
        },
    },
    Key {
        name: "peer-insecure",
        short: None,
        value_name: "BOOL",
        help: "Do not verify tls:// peers' certificates (logs a warning)",
        numeric: false,
        repeatable: false,
        flag: true,
        value: &Field {
            parse: bool_value,
            store: |s, v, _| s.peer_insecure = v,
        },
    },
];

/// Sets the backend name, warning where the original would have silently
/// dropped the options collected so far.
fn set_backend(s: &mut Settings, name: String, at: &dyn fmt::Display) {
    if name != s.backend && !s.backend_options.is_empty() {
        log::warn!(
            target: LOG_TARGET,
            "{at}: backend changed from '{}' to '{name}' after {} backend option(s); \
             they are passed to '{name}'",
            s.backend,
            s.backend_options.len()
        );
    }
    s.backend = name;
}

#[cfg(test)]
mod tests {
    use super::KEYS;
    use crate::config::testing::*;
    use crate::config::*;

    /// A value each key accepts that differs from its default.
    fn sample(name: &str) -> &'static str {
        match name {
            "port" => "9",
            "listen" => "[::1]",
            "ping" => "0",
            "backend" => "other",
            "idle-timeout" => "0.25",
            "max-message-size" => "16K",
            "max-connections" => "9",
            "plugin-dir" => "/a",
            "busy-poll" => "50",
            "threads" => "3",
            "plugin" => "x.so",
            "auth" => "$WEBSOCKSY_USERS",
            "origin" => "https://*.example.com",
            "max-connections-per-ip" => "3",
            "trusted-proxy" => "10.0.0.0/8",
            "trusted-proxy-header" => "forwarded",
            "proxy-protocol" => "true",
            "bind" => "wss://[::1]:0?proxy-protocol",
            "cert" | "key" | "client-ca" => "/a.pem",
            "client-cert" => "optional",
            "peer-ca" | "peer-cert" | "peer-key" => "/b.pem",
            "peer-insecure" | "read-only" => "true",
            _ => "2.5",
        }
    }

    #[test]
    fn every_key_reads_the_same_from_the_command_line_and_the_file() {
        for key in KEYS {
            let value = sample(key.name);
            let option = format!("--{}", key.name);
            // Attached, the one form every key takes (a flag's value must be).
            let from_cli = run(&[&format!("{option}={value}")]);
            assert_ne!(from_cli, Settings::default(), "{option} {value}");
            let file = TempFile::new(format!("[core]\n{} = {value}\n", key.name).as_bytes());
            let from_file = run(&[&file.path()]);
            assert_eq!(
                Settings {
                    config_file: None,
                    ..from_file
                },
                from_cli,
                "{}",
                key.name
            );
            if let Some(c) = key.short {
                assert_eq!(run(&[&format!("-{c}"), value]), from_cli);
            } else if !key.flag {
                assert_eq!(run(&[&option, value]), from_cli);
            }
            // The same reason both ways, each with its own prefix; no key
            // takes an empty value.
            let msg = fail(&[&format!("{option}=")]);
            let why = msg
                .rsplit_once("': ")
                .map(|(_, why)| why)
                .unwrap_or_default();
            assert!(!why.is_empty(), "{msg}");
            let file = TempFile::new(format!("{} =\n", key.name).as_bytes());
            assert_eq!(
                fail(&[&file.path()]),
                format!(
                    "{}:1: invalid value '{}' for '{}': {why}",
                    file.path(),
                    key.shown(""),
                    key.name
                )
            );
        }
    }

    #[test]
    fn help_lists_every_key_once_as_option_and_as_core_key() {
        let (text, _) = exit(&["--help"]);
        let listed = text
            .split_once("[core] takes the long option names without dashes (")
            .and_then(|(_, rest)| rest.split_once(");"))
            .map(|(names, _)| names.split(',').map(str::trim).collect::<Vec<_>>())
            .unwrap_or_default();
        let mut names: Vec<_> = KEYS.iter().map(|k| k.name).collect();
        let mut listed_sorted = listed.clone();
        names.sort_unstable();
        listed_sorted.sort_unstable();
        assert_eq!(listed_sorted, names, "{text}");
        for key in KEYS {
            let option = if key.flag {
                format!("--{}[=<{}>]", key.name, key.value_name)
            } else {
                format!("--{} <{}>", key.name, key.value_name)
            };
            assert_eq!(text.matches(&option).count(), 1, "{option}: {text}");
            assert!(text.contains(key.help), "{}: {text}", key.help);
        }
    }

    #[test]
    fn admission_keys() {
        assert!(run(&["--proxy-protocol"]).proxy_protocol);
        assert!(!run(&["--proxy-protocol=false"]).proxy_protocol);
        // A switch never takes the next word: here, the config file.
        let file = TempFile::new(b"[core]\nport = 7\n");
        let s = run(&["--proxy-protocol", &file.path()]);
        assert_eq!((s.proxy_protocol, s.port), (true, 7));
        let s = run(&[
            "--origin",
            "HTTPS://A.example:443",
            "--origin=null",
            "--trusted-proxy",
            "10.1.2.3/8",
            "--trusted-proxy",
            "::1",
            "--trusted-proxy=unix",
        ]);
        assert!(s.trusted_unix);
        assert!(!run(&[]).trusted_unix);
        assert_eq!(s.origins, ["https://a.example", "null"]);
        assert_eq!(
            s.trusted_proxies,
            [
                "10.0.0.0/8".parse::<ipnet::IpNet>().unwrap(),
                "::1/128".parse().unwrap()
            ]
        );
        // Credentials typed in clear are refused and never echoed.
        let msg = fail(&["--auth", "alice:s3cret"]);
        assert!(msg.contains("$NAME") && !msg.contains("s3cret"), "{msg}");
        let file = TempFile::new(b"[core]\nauth = alice:s3cret\n");
        let msg = fail(&[&file.path()]);
        assert!(
            msg.starts_with(&format!(
                "{}:2: invalid value '<hidden>' for 'auth'",
                file.path()
            )) && !msg.contains("s3cret"),
            "{msg}"
        );
        assert!(fail(&["--max-connections-per-ip", "0"]).contains("at least 1"));
        assert!(fail(&["--trusted-proxy", "10.0.0.0/33"]).contains("CIDR"));
    }

    #[test]
    fn unknown_core_key_is_ignored() {
        let file = TempFile::new(b"[core]\nbogus = 1\nPort = 5\nport = 7\n");
        let s = run(&[&file.path()]);
        assert_eq!(
            s,
            Settings {
                port: 7,
                listen_given: true,
                config_file: Some(file.path()),
                ..Settings::default()
            }
        );
    }

    #[test]
    fn new_core_keys_in_file() {
        let file = TempFile::new(
            b"connect-timeout = 1\nhandshake-timeout = 2\nidle-timeout = 0.25\n\
              pong-timeout = 4\nmax-message-size = 16K\nmax-connections = 9\n\
              drain-timeout = 0.1\nlisten = [::1]\nbackend = other\n",
        );
        let s = run(&[&file.path()]);
        assert_eq!(
            s,
            Settings {
                connect_timeout: SECS(1),
                handshake_timeout: SECS(2),
                idle_timeout: Some(Duration::from_millis(250)),
                pong_timeout: SECS(4),
                max_message_size: 16 << 10,
                max_connections: Some(9),
                drain_timeout: Duration::from_millis(100),
                listen: "::1".into(),
                listen_given: true,
                backend: "other".into(),
                config_file: Some(file.path()),
                ..Settings::default()
            }
        );
    }

    #[test]
    fn plugin_keys() {
        let file = TempFile::new(b"[core]\nplugin-dir = /a\nplugin = x.so\nplugin = /y/z.so\n");
        let s = run(&[&file.path(), "--plugin", "w.so"]);
        assert_eq!(s.plugin_dir, Some(PathBuf::from("/a")));
        assert_eq!(
            s.plugins,
            [
                PathBuf::from("x.so"),
                PathBuf::from("/y/z.so"),
                PathBuf::from("w.so")
            ]
        );
        let s = run(&[&file.path(), "--plugin-dir", "/b"]);
        assert_eq!(s.plugin_dir, Some(PathBuf::from("/b")));
        assert_eq!(run(&[]).plugin_dir, None);
        let file = TempFile::new(b"plugin =\n");
        assert!(
            fail(&[&file.path()]).contains(":1: invalid value '' for 'plugin': expected a path")
        );
    }

    #[test]
    fn bad_core_value_names_file_and_line() {
        let file = TempFile::new(b"[core]\nlisten = ::1\n\nport = 80000\n");
        assert_eq!(
            fail(&[&file.path()]),
            format!(
                "{}:4: invalid value '80000' for 'port': out of range, a port is 0-65535",
                file.path()
            )
        );
        let file = TempFile::new(b"ping = soon\r\n");
        assert_eq!(
            fail(&[&file.path()]),
            format!(
                "{}:1: invalid value 'soon' for 'ping': expected a number of seconds, e.g. 10 or 0.5",
                file.path()
            )
        );
        let file = TempFile::new(b"[backend]\n = value\n");
        assert_eq!(
            fail(&[&file.path()]),
            format!("{}:2: missing key before '='", file.path())
        );
        let file = TempFile::new(b"[backend]\nhost = ok\nkey = \xff\xfe\n");
        assert_eq!(
            fail(&[&file.path()]),
            format!("{}:3: not valid UTF-8", file.path())
        );
    }
}
