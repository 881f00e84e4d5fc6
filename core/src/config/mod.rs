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
//! * The file must be a regular file of at most 1 MiB, and a listen address
//!   that cannot parse is refused here (exit status 2), not by the resolver.
//!
//! Where things are: `keys.rs` is the one table of `[core]` keys (name,
//! parser, where the value goes, help line), read by `cli.rs` (clap, plus
//! `-c`, `--framing-option` and the file name) and by `file.rs` (the INI
//! reader); `values.rs` holds the value parsers both share, so an option
//! and its `[core]` key refuse a value with the same reason.
//! `connect_keys.rs` is the same kind of table for client connections:
//! the options after `websocksy connect` and the keys of `[connect]`
//! sections, checked as a whole once both are applied.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::spin::BusyPoll;

pub use connect::{ConnectSettings, Direction, Local, OpenMessage, Retry};
/// For backends' own options (`defaultpeer`'s `hub-*`), parsed as `[core]` values are.
pub(crate) use values::{bool_value, seconds_or_off, size_value};

mod cli;
mod connect;
mod connect_keys;
mod file;
mod keys;
mod values;

#[cfg(test)]
mod testing;

/// Warnings keep the target they had when this was one file, so
/// `RUST_LOG=websocksy::config=...` filters and log lines stay the same.
const LOG_TARGET: &str = "websocksy::config";

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

/// A setting with where it was given (`--cert` or `FILE:LINE`), so an
/// error found later (a certificate that does not load) can name it.
/// Where it came from does not make two settings differ.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub value: T,
    pub at: String,
}

impl<T: PartialEq> PartialEq for Located<T> {
    fn eq(&self, o: &Self) -> bool {
        self.value == o.value
    }
}

/// Whether a TLS listener asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertMode {
    /// The handshake fails without a trusted one.
    Require,
    /// A certificate is checked if sent; none is fine.
    Optional,
}

/// Where a `--bind` listener listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    /// Host name or IP literal (no brackets) and port, 0 for any.
    Tcp {
        host: String,
        port: u16,
    },
    Unix(PathBuf),
}

/// One `--bind` listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindSpec {
    pub addr: BindAddr,
    /// `wss://`: TLS with the `--cert`/`--key` certificate.
    pub tls: bool,
    /// Permission bits of a Unix socket file.
    pub mode: Option<u32>,
    /// Clients come through a proxy that sends a PROXY protocol header.
    pub proxy_protocol: bool,
}

impl fmt::Display for BindSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.addr {
            BindAddr::Tcp { host, port } => {
                let scheme = if self.tls { "wss" } else { "ws" };
                if host.contains(':') {
                    write!(f, "{scheme}://[{host}]:{port}")
                } else {
                    write!(f, "{scheme}://{host}:{port}")
                }
            }
            BindAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
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
    /// After events, keep polling without sleeping before blocking
    /// (`--busy-poll`): a fixed window, an adaptive one, or off.
    pub busy_poll: BusyPoll,
    /// `--threads`: event loops; `None` is one per CPU this process may use.
    pub threads: Option<usize>,
    /// HTTP Basic authentication (`--auth`): `$NAME` or a credentials file,
    /// loaded at start-up; `None` = no authentication.
    pub auth: Option<String>,
    /// Allowed `Origin`s (`--origin`, repeatable), normalised; empty = any.
    pub origins: Vec<String>,
    /// Open connections one client address may hold; `None` = unlimited.
    pub max_connections_per_ip: Option<usize>,
    /// Proxies whose forwarding header (`trusted_proxy_header`) is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `--trusted-proxy unix`: clients of Unix-socket listeners are proxies too.
    pub trusted_unix: bool,
    /// The one header trusted proxies set (`--trusted-proxy-header`).
    pub trusted_proxy_header: crate::forwarded::ForwardedHeader,
    /// Every connection of the `-l`/`-p` listener starts with a PROXY header.
    pub proxy_protocol: bool,
    /// `-l`/`-p` (or `listen`/`port`) were given: with `--bind`, they
    /// still add their listener.
    pub listen_given: bool,
    /// Extra listeners (`--bind`, `bind =`), in order.
    pub binds: Vec<Located<BindSpec>>,
    /// Certificate chain and key (PEM) of TLS listeners; with them the
    /// `-l`/`-p` listener speaks `wss://`.
    pub cert: Option<Located<PathBuf>>,
    pub key: Option<Located<PathBuf>>,
    /// CAs whose client certificates TLS listeners accept (mTLS).
    pub client_ca: Option<Located<PathBuf>>,
    /// Whether a client certificate is required; default `require` when
    /// `client_ca` is set.
    pub client_cert: Option<Located<ClientCertMode>>,
    /// CAs `tls://` peers are verified with, instead of the system's.
    pub peer_ca: Option<Located<PathBuf>>,
    /// A client certificate and key for `tls://` peers.
    pub peer_cert: Option<Located<PathBuf>>,
    pub peer_key: Option<Located<PathBuf>>,
    /// Do not verify `tls://` peers' certificates.
    pub peer_insecure: bool,
    /// Server listeners are bound: true unless this is `websocksy
    /// connect`, or a file with `[connect]` sections that names no
    /// listener (`listen`, `port` or `bind`) and no flag that does.
    pub serve: bool,
    /// Server side `--read-only`: clients only listen; their messages are
    /// read and dropped, never sent to the peer.
    pub read_only: bool,
    /// Client connections (`websocksy connect`, `[connect]` sections).
    pub connects: Vec<ConnectSettings>,
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
            busy_poll: BusyPoll::Off,
            threads: None,
            auth: None,
            origins: Vec::new(),
            max_connections_per_ip: None,
            trusted_proxies: Vec::new(),
            trusted_unix: false,
            trusted_proxy_header: crate::forwarded::ForwardedHeader::XForwardedFor,
            proxy_protocol: false,
            listen_given: false,
            binds: Vec::new(),
            cert: None,
            key: None,
            client_ca: None,
            client_cert: None,
            peer_ca: None,
            peer_cert: None,
            peer_key: None,
            peer_insecure: false,
            serve: true,
            read_only: false,
            connects: Vec::new(),
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
    let cli = match cli::CommandLine::parse(args) {
        Ok(cli) => cli,
        Err(err) => return cli::clap_outcome(&err),
    };
    cli.check_connect()?;
    let connect_mode = cli.is_connect();
    let mut settings = Settings::default();
    let mut drafts = Vec::new();
    if let Some(path) = &cli.config_file {
        file::apply(&mut settings, path, &mut drafts)?;
        settings.config_file = Some(path.display().to_string());
    }
    cli.apply(&mut settings, &mut drafts)?;
    for d in drafts {
        let c = d.finish(&settings)?;
        settings.connects.push(c);
    }
    // A file of client connections alone is a client; one that names a
    // listener as well runs both.
    settings.serve = !connect_mode
        && (settings.connects.is_empty() || settings.listen_given || !settings.binds.is_empty());
    Ok(Parsed::Run(settings))
}
