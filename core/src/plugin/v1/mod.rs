//! The original websocksy's plugins (API version 1), loaded unmodified.
//!
//! A v1 plugin is built against the original `websocksy.h` (a copy written
//! from the published ABI facts lives in `tests/plugins/v1/websocksy.h`):
//!
//! * a **backend** exports `init` (required, returns 1), `configure`
//!   (optional), `query` (required) and `cleanup` (optional), found by name;
//! * a **framing plugin** registers `ws_framing` functions from an ELF
//!   constructor by calling `core_register_framing`, which the executable
//!   exports (with `core_framing`) through the dynamic-symbol list in
//!   `core/exports.dynlist` (`core/build.rs`).
//!
//! This module mirrors the v1 types (`#[repr(C)]`, checked against the
//! header by a test that compiles a C program), implements the two exported
//! functions, wraps a C `ws_framing` as a [`Framing`], and a v1 backend as a
//! [`Backend`].
//!
//! # Decisions
//!
//! **The data pointer.** `ws_framing` takes a mutable `uint8_t* data`, and
//! the original handed out its own peer buffer with a NUL written at
//! `data[length]`. The core's [`FramingState`] only gets `&[u8]`; giving C a
//! `*mut` to it would be undefined behaviour the moment a plugin writes. So
//! each v1 state keeps its own copy of the unframed bytes (a *mirror*) plus
//! one NUL byte, and passes a pointer into that. To stay linear, the mirror
//! is kept in step with the host instead of being rebuilt per call: after a
//! frame of n bytes it drops n bytes (the host removed them), after "need
//! more" it appends only what arrived since. Whenever the host's slice is
//! not the expected continuation (its buffer moved or grew, the host
//! dropped bytes through `finish`) the mirror is rebuilt from the slice.
//! Plugins may therefore write anywhere in `data[0..=length]`, as in the
//! original; the writes stay in the plugin's view (later calls see them)
//! but what goes to the client is always the bytes the peer sent.
//! (Measured: 64 MiB of 100-byte lines through a 64 KiB buffer take about
//! 40 ms with the mirror and 590 ms when the whole slice is copied per call.)
//!
//! **The opcode** is preset to `ws_frame_binary` before *every* call, not once
//! per `recv()` as in the original: the original's sticky opcode (spec B49)
//! is a defect no plugin can have relied on usefully. Only text, binary and
//! discard are accepted; any other opcode (continuation, close, ping, pong,
//! garbage), a negative return (the original hung the whole server) or an
//! overrun is a framing error: that connection closes with 1011 and the
//! bridge keeps serving.
//!
//! **The config** is never NULL: a route or an answer without a
//! `framing-config` gives v1 framings `""`. The original's plugins read the
//! string without checking it (`framing_dynamic32.c` walks `config[u]`,
//! `framing_fixedlength.c` calls `strtoul(config, ...)`) and treat `""` as
//! "all defaults"; a NULL took the whole process down at the first peer
//! bytes.
//!
//! **Threads.** The original was single-threaded and v1 plugins were written
//! for that. Framing functions are called on the event-loop threads (as all
//! framings are; `--threads` runs several), behind one process-wide lock
//! (`framing.rs`), so they never run concurrently with each other. v1
//! backend queries run on the worker pool ([`Backend::blocking`] is true), so
//! a slow query never stalls the loop, but one mutex per backend serializes
//! `configure`/`query`/`cleanup`: a v1 backend never sees two calls at once.
//! (A framing call can overlap a query of another library; the original
//! could not, but a plugin sharing state between its backend and its
//! framing is not something the v1 contract promised.)
//!
//! **Framings that are Rust.** `core_framing` must return a callable C
//! function even for the built-ins and v2 framings. A fixed table of
//! [`TRAMPOLINE_SLOTS`] `extern "C"` trampolines, each bound to one slot,
//! implements the v1 calling convention over the slot's [`FramingState`]
//! (kept in `*framing_data`, freed by the NULL-data call). When a v1 backend
//! returns a trampoline in `ws_peer_info.framing`, it is mapped straight
//! back to the Rust framing, with no C round trip; a v1 function registered
//! through `core_register_framing` comes back from `core_framing` as itself.
//!
//! **Memory.** `host`, `port` and `framing_config` of the returned
//! `ws_peer_info` were `malloc`ed by the plugin (v1 contract); they are copied
//! and released with `free` right after `query` returns. Strings handed to
//! the plugin (endpoint, protocols, headers, option keys and values) are
//! writable NUL-terminated copies owned by the host for the duration of the
//! call. The `websocket` struct is zeroed and filled as far as the bridge
//! knows the values (no socket descriptors: `ws_fd` and `peer_fd` are -1).
//!
//! **Lifecycle.** `init` must return 1; each option goes to `configure`
//! (an error names the option's origin; options for a backend without
//! `configure` are an error, where the original crashed); `cleanup` runs once,
//! at [`Backend::shutdown`] (or when the backend is dropped), after which
//! queries are answered 503 without calling the plugin. A backend returning
//! `framing == NULL` gets the built-in `auto`, as in the original (not the
//! registry's `auto`, which a plugin may have replaced).
//!
//! The function pointers taken from a library stay valid because the loader
//! never unloads libraries before exit.
//!
//! # Layout
//!
//! * [`abi`]: the v1 types and constants, `#[repr(C)]`, checked against the
//!   header by a test;
//! * [`exports`]: `core_register_framing` and `core_framing`, the functions
//!   the executable exports to v1 plugins, and the registry behind them;
//! * [`trampolines`]: the `extern "C"` functions that make Rust framings
//!   callable as v1 framings;
//! * [`framing`]: a C `ws_framing` as a [`Framing`](crate::framing::Framing);
//! * [`backend`]: a v1 backend library as a [`Backend`](crate::backend::Backend).

use std::ffi::{c_char, CStr};

#[cfg(doc)]
use crate::{
    backend::Backend,
    framing::{Framing, FramingState},
};

pub mod abi;
mod backend;
mod exports;
mod framing;
#[cfg(test)]
mod test_plugins;
mod trampolines;

pub use abi::*;
pub use backend::backend;
pub use exports::{
    core_framing, core_register_framing, keep_exports, set_registry, take_registered_framings,
};
pub use framing::V1Framing;
pub use trampolines::TRAMPOLINE_SLOTS;

fn c_name(name: *const c_char) -> Option<String> {
    if name.is_null() {
        return None;
    }
    // SAFETY: a non-NULL name from a v1 plugin is a NUL-terminated string
    // (the v1 contract), valid for the duration of the call.
    Some(
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned(),
    )
}
