//! v1 framing functions written in Rust the way a C plugin would write
//! them, shared by the unit tests of the v1 modules, and the lock that
//! keeps the tests touching process-wide state apart.

use std::ffi::{c_char, c_uint, c_void};
use std::mem::size_of;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::abi::{WS_FRAME_BINARY, WS_FRAME_DISCARD, WS_FRAME_TEXT};
use crate::framing::{Event, Opcode};

/// Tests that touch the process-wide registry or the fake backend's
/// statics run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

pub(super) fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) static LINE_CLEANUPS: AtomicUsize = AtomicUsize::new(0);

/// A v1 framing as a C plugin would write it: lines, text unless the
/// line starts with 'B' (then the preset opcode stays), "ERR" → -1,
/// "PING" → ping, "BIG" → overrun, "DROP" → discard. Counts lines in a
/// malloc'd state; the cleanup call frees it and counts.
pub(super) unsafe extern "C" fn lines(
    data: *mut u8,
    length: usize,
    last_read: usize,
    opcode: *mut c_uint,
    framing_data: *mut *mut c_void,
    _config: *const c_char,
) -> i64 {
    // SAFETY: test plugin; the host keeps the v1 contract.
    unsafe {
        let state = (*framing_data).cast::<usize>();
        if data.is_null() {
            assert!(opcode.is_null() && length == 0 && last_read == 0);
            LINE_CLEANUPS.fetch_add(1, Ordering::SeqCst);
            libc::free(state.cast());
            *framing_data = ptr::null_mut();
            return 0;
        }
        let state = if state.is_null() {
            let s = libc::calloc(1, size_of::<usize>()).cast::<usize>();
            *framing_data = s.cast();
            s
        } else {
            state
        };
        // The terminator the original promised after a read.
        assert_eq!(*data.add(length), 0, "no NUL at data[length]");
        assert_eq!(*opcode, WS_FRAME_BINARY, "opcode not preset to binary");
        let bytes = std::slice::from_raw_parts(data, length);
        let fresh = &bytes[length - last_read..];
        let Some(i) = fresh.iter().position(|b| *b == b'\n') else {
            return 0;
        };
        let n = length - last_read + i + 1;
        *state += 1;
        let line = &bytes[..n - 1];
        // Scribble where the original allowed it.
        *data.add(length) = b'!';
        match line {
            b"ERR" => -1,
            b"PING" => {
                *opcode = 9;
                n as i64
            }
            b"BIG" => length as i64 + 1,
            b"DROP" => {
                *opcode = WS_FRAME_DISCARD;
                n as i64
            }
            l if l.starts_with(b"B") => n as i64,
            _ => {
                *opcode = WS_FRAME_TEXT;
                n as i64
            }
        }
    }
}

pub(super) fn msg(op: Opcode, b: &[u8]) -> Event {
    Event::Message(op, b.to_vec())
}

pub(super) static SEEN: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Frames 3 bytes at a time and records what it was shown.
pub(super) unsafe extern "C" fn threes(
    data: *mut u8,
    length: usize,
    _last_read: usize,
    _opcode: *mut c_uint,
    _framing_data: *mut *mut c_void,
    _config: *const c_char,
) -> i64 {
    if data.is_null() {
        return 0;
    }
    // SAFETY: test plugin; `length` bytes plus a NUL are readable.
    let bytes = unsafe { std::slice::from_raw_parts(data, length + 1) };
    assert_eq!(bytes[length], 0);
    SEEN.lock().unwrap().push(bytes[..length].to_vec());
    if length >= 3 {
        3
    } else {
        0
    }
}
