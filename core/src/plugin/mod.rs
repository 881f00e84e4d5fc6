//! Plugins: shared objects that add backends and framings (ABI 2.2,
//! `include/websocksy.h`), and the original websocksy's version 1 plugins.
//!
//! * [`loader`] finds and opens the libraries (`--plugin-dir`, `--plugin`,
//!   `-b NAME`), calls their entry and collects what they register;
//! * [`host_api`] is the table of host functions handed to every library;
//! * [`framing`] and [`backend`] wrap registered descriptors in the core's
//!   [`Framing`](crate::framing::Framing) and [`Backend`](crate::backend::Backend)
//!   traits, so a plugin is used exactly like a built-in;
//! * [`v1`] loads the original's plugins.
//!
//! Safety rules kept throughout: `unsafe` only where a pointer crosses the
//! boundary; every host function callable from C catches panics and checks
//! its pointers; every value a plugin returns is validated before use; a
//! misbehaving plugin costs one connection, never the process. Libraries are
//! never unloaded (`dlclose`) before exit.
//!
//! Calls *into* a plugin are not wrapped in `catch_unwind`: it could never
//! fire. A panic in a Rust plugin reaches the plugin's own `extern "C"`
//! function first and aborts there, and C does not unwind. The panic
//! boundary of a plugin is on its side of the call, in the SDK's trampolines
//! (`sdk/src/ffi.rs`), which turn a panic into that call's failure value.

pub mod backend;
pub mod framing;
pub mod host_api;
pub mod loader;
pub mod v1;

pub use loader::{PluginDir, Plugins};

/// `s` as one log or error line: surrounding whitespace trimmed, line breaks
/// and other control characters (except tab) replaced by spaces.
pub(crate) fn one_line(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_flattens() {
        assert_eq!(super::one_line(" a\nb\r\nc\t\u{7}d \n"), "a b  c\t d");
    }
}
