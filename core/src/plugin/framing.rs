//! A framing registered by a plugin, as a core [`Framing`].
//!
//! Every value the plugin returns is checked: a count larger than what it
//! was shown, a negative count or an opcode other than TEXT, BINARY or
//! DISCARD becomes [`Framed::Error`], which closes that one connection with
//! 1011 (the session logs it). A TEXT message that is not UTF-8 goes out as
//! binary, as the header promises.
//!
//! Library-level options go to the descriptor's `configure` (when it has
//! one) at start-up, on the main thread, before any state exists.

use std::ffi::c_void;
use std::sync::Arc;

use websocksy_abi::{
    wsy_framing, wsy_opcode, wsy_str, WSY_EUNKNOWN_KEY, WSY_OK, WSY_OPCODE_BINARY,
    WSY_OPCODE_DISCARD, WSY_OPCODE_TEXT,
};

use super::host_api::{Desc, ErrorSlot, FramingDesc, PluginCtx};
use crate::framing::{ConfigureError, Framed, Framing, FramingState, Opcode};

struct Inner {
    name: String,
    raw: Desc<wsy_framing>,
    plugin: &'static PluginCtx,
}

/// A plugin's framing, shared by all connections that use it.
pub struct PluginFraming {
    inner: Arc<Inner>,
}

impl PluginFraming {
    pub(crate) fn new(desc: FramingDesc, plugin: &'static PluginCtx) -> PluginFraming {
        PluginFraming {
            inner: Arc::new(Inner {
                name: desc.name,
                raw: desc.raw,
                plugin,
            }),
        }
    }
}

/// The plugin's per-connection state pointer.
struct StatePtr(*mut c_void);

// SAFETY: the pointer is the plugin's and only ever passed back to its
// framing callbacks. The header promises those run on the event loop thread;
// a state belongs to one session, which the loop owns, so it is used by one
// thread at a time (created on the main thread at start-up for the
// defaultpeer's config check, otherwise on the loop) and never concurrently.
unsafe impl Send for StatePtr {}

impl Framing for PluginFraming {
    fn new_state(&self, config: Option<&str>) -> Result<Box<dyn FramingState>, String> {
        let f = &self.inner;
        let Some(state_new) = f.raw.0.state_new else {
            return Ok(Box::new(PluginState::new(
                Arc::clone(f),
                std::ptr::null_mut(),
                false,
            )));
        };
        let error = ErrorSlot::default();
        let mut state: *mut c_void = std::ptr::null_mut();
        // SAFETY: a registered callback with its own userdata; the config
        // view and the out-pointers are valid for the call.
        let status = unsafe {
            state_new(
                f.raw.0.userdata,
                wsy_str::from_opt(config),
                &mut state,
                error.as_ptr(),
            )
        };
        match status {
            WSY_OK => Ok(Box::new(PluginState::new(Arc::clone(f), state, true))),
            s => Err(error.describe(s)),
        }
    }

    fn configure(&self, key: &str, value: &str) -> Result<(), ConfigureError> {
        let f = &self.inner;
        // NULL, or past the descriptor's `size` (register_framing cleared it).
        let Some(configure) = f.raw.0.configure else {
            return Err(ConfigureError::NoOptions);
        };
        let error = ErrorSlot::default();
        // SAFETY: a registered callback with its own userdata, on the main
        // thread before any state_new (the header's rule, kept by
        // Registry::configure's caller); the views and the error slot
        // outlive the call.
        let status = unsafe {
            configure(
                f.raw.0.userdata,
                wsy_str::from_str(key),
                wsy_str::from_str(value),
                error.as_ptr(),
            )
        };
        match status {
            WSY_OK => Ok(()),
            WSY_EUNKNOWN_KEY => Err(ConfigureError::UnknownKey),
            s => Err(ConfigureError::Invalid(error.describe(s))),
        }
    }
}

/// One connection's state of a plugin framing.
struct PluginState {
    framing: Arc<Inner>,
    state: StatePtr,
    /// state_new ran and succeeded: state_free is owed.
    owned: bool,
    /// The framing misbehaved once: it is not called again.
    broken: bool,
    /// A TEXT message was not UTF-8 (logged once per connection).
    noted_bad_text: bool,
}

impl PluginState {
    fn new(framing: Arc<Inner>, state: *mut c_void, owned: bool) -> PluginState {
        PluginState {
            framing,
            state: StatePtr(state),
            owned,
            broken: false,
            noted_bad_text: false,
        }
    }

    fn fail(&mut self, why: String) -> Framed {
        self.broken = true;
        Framed::Error(format!("framing '{}' {why}", self.framing.name))
    }

    /// A TEXT from the plugin, demoted to binary if it is not UTF-8.
    fn text_or_binary(&mut self, data: &[u8]) -> Opcode {
        let opcode = Opcode::detect(data);
        if opcode == Opcode::Text {
            return opcode;
        }
        if !self.noted_bad_text {
            self.noted_bad_text = true;
            self.framing.plugin.log(
                log::Level::Debug,
                &format!(
                    "framing '{}': a text message is not UTF-8, sent as binary",
                    self.framing.name
                ),
            );
        }
        Opcode::Binary
    }
}

impl FramingState for PluginState {
    fn frame(&mut self, data: &[u8], last_read: usize) -> Framed {
        if self.broken {
            return Framed::Error(format!("framing '{}' failed earlier", self.framing.name));
        }
        let Some(frame) = self.framing.raw.0.frame else {
            return self.fail("has no frame function".into());
        };
        let mut opcode: wsy_opcode = WSY_OPCODE_BINARY;
        let (ud, state) = (self.framing.raw.0.userdata, self.state.0);
        // SAFETY: a registered callback with its userdata and this
        // connection's state; `data` and `opcode` are valid for the call.
        let n = unsafe {
            frame(
                ud,
                state,
                data.as_ptr(),
                data.len(),
                last_read.min(data.len()),
                &mut opcode,
            )
        };
        if n == 0 {
            return Framed::More;
        }
        if n < 0 {
            return self.fail(format!("returned error {n}"));
        }
        let len = match usize::try_from(n) {
            Ok(len) if len <= data.len() => len,
            _ => return self.fail(format!("returned {n} for {} bytes", data.len())),
        };
        match opcode {
            WSY_OPCODE_TEXT => Framed::Message {
                len,
                opcode: self.text_or_binary(&data[..len]),
            },
            WSY_OPCODE_BINARY => Framed::Message {
                len,
                opcode: Opcode::Binary,
            },
            WSY_OPCODE_DISCARD => Framed::Discard(len),
            other => self.fail(format!("set invalid opcode {other}")),
        }
    }

    fn finish(&mut self, data: &[u8]) -> Option<Opcode> {
        if self.broken || data.is_empty() {
            return None;
        }
        let Some(finish) = self.framing.raw.0.finish else {
            return Some(self.text_or_binary(data));
        };
        let mut opcode: wsy_opcode = WSY_OPCODE_BINARY;
        let (ud, state) = (self.framing.raw.0.userdata, self.state.0);
        // SAFETY: as in `frame`.
        let status = unsafe { finish(ud, state, data.as_ptr(), data.len(), &mut opcode) };
        let name = &self.framing.name;
        match (status, opcode) {
            (WSY_OK, WSY_OPCODE_TEXT) => Some(self.text_or_binary(data)),
            (WSY_OK, WSY_OPCODE_BINARY) => Some(Opcode::Binary),
            (WSY_OK, WSY_OPCODE_DISCARD) => None,
            (WSY_OK, other) => {
                let msg = format!(
                    "framing '{name}': finish set invalid opcode {other}; {} bytes dropped",
                    data.len()
                );
                self.framing.plugin.log(log::Level::Warn, &msg);
                None
            }
            (s, _) => {
                let msg = format!(
                    "framing '{name}': finish failed ({s}); {} bytes dropped",
                    data.len()
                );
                self.framing.plugin.log(log::Level::Warn, &msg);
                None
            }
        }
    }
}

impl Drop for PluginState {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if let Some(state_free) = self.framing.raw.0.state_free {
            let (ud, state) = (self.framing.raw.0.userdata, self.state.0);
            // SAFETY: exactly once per successful state_new, with no frame
            // call running (we hold the state exclusively).
            unsafe { state_free(ud, state) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::{drive, Event};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use websocksy_abi::{wsy_error, wsy_status, WSY_EINVAL};

    static FREED: AtomicUsize = AtomicUsize::new(0);

    /// A test framing driven by the first byte of the data: 'n' = newline
    /// framing (text), 'o' = overrun, 'e' = error, 'x' = opcode 7,
    /// 'd' = discard 1, 'b' = one binary byte, 't' = the rest as text.
    unsafe extern "C" fn frame(
        _ud: *mut c_void,
        state: *mut c_void,
        data: *const u8,
        length: usize,
        _last: usize,
        opcode: *mut wsy_opcode,
    ) -> i64 {
        // SAFETY: the host's promises.
        let (data, opcode) = unsafe { (std::slice::from_raw_parts(data, length), &mut *opcode) };
        assert!(!state.is_null());
        assert_eq!(*opcode, WSY_OPCODE_BINARY, "preset");
        match data[0] {
            b'o' => length as i64 + 1,
            b'e' => -1,
            b'x' => {
                *opcode = 7;
                1
            }
            b'd' => {
                *opcode = WSY_OPCODE_DISCARD;
                1
            }
            b'b' => 1,
            b't' => {
                *opcode = WSY_OPCODE_TEXT;
                length as i64
            }
            _ => match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    *opcode = WSY_OPCODE_TEXT;
                    i as i64 + 1
                }
                None => 0,
            },
        }
    }

    unsafe extern "C" fn state_new(
        _: *mut c_void,
        config: wsy_str,
        state: *mut *mut c_void,
        _: *mut wsy_error,
    ) -> wsy_status {
        // SAFETY: the host's promise.
        if unsafe { config.as_bytes() } == Some(&b"bad"[..]) {
            return WSY_EINVAL;
        }
        // SAFETY: the host's promise.
        unsafe { *state = Box::into_raw(Box::new(0u8)).cast() };
        WSY_OK
    }

    unsafe extern "C" fn state_free(_: *mut c_void, state: *mut c_void) {
        // SAFETY: made by state_new.
        drop(unsafe { Box::from_raw(state.cast::<u8>()) });
        FREED.fetch_add(1, Ordering::SeqCst);
    }

    /// Keys: `ok`, `unknown`, anything else is a bad value (with a message
    /// for `msg`).
    unsafe extern "C" fn configure(
        _: *mut c_void,
        key: wsy_str,
        value: wsy_str,
        error: *mut wsy_error,
    ) -> wsy_status {
        // SAFETY: the host's promise.
        let (key, value) = unsafe { (key.as_bytes(), value.as_bytes()) };
        match key {
            Some(b"ok") if value == Some(&b"1"[..]) => WSY_OK,
            Some(b"unknown") => WSY_EUNKNOWN_KEY,
            Some(b"msg") => {
                let set = crate::plugin::host_api::HOST_API.error_set.unwrap();
                // SAFETY: the live error slot the host passed in.
                unsafe { set(error, wsy_str::from_str("no good")) };
                WSY_EINVAL
            }
            _ => WSY_EINVAL,
        }
    }

    fn framing() -> PluginFraming {
        let raw = wsy_framing {
            size: std::mem::size_of::<wsy_framing>() as u32,
            abi_major: 2,
            abi_minor: 0,
            name: c"t".as_ptr(),
            userdata: std::ptr::null_mut(),
            state_new: Some(state_new),
            state_free: Some(state_free),
            frame: Some(frame),
            finish: None,
            configure: Some(configure),
        };
        let ctx = PluginCtx::leak("unit", PathBuf::from("unit.so"));
        PluginFraming::new(
            FramingDesc {
                name: "t".into(),
                raw: Desc(raw),
            },
            ctx,
        )
    }

    #[test]
    fn good_frames() {
        let f = framing();
        let mut st = f.new_state(None).unwrap();
        let (ev, rest) = drive(st.as_mut(), &[b"ab\ncd", b"\ngh"]);
        assert_eq!(
            ev,
            [
                Event::Message(Opcode::Text, b"ab\n".to_vec()),
                Event::Message(Opcode::Text, b"cd\n".to_vec())
            ]
        );
        assert_eq!(rest, b"gh");
        let (ev, _) = drive(st.as_mut(), &[b"db"]);
        assert_eq!(
            ev,
            [
                Event::Discard(b"d".to_vec()),
                Event::Message(Opcode::Binary, b"b".to_vec())
            ]
        );
        // Text that is not UTF-8 goes as binary.
        let (ev, _) = drive(st.as_mut(), &[b"t\xff"]);
        assert_eq!(ev, [Event::Message(Opcode::Binary, b"t\xff".to_vec())]);
        assert_eq!(
            st.finish(b"x"),
            Some(Opcode::Text),
            "no finish callback: the default"
        );
        assert_eq!(st.finish(b"\xff"), Some(Opcode::Binary));
        let before = FREED.load(Ordering::SeqCst);
        drop(st);
        assert_eq!(FREED.load(Ordering::SeqCst), before + 1);
    }

    #[test]
    fn misbehaviour_is_an_error() {
        let f = framing();
        for (input, want) in [
            (&b"o"[..], "returned 2 for 1 bytes"),
            (b"e", "returned error -1"),
            (b"x", "set invalid opcode 7"),
        ] {
            let mut st = f.new_state(Some("ok")).unwrap();
            match st.frame(input, input.len()) {
                Framed::Error(e) => assert_eq!(e, format!("framing 't' {want}")),
                other => panic!("{other:?}"),
            }
            assert!(
                matches!(st.frame(b"b", 1), Framed::Error(_)),
                "stays broken"
            );
            assert_eq!(st.finish(b"b"), None, "nothing more from a broken framing");
        }
        assert!(f.new_state(Some("bad")).is_err());
    }

    #[test]
    fn configure_statuses() {
        let f = framing();
        assert_eq!(f.configure("ok", "1"), Ok(()));
        assert_eq!(f.configure("unknown", "1"), Err(ConfigureError::UnknownKey));
        assert_eq!(
            f.configure("msg", "1"),
            Err(ConfigureError::Invalid("no good".into()))
        );
        assert_eq!(
            f.configure("ok", "2"),
            Err(ConfigureError::Invalid(
                "failed with status -2 (WSY_EINVAL)".into()
            ))
        );
        // Without the callback: no options at all.
        let mut raw = f.inner.raw.0;
        raw.configure = None;
        let ctx = PluginCtx::leak("unit2", PathBuf::from("unit2.so"));
        let none = PluginFraming::new(
            FramingDesc {
                name: "n".into(),
                raw: Desc(raw),
            },
            ctx,
        );
        assert_eq!(none.configure("ok", "1"), Err(ConfigureError::NoOptions));
    }
}
