//! Log lines to the host (`host->log`), and a [`log::Log`] that does the same
//! for the `log` crate.

use std::fmt;

use crate::abi;
use crate::ffi;

/// Severity of a log line; the host maps it onto its own levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// `WSY_LOG_ERROR`
    Error,
    /// `WSY_LOG_WARN`
    Warn,
    /// `WSY_LOG_INFO`
    Info,
    /// `WSY_LOG_DEBUG`
    Debug,
    /// `WSY_LOG_TRACE`
    Trace,
}

impl Level {
    fn to_raw(self) -> u32 {
        match self {
            Level::Error => abi::WSY_LOG_ERROR,
            Level::Warn => abi::WSY_LOG_WARN,
            Level::Info => abi::WSY_LOG_INFO,
            Level::Debug => abi::WSY_LOG_DEBUG,
            Level::Trace => abi::WSY_LOG_TRACE,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        })
    }
}

/// Log one line through the host, which prints it under the target
/// `websocksy::plugin::NAME` (NAME: the library's file name without `.so`)
/// and applies `RUST_LOG`. Before the host called
/// the entry (in unit tests), the line goes to standard error. Usually
/// called through [`info!`](crate::info) and friends.
pub fn log(level: Level, args: fmt::Arguments<'_>) {
    let owned;
    let message = match args.as_str() {
        Some(s) => s,
        None => {
            owned = args.to_string();
            owned.as_str()
        }
    };
    match ffi::host() {
        Some(host) => match host.api.log {
            // SAFETY: `log` is the host's function; `plugin` is the handle
            // the entry received (valid until exit) and the view borrows
            // `message`, which outlives the call (the host copies it).
            Some(f) => unsafe { f(host.plugin, level.to_raw(), abi::wsy_str::from_str(message)) },
            None => eprintln!("[plugin {level}] {message}"),
        },
        None => eprintln!("[plugin {level}] {message}"),
    }
}

/// Forwards records of the `log` crate (from a plugin's dependencies) to
/// [`log()`].
struct Bridge;

impl log::Log for Bridge {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        // The host filters (RUST_LOG); it cannot tell us its filter.
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = match record.level() {
            log::Level::Error => Level::Error,
            log::Level::Warn => Level::Warn,
            log::Level::Info => Level::Info,
            log::Level::Debug => Level::Debug,
            log::Level::Trace => Level::Trace,
        };
        log(level, format_args!("{}", record.args()));
    }

    fn flush(&self) {}
}

static BRIDGE: Bridge = Bridge;

/// Install the `log` bridge for this library (its own copy of the `log`
/// crate, so this touches nothing outside the library). Keeps a logger
/// someone installed before.
pub(crate) fn install() {
    if log::set_logger(&BRIDGE).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}
