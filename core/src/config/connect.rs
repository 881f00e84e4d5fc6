//! Client connections: `websocksy connect URL --from LOCAL [options]` and
//! each `[connect]` section of a configuration file. Each one dials a
//! WebSocket server for a local side (a listener that makes one connection
//! per local client, one peer kept connected, the mirror, or standard
//! input and output).

use std::path::PathBuf;
use std::time::Duration;

use crate::peer::PeerAddress;
use crate::ws::url::Url;

/// One client connection, as given.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectSettings {
    /// Where it was given (`command line`, or `FILE:LINE` of its
    /// `[connect]` header), for messages.
    pub at: String,
    pub url: Url,
    pub from: Local,
    /// A built-in or plugin framing; default `auto`, as in server mode.
    pub framing: String,
    pub framing_config: Option<String>,
    /// Extra request headers (`--header 'Name: value'`), in order.
    pub headers: Vec<(String, String)>,
    /// Basic credentials (`--auth $NAME | FILE`, or the URL's user info),
    /// read at start-up: user and password.
    pub auth: Option<(String, String)>,
    /// Subprotocols to offer (`--protocol`), in order.
    pub protocols: Vec<String>,
    /// The `Origin` header to send.
    pub origin: Option<String>,
    /// Sent first on every new connection (`--open-message`,
    /// `--open-message-file`, `--open-message-binary`).
    pub open_message: Option<OpenMessage>,
    /// Connect plus TLS plus upgrade, per attempt. Default 10 s.
    pub timeout: Duration,
    /// TLS to the server: CAs (`--ca`, default: the system's), a client
    /// certificate (`--cert`/`--key`), the SNI name (`--sni`, default the
    /// URL's host unless it is an IP literal), no verification (`--insecure`).
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub sni: Option<String>,
    pub insecure: bool,
    /// Keep-alive as on the server: ping after this much silence (default
    /// 30 s, `None` = off), close after `pong_timeout` without an answer.
    pub ping: Option<Duration>,
    pub pong_timeout: Duration,
    /// Close after this long without traffic; `udp-listen` sessions use
    /// 60 s when unset (a datagram source never says it is done).
    pub idle_timeout: Option<Duration>,
    pub direction: Direction,
    pub retry: Retry,
}

/// The local side of a client connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// `tcp-listen://ADDR:PORT`: one WebSocket connection per accepted client.
    TcpListen { host: String, port: u16 },
    /// `unix-listen:///path`.
    UnixListen(PathBuf),
    /// `udp-listen://ADDR:PORT`: one WebSocket connection per source address.
    UdpListen { host: String, port: u16 },
    /// `tcp://`, `udp://`, `unix://`, `unix-dgram://`, `tls://`,
    /// `mirror://`: one peer, one WebSocket connection.
    Peer(PeerAddress),
    /// `-`: standard input and output.
    Stdio,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Both,
    /// `--write-only`: local to remote; what the server sends is dropped.
    WriteOnly,
    /// `--read-only`: remote to local; the local side is not read.
    ReadOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenMessage {
    pub bytes: Vec<u8>,
    /// Sent as a binary message (`--open-message-binary`), else text.
    pub binary: bool,
}

/// Reconnects (`--retry` and its knobs).
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    pub enabled: bool,
    /// First wait (default 0.5 s), multiplied by `growth` (default 2) per
    /// failed attempt up to `max_interval` (default 30 s); each wait is
    /// drawn uniformly below that bound (full jitter).
    pub interval: Duration,
    pub growth: f64,
    pub max_interval: Duration,
    /// Attempts after the first failure; 0 = unlimited (default).
    pub max: u32,
    /// Local bytes held while disconnected before the local side is no
    /// longer read (default 1 MiB).
    pub buffer: usize,
    /// Retry after 401 and 403 too.
    pub on_auth_failure: bool,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            enabled: false,
            interval: Duration::from_millis(500),
            growth: 2.0,
            max_interval: Duration::from_secs(30),
            max: 0,
            buffer: 1 << 20,
            on_auth_failure: false,
        }
    }
}

impl ConnectSettings {
    /// A connection with every option at its default.
    pub fn new(url: Url, from: Local, at: String) -> ConnectSettings {
        ConnectSettings {
            at,
            url,
            from,
            framing: "auto".into(),
            framing_config: None,
            headers: Vec::new(),
            auth: None,
            protocols: Vec::new(),
            origin: None,
            open_message: None,
            timeout: Duration::from_secs(10),
            ca: None,
            cert: None,
            key: None,
            sni: None,
            insecure: false,
            ping: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(10),
            idle_timeout: None,
            direction: Direction::Both,
            retry: Retry::default(),
        }
    }
}
