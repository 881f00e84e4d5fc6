//! Framing trampolines. `userdata` is the `Box<FramingCell<F>>` leaked in
//! `Registrar::framing`; `state` is a `Box<F::State>` made by `state_new`.

use std::ffi::c_void;
use std::sync::{Mutex, OnceLock, PoisonError};

use super::{boundary, config_status, host, option, set_error, view};
use crate::abi::{self, wsy_error, wsy_opcode, wsy_status, wsy_str};
use crate::{Frame, Framing, Level};

/// A framing, mutable while it is configured, then shared.
///
/// `configure` needs `&mut F`, the framing calls need `&F`, and the ABI
/// orders them: every configure runs on the main thread before the first
/// state_new, and frame/finish only ever follow a state_new. So the framing
/// starts in `setup`, where configure mutates it under the mutex, and the
/// first framing call moves it, under that same mutex, into `ready` (a
/// `OnceLock`), never to leave. From then on every call reads `ready`: one
/// acquire load, no lock and no reference count on the hot path (cheaper
/// than the read lock backends take, whose queries are far rarer than
/// frame calls). A configure that comes later finds `setup` empty and is
/// refused with `WSY_ESTATE`, so even a host that broke the order cannot
/// make a `&mut F` coexist with a `&F`: the scheme is sound without
/// trusting the host, and without `unsafe`.
pub(crate) struct FramingCell<F> {
    setup: Mutex<Option<F>>,
    ready: OnceLock<F>,
}

impl<F: Framing> FramingCell<F> {
    pub(super) fn new(framing: F) -> FramingCell<F> {
        FramingCell {
            setup: Mutex::new(Some(framing)),
            ready: OnceLock::new(),
        }
    }

    /// The framing for a framing call, freezing its configuration on the
    /// first one. `None` only if the framing was lost to a panic, which the
    /// move below cannot cause.
    fn get(&self) -> Option<&F> {
        if let Some(f) = self.ready.get() {
            return Some(f);
        }
        let mut setup = self.setup.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = setup.take() {
            // `setup` held a value, so `ready` was empty (both change only
            // under this mutex): the set succeeds.
            let _ = self.ready.set(f);
        }
        drop(setup);
        self.ready.get()
    }

    /// Run `f` on the framing if it is still being configured.
    fn configure<R>(&self, f: impl FnOnce(&mut F) -> R) -> Option<R> {
        let mut setup = self.setup.lock().unwrap_or_else(PoisonError::into_inner);
        setup.as_mut().map(f)
    }
}

/// # Safety
/// `userdata` must be the leaked `FramingCell<F>` (non-NULL).
unsafe fn framing_cell<'a, F>(userdata: *mut c_void) -> &'a FramingCell<F> {
    // SAFETY: the caller's contract; the box is never freed.
    unsafe { &*userdata.cast::<FramingCell<F>>() }
}

/// The framing behind `userdata`, frozen; logs when it is gone.
///
/// # Safety
/// As [`framing_cell`].
unsafe fn framing_of<'a, F: Framing>(userdata: *mut c_void) -> Option<&'a F> {
    // SAFETY: forwarded from the caller.
    let got = unsafe { framing_cell::<F>(userdata) }.get();
    if got.is_none() {
        crate::log(
            Level::Error,
            format_args!("{}: the framing was lost to an earlier panic", F::NAME),
        );
    }
    got
}

pub(super) unsafe extern "C" fn configure_framing<F: Framing>(
    userdata: *mut c_void,
    key: wsy_str,
    value: wsy_str,
    error: *mut wsy_error,
) -> wsy_status {
    boundary("configure", F::NAME, error, abi::WSY_ERROR, || {
        let api = host().map(|h| h.api);
        if userdata.is_null() {
            return abi::WSY_EINVAL;
        }
        // SAFETY: the host passes views valid during this call.
        let (key, value) = match unsafe { option(api, error, key, value) } {
            Ok(kv) => kv,
            Err(status) => return status,
        };
        // SAFETY: userdata is this framing's leaked cell.
        let cell = unsafe { framing_cell::<F>(userdata) };
        match cell.configure(|framing| framing.configure(key, value)) {
            Some(result) => config_status(api, error, key, result),
            None => {
                set_error(
                    api,
                    error,
                    "configure called after the framing was in use (the host broke the ABI's order)",
                );
                abi::WSY_ESTATE
            }
        }
    })
}

pub(super) unsafe extern "C" fn state_new<F: Framing>(
    userdata: *mut c_void,
    config: wsy_str,
    state: *mut *mut c_void,
    error: *mut wsy_error,
) -> wsy_status {
    boundary("state_new", F::NAME, error, abi::WSY_ERROR, || {
        if userdata.is_null() || state.is_null() {
            return abi::WSY_EINVAL;
        }
        // SAFETY: userdata is the FramingCell<F> leaked at registration.
        let Some(framing) = (unsafe { framing_of::<F>(userdata) }) else {
            return abi::WSY_ERROR;
        };
        // SAFETY: the host passes a view valid during this call.
        let config = match unsafe { view(config) } {
            Ok(c) => c,
            Err(_) => {
                set_error(host().map(|h| h.api), error, "framing config is not UTF-8");
                return abi::WSY_EINVAL;
            }
        };
        match framing.new_state(config) {
            Ok(s) => {
                let p = Box::into_raw(Box::new(s)).cast::<c_void>();
                // SAFETY: `state` is non-NULL and points at the host's slot
                // for this connection's state.
                unsafe { *state = p };
                abi::WSY_OK
            }
            Err(msg) => {
                set_error(host().map(|h| h.api), error, &msg);
                abi::WSY_EINVAL
            }
        }
    })
}

pub(super) unsafe extern "C" fn state_free<F: Framing>(_userdata: *mut c_void, state: *mut c_void) {
    boundary("state_free", F::NAME, std::ptr::null_mut(), (), || {
        if !state.is_null() {
            // SAFETY: `state` came from Box::into_raw in state_new and the
            // host frees each state exactly once.
            drop(unsafe { Box::from_raw(state.cast::<F::State>()) });
        }
    })
}

pub(super) unsafe extern "C" fn frame<F: Framing>(
    userdata: *mut c_void,
    state: *mut c_void,
    data: *const u8,
    length: usize,
    last_read: usize,
    opcode: *mut wsy_opcode,
) -> i64 {
    boundary("frame", F::NAME, std::ptr::null_mut(), -1, || {
        if userdata.is_null()
            || state.is_null()
            || opcode.is_null()
            || (data.is_null() && length > 0)
        {
            crate::log(
                Level::Error,
                format_args!("frame of '{}' called with a NULL pointer", F::NAME),
            );
            return -1;
        }
        // SAFETY: userdata is the FramingCell<F> leaked at registration.
        let Some(framing) = (unsafe { framing_of::<F>(userdata) }) else {
            return -1;
        };
        // SAFETY: state is this connection's Box<F::State> from state_new;
        // the host never runs two callbacks of one connection at once.
        let state = unsafe { &mut *state.cast::<F::State>() };
        let bytes: &[u8] = if length == 0 {
            &[]
        } else {
            // SAFETY: the host passes `length` readable bytes at `data`
            // (non-NULL, checked above), valid during this call.
            unsafe { std::slice::from_raw_parts(data, length) }
        };
        let (len, op) = match framing.frame(state, bytes, last_read.min(length)) {
            Frame::More => return 0,
            Frame::Message { len, opcode } => (len, opcode.to_raw()),
            Frame::Discard(len) => (len, abi::WSY_OPCODE_DISCARD),
            Frame::Error(msg) => {
                crate::log(Level::Warn, format_args!("{}: {msg}", F::NAME));
                return -1;
            }
        };
        if len > length {
            crate::log(
                Level::Error,
                format_args!(
                    "{}: framed {len} bytes of {length} (a bug in the framing)",
                    F::NAME
                ),
            );
            return -1;
        }
        // SAFETY: `opcode` is the host's non-NULL out-parameter for this call.
        unsafe { *opcode = op };
        // len <= length <= isize::MAX, so it fits.
        len as i64
    })
}

pub(super) unsafe extern "C" fn finish<F: Framing>(
    userdata: *mut c_void,
    state: *mut c_void,
    data: *const u8,
    length: usize,
    opcode: *mut wsy_opcode,
) -> wsy_status {
    boundary(
        "finish",
        F::NAME,
        std::ptr::null_mut(),
        abi::WSY_ERROR,
        || {
            if userdata.is_null()
                || state.is_null()
                || opcode.is_null()
                || (data.is_null() && length > 0)
            {
                return abi::WSY_EINVAL;
            }
            // SAFETY: as in `frame`.
            let Some(framing) = (unsafe { framing_of::<F>(userdata) }) else {
                return abi::WSY_ERROR;
            };
            // SAFETY: as in `frame`.
            let state = unsafe { &mut *state.cast::<F::State>() };
            let bytes: &[u8] = if length == 0 {
                &[]
            } else {
                // SAFETY: as in `frame`.
                unsafe { std::slice::from_raw_parts(data, length) }
            };
            let op = framing
                .finish(state, bytes)
                .map_or(abi::WSY_OPCODE_DISCARD, |o| o.to_raw());
            // SAFETY: `opcode` is the host's non-NULL out-parameter for this call.
            unsafe { *opcode = op };
            abi::WSY_OK
        },
    )
}
