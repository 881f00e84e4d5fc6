//! A C `ws_framing` function as a [`Framing`]: the mirror of the unframed
//! bytes the plugin may write into, the opcode preset per call, the checks
//! on what it returns, and the NULL-data cleanup call.

use std::ffi::{c_void, CString};
use std::ptr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::abi::{WsFraming, WS_FRAME_BINARY, WS_FRAME_DISCARD, WS_FRAME_TEXT};
use crate::framing::{Framed, Framing, FramingState, Opcode};

/// Every call into a v1 framing function, from whatever event loop: the
/// original was single-threaded and its plugins keep globals freely.
/// Uncontended with `--threads 1`; a v1 framing's calls are short.
static V1_CALLS: Mutex<()> = Mutex::new(());

fn serialized() -> MutexGuard<'static, ()> {
    // A panic cannot happen inside the lock (C code does not unwind into
    // it), and the guarded data is `()`: a poisoned lock is still good.
    V1_CALLS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A C `ws_framing` function as a [`Framing`].
pub struct V1Framing {
    pub(super) name: String,
    pub(super) func: WsFraming,
}

impl Framing for V1Framing {
    fn new_state(&self, config: Option<&str>) -> Result<Box<dyn FramingState>, String> {
        // No config is "": the original's plugins read `config` without a
        // NULL check (its core always had a string to give them) and treat
        // "" as all defaults.
        let config = CString::new(config.unwrap_or(""))
            .map_err(|_| "the framing-config contains a NUL byte".to_string())?;
        Ok(Box::new(V1State {
            name: self.name.clone(),
            func: self.func,
            data: ptr::null_mut(),
            config,
            mirror: Mirror::default(),
        }))
    }
}

/// One connection of a v1 framing.
struct V1State {
    name: String,
    func: WsFraming,
    /// The plugin's `void* framing_data`.
    data: *mut c_void,
    /// Never NULL for the plugin (see [`V1Framing::new_state`]).
    config: CString,
    mirror: Mirror,
}

// SAFETY: `data` is the plugin's per-connection pointer, only ever passed
// back to the plugin's own function, one call at a time (the state is used
// by one thread at a time, `&mut self`). The original moved no state across
// threads, but a v1 framing has no way to tell which thread calls it.
unsafe impl Send for V1State {}

impl FramingState for V1State {
    fn frame(&mut self, data: &[u8], last_read: usize) -> Framed {
        let length = data.len();
        let buf = self.mirror.prepare(data, last_read);
        let mut opcode = WS_FRAME_BINARY;
        let config = self.config.as_ptr();
        let n = {
            let _one_at_a_time = serialized();
            // SAFETY: `buf` points to `length` bytes plus a NUL, all writable
            // and owned by the mirror; `opcode` and `self.data` are live
            // locals/fields; `config` is a CString we own. The function is
            // the plugin's, called by one thread at a time (the lock).
            unsafe {
                (self.func)(
                    buf,
                    length,
                    last_read.min(length),
                    &mut opcode,
                    &mut self.data,
                    config,
                )
            }
        };
        let framed = match n {
            0 => Framed::More,
            n if n < 0 => Framed::Error(format!("v1 framing '{}' returned {n}", self.name)),
            n if n as u64 > length as u64 => Framed::Error(format!(
                "Overrun by framing function '{}', have {length} bytes, framed {n}",
                self.name
            )),
            n => {
                let len = n as usize;
                match opcode {
                    WS_FRAME_TEXT => Framed::Message { len, opcode: Opcode::Text },
                    WS_FRAME_BINARY => Framed::Message { len, opcode: Opcode::Binary },
                    WS_FRAME_DISCARD => Framed::Discard(len),
                    op => Framed::Error(format!(
                        "v1 framing '{}' set opcode {op}; only text (1), binary (2) and discard (11) are supported",
                        self.name
                    )),
                }
            }
        };
        if let Framed::Message { len, .. } | Framed::Discard(len) = framed {
            self.mirror.consumed(len);
        }
        framed
    }

    fn finish(&mut self, data: &[u8]) -> Option<Opcode> {
        // The host drops these bytes after this call.
        self.mirror.reset();
        Some(Opcode::detect(data))
    }
}

impl Drop for V1State {
    fn drop(&mut self) {
        if self.data.is_null() {
            return;
        }
        let config = self.config.as_ptr();
        let _one_at_a_time = serialized();
        // SAFETY: the v1 cleanup call `(NULL, 0, 0, NULL, &state, config)`,
        // made once, with the state the plugin stored.
        unsafe {
            (self.func)(
                ptr::null_mut(),
                0,
                0,
                ptr::null_mut(),
                &mut self.data,
                config,
            )
        };
        self.data = ptr::null_mut();
    }
}

/// The plugin's writable copy of a connection's unframed bytes, with a NUL
/// after them (see the module docs). `buf[off..buf.len() - 1]` mirrors the
/// host's slice; `expect` is where the host's slice should start next time
/// if it is the continuation of the last one.
#[derive(Default)]
struct Mirror {
    buf: Vec<u8>,
    off: usize,
    expect: usize,
}

impl Mirror {
    fn live(&self) -> usize {
        self.buf.len().saturating_sub(self.off + 1)
    }

    /// Bring the mirror in step with `data` and return its start.
    fn prepare(&mut self, data: &[u8], last_read: usize) -> *mut u8 {
        let live = self.live();
        let continued = live > 0
            && data.as_ptr() as usize == self.expect
            && data.len() >= live
            && data.len() - live <= last_read;
        if !continued {
            self.buf.clear();
            self.buf.extend_from_slice(data);
            self.buf.push(0);
            self.off = 0;
        } else if data.len() > live {
            // Only the new bytes are copied; the dead prefix goes at the same time.
            self.buf.truncate(self.off + live);
            self.buf.drain(..self.off);
            self.off = 0;
            self.buf.extend_from_slice(&data[live..]);
            self.buf.push(0);
        } else {
            // The plugin may have overwritten the terminator.
            let end = self.buf.len() - 1;
            self.buf[end] = 0;
        }
        self.expect = data.as_ptr() as usize;
        self.buf[self.off..].as_mut_ptr()
    }

    /// The host removed `n` framed bytes from the front.
    fn consumed(&mut self, n: usize) {
        self.off = (self.off + n).min(self.buf.len().saturating_sub(1));
        self.expect = self.expect.wrapping_add(n);
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.off = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::super::c_name;
    use super::super::test_plugins::{lines, msg, serial, threes, LINE_CLEANUPS, SEEN};
    use super::*;
    use crate::framing::{drive, Event};
    use std::ffi::{c_char, c_uint};
    use std::sync::atomic::Ordering;
    use std::sync::Mutex;

    fn v1_lines() -> V1Framing {
        V1Framing {
            name: "lines".into(),
            func: lines,
        }
    }

    #[test]
    fn v1_framing_results_map_to_framed() {
        let f = v1_lines();
        let mut st = f.new_state(None).unwrap();
        let (ev, rest) = drive(st.as_mut(), &[b"one\nBin\ntw", b"o\nDROP\nx"]);
        assert_eq!(
            ev,
            [
                msg(Opcode::Text, b"one\n"),
                // Preset to binary on every call: no sticky text from "one".
                msg(Opcode::Binary, b"Bin\n"),
                msg(Opcode::Text, b"two\n"),
                Event::Discard(b"DROP\n".to_vec()),
            ]
        );
        assert_eq!(rest, b"x");
        for (input, what) in [
            (&b"ERR\n"[..], "returned -1"),
            (b"PING\n", "opcode 9"),
            (b"BIG\n", "Overrun"),
        ] {
            let mut st = f.new_state(None).unwrap();
            let (ev, _) = drive(st.as_mut(), &[input]);
            match ev.as_slice() {
                [Event::Error(e)] => assert!(e.contains(what), "{e}"),
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn v1_cleanup_call_only_with_state() {
        let _g = serial();
        let f = v1_lines();
        let before = LINE_CLEANUPS.load(Ordering::SeqCst);
        // Never called: no state, no cleanup call.
        drop(f.new_state(Some("cfg")).unwrap());
        assert_eq!(LINE_CLEANUPS.load(Ordering::SeqCst), before);
        let mut st = f.new_state(Some("cfg")).unwrap();
        drive(st.as_mut(), &[b"a\n"]);
        drop(st);
        assert_eq!(LINE_CLEANUPS.load(Ordering::SeqCst), before + 1);
        assert!(f.new_state(Some("a\0b")).is_err());
    }

    static CONFIGS: Mutex<Vec<Option<String>>> = Mutex::new(Vec::new());

    /// Records the config of every call (`None` for NULL), frames all as binary.
    unsafe extern "C" fn configs(
        _data: *mut u8,
        length: usize,
        _last_read: usize,
        _opcode: *mut c_uint,
        _framing_data: *mut *mut c_void,
        config: *const c_char,
    ) -> i64 {
        CONFIGS.lock().unwrap().push(c_name(config));
        length as i64
    }

    /// The original's plugins dereference `config` unchecked: never NULL.
    #[test]
    fn v1_framings_get_an_empty_config_not_null() {
        let _g = serial();
        CONFIGS.lock().unwrap().clear();
        let f = V1Framing {
            name: "configs".into(),
            func: configs,
        };
        for config in [None, Some(""), Some("endian=big")] {
            let mut st = f.new_state(config).unwrap();
            drive(st.as_mut(), &[b"x"]);
        }
        assert_eq!(
            *CONFIGS.lock().unwrap(),
            [
                Some(String::new()),
                Some(String::new()),
                Some("endian=big".into())
            ]
        );
    }

    /// The mirror follows a host buffer that keeps its start (like the
    /// core's InBuf), moves (compaction) and is refilled after `finish`.
    #[test]
    fn mirror_tracks_the_host_buffer() {
        let _g = serial();
        SEEN.lock().unwrap().clear();
        let f = V1Framing {
            name: "threes".into(),
            func: threes,
        };
        let mut st = f.new_state(None).unwrap();
        let mut buf = [0u8; 64];
        let (mut start, mut end) = (0, 0);
        let mut shown = Vec::new();
        let mut sent = Vec::new();
        let reads: [&[u8]; 5] = [b"abcde", b"f", b"ghijklm", b"no", b"pqrstuvwxyz"];
        for (i, read) in reads.iter().enumerate() {
            if i == 3 {
                // Compaction: the unframed bytes move to the front.
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            buf[end..end + read.len()].copy_from_slice(read);
            end += read.len();
            let mut fresh = read.len();
            loop {
                let data = &buf[start..end];
                shown.push(data.to_vec());
                match st.frame(data, fresh) {
                    Framed::Message { len, .. } => {
                        sent.extend_from_slice(&data[..len]);
                        start += len;
                        fresh = fresh.min(end - start);
                    }
                    Framed::More => break,
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(*SEEN.lock().unwrap(), shown);
        assert_eq!(sent, b"abcdefghijklmnopqrstuvwx");
        // The host drops the rest through finish; new bytes start afresh.
        assert_eq!(st.finish(&buf[start..end]), Some(Opcode::Text));
        buf[..4].copy_from_slice(b"1234");
        SEEN.lock().unwrap().clear();
        assert!(matches!(
            st.frame(&buf[..4], 4),
            Framed::Message { len: 3, .. }
        ));
        assert_eq!(*SEEN.lock().unwrap(), [b"1234".to_vec()]);
    }
}
