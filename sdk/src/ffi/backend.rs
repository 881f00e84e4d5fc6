//! Backend trampolines. `userdata` is the `Box<RwLock<B>>` leaked in
//! `Registrar::backend`.

use std::ffi::c_void;
use std::sync::{PoisonError, RwLock};

use super::{boundary, config_status, host, option, set_error};
use crate::abi::{self, wsy_answer, wsy_error, wsy_request, wsy_status, wsy_str};
use crate::request::{Answer, Request};
use crate::{Backend, Level};

/// # Safety
/// `userdata` must be the leaked `RwLock<B>` (non-NULL).
unsafe fn cell<'a, B>(userdata: *mut c_void) -> &'a RwLock<B> {
    // SAFETY: the caller's contract; the box is never freed.
    unsafe { &*userdata.cast::<RwLock<B>>() }
}

pub(super) unsafe extern "C" fn configure<B: Backend>(
    userdata: *mut c_void,
    key: wsy_str,
    value: wsy_str,
    error: *mut wsy_error,
) -> wsy_status {
    boundary("configure", B::NAME, error, abi::WSY_ERROR, || {
        let api = host().map(|h| h.api);
        if userdata.is_null() {
            return abi::WSY_EINVAL;
        }
        // SAFETY: the host passes views valid during this call.
        let (key, value) = match unsafe { option(api, error, key, value) } {
            Ok(kv) => kv,
            Err(status) => return status,
        };
        // SAFETY: userdata is this backend's leaked lock.
        let lock = unsafe { cell::<B>(userdata) };
        let mut backend = lock.write().unwrap_or_else(PoisonError::into_inner);
        let result = backend.configure(key, value);
        config_status(api, error, key, result)
    })
}

pub(super) unsafe extern "C" fn start<B: Backend>(
    userdata: *mut c_void,
    error: *mut wsy_error,
) -> wsy_status {
    boundary("start", B::NAME, error, abi::WSY_ERROR, || {
        if userdata.is_null() {
            return abi::WSY_EINVAL;
        }
        // SAFETY: userdata is this backend's leaked lock.
        let lock = unsafe { cell::<B>(userdata) };
        let mut backend = lock.write().unwrap_or_else(PoisonError::into_inner);
        match backend.start() {
            Ok(()) => abi::WSY_OK,
            Err(msg) => {
                set_error(host().map(|h| h.api), error, &msg);
                abi::WSY_ERROR
            }
        }
    })
}

pub(super) unsafe extern "C" fn query<B: Backend>(
    userdata: *mut c_void,
    request: *const wsy_request,
    answer: *mut wsy_answer,
) -> wsy_status {
    boundary(
        "query",
        B::NAME,
        std::ptr::null_mut(),
        abi::WSY_ERROR,
        || {
            let Some(host) = host() else {
                return abi::WSY_ESTATE;
            };
            if userdata.is_null() || request.is_null() || answer.is_null() {
                return abi::WSY_EINVAL;
            }
            // SAFETY: `request` is non-NULL; `size` is its first field in every
            // version.
            let size = unsafe { (*request).size };
            // Any 2.x host passes at least the 2.0 struct; later fields are
            // checked where they are read (Request::user and the like).
            if (size as usize) < wsy_request::SIZE_2_0 {
                crate::log(
                    Level::Error,
                    format_args!(
                        "{}: the host's request struct is too small ({size})",
                        B::NAME
                    ),
                );
                return abi::WSY_EVERSION;
            }
            // SAFETY: the host passes a request readable for its `size`
            // during this call, with every view valid as long (the ABI's
            // rule), and `size` covers the 2.0 struct.
            let request = unsafe { Request::from_raw(request) };
            // SAFETY: `answer` is this query's handle, for the host's table.
            let mut answer = unsafe { Answer::from_raw(answer, host.api) };
            // SAFETY: userdata is this backend's leaked lock.
            let lock = unsafe { cell::<B>(userdata) };
            let backend = lock.read().unwrap_or_else(PoisonError::into_inner);
            match backend.query(&request, &mut answer) {
                Ok(()) => abi::WSY_OK,
                Err(msg) => {
                    crate::log(
                        Level::Warn,
                        format_args!(
                            "{}: {} {}: {msg}",
                            B::NAME,
                            request.client_address(),
                            request.target()
                        ),
                    );
                    abi::WSY_ERROR
                }
            }
        },
    )
}

pub(super) unsafe extern "C" fn cleanup<B: Backend>(userdata: *mut c_void) {
    boundary("cleanup", B::NAME, std::ptr::null_mut(), (), || {
        if userdata.is_null() {
            return;
        }
        // SAFETY: userdata is this backend's leaked lock.
        let lock = unsafe { cell::<B>(userdata) };
        lock.write()
            .unwrap_or_else(PoisonError::into_inner)
            .cleanup();
    })
}
