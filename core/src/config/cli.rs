//! The command line: clap's arguments built from the `[core]` key table,
//! plus `-c`, `--framing-option` and the file name, which have no `[core]`
//! key. Defaults are applied by [`Settings::default`], not by clap, so an
//! option left out does not override the config file.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};

use super::connect_keys::{ConnectKey, Draft, CONNECT_KEYS};
use super::keys::{Key, KEYS};
use super::values::{backend_option_value, framing_option_value};
use super::{BackendOption, ConfigError, FramingOption, Origin, Parsed, Settings};

/// What the command line says, checked but not yet applied.
pub(super) struct CommandLine {
    pub config_file: Option<PathBuf>,
    matches: ArgMatches,
    /// The options after `connect`, if that is the command.
    connect: Option<ArgMatches>,
}

// Ids of the arguments that are not `[core]` keys.
const BACKEND_OPTION: &str = "backend_options";
const FRAMING_OPTION: &str = "framing_options";
const CONFIG_FILE: &str = "config_file";
const CONNECT: &str = "connect";

/// `[core]` keys `websocksy connect` takes too: they set up the process
/// (plugins, limits, the drain on SIGTERM), not a listener.
const PROCESS_KEYS: &[&str] = &[
    "plugin",
    "plugin-dir",
    "max-message-size",
    "drain-timeout",
    "busy-poll",
    // A `tls://` local side is a peer like any other.
    "peer-ca",
    "peer-cert",
    "peer-key",
    "peer-insecure",
];

impl CommandLine {
    /// `Err` is help, version or a mistake: see [`clap_outcome`].
    pub fn parse<I, T>(args: I) -> Result<CommandLine, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut matches = command().try_get_matches_from(args)?;
        let connect = matches.remove_subcommand().map(|(_, m)| m);
        Ok(CommandLine {
            config_file: matches.remove_one::<PathBuf>(CONFIG_FILE),
            matches,
            connect,
        })
    }

    /// `websocksy connect ...`: a client, no server.
    pub fn is_connect(&self) -> bool {
        self.connect.is_some()
    }

    /// Refuses what comes before `connect` (before anything is read):
    /// its options all go after it, and it takes no configuration file.
    pub fn check_connect(&self) -> Result<(), ConfigError> {
        if self.connect.is_none() {
            return Ok(());
        }
        if let Some(f) = &self.config_file {
            return Err(ConfigError(format!(
                "'connect' takes no configuration file ('{}'); a file gives client \
                 connections as [connect] sections: websocksy FILE",
                f.display()
            )));
        }
        let given = |id: &str| self.matches.value_source(id) == Some(ValueSource::CommandLine);
        if given(BACKEND_OPTION) {
            return Err(ConfigError(
                "'--backend-option' is a server option; 'websocksy connect' does not take it"
                    .into(),
            ));
        }
        if given(FRAMING_OPTION) {
            return Err(ConfigError(
                "'--framing-option' goes after 'connect': \
                 websocksy connect URL --from LOCAL [OPTIONS]"
                    .into(),
            ));
        }
        if let Some(key) = KEYS.iter().find(|k| given(k.name)) {
            return Err(ConfigError(if PROCESS_KEYS.contains(&key.name) {
                format!(
                    "'--{}' goes after 'connect': websocksy connect URL --from LOCAL [OPTIONS]",
                    key.name
                )
            } else {
                format!(
                    "'--{}' is a server option; 'websocksy connect' does not take it",
                    key.name
                )
            }));
        }
        Ok(())
    }

    /// Applies the options over what the file set: `[core]` keys replace
    /// its values (in table order, so `-b` comes before the `-c` options it
    /// may warn about), `-c` and `--framing-option` are appended. After
    /// `connect`, the connection is added to `drafts`.
    pub fn apply(mut self, s: &mut Settings, drafts: &mut Vec<Draft>) -> Result<(), ConfigError> {
        apply_keys(&mut self.matches, s, KEYS.iter())?;
        let backend_options = self
            .matches
            .remove_many::<(String, String)>(BACKEND_OPTION)
            .into_iter()
            .flatten();
        s.backend_options
            .extend(backend_options.map(|(key, value)| {
                let origin = Origin::Argument(format!("-c {key}={value}"));
                BackendOption { key, value, origin }
            }));
        apply_framing_options(&mut self.matches, s);
        if let Some(mut m) = self.connect.take() {
            // Only these: `--ping`, `--cert`... after `connect` are the
            // connection's, not the server keys of the same name.
            let process = KEYS.iter().filter(|k| PROCESS_KEYS.contains(&k.name));
            apply_keys(&mut m, s, process)?;
            apply_framing_options(&mut m, s);
            drafts.push(connect_draft(&mut m)?);
        }
        Ok(())
    }
}

/// `keys` among `m`'s arguments, applied in table order.
fn apply_keys<'a>(
    m: &mut ArgMatches,
    s: &mut Settings,
    keys: impl Iterator<Item = &'a Key>,
) -> Result<(), ConfigError> {
    for key in keys {
        let Some(values) = m.remove_many::<String>(key.name) else {
            continue;
        };
        let at = format!("--{}", key.name);
        for v in values {
            // Checked by clap already; kept as an error rather than a
            // panic all the same.
            key.apply(s, &v, &at).map_err(|why| {
                ConfigError(format!(
                    "invalid value '{}' for '{at} <{}>': {why}",
                    key.shown(&v),
                    key.value_name
                ))
            })?;
        }
    }
    Ok(())
}

fn apply_framing_options(m: &mut ArgMatches, s: &mut Settings) {
    let framing_options = m
        .remove_many::<(String, String, String)>(FRAMING_OPTION)
        .into_iter()
        .flatten();
    s.framing_options
        .extend(framing_options.map(|(framing, key, value)| {
            let origin = Origin::Argument(format!("--framing-option {framing}:{key}={value}"));
            FramingOption {
                framing,
                key,
                value,
                origin,
            }
        }));
}

/// The connection `websocksy connect` describes, not yet checked as a
/// whole.
fn connect_draft(m: &mut ArgMatches) -> Result<Draft, ConfigError> {
    let mut d = Draft::command_line();
    for key in CONNECT_KEYS {
        let Some(values) = m.remove_many::<String>(key.name) else {
            continue;
        };
        let at = if key.positional {
            format!("<{}>", key.value_name)
        } else {
            format!("--{} <{}>", key.name, key.value_name)
        };
        for v in values {
            key.apply(&mut d, &v, 0).map_err(|why| {
                ConfigError(format!(
                    "invalid value '{}' for '{at}': {why}",
                    key.shown(&v)
                ))
            })?;
        }
    }
    Ok(d)
}

fn framing_option_arg() -> Arg {
    Arg::new(FRAMING_OPTION)
        .long("framing-option")
        .value_name("NAME:KEY=VALUE")
        .help(
            "Pass KEY=VALUE to framing NAME as a library-level option; \
             repeatable, kept in order",
        )
        .action(ArgAction::Append)
        .value_parser(framing_option_value)
}

fn command() -> Command {
    let mut cmd = Command::new("websocksy")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Bridge between WebSocket clients and TCP, UDP and Unix sockets")
        .override_usage(
            "websocksy [OPTIONS] [CONFIG_FILE]\n       \
             websocksy connect URL --from LOCAL [OPTIONS]  (client mode, see connect --help)",
        )
        .after_help(AFTER_HELP)
        .args_override_self(true)
        .next_line_help(true)
        // `websocksy help` stays what it always was: a file named help.
        .disable_help_subcommand(true)
        // Named by the usage line; a "Commands:" list would say it twice.
        .subcommand(connect_command().hide(true));
    for key in KEYS {
        cmd = cmd.arg(key_arg(key));
        // Listed beside -b in --help, where they always were.
        if key.name == "backend" {
            cmd = cmd.arg(
                Arg::new(BACKEND_OPTION)
                    .short('c')
                    .long("backend-option")
                    .value_name("KEY=VALUE")
                    .help(
                        "Pass KEY=VALUE to the backend (split at the first '='); repeatable, \
                         kept in order",
                    )
                    .action(ArgAction::Append)
                    .value_parser(backend_option_value),
            );
            cmd = cmd.arg(framing_option_arg());
        }
    }
    cmd.arg(
        Arg::new(CONFIG_FILE)
            .value_name("CONFIG_FILE")
            .help("INI-like configuration file, applied before the other options (see below)")
            .value_parser(value_parser!(PathBuf)),
    )
}

/// `websocksy connect URL --from LOCAL [OPTIONS]`.
fn connect_command() -> Command {
    let mut cmd = Command::new(CONNECT)
        .about("Dial a WebSocket server and bridge a local side to it (client mode)")
        .override_usage("websocksy connect URL --from LOCAL [OPTIONS]")
        .after_help(CONNECT_AFTER_HELP)
        .args_override_self(true)
        .next_line_help(true);
    for key in CONNECT_KEYS {
        cmd = cmd.arg(connect_arg(key));
    }
    for key in KEYS.iter().filter(|k| PROCESS_KEYS.contains(&k.name)) {
        cmd = cmd.arg(key_arg(key));
    }
    cmd.arg(framing_option_arg())
}

/// A connection's option; like [`key_arg`], the value is kept as text and
/// applied afterwards with the parser the file uses.
fn connect_arg(key: &'static ConnectKey) -> Arg {
    let arg = Arg::new(key.name)
        .value_name(key.value_name)
        .help(key.help)
        .allow_negative_numbers(key.numeric)
        .action(if key.repeatable {
            ArgAction::Append
        } else {
            ArgAction::Set
        })
        .value_parser(move |v: &str| {
            if !key.may_echo(v) {
                return Ok(v.to_string());
            }
            key.check(v).map(|()| v.to_string())
        });
    let arg = if key.positional {
        arg.required(true)
    } else {
        arg.long(key.name).required(key.name == "from")
    };
    if key.flag {
        arg.num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true")
    } else {
        arg
    }
}

fn key_arg(key: &'static Key) -> Arg {
    let arg = Arg::new(key.name)
        .long(key.name)
        .value_name(key.value_name)
        .help(key.help)
        .allow_negative_numbers(key.numeric)
        .action(if key.repeatable {
            ArgAction::Append
        } else {
            ArgAction::Set
        })
        // Kept as text: the key applies it after the file, with the same
        // parser the file uses.
        .value_parser(move |v: &str| {
            // clap's message would quote the value: a key that must not
            // echo it is checked when applied instead, in our words.
            if key.shown(v) != v {
                return Ok(v.to_string());
            }
            key.check(v).map(|()| v.to_string())
        });
    let arg = if key.flag {
        arg.num_args(0..=1)
            .require_equals(true)
            .default_missing_value("true")
    } else {
        arg
    };
    match key.short {
        Some(c) => arg.short(c),
        None => arg,
    }
}

/// Turns clap's multi-line report into either the help/version outcome or a
/// single error line.
pub(super) fn clap_outcome(err: &clap::Error) -> Result<Parsed, ConfigError> {
    let text = err.render().to_string();
    // Help and version are the only "errors" clap sends to stdout.
    if !err.use_stderr() {
        return Ok(Parsed::Exit {
            text,
            code: err.exit_code(),
        });
    }
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let mut msg = first.strip_prefix("error: ").unwrap_or(first).to_string();
    // "the following required arguments were not provided:" lists them on
    // the lines after it, up to the usage.
    if err.kind() == clap::error::ErrorKind::MissingRequiredArgument {
        let missing: Vec<&str> = text
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .map(str::trim)
            .collect();
        msg.push(' ');
        msg.push_str(&missing.join(" "));
    }
    // Keep "a similar argument exists: '--port'"; drop the generic tips and
    // the usage dump, which would break the one-line contract.
    for tip in lines.filter(|l| l.starts_with("tip: ") && l.contains("similar")) {
        msg.push_str(" (");
        msg.push_str(tip);
        msg.push(')');
    }
    Err(ConfigError(msg))
}

const AFTER_HELP: &str = "\
Configuration file:
  CONFIG_FILE is read first, whatever its position among the arguments;
  options on the command line then override its [core] values, -c options
  are passed to the backend after its [backend] lines, and --framing-option
  options to framings after its [framing:NAME] lines.

  [core]
  port = 8001
  listen = ::
  ping = 30
  backend = defaultpeer
  idle-timeout = 300

  [backend]
  host = tcp://127.0.0.1
  port = 5900
  framing = newline
  framing-config = lf

  [framing:json]
  invalid = close

  Each line is 'key = value', split at the first '='; key and value are
  trimmed, with no quoting or escapes. Lines starting with '#' or ';' are
  comments. Section headers start in column 0 and are case-sensitive.
  [core] takes the long option names without dashes (port, listen, ping,
  backend, connect-timeout, handshake-timeout, idle-timeout, pong-timeout,
  max-message-size, max-connections, drain-timeout, plugin-dir, plugin,
  busy-poll, threads, bind, cert, key, client-ca, client-cert, peer-ca, peer-cert,
  peer-key, peer-insecure, auth, origin, max-connections-per-ip,
  trusted-proxy, trusted-proxy-header, proxy-protocol, read-only); bind,
  origin, trusted-proxy and plugin may be repeated;
  unknown [core] keys are ignored with a warning. [backend] lines go to the backend in order,
  like -c options. [framing:NAME] lines are library-level options of the framing NAME
  (the name 'framing =' selects), like --framing-option NAME:KEY=VALUE; a connection's
  framing-config still overrides them. The built-in framings take none.

Client connections:
  Each [connect] section dials a WebSocket server, with the options of
  'websocksy connect' as keys (url = ..., from = ..., retry = on; see
  websocksy connect --help). A file with [connect] sections runs no
  server unless it or the command line names a listener (listen, port, bind).

Listeners and TLS:
  Without --bind, the bridge listens on -l/-p. Each --bind SPEC adds one:
  ws://ADDR:PORT, wss://ADDR:PORT or unix:/PATH, with options after '?'
  joined by '&': mode=0660 (unix socket permissions), proxy-protocol.
  With --bind, -l/-p add their listener only when given. --cert/--key
  make the -l/-p listener (and wss:// binds) speak TLS; SIGHUP reloads
  them, and --client-ca. Every listener is logged as 'listening on ...'.

Backend 'defaultpeer' (built in) takes host ([tcp|tls|udp|unix|unix-dgram|
fifotx|fiforx]://ADDRESS), port, framing, framing-config, protocol and
peer-ca (like --peer-ca), e.g.:
  websocksy -p 8001 -c host=tcp://127.0.0.1 -c port=5900 -c framing=newline

Plugins: every *.so in the plugin directory not named backend_* is loaded at
start-up (its framings replace built-ins of the same name). -b NAME loads
backend_NAME.so (or libbackend_NAME.so) from there; -b PATH loads a file.
Default directory: the first that exists of <exe dir>/plugins,
<exe dir>/../lib/websocksy and <exe dir>. Plugin log lines use the target
websocksy::plugin::<file stem> (RUST_LOG=websocksy::plugin::NAME=debug).";

const CONNECT_AFTER_HELP: &str = "\
LOCAL, the local side:
  tcp-listen://ADDR:PORT    one WebSocket connection per accepted TCP client
  unix-listen:///PATH       the same on a Unix socket (unix-listen:/PATH too)
  udp-listen://ADDR:PORT    one connection per source address, one datagram =
                            one message; idle ones close after --idle-timeout
  tcp://HOST:PORT, udp://HOST:PORT, unix:///PATH, unix-dgram:///PATH,
  tls://HOST:PORT           connect to this peer once, with one WebSocket
                            connection for it (tls:// is verified as
                            --peer-ca, --peer-cert, --peer-key, --peer-insecure say)
  mirror://                 send every message back to the server
  -                         standard input and output
  IPv6 addresses go in brackets: tcp-listen://[::1]:9000. Port 0 picks a free one.

Reconnects (--retry): waits start at --retry-interval and grow by --retry-growth
up to --retry-max-interval, each drawn at random below its bound. While the
server is unreachable, up to --retry-buffer bytes from the local side are held,
then the local side is no longer read. 401 and 403 answers end the connection
unless --retry-on-auth-failure.

Options that are flags take =BOOL too (--retry=false). Each option is also a
key of a [connect] section in a configuration file, without the dashes
(url = ws://..., from = ..., header and protocol repeatable):
  [connect]
  url = wss://feed.example/ws
  from = tcp-listen://127.0.0.1:9000
  header = X-Token: abc
  retry = on";

#[cfg(test)]
mod tests {
    use crate::config::testing::*;
    use crate::config::*;

    #[test]
    fn no_arguments_give_the_defaults() {
        let s = run(&[]);
        assert_eq!(s, Settings::default());
        assert_eq!(s.listen, "::");
        assert_eq!(s.port, 8001);
        assert_eq!(s.ping, Some(SECS(30)));
        assert_eq!(s.backend, "defaultpeer");
        assert!(s.backend_options.is_empty());
        assert_eq!(s.config_file, None);
    }

    #[test]
    fn original_flags_short_and_long() {
        let expected = Settings {
            port: 9000,
            listen: "127.0.0.1".into(),
            listen_given: true,
            ping: Some(SECS(5)),
            backend: "file".into(),
            backend_options: vec![arg_opt("path", "files/")],
            ..Settings::default()
        };
        let short = run(&[
            "-p",
            "9000",
            "-l",
            "127.0.0.1",
            "-k",
            "5",
            "-b",
            "file",
            "-c",
            "path=files/",
        ]);
        assert_eq!(short, expected);
        let long = run(&[
            "--port",
            "9000",
            "--listen",
            "127.0.0.1",
            "--ping",
            "5",
            "--backend",
            "file",
            "--backend-option",
            "path=files/",
        ]);
        assert_eq!(long, expected);
        let attached = run(&[
            "-p9000",
            "--listen=127.0.0.1",
            "-k5",
            "--backend=file",
            "--backend-option=path=files/",
        ]);
        assert_eq!(attached, expected);
    }

    #[test]
    fn new_long_options() {
        let s = run(&[
            "--connect-timeout",
            "3",
            "--handshake-timeout",
            "0.5",
            "--idle-timeout",
            "120",
            "--pong-timeout",
            "2.25",
            "--max-message-size",
            "1M",
            "--max-connections",
            "100",
            "--drain-timeout",
            "1",
        ]);
        assert_eq!(
            s,
            Settings {
                connect_timeout: SECS(3),
                handshake_timeout: Duration::from_millis(500),
                idle_timeout: Some(SECS(120)),
                pong_timeout: Duration::from_millis(2250),
                max_message_size: 1 << 20,
                max_connections: Some(100),
                drain_timeout: SECS(1),
                ..Settings::default()
            }
        );
    }

    #[test]
    fn zero_turns_ping_and_idle_timeout_off() {
        assert_eq!(run(&["-k", "0"]).ping, None);
        assert_eq!(run(&["--ping", "0.0"]).ping, None);
        assert_eq!(run(&["--idle-timeout", "0"]).idle_timeout, None);
        assert_eq!(run(&["-k", "0.5"]).ping, Some(Duration::from_millis(500)));
    }

    #[test]
    fn other_timeouts_must_be_positive_numbers() {
        for opt in [
            "--connect-timeout",
            "--handshake-timeout",
            "--pong-timeout",
            "--drain-timeout",
        ] {
            let msg = fail(&[opt, "0"]);
            assert!(msg.contains("must be greater than 0"), "{msg}");
            assert!(msg.contains(opt), "{msg}");
        }
        for bad in ["abc", "nan", "inf", "1e300", "1e-12", "", "5s", "=1"] {
            fail(&["--connect-timeout", bad]);
            fail(&["-k", bad]);
        }
        // Numeric options take `-1` as their value, so the reason is ours.
        assert!(fail(&["-k", "-1"]).contains("expected a number of seconds"));
        assert!(fail(&["--idle-timeout=-1"]).contains("expected a number of seconds"));
        assert!(fail(&["-p", "-1"]).contains("expected a port number"));
        assert!(fail(&["--max-connections", "-5"]).contains("expected a whole number"));
    }

    #[test]
    fn backend_options_keep_order_and_split_at_first_equals() {
        let s = run(&[
            "-c",
            "a=b=c",
            "-c",
            "x=",
            "--backend-option",
            "a=2",
            "-c",
            "k= v ",
        ]);
        assert_eq!(
            s.backend_options,
            vec![
                arg_opt("a", "b=c"),
                arg_opt("x", ""),
                arg_opt("a", "2"),
                arg_opt("k", " v ")
            ]
        );
        assert_eq!(
            s.backend_options[0].origin.to_string(),
            "argument '-c a=b=c'"
        );
    }

    #[test]
    fn backend_option_without_equals_is_an_error() {
        let msg = fail(&["-c", "foo"]);
        assert_eq!(
            msg,
            "invalid value 'foo' for '--backend-option <KEY=VALUE>': expected KEY=VALUE"
        );
        let msg = fail(&["-c", "=x"]);
        assert!(msg.contains("the key is empty"), "{msg}");
    }

    #[test]
    fn port_range() {
        assert_eq!(run(&["-p", "0"]).port, 0);
        assert_eq!(run(&["-p", "65535"]).port, 65535);
        let msg = fail(&["-p", "80000"]);
        assert_eq!(
            msg,
            "invalid value '80000' for '--port <PORT>': out of range, a port is 0-65535"
        );
        let msg = fail(&["--port", "abc"]);
        assert_eq!(
            msg,
            "invalid value 'abc' for '--port <PORT>': expected a port number 0-65535"
        );
        for bad in ["", "+80", " 80", "http", "99999999999999999999999"] {
            fail(&["-p", bad]);
        }
    }

    #[test]
    fn odd_and_unknown_arguments_are_one_line_errors() {
        let msg = fail(&["-q", "foo"]);
        assert!(msg.starts_with("unexpected argument '-q' found"), "{msg}");
        let msg = fail(&["--prot", "1"]);
        assert!(
            msg.contains("'--prot'") && msg.contains("'--port'"),
            "{msg}"
        );
        // The original read `-port` as `-p`; clap reads it as `-p ort`.
        let msg = fail(&["-port", "9000"]);
        assert!(msg.contains("'ort'"), "{msg}");
        let msg = fail(&["-p"]);
        assert!(msg.contains("--port <PORT>"), "{msg}");
        let msg = fail(&["-p", "1", "-c"]);
        assert!(msg.contains("--backend-option"), "{msg}");
        let msg = fail(&["a.cfg", "b.cfg"]);
        assert!(msg.contains("'b.cfg'"), "{msg}");
    }

    #[test]
    fn repeated_flag_takes_the_last_value() {
        let s = run(&["-p", "1", "--port", "2", "-b", "x", "-b", "y"]);
        assert_eq!((s.port, s.backend.as_str()), (2, "y"));
    }

    #[test]
    fn help_and_version_do_not_exit() {
        for flag in ["--help", "-h"] {
            let (text, code) = exit(&[flag]);
            assert_eq!(code, 0);
            assert!(
                text.contains("Usage: websocksy [OPTIONS] [CONFIG_FILE]"),
                "{text}"
            );
            assert!(text.contains("--max-message-size <BYTES>"), "{text}");
            assert!(text.contains("[core]"), "{text}");
        }
        for flag in ["--version", "-V"] {
            let (text, code) = exit(&[flag]);
            assert_eq!(code, 0);
            assert_eq!(text, format!("websocksy {}\n", env!("CARGO_PKG_VERSION")));
        }
        // Help wins over other arguments, even bad ones after it.
        assert_eq!(exit(&["-p", "1", "--help"]).1, 0);
    }

    #[test]
    fn help_states_the_real_defaults() {
        let (text, _) = exit(&["--help"]);
        let d = Settings::default();
        let secs = |x: Duration| format!("[default: {}]", x.as_secs_f64());
        for want in [
            format!("[default: {}]", d.port),
            format!("[default: {}]", d.listen),
            format!("[default: {}]", d.backend),
            secs(d.ping.unwrap_or_default()),
            secs(d.connect_timeout),
            secs(d.pong_timeout),
            secs(d.drain_timeout),
            format!("[default: {}M]", d.max_message_size >> 20),
        ] {
            assert!(text.contains(&want), "help lacks {want}:\n{text}");
        }
        assert_eq!(d.idle_timeout, None);
        assert!(text.contains("0 disables [default: 0]"), "{text}");
        assert_eq!(d.max_message_size % (1 << 20), 0);
        assert_eq!(d.handshake_timeout, d.connect_timeout);
        for line in text.lines() {
            assert!(line.chars().count() <= 100, "long help line: {line}");
        }
    }

    #[test]
    fn bad_framing_option_flags_are_one_line_errors() {
        let msg = fail(&["--framing-option", "json"]);
        assert_eq!(
            msg,
            "invalid value 'json' for '--framing-option <NAME:KEY=VALUE>': expected NAME:KEY=VALUE"
        );
        let msg = fail(&["--framing-option", "max-depth=2"]);
        assert!(msg.ends_with(": expected NAME:KEY=VALUE"), "{msg}");
        let msg = fail(&["--framing-option", "json:max-depth"]);
        assert!(msg.ends_with(": expected NAME:KEY=VALUE"), "{msg}");
        let msg = fail(&["--framing-option", ":k=v"]);
        assert!(
            msg.ends_with("expected NAME:KEY=VALUE, the framing name is empty"),
            "{msg}"
        );
        let msg = fail(&["--framing-option", "js on:k=v"]);
        assert!(msg.contains("has spaces"), "{msg}");
        let msg = fail(&["--framing-option", "json:=v"]);
        assert!(
            msg.ends_with("expected NAME:KEY=VALUE, the key is empty"),
            "{msg}"
        );
        let msg = fail(&["--framing-option"]);
        assert!(msg.contains("--framing-option <NAME:KEY=VALUE>"), "{msg}");
    }

    #[test]
    fn help_mentions_framing_options() {
        let (text, _) = exit(&["--help"]);
        assert!(text.contains("--framing-option <NAME:KEY=VALUE>"), "{text}");
        assert!(text.contains("[framing:NAME]"), "{text}");
    }

    #[test]
    fn flags_override_and_append_to_the_file() {
        let file = TempFile::new(SPEC_EXAMPLE.as_bytes());
        let path = file.path();
        // The file name may come before or after the flags; it is applied first.
        for args in [
            vec!["-p", "9", "-k", "3", path.as_str(), "-c", "framing=binary"],
            vec![path.as_str(), "-p", "9", "-k", "3", "-c", "framing=binary"],
        ] {
            let s = run(&args);
            assert_eq!(s.port, 9);
            assert_eq!(s.ping, Some(SECS(3)));
            assert_eq!(s.listen, "127.0.0.1");
            assert_eq!(s.config_file, Some(path.clone()));
            assert_eq!(s.backend_options.len(), 6);
            assert_eq!(
                s.backend_options[2],
                file_opt("framing", "newline", &path, 8)
            );
            assert_eq!(s.backend_options[5], arg_opt("framing", "binary"));
        }
        // A flag's bad value is reported even when the file is fine.
        assert!(fail(&[&path, "-p", "x"]).contains("--port <PORT>"));
    }

    #[test]
    fn later_backend_keeps_earlier_options() {
        let file = TempFile::new(b"[backend]\nhost = a\n[core]\nbackend = file\n");
        let s = run(&[&file.path(), "-b", "third", "-c", "k=v"]);
        assert_eq!(s.backend, "third");
        assert_eq!(s.backend_options.len(), 2);
        assert!(fail(&["-b", ""]).contains("expected a backend name"));
        let file = TempFile::new(b"backend =\n");
        assert!(fail(&[&file.path()]).contains(":1: invalid value '' for 'backend'"));
    }
}
