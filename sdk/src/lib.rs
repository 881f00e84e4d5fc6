//! Write [websocksy] plugins in safe Rust.
//!
//! websocksy bridges WebSocket clients to TCP, UDP and Unix sockets. Two
//! things are pluggable: **backends** choose the peer for each connection
//! from the upgrade request, and **framings** cut the peer's byte stream into
//! WebSocket messages. The plugin ABI is C (`include/websocksy.h`, ABI 2.2);
//! this crate hides it. Its plugins declare ABI 2.0 and also load into 2.0
//! hosts: what 2.1 added ([`Request::user`], [`Request::tls_subject`],
//! [`Request::tls_sans`]) then reads as absent, and what 2.2 added
//! ([`Answer::hub`]) fails with `WSY_EVERSION`. A plugin is
//!
//! - a type implementing [`Framing`] or [`Backend`] (one library may have any
//!   number of both), and
//! - one [`export!`] line that emits the library's entry symbol
//!   `websocksy_plugin_v2`,
//!
//! built as a `cdylib`. Nothing `unsafe` is left to the plugin: every call
//! from the host goes through a trampoline in this crate that checks its
//! pointers, converts the borrowed views into `&str`/`&[u8]`, and catches
//! panics (see [Panics](#panics)).
//!
//! # A complete plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "backend_fixed"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! websocksy-plugin = { path = "../../sdk" }
//! ```
//!
//! `src/lib.rs`, a backend `fixed` that sends every authorised client to one
//! peer, and a framing `records` that sends NUL-terminated records (or
//! records ending in another byte, set in the config file's
//! `[framing:records]` section):
//!
//! ```
//! use websocksy_plugin::{Answer, Backend, ConfigError, Frame, Framing, Opcode, Request};
//!
//! /// Each NUL-terminated record of the peer's stream is one binary message.
//! struct Records {
//!     terminator: u8,
//! }
//!
//! impl Framing for Records {
//!     type State = ();
//!     const NAME: &'static str = "records";
//!
//!     /// `[framing:records]` / `--framing-option records:terminator=10`
//!     fn configure(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
//!         match key {
//!             "terminator" => {
//!                 let byte = value.parse().map_err(|_| ConfigError::Invalid("not a byte".into()))?;
//!                 Ok(self.terminator = byte)
//!             }
//!             _ => Err(ConfigError::UnknownKey),
//!         }
//!     }
//!
//!     fn new_state(&self, config: Option<&str>) -> Result<(), String> {
//!         match config {
//!             None | Some("") => Ok(()),
//!             Some(other) => Err(format!("records takes no config, got {other:?}")),
//!         }
//!     }
//!
//!     fn frame(&self, _state: &mut (), data: &[u8], last_read: usize) -> Frame {
//!         // The bytes before `start` were searched when we last said More.
//!         let start = data.len() - last_read;
//!         match data[start..].iter().position(|&b| b == self.terminator) {
//!             Some(i) => Frame::Message { len: start + i + 1, opcode: Opcode::Binary },
//!             None => Frame::More,
//!         }
//!     }
//! }
//!
//! /// `-b fixed -c peer=tcp://127.0.0.1:5900`
//! #[derive(Default)]
//! struct Fixed {
//!     peer: Option<String>,
//! }
//!
//! impl Backend for Fixed {
//!     const NAME: &'static str = "fixed";
//!     // query never blocks: run it on the event loop.
//!     const NONBLOCKING: bool = true;
//!
//!     fn configure(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
//!         match key {
//!             "peer" => Ok(self.peer = Some(value.to_owned())),
//!             _ => Err(ConfigError::UnknownKey),
//!         }
//!     }
//!
//!     fn start(&mut self) -> Result<(), String> {
//!         self.peer.as_ref().map(|_| ()).ok_or_else(|| "option `peer` is required".into())
//!     }
//!
//!     fn query(&self, request: &Request<'_>, answer: &mut Answer<'_>) -> Result<(), String> {
//!         if request.cookie("session").is_none() {
//!             return Ok(answer.reject(401, "log in first")?);
//!         }
//!         let peer = self.peer.as_deref().unwrap_or_default();
//!         answer.peer(peer)?;
//!         answer.framing("records", None)?;
//!         if let Some(i) = request.protocols().position(|p| p == "records.v1") {
//!             answer.protocol(i)?;
//!         }
//!         websocksy_plugin::info!("{} -> {peer}", request.client_address());
//!         Ok(())
//!     }
//! }
//!
//! websocksy_plugin::export!(backends: [Fixed::default()], framings: [Records { terminator: 0 }]);
//! # fn main() {}
//! ```
//!
//! Build it with `cargo build --release`, put `libbackend_fixed.so` into the
//! plugin directory and run `websocksy -b fixed -c peer=tcp://127.0.0.1:5900`.
//! Libraries that are not `backend_*` are loaded as framing libraries.
//!
//! # Lifetimes and memory
//!
//! The implementations given to [`export!`] are boxed and **leaked on
//! purpose**: the host keeps every plugin library loaded until the process
//! exits and may call into it until then, so there is no point at which they
//! could be freed safely. Per-connection framing state is a `Box` of
//! [`Framing::State`], freed when the host calls `state_free`.
//!
//! # Threads
//!
//! [`Backend::configure`] and [`Backend::start`] run on the host's main
//! thread before any query; [`Backend::query`] runs on the host's worker
//! threads, several at a time (or on the event loop with
//! [`Backend::NONBLOCKING`]). The backend is kept in a [`std::sync::RwLock`]:
//! configuration takes the write lock, queries share the read lock. Under the
//! ABI's rules the two never overlap, so the lock is never contended by a
//! writer; it costs one atomic operation per query and keeps the crate sound
//! even against a host that broke those rules.
//!
//! [`Framing::configure`] also runs on the main thread, before the first
//! connection's state exists; the framing callbacks then run on the event
//! loop thread and must not block. A framing is configured behind a mutex
//! and then moved, once, into a [`std::sync::OnceLock`] that every later
//! call reads: a `frame` call costs one atomic load, not a lock, and a
//! `configure` that comes after the first state is refused instead of
//! racing with the readers.
//!
//! # Panics
//!
//! Unwinding out of an `extern "C"` function aborts the process, so every
//! trampoline runs the plugin's code under [`std::panic::catch_unwind`]. A
//! panic is logged at error level and turned into the failure of that one
//! call: `frame` fails (the host closes that connection with 1011), `query`
//! fails (HTTP 500), `state_new` fails (HTTP 500), a backend's or framing's
//! `configure`, `start` or the entry fail (start-up stops with the panic's
//! message). The process and the
//! other connections carry on.
//!
//! A cdylib has its own copy of the standard library, hence its own panic
//! hook. The entry installs one there that keeps panics inside a callback
//! off standard error and puts their location into the error log line
//! instead (with `RUST_BACKTRACE` set, the backtrace still goes to standard
//! error); any other panic goes to the previous hook. The host's hook is not
//! touched. Build plugins with `panic = "unwind"` (the default): with
//! `panic = "abort"` nothing can be caught.
//!
//! # Logging
//!
//! [`error!`], [`warn!`], [`info!`], [`debug!`] and [`trace!`] send a line to
//! the host, which logs it under the target `websocksy::plugin::NAME`, NAME
//! being the library's file name without `.so`
//! (`RUST_LOG=websocksy::plugin::libframing_json=debug`). The host filters
//! the line, so a disabled level still costs formatting it: keep per-message
//! logging out of hot framing paths. The entry also installs a
//! [`log`](mod@log) logger that forwards records from the `log` crate (a plugin's
//! dependencies) the same way. Before the host is known (unit tests) lines go
//! to standard error.
//!
//! # Testing
//!
//! [`testing`] runs framings and backends without a host: a
//! [`testing::Harness`] feeds a framing reads the way the host does, and a
//! [`testing::TestRequest`] runs a backend's query and records its answer.
//!
//! [websocksy]: https://github.com/cbdevnet/websocksy

#![warn(missing_docs)]

pub mod config;
mod ffi;
mod logging;
mod request;
pub mod testing;

/// The raw ABI (`include/websocksy.h` as `#[repr(C)]` types), re-exported
/// for [`export!`] and for the rare plugin that needs it.
pub use websocksy_abi as abi;

pub use logging::{log, Level};
pub use request::{Answer, Header, HostError, Protocols, Request};

#[doc(hidden)]
pub mod __private {
    pub use crate::ffi::{entry, Registrar};
}

/// The opcode of a message a framing sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// A text message. Bytes that are not valid UTF-8 are sent as binary by
    /// the host.
    Text,
    /// A binary message.
    Binary,
}

impl Opcode {
    /// Text if `data` is valid UTF-8, else binary.
    pub fn detect(data: &[u8]) -> Opcode {
        if std::str::from_utf8(data).is_ok() {
            Opcode::Text
        } else {
            Opcode::Binary
        }
    }

    pub(crate) fn to_raw(self) -> abi::wsy_opcode {
        match self {
            Opcode::Text => abi::WSY_OPCODE_TEXT,
            Opcode::Binary => abi::WSY_OPCODE_BINARY,
        }
    }
}

/// What [`Framing::frame`] decided about the bytes it was shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// No complete message yet: keep the bytes, call again when more arrive.
    More,
    /// Send `data[..len]` as one message. `len` must not exceed the bytes
    /// shown (that is a bug: the connection closes with 1011); `len == 0` is
    /// the same as [`Frame::More`].
    Message {
        /// How many bytes, from the start of `data`.
        len: usize,
        /// How to send them.
        opcode: Opcode,
    },
    /// Drop `data[..len]` without sending anything (same rules for `len`).
    Discard(usize),
    /// The stream cannot be framed: the connection closes with 1011. The
    /// message is logged.
    Error(String),
}

impl Frame {
    /// `Frame::Message { len, opcode: Opcode::Text }`
    pub fn text(len: usize) -> Frame {
        Frame::Message {
            len,
            opcode: Opcode::Text,
        }
    }

    /// `Frame::Message { len, opcode: Opcode::Binary }`
    pub fn binary(len: usize) -> Frame {
        Frame::Message {
            len,
            opcode: Opcode::Binary,
        }
    }
}

/// A framing function: cuts a peer's byte stream into WebSocket messages.
///
/// One value serves every connection (it is shared, hence `Sync`); what a
/// connection needs to remember lives in its [`State`](Self::State). At
/// start-up the host calls [`configure`](Self::configure) once per
/// library-level option, on its main thread. Then, for each connection, it
/// calls [`new_state`](Self::new_state), then [`frame`](Self::frame)
/// whenever bytes arrive, then [`finish`](Self::finish) if the peer closed
/// with bytes left over, then drops the state. All of that runs on the event
/// loop thread: never block.
pub trait Framing: Send + Sync + 'static {
    /// Per-connection state (`()` for a stateless framing).
    type State: Send;

    /// The name backends select it by (`framing=NAME`), and the one its
    /// options are given under (`[framing:NAME]`). A plugin's name replaces a
    /// built-in one of the same name.
    const NAME: &'static str;

    /// One library-level option: a `key = value` line of the config file's
    /// `[framing:NAME]` section or a `--framing-option NAME:KEY=VALUE`, in
    /// the order given, on the host's main thread, before the first
    /// [`new_state`](Self::new_state). Use it for defaults every connection
    /// starts from; a connection's framing config may still override them
    /// in `new_state`. An error stops start-up with a line naming the file
    /// and line or the argument. The default knows no options.
    ///
    /// Once the first state exists the framing is frozen: a later call is
    /// refused (`WSY_ESTATE`) without reaching this method.
    fn configure(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let _ = (key, value);
        Err(ConfigError::UnknownKey)
    }

    /// Create a connection's state from the backend's framing config (`None`:
    /// no config given). An error refuses the connection with HTTP 500, or
    /// stops start-up when the config came from the command line.
    fn new_state(&self, config: Option<&str>) -> Result<Self::State, String>;

    /// Decide on `data`, every byte of this connection not yet framed, oldest
    /// first. `last_read` is how many of the trailing bytes arrived since this
    /// function last returned [`Frame::More`], so a search can resume where it
    /// stopped (`last_read <= data.len()`). After a `Message` or `Discard` the
    /// host calls again at once with the rest.
    fn frame(&self, state: &mut Self::State, data: &[u8], last_read: usize) -> Frame;

    /// The peer closed and `data` (never empty) was not framed. Return how to
    /// send it as one last message, or `None` to drop it. The default sends
    /// text if `data` is valid UTF-8, else binary.
    fn finish(&self, state: &mut Self::State, data: &[u8]) -> Option<Opcode> {
        let _ = state;
        Some(Opcode::detect(data))
    }
}

/// Why [`Backend::configure`] or [`Framing::configure`] refused an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The key is not an option of this backend or framing.
    UnknownKey,
    /// The value is not valid; the message says why (the host adds the key
    /// and where it came from).
    Invalid(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::UnknownKey => f.write_str("unknown option"),
            ConfigError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A backend: chooses the peer for each upgrade request.
///
/// The host calls [`configure`](Self::configure) once per option, in order,
/// then [`start`](Self::start), all on the main thread, before any
/// [`query`](Self::query). Queries then run concurrently on the host's
/// worker threads (they may block) unless [`NONBLOCKING`](Self::NONBLOCKING)
/// is set. [`cleanup`](Self::cleanup) runs once at exit, after the last
/// query.
pub trait Backend: Send + Sync + 'static {
    /// Selected by `-b NAME` / `backend = NAME`.
    const NAME: &'static str;

    /// True when `query` never blocks: the host then runs it on the event
    /// loop and saves a thread hop. Leave it false for anything that touches
    /// files, sockets or locks held for long.
    const NONBLOCKING: bool = false;

    /// One option, from the config file's `[backend]` section or a `-c
    /// KEY=VALUE`. The default knows no options.
    fn configure(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let _ = (key, value);
        Err(ConfigError::UnknownKey)
    }

    /// All options are in: check them, open what must be open. An error
    /// stops start-up.
    fn start(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Decide on one request by calling [`Answer::peer`] (plus optionally
    /// [`Answer::framing`], [`Answer::protocol`], [`Answer::header`]) or
    /// [`Answer::reject`]. Returning `Ok` without either refuses the upgrade
    /// with 404; an `Err` is logged and refuses it with 500.
    fn query(&self, request: &Request<'_>, answer: &mut Answer<'_>) -> Result<(), String>;

    /// At exit, after the last query returned.
    fn cleanup(&mut self) {}
}

/// Log a line at error level through the host (`format!` syntax).
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log($crate::Level::Error, ::std::format_args!($($arg)+)) };
}

/// Log a line at warning level through the host (`format!` syntax).
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log($crate::Level::Warn, ::std::format_args!($($arg)+)) };
}

/// Log a line at info level through the host (`format!` syntax).
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log($crate::Level::Info, ::std::format_args!($($arg)+)) };
}

/// Log a line at debug level through the host (`format!` syntax).
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log($crate::Level::Debug, ::std::format_args!($($arg)+)) };
}

/// Log a line at trace level through the host (`format!` syntax).
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log($crate::Level::Trace, ::std::format_args!($($arg)+)) };
}

/// Export a library's backends and framings: emits the entry symbol
/// `websocksy_plugin_v2`.
///
/// ```ignore
/// websocksy_plugin::export!(backends: [FileBackend::default()], framings: [Json, Csv::new()]);
/// websocksy_plugin::export!(framings: [Json]);
/// ```
///
/// Each list is optional; each item is an expression whose value implements
/// [`Backend`] (in `backends`) or [`Framing`] (in `framings`). The entry
/// checks that the host speaks ABI 2.x, then registers each value in order.
/// The expressions are evaluated inside the entry's panic boundary, so a
/// panic there fails start-up with its message instead of aborting. Use the
/// macro once per library.
#[macro_export]
macro_rules! export {
    ($($kind:ident : [$($item:expr),* $(,)?]),* $(,)?) => {
        /// The websocksy plugin entry (ABI 2.x), generated by
        /// `websocksy_plugin::export!`.
        ///
        /// # Safety
        ///
        /// Called by the host only, once, on its main thread, with the
        /// pointers `include/websocksy.h` describes.
        #[no_mangle]
        pub unsafe extern "C" fn websocksy_plugin_v2(
            plugin: *mut $crate::abi::wsy_plugin,
            host: *const $crate::abi::wsy_host_api,
            error: *mut $crate::abi::wsy_error,
        ) -> $crate::abi::wsy_status {
            // SAFETY: the host calls the entry as the ABI describes: `host`
            // is NULL or valid until exit, `plugin` and `error` are the
            // host's handles for this call.
            unsafe {
                $crate::__private::entry(plugin, host, error, |registrar: &mut $crate::__private::Registrar| {
                    $($( $crate::__export_item!(registrar, $kind, $item); )*)*
                    ::std::result::Result::Ok(())
                })
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_item {
    ($registrar:ident, backends, $item:expr) => {
        $registrar.backend($item)?
    };
    ($registrar:ident, framings, $item:expr) => {
        $registrar.framing($item)?
    };
}
