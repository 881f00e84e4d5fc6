//! The host side of the ABI: the [`HOST_API`] table every library gets, and
//! the host objects behind the opaque pointers (`wsy_plugin`, `wsy_error`,
//! `wsy_answer`) and the `wsy_request` views.
//!
//! Every `extern "C"` function here catches panics and checks every pointer;
//! none of them trusts a value a plugin controls:
//! * `wsy_plugin*` points to a [`PluginCtx`] that is leaked at load time, so
//!   it stays valid until exit as the header promises;
//! * `wsy_error*` points to an [`ErrorSlot`] on the caller's stack, valid
//!   during the call it is passed to;
//! * `wsy_answer*` is not an address at all but a never-reused handle,
//!   looked up in a table of the queries running now: an answer_* call after
//!   its query returned gets `WSY_ESTATE`, never a dangling write;
//! * `wsy_request*` is checked against the set of requests whose query is
//!   running before it is read.
//!
//! By concern:
//! * [`handles`]: the library handle (`wsy_plugin*`, [`PluginCtx`]), the
//!   error slot (`wsy_error*`, [`ErrorSlot`]), and `log` and `error_set`;
//! * [`registration`]: `register_backend` and `register_framing`, and the
//!   descriptors they copy;
//! * [`answers`]: the answer under construction (`wsy_answer*`) and the
//!   answer_* functions;
//! * [`requests`]: the `wsy_request` view of a request and `request_header`,
//!   `request_cookie`.
//!
//! This module holds the table itself and what every host function shares:
//! the panic [`guard`] and the readers of a plugin's views.

use std::mem::size_of;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

use websocksy_abi::{wsy_host_api, wsy_str, WSY_ABI_MAJOR, WSY_ABI_MINOR};

mod answers;
mod handles;
mod registration;
mod requests;

pub(crate) use answers::{Answer, AnswerHandle};
pub use handles::{status_name, ErrorSlot, PluginCtx};
pub(crate) use registration::{BackendDesc, Desc, FramingDesc};
pub(crate) use requests::RequestView;

use answers::{
    answer_framing, answer_header, answer_hub, answer_peer, answer_protocol, answer_reject,
};
use handles::{error_set, host_log};
use registration::{register_backend, register_framing};
use requests::{request_cookie, request_header};

/// The table passed to every library's entry. Valid until exit.
pub static HOST_API: wsy_host_api = wsy_host_api {
    size: size_of::<wsy_host_api>() as u32,
    abi_major: WSY_ABI_MAJOR,
    abi_minor: WSY_ABI_MINOR,
    log: Some(host_log),
    register_backend: Some(register_backend),
    register_framing: Some(register_framing),
    error_set: Some(error_set),
    answer_peer: Some(answer_peer),
    answer_framing: Some(answer_framing),
    answer_protocol: Some(answer_protocol),
    answer_header: Some(answer_header),
    answer_reject: Some(answer_reject),
    request_header: Some(request_header),
    request_cookie: Some(request_cookie),
    answer_hub: Some(answer_hub),
};

/// A poisoned lock only means a panic elsewhere was caught; the data is
/// plain and still consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bytes of a view, `None` when absent.
///
/// # Safety
/// The plugin's promise: a non-NULL `s.ptr` is readable for `s.len` bytes
/// during the call.
unsafe fn bytes<'a>(s: wsy_str) -> Option<&'a [u8]> {
    if !s.ptr.is_null() && s.len > isize::MAX as usize {
        return None;
    }
    // SAFETY: forwarded from the caller.
    unsafe { s.as_bytes() }
}

/// A view as UTF-8 text; `Err` names the problem.
///
/// # Safety
/// As [`bytes`].
unsafe fn text<'a>(s: wsy_str, what: &str) -> Result<&'a str, String> {
    // SAFETY: forwarded from the caller.
    let b = unsafe { bytes(s) }.ok_or_else(|| format!("{what} is absent (NULL)"))?;
    std::str::from_utf8(b).map_err(|_| format!("{what} is not valid UTF-8"))
}

/// Catch a panic in host code so it never unwinds into the plugin.
fn guard<R>(fallback: R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        log::error!(target: "websocksy::plugin", "internal error in a host function (panic caught)");
        fallback
    })
}

#[cfg(test)]
fn s(v: &str) -> wsy_str {
    wsy_str::from_str(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_table_is_complete() {
        assert_eq!(HOST_API.size as usize, size_of::<wsy_host_api>());
        assert_eq!((HOST_API.abi_major, HOST_API.abi_minor), (2, 2));
        let t = HOST_API;
        assert!(t.log.is_some() && t.register_backend.is_some() && t.register_framing.is_some());
        assert!(t.error_set.is_some() && t.answer_peer.is_some() && t.answer_framing.is_some());
        assert!(
            t.answer_protocol.is_some() && t.answer_header.is_some() && t.answer_reject.is_some()
        );
        assert!(t.request_header.is_some() && t.request_cookie.is_some());
        assert!(t.answer_hub().is_some());
    }
}
