//! Framing functions: how a peer's byte stream is cut into WebSocket messages.
//!
//! The contract is websocksy's (bytes in, "frame n bytes" / "need more" out),
//! with the original's defects removed: the opcode is decided per frame, state
//! is created and dropped explicitly instead of through a NULL-data call, and
//! errors are a return value instead of an endless loop.
//!
//! A [`Framing`] is a named factory (one per framing function, shared by all
//! connections); a [`FramingState`] lives in one connection and sees that
//! connection's unframed bytes. Library-level options (`[framing:NAME]`,
//! `--framing-option NAME:KEY=VALUE`) reach a framing through
//! [`Framing::configure`] at start-up, applied by [`Registry::configure`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::FramingOption;

mod auto;
mod newline;
mod separator;

pub use auto::{Auto, Binary};
pub use newline::Newline;
pub use separator::{parse_escapes, Separator};

/// Opcode of a message produced by a framing function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Text,
    Binary,
}

impl Opcode {
    /// Text if `data` is valid UTF-8, else binary: the one place the core
    /// makes that choice (a framing's default, a plugin's TEXT that is not
    /// UTF-8). The SDK has its own, `websocksy_plugin::Opcode::detect`.
    pub fn detect(data: &[u8]) -> Opcode {
        if std::str::from_utf8(data).is_ok() {
            Opcode::Text
        } else {
            Opcode::Binary
        }
    }
}

/// What a framing function decided about the bytes it was shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// No complete message yet: keep the bytes and call again when more arrive.
    More,
    /// Send `data[..len]` as one message with this opcode; `len` is at least 1.
    Message { len: usize, opcode: Opcode },
    /// Drop `data[..len]` without sending it; `len` is at least 1.
    Discard(usize),
    /// The stream cannot be framed: the connection closes with 1011.
    Error(String),
}

/// Per-connection framing state.
pub trait FramingState: Send {
    /// Decide on `data`, all bytes of this connection not yet framed.
    /// `last_read` is how many of the trailing bytes arrived since the last
    /// call returned [`Framed::More`] (so a search can resume where it
    /// stopped); it is never larger than `data.len()`. The host calls again
    /// after every `Message`/`Discard` while bytes remain.
    fn frame(&mut self, data: &[u8], last_read: usize) -> Framed;

    /// The peer closed: `data` is what was never framed. Return how to send it
    /// (default: one message, text if valid UTF-8, else binary). Returning
    /// `None` drops it (a partial record a framing knows to be useless).
    fn finish(&mut self, data: &[u8]) -> Option<Opcode> {
        Some(Opcode::detect(data))
    }
}

/// Why [`Framing::configure`] refused an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigureError {
    /// The framing takes no options at all (the built-ins, a plugin whose
    /// descriptor has no `configure`).
    NoOptions,
    /// The key is not an option of this framing.
    UnknownKey,
    /// The value is not valid; the message says why.
    Invalid(String),
    /// The framing failed otherwise (a plugin panicked); the whole message.
    Failed(String),
}

/// A named framing function.
pub trait Framing: Send + Sync {
    /// Create the state for one connection. `config` is the backend's
    /// `framing-config`, `None` when unset. A bad config is an error here;
    /// the default backend calls this once at start-up so a bad config fails
    /// there and not on the first connection.
    fn new_state(&self, config: Option<&str>) -> Result<Box<dyn FramingState>, String>;

    /// One library-level option, on the main thread at start-up, in the
    /// order given and before any [`new_state`](Self::new_state). The
    /// default takes no options.
    fn configure(&self, key: &str, value: &str) -> Result<(), ConfigureError> {
        let _ = (key, value);
        Err(ConfigureError::NoOptions)
    }
}

/// Framing functions by name.
#[derive(Clone)]
pub struct Registry {
    by_name: HashMap<String, Arc<dyn Framing>>,
}

impl Registry {
    /// The built-in framings: `auto`, `binary`, `separator`, `newline`.
    pub fn with_builtins() -> Self {
        let mut r = Registry {
            by_name: HashMap::new(),
        };
        r.register("auto", Arc::new(Auto));
        r.register("binary", Arc::new(Binary));
        r.register("separator", Arc::new(Separator));
        r.register("newline", Arc::new(Newline));
        r
    }

    /// Add or replace a framing (a plugin may override a built-in name).
    pub fn register(&mut self, name: &str, framing: Arc<dyn Framing>) -> Option<Arc<dyn Framing>> {
        self.by_name.insert(name.to_string(), framing)
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Framing>> {
        self.by_name.get(name).cloned()
    }

    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Pass each option to its framing's [`Framing::configure`], in order.
    /// Called once at start-up, after every plugin is loaded and before any
    /// framing state exists. The first failure is a one-line error naming
    /// the option's origin (file and line, or the argument).
    pub fn configure(&self, options: &[FramingOption]) -> Result<(), String> {
        for opt in options {
            let (name, key, at) = (&opt.framing, &opt.key, &opt.origin);
            let Some(framing) = self.get(name) else {
                return Err(format!(
                    "{at}: unknown framing '{name}' (available: {})",
                    self.names().join(", ")
                ));
            };
            match framing.configure(key, &opt.value) {
                Ok(()) => {}
                Err(ConfigureError::NoOptions) => {
                    return Err(format!(
                        "{at}: framing '{name}' takes no options (got '{key}')"
                    ))
                }
                Err(ConfigureError::UnknownKey) => {
                    return Err(format!("{at}: unknown option '{key}' for framing '{name}'"))
                }
                Err(ConfigureError::Invalid(why)) => {
                    return Err(format!(
                        "{at}: invalid value '{}' for option '{key}' of framing '{name}': {why}",
                        opt.value
                    ))
                }
                Err(ConfigureError::Failed(why)) => return Err(format!("{at}: {why}")),
            }
        }
        Ok(())
    }
}

/// What the host did with one decision of a framing function (tests only).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Message(Opcode, Vec<u8>),
    Discard(Vec<u8>),
    Error(String),
}

/// Feed `reads` to `state` the way the host does: append each read to the
/// buffer, call `frame` with `last_read` = bytes that arrived since the last
/// `More`, remove framed prefixes, and call again while bytes remain.
/// Returns what happened and the bytes left unframed. Stops at the first
/// `Error` (the host would close the connection). Panics on a contract
/// violation (a zero or overlong length) so a test fails loudly.
#[cfg(test)]
pub(crate) fn drive(state: &mut dyn FramingState, reads: &[&[u8]]) -> (Vec<Event>, Vec<u8>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    for read in reads {
        // A zero-byte recv is EOF for the host, never a framing call.
        if read.is_empty() {
            continue;
        }
        buf.extend_from_slice(read);
        let mut last_read = read.len();
        while !buf.is_empty() {
            let (len, event) = match state.frame(&buf, last_read) {
                Framed::More => break,
                Framed::Message { len, opcode } => {
                    assert!(
                        len >= 1 && len <= buf.len(),
                        "framed {len} of {}",
                        buf.len()
                    );
                    (len, Event::Message(opcode, buf[..len].to_vec()))
                }
                Framed::Discard(len) => {
                    assert!(
                        len >= 1 && len <= buf.len(),
                        "discarded {len} of {}",
                        buf.len()
                    );
                    (len, Event::Discard(buf[..len].to_vec()))
                }
                Framed::Error(e) => {
                    events.push(Event::Error(e));
                    return (events, buf);
                }
            };
            events.push(event);
            buf.drain(..len);
            last_read = last_read.min(buf.len());
        }
    }
    (events, buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_registered() {
        let r = Registry::with_builtins();
        assert_eq!(r.names(), ["auto", "binary", "newline", "separator"]);
        for name in r.names() {
            assert!(r.get(name).unwrap().new_state(None).is_ok(), "{name}");
        }
        assert!(r.get("nope").is_none());
    }

    /// Remembers its options; `bad` is an invalid value, `boom` fails.
    #[derive(Default)]
    struct Configurable(std::sync::Mutex<Vec<String>>);

    impl Framing for Configurable {
        fn new_state(&self, _: Option<&str>) -> Result<Box<dyn FramingState>, String> {
            Binary.new_state(None)
        }

        fn configure(&self, key: &str, value: &str) -> Result<(), ConfigureError> {
            match (key, value) {
                ("k", "bad") => Err(ConfigureError::Invalid("not good".into())),
                ("k", v) => {
                    self.0.lock().unwrap().push(v.to_string());
                    Ok(())
                }
                ("boom", _) => Err(ConfigureError::Failed("framing 'c' panicked".into())),
                _ => Err(ConfigureError::UnknownKey),
            }
        }
    }

    fn opt(framing: &str, key: &str, value: &str, line: usize) -> FramingOption {
        FramingOption {
            framing: framing.into(),
            key: key.into(),
            value: value.into(),
            origin: crate::config::Origin::File {
                path: "w.cfg".into(),
                line,
            },
        }
    }

    #[test]
    fn configure_applies_options_in_order_and_names_the_origin() {
        let mut r = Registry::with_builtins();
        let c = Arc::new(Configurable::default());
        r.register("c", c.clone());
        assert_eq!(r.configure(&[]), Ok(()));
        assert_eq!(
            r.configure(&[opt("c", "k", "1", 1), opt("c", "k", "2", 2)]),
            Ok(())
        );
        assert_eq!(*c.0.lock().unwrap(), ["1", "2"]);
        for (o, want) in [
            (
                opt("c", "x", "1", 3),
                "w.cfg:3: unknown option 'x' for framing 'c'",
            ),
            (
                opt("c", "k", "bad", 4),
                "w.cfg:4: invalid value 'bad' for option 'k' of framing 'c': not good",
            ),
            (opt("c", "boom", "", 5), "w.cfg:5: framing 'c' panicked"),
            (
                opt("nope", "k", "1", 6),
                "w.cfg:6: unknown framing 'nope' (available: auto, binary, c, newline, separator)",
            ),
        ] {
            assert_eq!(r.configure(&[o]), Err(want.to_string()));
        }
        for name in ["auto", "binary", "separator", "newline"] {
            assert_eq!(
                r.configure(&[opt(name, "k", "1", 7)]),
                Err(format!(
                    "w.cfg:7: framing '{name}' takes no options (got 'k')"
                ))
            );
        }
        // The first failure stops: later options are not applied.
        let before = c.0.lock().unwrap().len();
        assert!(r
            .configure(&[opt("c", "x", "1", 8), opt("c", "k", "3", 9)])
            .is_err());
        assert_eq!(c.0.lock().unwrap().len(), before);
    }

    #[test]
    fn register_replaces() {
        let mut r = Registry::with_builtins();
        assert!(r.register("auto", Arc::new(Binary)).is_some());
        assert!(r.register("extra", Arc::new(Binary)).is_none());
        let mut st = r.get("auto").unwrap().new_state(None).unwrap();
        let (ev, rest) = drive(st.as_mut(), &[b"text"]);
        assert_eq!(ev, [Event::Message(Opcode::Binary, b"text".to_vec())]);
        assert!(rest.is_empty());
    }
}
