//! The answer a backend builds during its query: a `wsy_answer*` is a
//! never-reused handle into the table of queries running now, so an
//! answer_* call after its query returned gets `WSY_ESTATE`, never a
//! dangling write.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use websocksy_abi::{wsy_answer, wsy_status, wsy_str, WSY_EINVAL, WSY_ERROR, WSY_ESTATE, WSY_OK};

use super::handles::PluginCtx;
use super::{bytes, guard, lock, text};
use crate::framing::{Framing, Registry};
use crate::peer::PeerAddress;
use crate::plugin::one_line;

/// A backend's answer under construction.
pub(crate) struct Answer {
    plugin: &'static PluginCtx,
    backend: String,
    registry: Arc<Registry>,
    protocol_count: usize,
    pub peer: Option<(PeerAddress, Option<crate::proxy_protocol::Version>)>,
    pub framing: Option<(String, Arc<dyn Framing>, Option<String>)>,
    pub protocol: Option<usize>,
    pub headers: Vec<(String, String)>,
    pub reject: Option<(u16, String)>,
    /// `answer_hub` (ABI 2.2): share the peer connection.
    pub hub: bool,
}

impl Answer {
    pub fn new(
        plugin: &'static PluginCtx,
        backend: &str,
        registry: Arc<Registry>,
        protocol_count: usize,
    ) -> Answer {
        Answer {
            plugin,
            backend: backend.to_string(),
            registry,
            protocol_count,
            peer: None,
            framing: None,
            protocol: None,
            headers: Vec::new(),
            reject: None,
            hub: false,
        }
    }

    fn refuse(&self, what: &str, why: &str) -> wsy_status {
        self.plugin.log(
            log::Level::Warn,
            &format!("backend '{}': {what}: {why}", self.backend),
        );
        WSY_EINVAL
    }
}

type AnswerCell = Arc<Mutex<Option<Answer>>>;

/// The answers of the queries running now, by handle.
static ANSWERS: Mutex<BTreeMap<usize, AnswerCell>> = Mutex::new(BTreeMap::new());
/// Handles are never reused (0 is never given: it would read as NULL).
static NEXT_ANSWER: AtomicUsize = AtomicUsize::new(1);

/// An answer open for answer_* calls while it lives.
pub(crate) struct AnswerHandle {
    id: usize,
    cell: AnswerCell,
}

impl AnswerHandle {
    pub fn open(answer: Answer) -> AnswerHandle {
        let id = NEXT_ANSWER.fetch_add(1, Ordering::Relaxed);
        let cell = Arc::new(Mutex::new(Some(answer)));
        lock(&ANSWERS).insert(id, Arc::clone(&cell));
        AnswerHandle { id, cell }
    }

    /// The opaque pointer given to the plugin: the handle, not an address.
    pub fn as_ptr(&self) -> *mut wsy_answer {
        self.id as *mut wsy_answer
    }

    /// Close the answer to further calls and return what it holds.
    pub fn close(self) -> Option<Answer> {
        lock(&ANSWERS).remove(&self.id);
        lock(&self.cell).take()
    }
}

impl Drop for AnswerHandle {
    fn drop(&mut self) {
        lock(&ANSWERS).remove(&self.id);
    }
}

/// Run `f` on the live answer `a`; `WSY_ESTATE` if it is not (any more).
fn with_answer(a: *mut wsy_answer, f: impl FnOnce(&mut Answer) -> wsy_status) -> wsy_status {
    if a.is_null() {
        return WSY_EINVAL;
    }
    let cell = lock(&ANSWERS).get(&(a as usize)).cloned();
    if let Some(cell) = cell {
        if let Some(answer) = lock(&cell).as_mut() {
            return f(answer);
        }
    }
    log::warn!(target: "websocksy::plugin", "answer_* called outside its query (WSY_ESTATE)");
    WSY_ESTATE
}

pub(super) unsafe extern "C" fn answer_peer(answer: *mut wsy_answer, peer: wsy_str) -> wsy_status {
    guard(WSY_ERROR, || {
        with_answer(answer, |a| {
            // SAFETY: the view is the plugin's, valid during this call.
            let url = match unsafe { text(peer, "peer") } {
                Ok(u) => u,
                Err(e) => return a.refuse("answer_peer", &e),
            };
            match PeerAddress::parse_with_options(url, None) {
                Ok(p) => {
                    a.peer = Some(p);
                    WSY_OK
                }
                Err(e) => a.refuse("answer_peer", &format!("invalid peer: {}", one_line(&e))),
            }
        })
    })
}

pub(super) unsafe extern "C" fn answer_framing(
    answer: *mut wsy_answer,
    name: wsy_str,
    config: wsy_str,
) -> wsy_status {
    guard(WSY_ERROR, || {
        with_answer(answer, |a| {
            // SAFETY: the views are the plugin's, valid during this call.
            let (name, config) = match unsafe { (text(name, "framing name"), bytes(config)) } {
                (Ok(n), c) => (n, c),
                (Err(e), _) => return a.refuse("answer_framing", &e),
            };
            let config = match config.map(std::str::from_utf8) {
                None => None,
                Some(Ok(c)) => Some(c.to_string()),
                Some(Err(_)) => {
                    return a.refuse("answer_framing", "framing config is not valid UTF-8")
                }
            };
            match a.registry.get(name) {
                Some(f) => {
                    a.framing = Some((name.to_string(), f, config));
                    WSY_OK
                }
                None => {
                    let why = format!(
                        "unknown framing '{}' (available: {})",
                        one_line(name),
                        a.registry.names().join(", ")
                    );
                    a.refuse("answer_framing", &why)
                }
            }
        })
    })
}

pub(super) unsafe extern "C" fn answer_protocol(
    answer: *mut wsy_answer,
    index: usize,
) -> wsy_status {
    guard(WSY_ERROR, || {
        with_answer(answer, |a| {
            if index >= a.protocol_count {
                let why = format!("index {index} out of range ({} offered)", a.protocol_count);
                return a.refuse("answer_protocol", &why);
            }
            a.protocol = Some(index);
            WSY_OK
        })
    })
}

/// Headers the host writes itself in a 101 response.
const HANDSHAKE_HEADERS: [&str; 7] = [
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "sec-websocket-version",
    "content-length",
];

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(super) unsafe extern "C" fn answer_header(
    answer: *mut wsy_answer,
    name: wsy_str,
    value: wsy_str,
) -> wsy_status {
    guard(WSY_ERROR, || {
        with_answer(answer, |a| {
            // SAFETY: the views are the plugin's, valid during this call.
            let (name, value) =
                match unsafe { (text(name, "header name"), text(value, "header value")) } {
                    (Ok(n), Ok(v)) => (n, v),
                    (Err(e), _) | (_, Err(e)) => return a.refuse("answer_header", &e),
                };
            if !is_token(name) {
                return a.refuse(
                    "answer_header",
                    &format!("invalid header name '{}'", one_line(name)),
                );
            }
            if HANDSHAKE_HEADERS
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
            {
                return a.refuse("answer_header", &format!("'{name}' is set by the host"));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return a.refuse(
                    "answer_header",
                    &format!("value of '{name}' has control characters"),
                );
            }
            a.headers.push((name.to_string(), value.trim().to_string()));
            WSY_OK
        })
    })
}

pub(super) unsafe extern "C" fn answer_reject(
    answer: *mut wsy_answer,
    status: u16,
    reason: wsy_str,
) -> wsy_status {
    guard(WSY_ERROR, || {
        with_answer(answer, |a| {
            if !(400..=599).contains(&status) {
                return a.refuse("answer_reject", &format!("status {status} is not 400-599"));
            }
            // SAFETY: the view is the plugin's, valid during this call.
            let reason = unsafe { bytes(reason) }
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            a.reject = Some((status, one_line(&reason)));
            WSY_OK
        })
    })
}

/// 2.2: the answer makes the client a member of its peer's fan-out hub.
pub(super) unsafe extern "C" fn answer_hub(answer: *mut wsy_answer, on: u32) -> wsy_status {
    guard(WSY_ERROR, || {
        with_answer(answer, |a| match on {
            0 | 1 => {
                a.hub = on == 1;
                WSY_OK
            }
            _ => a.refuse("answer_hub", &format!("on must be 0 or 1, not {on}")),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::super::s;
    use super::*;
    use std::path::PathBuf;

    fn answer() -> AnswerHandle {
        let ctx = PluginCtx::leak("unit", PathBuf::from("unit.so"));
        AnswerHandle::open(Answer::new(
            ctx,
            "b",
            Arc::new(Registry::with_builtins()),
            2,
        ))
    }

    #[test]
    fn answers_validate() {
        let h = answer();
        let a = h.as_ptr();
        // SAFETY: a live handle and views of locals.
        unsafe {
            assert_eq!(answer_peer(a, s("tcp://[::1]:80")), WSY_OK);
            assert_eq!(answer_peer(a, s("bogus://x")), WSY_EINVAL);
            assert_eq!(answer_peer(a, wsy_str::NONE), WSY_EINVAL);
            assert_eq!(answer_framing(a, s("newline"), s("lf")), WSY_OK);
            assert_eq!(answer_framing(a, s("nope"), wsy_str::NONE), WSY_EINVAL);
            assert_eq!(answer_protocol(a, 1), WSY_OK);
            assert_eq!(answer_protocol(a, 2), WSY_EINVAL);
            assert_eq!(answer_hub(a, 2), WSY_EINVAL);
            assert_eq!(answer_hub(a, 1), WSY_OK);
            assert_eq!(answer_header(a, s("X-A"), s("1")), WSY_OK);
            assert_eq!(answer_header(a, s("X A"), s("1")), WSY_EINVAL);
            assert_eq!(answer_header(a, s("X-B"), s("1\r\nEvil: 1")), WSY_EINVAL);
            assert_eq!(
                answer_header(a, s("sec-websocket-accept"), s("x")),
                WSY_EINVAL
            );
            assert_eq!(answer_reject(a, 200, s("no")), WSY_EINVAL);
            assert_eq!(answer_reject(a, 600, s("no")), WSY_EINVAL);
            assert_eq!(
                answer_reject(std::ptr::null_mut(), 403, s("no")),
                WSY_EINVAL
            );
        }
        let got = h.close().unwrap();
        assert_eq!(
            got.peer.as_ref().map(|(p, _)| p.to_string()),
            Some("tcp://[::1]:80".to_string())
        );
        let (name, _, config) = got.framing.as_ref().unwrap();
        assert_eq!((name.as_str(), config.as_deref()), ("newline", Some("lf")));
        assert_eq!(got.protocol, Some(1));
        assert!(got.hub);
        assert_eq!(got.headers, [("X-A".to_string(), "1".to_string())]);
        assert!(got.reject.is_none());
        // SAFETY: a closed handle is refused, not dereferenced.
        unsafe {
            assert_eq!(answer_peer(a, s("mirror://")), WSY_ESTATE);
            assert_eq!(answer_reject(a, 403, s("late")), WSY_ESTATE);
            assert_eq!(answer_hub(a, 1), WSY_ESTATE);
        }
        let h2 = answer();
        assert_ne!(h2.as_ptr(), a, "handles are never reused");
    }

    #[test]
    fn reject_reason_is_one_line() {
        let h = answer();
        // SAFETY: a live handle and a view of a local.
        let status = unsafe { answer_reject(h.as_ptr(), 403, s("go\naway")) };
        assert_eq!(status, WSY_OK);
        assert_eq!(
            h.close().unwrap().reject,
            Some((403, "go away".to_string()))
        );
    }
}
