//! Command line and configuration file, compatible with the original
//! websocksy (`websocksy CONFIG_FILE` or `-p -l -k -b -c` flags, INI-like
//! file with `[core]` and `[backend]` sections), plus `[framing:NAME]`
//! sections and `--framing-option NAME:KEY=VALUE` for framings'
//! library-level options.
//!
//! Parsing produces [`Settings`]; backend and framing keys are not
//! interpreted here but carried with their [`Origin`] so the backend's (or
//! framing's) own validation can name the file and line (or the argument) in
//! its error. Only options the user gave are carried (no backend defaults
//! are injected), so a backend can tell an explicit `port` from its default
//! (spec case 53).
//!
//! Differences from the original, on purpose:
//! * A config file may be combined with flags. The file is applied first,
//!   wherever the file name appears on the command line; then flags
//!   override its `[core]` values and `-c` options are appended after its
//!   `[backend]` options (and `--framing-option`s after its `[framing:NAME]`
//!   lines).
//! * All backend options go to the final backend. The original discarded
//!   options given before a `-b` (or before a later `backend =`), because
//!   loading a backend reset the previous one; here a warning is logged
//!   when that situation arises and the options are kept.
//! * Bad input is an error instead of being ignored or wrapped: unknown
//!   flags, `-p 80000`, an odd trailing flag, a `[section]` header other
//!   than `[core]`/`[backend]`/`[framing:NAME]`.
//! * Lines whose first non-blank character is `#` or `;` are comments even
//!   when they contain `=` (the original passed `# host = x` to the backend).
//! * Timeouts accept fractional seconds; `--max-message-size` accepts K/M/G.
//! * A repeated flag takes its last value, like the original's left-to-right
//!   processing; repeated `-c` options all apply, in order.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

/// Where a setting came from, for one-line error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `-c key=value` or `--framing-option name:key=value` on the command
    /// line. Holds the option as `-c key=value` (`--framing-option
    /// name:key=value`), so it reads as `argument '-c key=value'`.
    Argument(String),
    /// A line of a configuration file (1-based).
    File { path: String, line: usize },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Argument(a) => write!(f, "argument '{a}'"),
            Origin::File { path, line } => write!(f, "{path}:{line}"),
        }
    }
}

/// One `key = value` for the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendOption {
    pub key: String,
    pub value: String,
    pub origin: Origin,
}

/// One `key = value` for a framing's [`configure`](crate::framing::Framing::configure):
/// a line of a `[framing:NAME]` section or a `--framing-option NAME:KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramingOption {
    /// The framing's name, as `framing = NAME` selects it.
    pub framing: String,
    pub key: String,
    pub value: String,
    pub origin: Origin,
}

/// Everything the bridge needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Listen address (host name or literal, brackets allowed for IPv6). Default `::`.
    pub listen: String,
    /// Listen port; 0 binds an ephemeral port. Default 8001.
    pub port: u16,
    /// Keep-alive ping after this much silence from the client; `None` = off (`-k 0`). Default 30 s.
    pub ping: Option<Duration>,
    /// How long to wait for a pong (or any frame) after a keep-alive ping. Default 10 s.
    pub pong_timeout: Duration,
    /// Backend name; `defaultpeer` is the built-in one.
    pub backend: String,
    /// Backend options in the order given.
    pub backend_options: Vec<BackendOption>,
    /// Framings' library-level options in the order given: the file's
    /// `[framing:NAME]` lines, then `--framing-option`s.
    pub framing_options: Vec<FramingOption>,
    /// Peer connect timeout. Default 10 s.
    pub connect_timeout: Duration,
    /// Time allowed from accept to a complete upgrade request. Default 10 s.
    pub handshake_timeout: Duration,
    /// Close open connections with no traffic in either direction for this long; `None` = off (default).
    pub idle_timeout: Option<Duration>,
    /// Largest WebSocket message accepted or produced. Default 64 MiB.
    pub max_message_size: usize,
    /// Connection cap; `None` = derived from the descriptor limit.
    pub max_connections: Option<usize>,
    /// On SIGINT/SIGTERM, how long open connections get to finish their close handshake. Default 5 s.
    pub drain_timeout: Duration,
    /// The config file this came from, if any.
    pub config_file: Option<String>,
    /// Where plugins are discovered (`--plugin-dir`); `None` = the default
    /// search (see `plugin::loader`).
    pub plugin_dir: Option<PathBuf>,
    /// Plugin libraries loaded explicitly (`--plugin`, `[core] plugin`), in order.
    pub plugins: Vec<PathBuf>,
    /// After events, keep polling without sleeping this long before blocking
    /// (`--busy-poll`, microseconds). Zero (default) = off.
    pub busy_poll: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "::".into(),
            port: 8001,
            ping: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(10),
            backend: "defaultpeer".into(),
            backend_options: Vec::new(),
            framing_options: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: None,
            max_message_size: 64 << 20,
            max_connections: None,
            drain_timeout: Duration::from_secs(5),
            config_file: None,
            plugin_dir: None,
            plugins: Vec::new(),
            busy_poll: Duration::ZERO,
        }
    }
}

/// A start-up error: one line, printed as `websocksy: <message>`, exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The outcome of [`parse_args`] when the arguments are valid.
// Made once per process: boxing the settings would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Start the bridge with these settings.
    Run(Settings),
    /// `--help`/`-h` or `--version`/`-V`: print `text` to stdout as is (it
    /// ends with a newline) and exit with `code` (0) without starting.
    Exit { text: String, code: i32 },
}

/// Parses the command line (`args` includes argv\[0\]) and the config file it
/// names, if any.
///
/// Never exits the process and never prints: `--help`/`--version` come back
/// as [`Parsed::Exit`], every problem as a one-line [`ConfigError`] meant to be
/// printed as `websocksy: <message>` with exit status 2. Unknown `[core]`
/// keys and ignored file lines are reported with `log::warn!`, so the logger
/// should be set up before this is called.
pub fn parse_args<I, T>(args: I) -> Result<Parsed, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => return clap_outcome(&err),
    };
    let mut settings = Settings::default();
    if let Some(path) = &cli.config_file {
        apply_config_file(&mut settings, path)?;
        settings.config_file = Some(path.display().to_string());
    }
    cli.apply(&mut settings);
    Ok(Parsed::Run(settings))
}

/// Turns clap's multi-line report into either the help/version outcome or a
/// single error line.
fn clap_outcome(err: &clap::Error) -> Result<Parsed, ConfigError> {
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
  busy-poll);
  unknown [core] keys are ignored with a warning. [backend] lines go to the backend in order,
  like -c options. [framing:NAME] lines are library-level options of the framing NAME
  (the name 'framing =' selects), like --framing-option NAME:KEY=VALUE; a connection's
  framing-config still overrides them. The built-in framings take none.

Backend 'defaultpeer' (built in) takes host ([tcp|udp|unix|unix-dgram|
fifotx|fiforx]://ADDRESS), port, framing, framing-config and protocol, e.g.:
  websocksy -p 8001 -c host=tcp://127.0.0.1 -c port=5900 -c framing=newline

Plugins: every *.so in the plugin directory not named backend_* is loaded at
start-up (its framings replace built-ins of the same name). -b NAME loads
backend_NAME.so (or libbackend_NAME.so) from there; -b PATH loads a file.
Default directory: the first that exists of <exe dir>/plugins,
<exe dir>/../lib/websocksy and <exe dir>. Plugin log lines use the target
websocksy::plugin::<file stem> (RUST_LOG=websocksy::plugin::NAME=debug).";

/// The command line. Defaults are applied by [`Settings::default`], not by
/// clap, so that a flag left out does not override the config file.
#[derive(Parser, Debug)]
#[command(
    name = "websocksy",
    version,
    about = "Bridge between WebSocket clients and TCP, UDP and Unix sockets",
    long_about = None,
    after_help = AFTER_HELP,
    args_override_self = true,
    next_line_help = true
)]
struct Cli {
    /// Listen port for WebSocket clients, 0-65535; 0 picks a free port [default: 8001]
    #[arg(short = 'p', long, value_name = "PORT",
          value_parser = port_value, allow_negative_numbers = true)]
    port: Option<u16>,

    /// Listen address: host name or IP literal, IPv6 with or without brackets [default: ::]
    #[arg(short = 'l', long, value_name = "ADDR", value_parser = listen_value)]
    listen: Option<String>,

    /// Send a keep-alive ping after this much silence from a client; 0 disables [default: 30]
    #[arg(short = 'k', long, value_name = "SECONDS",
          value_parser = seconds_or_off, allow_negative_numbers = true)]
    ping: Option<OrOff>,

    /// Peer discovery backend [default: defaultpeer]
    #[arg(short = 'b', long, value_name = "NAME", value_parser = backend_value)]
    backend: Option<String>,

    /// Pass KEY=VALUE to the backend (split at the first '='); repeatable, kept in order
    #[arg(short = 'c', long = "backend-option", value_name = "KEY=VALUE",
          value_parser = backend_option_value)]
    backend_options: Vec<(String, String)>,

    /// Pass KEY=VALUE to framing NAME as a library-level option; repeatable, kept in order
    #[arg(long = "framing-option", value_name = "NAME:KEY=VALUE",
          value_parser = framing_option_value)]
    framing_options: Vec<(String, String, String)>,

    /// Give up connecting to a peer after SECS [default: 10]
    #[arg(long, value_name = "SECS", value_parser = seconds, allow_negative_numbers = true)]
    connect_timeout: Option<Duration>,

    /// Close a client that has not completed its upgrade request within SECS [default: 10]
    #[arg(long, value_name = "SECS", value_parser = seconds, allow_negative_numbers = true)]
    handshake_timeout: Option<Duration>,

    /// Close a connection with no traffic either way for SECS; 0 disables [default: 0]
    #[arg(long, value_name = "SECS", value_parser = seconds_or_off, allow_negative_numbers = true)]
    idle_timeout: Option<OrOff>,

    /// Close a client that sends nothing within SECS of a keep-alive ping [default: 10]
    #[arg(long, value_name = "SECS", value_parser = seconds, allow_negative_numbers = true)]
    pong_timeout: Option<Duration>,

    /// Largest WebSocket message accepted or sent; K, M, G suffixes are binary [default: 64M]
    #[arg(long, value_name = "BYTES", value_parser = size_value, allow_negative_numbers = true)]
    max_message_size: Option<usize>,

    /// Stop accepting beyond N open connections [default: from the file descriptor limit]
    #[arg(long, value_name = "N", value_parser = count_value, allow_negative_numbers = true)]
    max_connections: Option<usize>,

    /// On SIGINT/SIGTERM, give open connections SECS to finish closing [default: 5]
    #[arg(long, value_name = "SECS", value_parser = seconds, allow_negative_numbers = true)]
    drain_timeout: Option<Duration>,

    /// Directory of plugin libraries loaded at start-up [default: <exe dir>/plugins, ...]
    #[arg(long, value_name = "DIR", value_parser = path_value)]
    plugin_dir: Option<PathBuf>,

    /// After traffic, poll MICROS more without sleeping: lower latency for CPU [default: 0]
    #[arg(long, value_name = "MICROS", value_parser = micros_value, allow_negative_numbers = true)]
    busy_poll: Option<Duration>,

    /// Load this plugin library (.so) too; repeatable
    #[arg(long = "plugin", value_name = "PATH", value_parser = path_value)]
    plugins: Vec<PathBuf>,

    /// INI-like configuration file, applied before the other options (see below)
    #[arg(value_name = "CONFIG_FILE")]
    config_file: Option<PathBuf>,
}

impl Cli {
    fn apply(self, s: &mut Settings) {
        if let Some(v) = self.port {
            s.port = v;
        }
        if let Some(v) = self.listen {
            s.listen = v;
        }
        if let Some(OrOff(v)) = self.ping {
            s.ping = v;
        }
        if let Some(v) = self.backend {
            set_backend(s, v, "--backend");
        }
        if let Some(v) = self.connect_timeout {
            s.connect_timeout = v;
        }
        if let Some(v) = self.handshake_timeout {
            s.handshake_timeout = v;
        }
        if let Some(OrOff(v)) = self.idle_timeout {
            s.idle_timeout = v;
        }
        if let Some(v) = self.pong_timeout {
            s.pong_timeout = v;
        }
        if let Some(v) = self.max_message_size {
            s.max_message_size = v;
        }
        if let Some(v) = self.max_connections {
            s.max_connections = Some(v);
        }
        if let Some(v) = self.drain_timeout {
            s.drain_timeout = v;
        }
        if let Some(v) = self.plugin_dir {
            s.plugin_dir = Some(v);
        }
        if let Some(v) = self.busy_poll {
            s.busy_poll = v;
        }
        s.plugins.extend(self.plugins);
        s.backend_options
            .extend(self.backend_options.into_iter().map(|(key, value)| {
                let origin = Origin::Argument(format!("-c {key}={value}"));
                BackendOption { key, value, origin }
            }));
        s.framing_options.extend(
            self.framing_options
                .into_iter()
                .map(|(framing, key, value)| {
                    let origin =
                        Origin::Argument(format!("--framing-option {framing}:{key}={value}"));
                    FramingOption {
                        framing,
                        key,
                        value,
                        origin,
                    }
                }),
        );
    }
}

/// Sets the backend name, warning where the original would have silently
/// dropped the options collected so far.
fn set_backend(s: &mut Settings, name: String, at: &str) {
    if name != s.backend && !s.backend_options.is_empty() {
        log::warn!(
            "{at}: backend changed from '{}' to '{name}' after {} backend option(s); \
             they are passed to '{name}'",
            s.backend,
            s.backend_options.len()
        );
    }
    s.backend = name;
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Section {
    Core,
    Backend,
    /// `[framing:NAME]`, holding NAME.
    Framing(String),
}

/// Far beyond any real configuration; without a limit, `websocksy
/// /dev/urandom` (or a file that keeps growing) would eat memory forever.
const MAX_FILE_SIZE: u64 = 1 << 20;

fn apply_config_file(s: &mut Settings, path: &Path) -> Result<(), ConfigError> {
    let name = path.display().to_string();
    let bytes = read_config_file(path)
        .map_err(|why| ConfigError(format!("cannot read config file '{name}': {why}")))?;
    apply_config_text(s, &name, &bytes)
}

/// Reads a regular file of at most [`MAX_FILE_SIZE`] bytes.
fn read_config_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    // Stat before opening: opening a FIFO blocks until a writer comes, and
    // the bridge would hang silently before it even listens.
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    check_regular_file(&meta)?;
    // Non-blocking, in case the path became a FIFO since the stat; the
    // second check below then refuses it. Regular files ignore the flag.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    check_regular_file(&file.metadata().map_err(|e| e.to_string())?)?;
    read_bounded(file, MAX_FILE_SIZE)
}

fn check_regular_file(meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let kind = if t.is_file() {
        if meta.len() > MAX_FILE_SIZE {
            return Err(too_large());
        }
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "of an unknown type"
    };
    Err(format!("not a regular file ({kind})"))
}

/// Reads at most `limit` bytes; the stat's size is only a hint, since a file
/// may grow after it (and files under /proc report 0).
fn read_bounded(r: impl std::io::Read, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    r.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

fn too_large() -> String {
    format!(
        "larger than {} MiB, the limit for a configuration file",
        MAX_FILE_SIZE >> 20
    )
}

/// Applies the file's contents; `name` is only used in messages and origins.
fn apply_config_text(s: &mut Settings, name: &str, bytes: &[u8]) -> Result<(), ConfigError> {
    // Editors on Windows may prepend a BOM, which would hide the first header.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut section = Section::Core;
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let at = Origin::File {
            path: name.to_string(),
            line: index + 1,
        };
        let line = std::str::from_utf8(raw)
            .map_err(|_| ConfigError(format!("{at}: not valid UTF-8")))?
            .trim_end();
        // Prefix match at column 0 like the original, so `[core] # x` works.
        if line.starts_with('[') {
            section =
                if line.starts_with("[core]") {
                    Section::Core
                } else if line.starts_with("[backend]") {
                    Section::Backend
                } else if let Some(rest) = line.strip_prefix("[framing:") {
                    Section::Framing(framing_section_name(rest).map_err(|why| {
                        ConfigError(format!("{at}: invalid section '{line}': {why}"))
                    })?)
                } else {
                    return Err(ConfigError(format!(
                        "{at}: unknown section '{line}' \
                     (expected [core], [backend] or [framing:NAME], case-sensitive)"
                    )));
                };
            continue;
        }
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') || content.starts_with(';') {
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            if content.starts_with('[') {
                log::warn!(
                    "{at}: ignoring indented '{content}': section headers start in column 0"
                );
            } else {
                log::warn!("{at}: ignoring line without '='");
            }
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(ConfigError(format!("{at}: missing key before '='")));
        }
        match &section {
            Section::Core => match apply_core_key(s, key, value, &at) {
                Ok(true) => {}
                Ok(false) => log::warn!("{at}: ignoring unknown [core] key '{key}'"),
                Err(reason) => {
                    return Err(ConfigError(format!(
                        "{at}: invalid value '{value}' for '{key}': {reason}"
                    )))
                }
            },
            Section::Backend => s.backend_options.push(BackendOption {
                key: key.to_string(),
                value: value.to_string(),
                origin: at,
            }),
            Section::Framing(framing) => s.framing_options.push(FramingOption {
                framing: framing.clone(),
                key: key.to_string(),
                value: value.to_string(),
                origin: at,
            }),
        }
    }
    Ok(())
}

/// Returns `Ok(false)` for a key `[core]` does not know.
fn apply_core_key(s: &mut Settings, key: &str, value: &str, at: &Origin) -> Result<bool, String> {
    match key {
        "port" => s.port = port_value(value)?,
        "listen" => s.listen = listen_value(value)?,
        "ping" => s.ping = seconds_or_off(value)?.0,
        "backend" => set_backend(s, backend_value(value)?, &at.to_string()),
        "connect-timeout" => s.connect_timeout = seconds(value)?,
        "handshake-timeout" => s.handshake_timeout = seconds(value)?,
        "idle-timeout" => s.idle_timeout = seconds_or_off(value)?.0,
        "pong-timeout" => s.pong_timeout = seconds(value)?,
        "max-message-size" => s.max_message_size = size_value(value)?,
        "max-connections" => s.max_connections = Some(count_value(value)?),
        "drain-timeout" => s.drain_timeout = seconds(value)?,
        "plugin-dir" => s.plugin_dir = Some(path_value(value)?),
        "plugin" => s.plugins.push(path_value(value)?),
        "busy-poll" => s.busy_poll = micros_value(value)?,
        _ => return Ok(false),
    }
    Ok(true)
}

// Value parsers, shared by clap and the file so both report the same reason.

fn port_value(v: &str) -> Result<u16, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a port number 0-65535".into());
    }
    v.parse()
        .map_err(|_| "out of range, a port is 0-65535".to_string())
}

fn listen_value(v: &str) -> Result<String, String> {
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

fn path_value(v: &str) -> Result<PathBuf, String> {
    if v.is_empty() {
        return Err("expected a path".into());
    }
    Ok(PathBuf::from(v))
}

fn backend_value(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Err("expected a backend name".into());
    }
    Ok(v.to_string())
}

/// Not trimmed: on the command line, spaces are deliberate (a separator
/// framing may need a value of " ").
fn backend_option_value(v: &str) -> Result<(String, String), String> {
    match v.split_once('=') {
        Some(("", _)) => Err("expected KEY=VALUE, the key is empty".into()),
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
        None => Err("expected KEY=VALUE".into()),
    }
}

/// A framing name as `framing = NAME` gives it: not empty, no whitespace,
/// no control characters (the host refuses such names at registration).
fn framing_name_value(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Err("the framing name is empty".into());
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("the framing name '{v}' has spaces"));
    }
    Ok(v.to_string())
}

/// NAME of a `[framing:NAME]` header, from what follows `[framing:`. Like
/// the other headers, anything after the `]` is ignored.
fn framing_section_name(rest: &str) -> Result<String, String> {
    let Some((name, _)) = rest.split_once(']') else {
        return Err("expected [framing:NAME]".into());
    };
    framing_name_value(name)
}

/// `NAME:KEY=VALUE`, split at the first ':' and the first '=' after it. Not
/// trimmed, like `-c`.
fn framing_option_value(v: &str) -> Result<(String, String, String), String> {
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

/// A duration where 0 means "off".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OrOff(Option<Duration>);

fn seconds_or_off(v: &str) -> Result<OrOff, String> {
    let secs = seconds_f64(v)?;
    if secs == 0.0 {
        return Ok(OrOff(None));
    }
    positive_duration(secs).map(|d| OrOff(Some(d)))
}

/// Microseconds, 0 to 1 s.
fn micros_value(v: &str) -> Result<Duration, String> {
    match v.trim().parse::<u64>() {
        Ok(n) if n <= 1_000_000 => Ok(Duration::from_micros(n)),
        _ => Err("expected a number of microseconds from 0 to 1000000".into()),
    }
}

fn seconds(v: &str) -> Result<Duration, String> {
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

fn size_value(v: &str) -> Result<usize, String> {
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

fn count_value(v: &str) -> Result<usize, String> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a whole number of at least 1".into());
    }
    match v.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("too large".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A file under the temp dir, removed on drop; unique per process and call
    /// so parallel tests (and parallel test runs) never share one.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(contents: &[u8]) -> TempFile {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "websocksy-config-test-{}-{n}.cfg",
                std::process::id()
            ));
            std::fs::write(&path, contents).expect("write temp config");
            TempFile(path)
        }

        fn path(&self) -> String {
            self.0.display().to_string()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn run(args: &[&str]) -> Settings {
        let argv = std::iter::once("websocksy").chain(args.iter().copied());
        match parse_args(argv) {
            Ok(Parsed::Run(s)) => s,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    fn fail(args: &[&str]) -> String {
        let argv = std::iter::once("websocksy").chain(args.iter().copied());
        match parse_args(argv) {
            Err(ConfigError(msg)) => {
                assert!(!msg.contains('\n'), "not one line: {msg:?}");
                assert!(!msg.starts_with("error:"), "{msg:?}");
                msg
            }
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    fn exit(args: &[&str]) -> (String, i32) {
        let argv = std::iter::once("websocksy").chain(args.iter().copied());
        match parse_args(argv) {
            Ok(Parsed::Exit { text, code }) => (text, code),
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    fn arg_opt(key: &str, value: &str) -> BackendOption {
        BackendOption {
            key: key.into(),
            value: value.into(),
            origin: Origin::Argument(format!("-c {key}={value}")),
        }
    }

    fn file_opt(key: &str, value: &str, path: &str, line: usize) -> BackendOption {
        BackendOption {
            key: key.into(),
            value: value.into(),
            origin: Origin::File {
                path: path.into(),
                line,
            },
        }
    }

    const SECS: fn(u64) -> Duration = Duration::from_secs;

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

    const SPEC_EXAMPLE: &str = "[core]
port = 8951
listen = 127.0.0.1
ping = 0
[backend]
host = tcp://127.0.0.1
port = 7951
framing = newline
framing-config = lf
protocol = *
";

    #[test]
    fn spec_example_file_matches_its_equivalent_command_line() {
        let file = TempFile::new(SPEC_EXAMPLE.as_bytes());
        let path = file.path();
        let from_file = run(&[&path]);
        let from_cli = run(&[
            "-l",
            "127.0.0.1",
            "-p",
            "8951",
            "-k",
            "0",
            "-c",
            "host=tcp://127.0.0.1",
            "-c",
            "port=7951",
            "-c",
            "framing=newline",
            "-c",
            "framing-config=lf",
            "-c",
            "protocol=*",
        ]);
        // Only the origins (and the recorded file name) may differ.
        let strip = |s: &Settings| {
            let mut s = s.clone();
            s.config_file = None;
            for o in &mut s.backend_options {
                o.origin = Origin::Argument(String::new());
            }
            s
        };
        assert_eq!(strip(&from_file), strip(&from_cli));
        assert_eq!(from_file.config_file, Some(path.clone()));
        assert_eq!(from_file.ping, None);
        assert_eq!(
            from_file.backend_options,
            vec![
                file_opt("host", "tcp://127.0.0.1", &path, 6),
                file_opt("port", "7951", &path, 7),
                file_opt("framing", "newline", &path, 8),
                file_opt("framing-config", "lf", &path, 9),
                file_opt("protocol", "*", &path, 10),
            ]
        );
        assert_eq!(
            from_file.backend_options[0].origin.to_string(),
            format!("{path}:6")
        );
    }

    #[test]
    fn spec_file_backend_example_keeps_repeated_keys() {
        let file = TempFile::new(
            b"[core]\nport = 8000\nbackend = file\n\n[backend]\npath = files/\n\
              expression = %endpoint%.txt\nexpression = %cookie:session%.txt\n",
        );
        let s = run(&[&file.path()]);
        assert_eq!((s.port, s.backend.as_str()), (8000, "file"));
        let keys: Vec<_> = s
            .backend_options
            .iter()
            .map(|o| (o.key.as_str(), o.value.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("path", "files/"),
                ("expression", "%endpoint%.txt"),
                ("expression", "%cookie:session%.txt")
            ]
        );
    }

    #[test]
    fn crlf_file_works() {
        let file = TempFile::new(SPEC_EXAMPLE.replace('\n', "\r\n").as_bytes());
        let path = file.path();
        let s = run(&[&path]);
        assert_eq!(
            (s.port, s.listen.as_str(), s.ping),
            (8951, "127.0.0.1", None)
        );
        assert_eq!(s.backend_options[4], file_opt("protocol", "*", &path, 10));
    }

    #[test]
    fn comments_blank_and_equals_less_lines() {
        let file = TempFile::new(
            b"# top comment\n; port = 1\n\n   \t\n[backend] ; trailing text\n\
              # host = not-a-backend-key\n  ; framing = x\nhost=a\nno equals sign here\n\
              \x20 [core]\nport = 2\n",
        );
        let path = file.path();
        let s = run(&[&path]);
        // The indented `[core]` is not a header, so `port = 2` stays in [backend].
        assert_eq!(s.port, 8001);
        assert_eq!(
            s.backend_options,
            vec![
                file_opt("host", "a", &path, 8),
                file_opt("port", "2", &path, 11)
            ]
        );
    }

    #[test]
    fn section_headers() {
        let file = TempFile::new(b"[backend]\nport = 1\n[core]junk\nport = 2\n");
        let s = run(&[&file.path()]);
        assert_eq!(s.port, 2);
        assert_eq!(s.backend_options.len(), 1);

        let file = TempFile::new(b"[core]\nport = 2\n[Core]\nport = 3\n");
        let msg = fail(&[&file.path()]);
        assert_eq!(
            msg,
            format!(
                "{}:3: unknown section '[Core]' \
                 (expected [core], [backend] or [framing:NAME], case-sensitive)",
                file.path()
            )
        );
        let file = TempFile::new(b"[backendx]\n");
        assert!(fail(&[&file.path()]).contains(":1: unknown section '[backendx]'"));
    }

    fn framing_opt(framing: &str, key: &str, value: &str, origin: Origin) -> FramingOption {
        FramingOption {
            framing: framing.into(),
            key: key.into(),
            value: value.into(),
            origin,
        }
    }

    fn at(path: &str, line: usize) -> Origin {
        Origin::File {
            path: path.into(),
            line,
        }
    }

    #[test]
    fn framing_sections_and_flags_keep_order_and_origins() {
        let file = TempFile::new(
            b"[core]\nport = 1\n[framing:json]\nmax-depth = 4\n# invalid = binary\n\
              invalid = close\n[framing:semicolon] ; trailing text\nseparator = a=b\n\
              [backend]\nframing = json\n[framing:json]\nmax-depth=8\n",
        );
        let path = file.path();
        // The file's lines come first, wherever the file name stands.
        let s = run(&[
            "--framing-option",
            "json:max-depth=2",
            &path,
            "--framing-option=semicolon:k= a:b=c ",
        ]);
        assert_eq!(s.port, 1);
        assert_eq!(
            s.backend_options,
            vec![file_opt("framing", "json", &path, 10)]
        );
        let arg = |a: &str| Origin::Argument(a.into());
        assert_eq!(
            s.framing_options,
            vec![
                framing_opt("json", "max-depth", "4", at(&path, 4)),
                framing_opt("json", "invalid", "close", at(&path, 6)),
                framing_opt("semicolon", "separator", "a=b", at(&path, 8)),
                framing_opt("json", "max-depth", "8", at(&path, 12)),
                framing_opt(
                    "json",
                    "max-depth",
                    "2",
                    arg("--framing-option json:max-depth=2")
                ),
                framing_opt(
                    "semicolon",
                    "k",
                    " a:b=c ",
                    arg("--framing-option semicolon:k= a:b=c ")
                ),
            ]
        );
        assert_eq!(s.framing_options[2].origin.to_string(), format!("{path}:8"));
        assert_eq!(
            s.framing_options[4].origin.to_string(),
            "argument '--framing-option json:max-depth=2'"
        );
        assert!(run(&[]).framing_options.is_empty());
    }

    #[test]
    fn bad_framing_sections_name_file_and_line() {
        for (text, why) in [
            ("[framing:]\n", "the framing name is empty"),
            ("[framing:a b]\n", "the framing name 'a b' has spaces"),
            ("[framing:json\n", "expected [framing:NAME]"),
        ] {
            let file = TempFile::new(format!("[core]\n{text}").as_bytes());
            let header = text.trim_end();
            assert_eq!(
                fail(&[&file.path()]),
                format!("{}:2: invalid section '{header}': {why}", file.path())
            );
        }
        // Case-sensitive, like the others.
        let file = TempFile::new(b"[Framing:json]\n");
        assert!(fail(&[&file.path()]).contains(":1: unknown section '[Framing:json]'"));
        let file = TempFile::new(b"[framing:json]\n = 1\n");
        assert_eq!(
            fail(&[&file.path()]),
            format!("{}:2: missing key before '='", file.path())
        );
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
    fn unknown_core_key_is_ignored() {
        let file = TempFile::new(b"[core]\nbogus = 1\nPort = 5\nport = 7\n");
        let s = run(&[&file.path()]);
        assert_eq!(
            s,
            Settings {
                port: 7,
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

    #[test]
    fn missing_file_names_path_and_os_error() {
        let file = TempFile::new(b"");
        let path = format!("{}.missing", file.path());
        let msg = fail(&[&path]);
        assert!(
            msg.starts_with(&format!("cannot read config file '{path}': ")),
            "{msg}"
        );
        assert!(msg.contains("os error"), "{msg}");
        let dir = std::env::temp_dir().display().to_string();
        assert!(fail(&[&dir]).starts_with("cannot read config file"));
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = std::env::temp_dir().display().to_string();
        assert_eq!(
            fail(&[&dir]),
            format!("cannot read config file '{dir}': not a regular file (a directory)")
        );
        assert_eq!(
            fail(&["/dev/null"]),
            "cannot read config file '/dev/null': not a regular file (a character device)"
        );
    }

    #[test]
    fn file_size_is_bounded() {
        let mut big = b"[core]\nport = 1\n".to_vec();
        big.resize(MAX_FILE_SIZE as usize, b'\n');
        let file = TempFile::new(&big);
        assert_eq!(run(&[&file.path()]).port, 1);
        big.push(b'\n');
        let file = TempFile::new(&big);
        assert_eq!(
            fail(&[&file.path()]),
            format!(
                "cannot read config file '{}': \
                 larger than 1 MiB, the limit for a configuration file",
                file.path()
            )
        );
        // A source that never ends (or grows after the stat) is cut off too.
        assert_eq!(read_bounded(std::io::repeat(b'#'), 10), Err(too_large()));
        assert_eq!(
            read_bounded(&b"0123456789"[..], 10),
            Ok(b"0123456789".to_vec())
        );
    }

    #[test]
    fn bom_and_empty_file() {
        let file = TempFile::new(b"\xEF\xBB\xBF[backend]\nhost = x\n");
        assert_eq!(run(&[&file.path()]).backend_options.len(), 1);
        let file = TempFile::new(b"");
        assert_eq!(run(&[&file.path()]).port, 8001);
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
