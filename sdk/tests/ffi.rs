//! The FFI boundary, exercised as the host would: a mock host table is given
//! to the `websocksy_plugin_v2` that `export!` emits, and the registered
//! descriptors' trampolines are called directly. Panics and errors must come
//! back as status codes, never unwind.

use std::ffi::{c_void, CStr};
use std::sync::{Mutex, OnceLock};

use websocksy_plugin::abi::{self, *};
use websocksy_plugin::{Answer, Backend, ConfigError, Frame, Framing, Opcode, Request};

// ----------------------------------------------------------------------------
// A plugin with a framing and a backend that misbehave on request.

struct Tester;

impl Framing for Tester {
    type State = Vec<u8>;
    const NAME: &'static str = "tester";

    fn new_state(&self, config: Option<&str>) -> Result<Vec<u8>, String> {
        match config {
            Some("panic") => panic!("state_new asked to panic"),
            Some("bad") => Err("bad config".into()),
            other => Ok(other.unwrap_or("").as_bytes().to_vec()),
        }
    }

    fn frame(&self, state: &mut Vec<u8>, data: &[u8], last_read: usize) -> Frame {
        state.extend_from_slice(&data[data.len() - last_read..]);
        match data {
            b"boom" => panic!("frame asked to panic"),
            b"error" => Frame::Error("cannot frame 'error'".into()),
            b"overrun" => Frame::binary(data.len() + 1),
            b"drop" => Frame::Discard(4),
            b"text" => Frame::text(4),
            _ if data.len() >= 2 => Frame::binary(2),
            _ => Frame::More,
        }
    }

    fn finish(&self, _: &mut Vec<u8>, data: &[u8]) -> Option<Opcode> {
        match data {
            b"x" => None,
            b"!" => panic!("finish asked to panic"),
            _ => Some(Opcode::Binary),
        }
    }
}

/// A framing with library-level options: records of `size` bytes (default
/// 2), sent as `opcode` (default binary). Only
/// `framing_configure_then_frozen` uses it, so its order is that test's.
struct Tuned {
    size: usize,
    text: bool,
}

impl Framing for Tuned {
    type State = ();
    const NAME: &'static str = "tuned";

    fn configure(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "size" => {
                self.size = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| ConfigError::Invalid(format!("bad size {value:?}")))?
            }
            "opcode" => self.text = value == "text",
            "panic" => panic!("configure asked to panic"),
            _ => return Err(ConfigError::UnknownKey),
        }
        Ok(())
    }

    fn new_state(&self, _: Option<&str>) -> Result<(), String> {
        Ok(())
    }

    fn frame(&self, _: &mut (), data: &[u8], _: usize) -> Frame {
        match data.len() >= self.size {
            true if self.text => Frame::text(self.size),
            true => Frame::binary(self.size),
            false => Frame::More,
        }
    }
}

#[derive(Default)]
struct TestBackend {
    peer: String,
}

impl Backend for TestBackend {
    const NAME: &'static str = "tester";
    const NONBLOCKING: bool = true;

    fn configure(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "peer" => {
                self.peer = value.to_owned();
                Ok(())
            }
            "bad" => Err(ConfigError::Invalid(format!("bad value {value:?}"))),
            "panic" => panic!("configure asked to panic"),
            _ => Err(ConfigError::UnknownKey),
        }
    }

    fn query(&self, request: &Request<'_>, answer: &mut Answer<'_>) -> Result<(), String> {
        match request.path() {
            "/panic" => panic!("query asked to panic"),
            "/err" => Err("query failed on purpose".into()),
            "/who" => {
                answer.peer(&self.peer)?;
                answer.header("X-User", request.user().unwrap_or("(none)"))?;
                Ok(())
            }
            "/hub" => {
                answer.peer(&self.peer)?;
                let hub = match answer.hub(true) {
                    Ok(()) => "on".to_string(),
                    Err(e) => e.to_string(),
                };
                answer.header("X-Hub", &hub)?;
                Ok(())
            }
            _ => {
                answer.peer(&self.peer)?;
                let cookie = request.cookie("s").unwrap_or("-");
                let header = request.header("x-test").unwrap_or("-");
                answer.header(
                    "X-Seen",
                    &format!("{cookie} {header} {:?}", request.query()),
                )?;
                if let Some(i) = request.protocols().position(|p| p == "two") {
                    answer.protocol(i)?;
                }
                Ok(())
            }
        }
    }
}

websocksy_plugin::export!(
    backends: [TestBackend::default()],
    framings: [Tester, Tuned { size: 2, text: false }],
);

// ----------------------------------------------------------------------------
// The mock host.

#[derive(Default)]
struct Registered {
    framings: Vec<wsy_framing>,
    backends: Vec<wsy_backend>,
}

struct Shared<T>(Mutex<T>);
// SAFETY: the descriptors hold pointers to leaked, thread-safe plugin data;
// the tests only copy them out under the lock.
unsafe impl<T> Sync for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Send for Shared<T> {}

static REGISTERED: OnceLock<Shared<Registered>> = OnceLock::new();
static LOGS: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

fn registered() -> &'static Mutex<Registered> {
    &REGISTERED
        .get_or_init(|| Shared(Mutex::new(Registered::default())))
        .0
}

/// SAFETY (for all mock functions): called by the SDK with the views and
/// handles the ABI describes; `wsy_error` handles are `*mut String` and
/// `wsy_answer` handles are `*mut MockAnswer` made by these tests.
fn text(s: wsy_str) -> String {
    // SAFETY: see above.
    String::from_utf8(unsafe { s.as_bytes() }.unwrap_or_default().to_vec()).unwrap()
}

unsafe extern "C" fn m_log(_: *const wsy_plugin, level: u32, message: wsy_str) {
    LOGS.lock().unwrap().push((level, text(message)));
}

unsafe extern "C" fn m_register_backend(_: *mut wsy_plugin, b: *const wsy_backend) -> wsy_status {
    // SAFETY: see above.
    registered().lock().unwrap().backends.push(unsafe { *b });
    WSY_OK
}

unsafe extern "C" fn m_register_framing(_: *mut wsy_plugin, f: *const wsy_framing) -> wsy_status {
    // SAFETY: see above.
    registered().lock().unwrap().framings.push(unsafe { *f });
    WSY_OK
}

unsafe extern "C" fn m_error_set(error: *mut wsy_error, message: wsy_str) {
    // SAFETY: see above.
    unsafe { *error.cast::<String>() = text(message) };
}

#[derive(Default, Debug)]
struct MockAnswer {
    peer: Option<String>,
    protocol: Option<usize>,
    headers: Vec<(String, String)>,
}

unsafe extern "C" fn m_answer_peer(a: *mut wsy_answer, peer: wsy_str) -> wsy_status {
    // SAFETY: see above.
    unsafe { (*a.cast::<MockAnswer>()).peer = Some(text(peer)) };
    WSY_OK
}

unsafe extern "C" fn m_answer_framing(_: *mut wsy_answer, _: wsy_str, _: wsy_str) -> wsy_status {
    WSY_OK
}

unsafe extern "C" fn m_answer_protocol(a: *mut wsy_answer, index: usize) -> wsy_status {
    // SAFETY: see above.
    unsafe { (*a.cast::<MockAnswer>()).protocol = Some(index) };
    WSY_OK
}

unsafe extern "C" fn m_answer_header(a: *mut wsy_answer, n: wsy_str, v: wsy_str) -> wsy_status {
    // SAFETY: see above.
    unsafe { (*a.cast::<MockAnswer>()).headers.push((text(n), text(v))) };
    WSY_OK
}

unsafe extern "C" fn m_answer_reject(_: *mut wsy_answer, _: u16, _: wsy_str) -> wsy_status {
    WSY_OK
}

/// Set in the mock table's memory, but past a 2.0 table's `size`: the SDK
/// must never call it.
unsafe extern "C" fn m_answer_hub(_: *mut wsy_answer, _: u32) -> wsy_status {
    panic!("answer_hub called through a 2.0 host table")
}

/// A 2.0 host's table: its `size` ends before `answer_hub` (2.2).
static HOST: wsy_host_api = wsy_host_api {
    size: wsy_host_api::SIZE_2_0 as u32,
    abi_major: 2,
    abi_minor: 0,
    log: Some(m_log),
    register_backend: Some(m_register_backend),
    register_framing: Some(m_register_framing),
    error_set: Some(m_error_set),
    answer_peer: Some(m_answer_peer),
    answer_framing: Some(m_answer_framing),
    answer_protocol: Some(m_answer_protocol),
    answer_header: Some(m_answer_header),
    answer_reject: Some(m_answer_reject),
    request_header: None,
    request_cookie: None,
    answer_hub: Some(m_answer_hub),
};

static PLUGIN_HANDLE: u8 = 0;

/// Call the entry once; return the descriptors it registered (the `tester`
/// framing; see [`tuned`] for the other).
fn descriptors() -> (wsy_framing, wsy_backend) {
    let (f, b) = all_descriptors();
    (f[0], b)
}

/// The `tuned` framing's descriptor.
fn tuned() -> wsy_framing {
    all_descriptors().0[1]
}

fn all_descriptors() -> (Vec<wsy_framing>, wsy_backend) {
    static ONCE: OnceLock<i32> = OnceLock::new();
    let status = *ONCE.get_or_init(|| {
        let mut err = String::new();
        // SAFETY: a well-formed host table valid for the whole test run.
        let s = unsafe {
            websocksy_plugin_v2(
                (&PLUGIN_HANDLE as *const u8).cast_mut().cast(),
                &HOST,
                (&mut err as *mut String).cast(),
            )
        };
        assert_eq!(err, "");
        s
    });
    assert_eq!(status, WSY_OK);
    let r = registered().lock().unwrap();
    assert_eq!(r.framings.len(), 2);
    assert_eq!(r.backends.len(), 1);
    (r.framings.clone(), r.backends[0])
}

// ----------------------------------------------------------------------------

#[test]
fn entry_registers_descriptors() {
    let (f, b) = descriptors();
    assert_eq!(f.size as usize, std::mem::size_of::<wsy_framing>());
    assert_eq!((f.abi_major, f.abi_minor), (2, 0));
    // SAFETY: the SDK registers NUL-terminated leaked names.
    assert_eq!(
        unsafe { CStr::from_ptr(f.name) }.to_str().unwrap(),
        "tester"
    );
    assert!(
        f.state_new.is_some() && f.state_free.is_some() && f.frame.is_some() && f.finish.is_some()
    );
    assert!(f.configure.is_some());
    // SAFETY: as above.
    assert_eq!(
        unsafe { CStr::from_ptr(tuned().name) }.to_str().unwrap(),
        "tuned"
    );
    assert_eq!(b.size as usize, std::mem::size_of::<wsy_backend>());
    assert_eq!((b.abi_major, b.abi_minor), (2, 0));
    assert_eq!(b.flags, WSY_BACKEND_NONBLOCKING);
    assert!(b.configure.is_some() && b.start.is_some() && b.query.is_some() && b.cleanup.is_some());
}

#[test]
fn entry_refuses_other_major_and_null() {
    let mut other = HOST;
    other.abi_major = 3;
    let mut err = String::new();
    // SAFETY: a well-formed table; the entry must refuse before using it.
    let s = unsafe {
        websocksy_plugin_v2(
            (&PLUGIN_HANDLE as *const u8).cast_mut().cast(),
            &other,
            (&mut err as *mut String).cast(),
        )
    };
    assert_eq!(s, WSY_EVERSION);
    // SAFETY: NULL host must be refused without a dereference.
    let s = unsafe {
        websocksy_plugin_v2(
            (&PLUGIN_HANDLE as *const u8).cast_mut().cast(),
            std::ptr::null(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(s, WSY_EINVAL);
}

struct Conn {
    f: wsy_framing,
    state: *mut c_void,
}

impl Conn {
    fn new(config: Option<&str>) -> Result<Conn, (wsy_status, String)> {
        Conn::of(descriptors().0, config)
    }

    fn of(f: wsy_framing, config: Option<&str>) -> Result<Conn, (wsy_status, String)> {
        let mut state: *mut c_void = std::ptr::null_mut();
        let mut err = String::new();
        // SAFETY: arguments as the host passes them.
        let s = unsafe {
            f.state_new.unwrap()(
                f.userdata,
                wsy_str::from_opt(config),
                &mut state,
                (&mut err as *mut String).cast(),
            )
        };
        if s == WSY_OK {
            Ok(Conn { f, state })
        } else {
            Err((s, err))
        }
    }

    fn frame(&mut self, data: &[u8], last_read: usize) -> (i64, wsy_opcode) {
        let mut op = WSY_OPCODE_BINARY;
        // SAFETY: arguments as the host passes them.
        let n = unsafe {
            self.f.frame.unwrap()(
                self.f.userdata,
                self.state,
                data.as_ptr(),
                data.len(),
                last_read,
                &mut op,
            )
        };
        (n, op)
    }

    fn finish(&mut self, data: &[u8]) -> (wsy_status, wsy_opcode) {
        let mut op = WSY_OPCODE_BINARY;
        // SAFETY: arguments as the host passes them.
        let s = unsafe {
            self.f.finish.unwrap()(
                self.f.userdata,
                self.state,
                data.as_ptr(),
                data.len(),
                &mut op,
            )
        };
        (s, op)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: the state from state_new, freed once.
        unsafe { self.f.state_free.unwrap()(self.f.userdata, self.state) };
    }
}

#[test]
fn framing_state_new_errors_and_panics_become_statuses() {
    assert!(Conn::new(None).is_ok());
    assert!(Conn::new(Some("cfg")).is_ok());
    let (s, e) = Conn::new(Some("bad")).err().unwrap();
    assert_eq!((s, e.as_str()), (WSY_EINVAL, "bad config"));
    let (s, e) = Conn::new(Some("panic")).err().unwrap();
    assert_eq!(s, WSY_ERROR);
    assert!(
        e.contains("panicked") && e.contains("state_new asked to panic"),
        "{e}"
    );
}

#[test]
fn framing_results_map_to_returns() {
    let mut c = Conn::new(None).unwrap();
    assert_eq!(c.frame(b"a", 1), (0, WSY_OPCODE_BINARY));
    assert_eq!(c.frame(b"abc", 2), (2, WSY_OPCODE_BINARY));
    assert_eq!(c.frame(b"text", 4), (4, WSY_OPCODE_TEXT));
    assert_eq!(c.frame(b"drop", 4).0, 4);
    assert_eq!(c.frame(b"drop", 4).1, WSY_OPCODE_DISCARD);
    assert_eq!(c.frame(b"error", 5).0, -1);
    assert_eq!(c.frame(b"overrun", 7).0, -1);
    // A last_read beyond the data is clamped, not trusted.
    assert_eq!(c.frame(b"zz", 1000).0, 2);
    assert_eq!(c.finish(b"rest"), (WSY_OK, WSY_OPCODE_BINARY));
    assert_eq!(c.finish(b"x"), (WSY_OK, WSY_OPCODE_DISCARD));
    assert_eq!(c.finish(b"!").0, WSY_ERROR);
    assert!(LOGS
        .lock()
        .unwrap()
        .iter()
        .any(|(l, m)| *l == WSY_LOG_WARN && m.contains("cannot frame 'error'")));
}

#[test]
fn framing_panic_is_caught_and_logged() {
    let mut c = Conn::new(None).unwrap();
    assert_eq!(c.frame(b"boom", 4).0, -1);
    assert!(LOGS.lock().unwrap().iter().any(|(l, m)| *l == WSY_LOG_ERROR
        && m.contains("frame of 'tester' panicked: frame asked to panic")));
    // The framing still works for this and other connections.
    assert_eq!(c.frame(b"ok", 2).0, 2);
}

#[test]
fn framing_null_pointers_are_refused() {
    let (f, _) = descriptors();
    let mut op = WSY_OPCODE_BINARY;
    // SAFETY: NULL state / data must be refused without a dereference.
    unsafe {
        assert_eq!(
            f.frame.unwrap()(
                f.userdata,
                std::ptr::null_mut(),
                b"ab".as_ptr(),
                2,
                2,
                &mut op
            ),
            -1
        );
        let c = Conn::new(None).unwrap();
        assert_eq!(
            f.frame.unwrap()(f.userdata, c.state, std::ptr::null(), 2, 2, &mut op),
            -1
        );
        assert_eq!(
            f.frame.unwrap()(
                f.userdata,
                c.state,
                b"ab".as_ptr(),
                2,
                2,
                std::ptr::null_mut()
            ),
            -1
        );
        // An empty NULL view is fine.
        assert_eq!(
            f.frame.unwrap()(f.userdata, c.state, std::ptr::null(), 0, 0, &mut op),
            0
        );
        f.state_free.unwrap()(f.userdata, std::ptr::null_mut());
    }
}

fn call_configure(
    f: wsy_configure_fn,
    ud: *mut c_void,
    key: &str,
    value: &str,
) -> (wsy_status, String) {
    let mut err = String::new();
    // SAFETY: arguments as the host passes them.
    let s = unsafe {
        f(
            ud,
            wsy_str::from_str(key),
            wsy_str::from_str(value),
            (&mut err as *mut String).cast(),
        )
    };
    (s, err)
}

#[test]
fn framing_configure_then_frozen() {
    let f = tuned();
    let conf = |k: &str, v: &str| call_configure(f.configure.unwrap(), f.userdata, k, v);
    assert_eq!(conf("size", "3"), (WSY_OK, String::new()));
    let (s, e) = conf("colour", "red");
    assert_eq!(s, WSY_EUNKNOWN_KEY);
    assert!(e.contains("colour"), "{e}");
    assert_eq!(conf("size", "0"), (WSY_EINVAL, "bad size \"0\"".into()));
    let (s, e) = conf("panic", "");
    assert_eq!(s, WSY_ERROR);
    assert!(e.contains("configure of 'tuned' panicked"), "{e}");
    // A panic under the mutex poisons it; the SDK recovers.
    assert_eq!(conf("opcode", "text").0, WSY_OK);
    // SAFETY: a NULL key must be refused without a dereference.
    let s = unsafe {
        f.configure.unwrap()(
            f.userdata,
            wsy_str::NONE,
            wsy_str::from_str("1"),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(s, WSY_EINVAL);

    // The options are what the connections see.
    let mut c = Conn::of(f, None).unwrap();
    assert_eq!(c.frame(b"ab", 2), (0, WSY_OPCODE_BINARY));
    assert_eq!(c.frame(b"abcd", 2), (3, WSY_OPCODE_TEXT));
    // Once a state exists, configure is refused and changes nothing.
    let (s, e) = conf("size", "1");
    assert_eq!(s, WSY_ESTATE);
    assert!(e.contains("after the framing was in use"), "{e}");
    assert_eq!(c.frame(b"ab", 2).0, 0);
    let mut c2 = Conn::of(f, None).unwrap();
    assert_eq!(c2.frame(b"xyz", 3), (3, WSY_OPCODE_TEXT));
}

fn configure(key: &str, value: &str) -> (wsy_status, String) {
    let (_, b) = descriptors();
    let mut err = String::new();
    // SAFETY: arguments as the host passes them.
    let s = unsafe {
        b.configure.unwrap()(
            b.userdata,
            wsy_str::from_str(key),
            wsy_str::from_str(value),
            (&mut err as *mut String).cast(),
        )
    };
    (s, err)
}

fn query(target: &str, headers: &[(&str, &str)], protocols: &[&str]) -> (wsy_status, MockAnswer) {
    query_sized(
        target,
        headers,
        protocols,
        std::mem::size_of::<wsy_request>(),
    )
}

/// [`query`] with the request's `size` set as a host of another minor would.
fn query_sized(
    target: &str,
    headers: &[(&str, &str)],
    protocols: &[&str],
    size: usize,
) -> (wsy_status, MockAnswer) {
    let (_, b) = descriptors();
    let hs: Vec<wsy_header> = headers
        .iter()
        .map(|(n, v)| wsy_header {
            name: wsy_str::from_str(n),
            value: wsy_str::from_str(v),
        })
        .collect();
    let ps: Vec<wsy_str> = protocols.iter().map(|p| wsy_str::from_str(p)).collect();
    let (path, q) = target
        .split_once('?')
        .map_or((target, None), |(p, q)| (p, Some(q)));
    let req = wsy_request {
        size: size as u32,
        target: wsy_str::from_str(target),
        path: wsy_str::from_str(path),
        query: wsy_str::from_opt(q),
        headers: hs.as_ptr(),
        header_count: hs.len(),
        protocols: ps.as_ptr(),
        protocol_count: ps.len(),
        client_address: wsy_str::from_str("127.0.0.1:1"),
        tls: 0,
        reserved: 0,
        user: wsy_str::from_str("set but beyond size on older hosts"),
        tls_subject: wsy_str::NONE,
        tls_sans: std::ptr::null(),
        tls_san_count: 0,
    };
    let mut a = MockAnswer::default();
    // SAFETY: a request whose views outlive the call; the answer handle is
    // what the mock answer functions expect.
    let s = unsafe { b.query.unwrap()(b.userdata, &req, (&mut a as *mut MockAnswer).cast()) };
    (s, a)
}

#[test]
fn query_runs_on_a_2_0_host_and_refuses_less() {
    let size_2_0 = wsy_request::SIZE_2_0;
    // A 2.0 host's request is smaller than this crate's struct: still served.
    let (s, a) = query_sized("/ok", &[("X-TEST", "h")], &["two"], size_2_0);
    assert_eq!(s, WSY_OK);
    assert_eq!(a.protocol, Some(0));
    // The user view is set in memory past a 2.0 `size`: not read.
    let (s, a) = query_sized("/who", &[], &[], size_2_0);
    assert_eq!(s, WSY_OK);
    assert_eq!(a.headers, [("X-User".to_string(), "(none)".to_string())]);
    let (_, a) = query("/who", &[], &[]);
    assert_eq!(
        a.headers,
        [(
            "X-User".to_string(),
            "set but beyond size on older hosts".to_string()
        )]
    );
    // Less than 2.0 is no 2.x host.
    assert_eq!(query_sized("/ok", &[], &[], size_2_0 - 1).0, WSY_EVERSION);
    // A function a 2.0 host's table lacks is refused, not called.
    let (s, a) = query("/hub", &[], &[]);
    assert_eq!(s, WSY_OK);
    assert_eq!(
        a.headers,
        [(
            "X-Hub".to_string(),
            "host refused the call: unsupported ABI version (-4)".to_string()
        )]
    );
}

#[test]
fn backend_configure_statuses_and_query() {
    assert_eq!(
        configure("peer", "tcp://127.0.0.1:9"),
        (WSY_OK, String::new())
    );
    let (s, e) = configure("nope", "1");
    assert_eq!(s, WSY_EUNKNOWN_KEY);
    assert!(e.contains("nope"));
    assert_eq!(
        configure("bad", "v"),
        (WSY_EINVAL, "bad value \"v\"".into())
    );
    let (s, e) = configure("panic", "");
    assert_eq!(s, WSY_ERROR);
    assert!(e.contains("configure asked to panic"), "{e}");
    // A panic under the write lock poisons it; the SDK recovers.
    assert_eq!(configure("peer", "tcp://127.0.0.1:9").0, WSY_OK);
    let (_, b) = descriptors();
    let mut err = String::new();
    // SAFETY: as the host calls start.
    assert_eq!(
        unsafe { b.start.unwrap()(b.userdata, (&mut err as *mut String).cast()) },
        WSY_OK
    );

    let (s, a) = query(
        "/ok?x=1",
        &[("Cookie", "a=1;s=42"), ("X-TEST", "h")],
        &["one", "two"],
    );
    assert_eq!(s, WSY_OK);
    assert_eq!(a.peer.as_deref(), Some("tcp://127.0.0.1:9"));
    assert_eq!(a.protocol, Some(1));
    assert_eq!(
        a.headers,
        [("X-Seen".to_string(), "42 h Some(\"x=1\")".to_string())]
    );

    assert_eq!(query("/err", &[], &[]).0, WSY_ERROR);
    let (s, a) = query("/panic", &[], &[]);
    assert_eq!(s, WSY_ERROR);
    assert!(a.peer.is_none());
    // Still serving after the panic.
    assert_eq!(query("/ok", &[], &[]).0, WSY_OK);
    assert!(LOGS
        .lock()
        .unwrap()
        .iter()
        .any(|(_, m)| m.contains("query of 'tester' panicked")));
}

#[test]
fn logging_goes_to_the_host() {
    descriptors();
    websocksy_plugin::info!("hello {}", 42);
    log::debug!("from the log crate");
    let logs = LOGS.lock().unwrap();
    assert!(logs.contains(&(abi::WSY_LOG_INFO, "hello 42".to_string())));
    assert!(logs.contains(&(abi::WSY_LOG_DEBUG, "from the log crate".to_string())));
}
