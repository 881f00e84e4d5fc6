//! Framing functions: how a peer's byte stream is cut into WebSocket messages.
//!
//! The contract is websocksy's (bytes in, "frame n bytes" / "need more" out),
//! with the original's defects removed: the opcode is decided per frame, state
//! is created and dropped explicitly instead of through a NULL-data call, and
//! errors are a return value instead of an endless loop.
//!
//! A [`Framing`] is a named factory (one per framing function, shared by all
//! connections); a [`FramingState`] lives in one connection and sees that
//! connection's unframed bytes.

use std::collections::HashMap;
use std::sync::Arc;

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
        Some(if std::str::from_utf8(data).is_ok() {
            Opcode::Text
        } else {
            Opcode::Binary
        })
    }
}

/// A named framing function.
pub trait Framing: Send + Sync {
    /// Create the state for one connection. `config` is the backend's
    /// `framing-config`, `None` when unset. A bad config is an error here;
    /// the default backend calls this once at start-up so a bad config fails
    /// there and not on the first connection.
    fn new_state(&self, config: Option<&str>) -> Result<Box<dyn FramingState>, String>;
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
