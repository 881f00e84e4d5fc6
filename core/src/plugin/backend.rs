//! A backend registered by a plugin, as a core [`Backend`].
//!
//! Start-up: `configure` once per option, in order, then `start`; any failure
//! is a one-line error naming where the option came from (or the plugin
//! file). Per request: the [`Request`] is shown as a `wsy_request` of views,
//! the plugin answers through the answer_* host functions, and the answer
//! becomes a [`Decision`]. Exit: `cleanup` once, on the main thread, after
//! the last query returned ([`Backend::shutdown`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use websocksy_abi::{wsy_backend, wsy_str, WSY_BACKEND_NONBLOCKING, WSY_EUNKNOWN_KEY, WSY_OK};

use super::host_api::{
    status_name, Answer, AnswerHandle, BackendDesc, Desc, ErrorSlot, PluginCtx, RequestView,
};
use crate::backend::{Backend, Decision, PeerChoice, Request};
use crate::config::BackendOption;
use crate::framing::Registry;

/// How long exit waits for queries still running before it gives up on
/// calling `cleanup` (which must not run concurrently with a query).
const CLEANUP_WAIT: Duration = Duration::from_secs(2);

pub struct PluginBackend {
    name: String,
    raw: Desc<wsy_backend>,
    plugin: &'static PluginCtx,
    registry: Arc<Registry>,
    inflight: AtomicUsize,
    stopping: AtomicBool,
    shut: AtomicBool,
}

/// Counts a running query.
struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PluginBackend {
    /// Configure and start the backend: on the main thread, before traffic.
    pub(crate) fn start(
        desc: BackendDesc,
        plugin: &'static PluginCtx,
        options: &[BackendOption],
        registry: &Registry,
    ) -> Result<PluginBackend, String> {
        let b = PluginBackend {
            name: desc.name,
            raw: desc.raw,
            plugin,
            registry: Arc::new(registry.clone()),
            inflight: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            shut: AtomicBool::new(false),
        };
        let (name, ud) = (&b.name, b.raw.0.userdata);
        for opt in options {
            let Some(configure) = b.raw.0.configure else {
                return Err(format!(
                    "{}: backend '{name}' takes no options (got '{}')",
                    opt.origin, opt.key
                ));
            };
            let error = ErrorSlot::default();
            // SAFETY: a registered callback with its userdata, on the main
            // thread; the views and the error slot outlive the call.
            let status = unsafe {
                configure(
                    ud,
                    wsy_str::from_str(&opt.key),
                    wsy_str::from_str(&opt.value),
                    error.as_ptr(),
                )
            };
            match status {
                WSY_OK => {}
                WSY_EUNKNOWN_KEY => {
                    return Err(format!(
                        "{}: unknown option '{}' for backend '{name}'",
                        opt.origin, opt.key
                    ))
                }
                s => {
                    return Err(format!(
                        "{}: invalid value '{}' for option '{}' of backend '{name}': {}",
                        opt.origin,
                        opt.value,
                        opt.key,
                        error.describe(s)
                    ))
                }
            }
        }
        if let Some(start) = b.raw.0.start {
            let error = ErrorSlot::default();
            // SAFETY: as for configure.
            let status = unsafe { start(ud, error.as_ptr()) };
            if status != WSY_OK {
                return Err(format!(
                    "{}: backend '{name}' failed to start: {}",
                    plugin.path.display(),
                    error.describe(status)
                ));
            }
        }
        log::debug!("backend '{name}' from {} started", plugin.path.display());
        Ok(b)
    }

    fn decide(&self, answer: Answer) -> Decision {
        if let Some((status, reason)) = answer.reject {
            return Decision::Reject { status, reason };
        }
        let Some((address, proxy_protocol)) = answer.peer else {
            return Decision::Reject {
                status: 404,
                reason: "no peer for this request".into(),
            };
        };
        let (framing_name, framing, framing_config) = match answer.framing {
            Some(f) => f,
            None => match self.registry.get("auto") {
                Some(f) => ("auto".to_string(), f, None),
                None => {
                    return Decision::Reject {
                        status: 500,
                        reason: "no 'auto' framing".into(),
                    }
                }
            },
        };
        Decision::Peer(PeerChoice {
            address,
            framing,
            framing_name,
            framing_config,
            protocol: answer.protocol,
            headers: answer.headers,
            proxy_protocol,
            hub: answer.hub,
            hub_options: Default::default(),
        })
    }

    fn failed(&self, why: &str) -> Decision {
        self.plugin.log(
            log::Level::Warn,
            &format!("backend '{}': query {why}", self.name),
        );
        Decision::Reject {
            status: 500,
            reason: format!("backend '{}' failed", self.name),
        }
    }
}

impl Backend for PluginBackend {
    fn query(&self, request: &Request) -> Decision {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        let _running = Running(&self.inflight);
        if self.stopping.load(Ordering::SeqCst) {
            return Decision::Reject {
                status: 503,
                reason: "shutting down".into(),
            };
        }
        let Some(query) = self.raw.0.query else {
            return self.failed("function is missing");
        };
        let view = RequestView::new(request);
        let answer = AnswerHandle::open(Answer::new(
            self.plugin,
            &self.name,
            Arc::clone(&self.registry),
            request.protocols.len(),
        ));
        let (ud, req, ans) = (self.raw.0.userdata, view.as_ptr(), answer.as_ptr());
        // SAFETY: a registered callback with its userdata; the request view
        // and the answer handle stay live until it returns.
        let status = unsafe { query(ud, req, ans) };
        let answer = answer.close();
        drop(view);
        match (status, answer) {
            (WSY_OK, Some(a)) => self.decide(a),
            (s, _) => self.failed(&format!("failed with status {s} ({})", status_name(s))),
        }
    }

    fn blocking(&self) -> bool {
        self.raw.0.flags & WSY_BACKEND_NONBLOCKING == 0
    }

    fn shutdown(&self) {
        if self.shut.swap(true, Ordering::SeqCst) {
            return;
        }
        self.stopping.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + CLEANUP_WAIT;
        while self.inflight.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                log::warn!(
                    "backend '{}': a query is still running at exit; cleanup not called",
                    self.name
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(cleanup) = self.raw.0.cleanup {
            let ud = self.raw.0.userdata;
            // SAFETY: a registered callback, once, on the main thread, with
            // no query running (and none starting: `stopping` is set).
            unsafe { cleanup(ud) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;
    use crate::peer::PeerAddress;
    use std::ffi::c_void;
    use std::path::PathBuf;
    use std::sync::atomic::AtomicU32;
    use websocksy_abi::{wsy_answer, wsy_error, wsy_request, wsy_status, WSY_EINVAL, WSY_ERROR};

    static CLEANED: AtomicU32 = AtomicU32::new(0);

    unsafe extern "C" fn configure(
        _: *mut c_void,
        key: wsy_str,
        value: wsy_str,
        error: *mut wsy_error,
    ) -> wsy_status {
        // SAFETY: the host's views.
        let (k, v) = unsafe { (key.as_bytes().unwrap(), value.as_bytes().unwrap()) };
        match k {
            b"good" => WSY_OK,
            b"bad" => {
                let set = websocksy_abi_host().error_set.unwrap();
                // SAFETY: the host's error slot.
                unsafe {
                    set(
                        error,
                        wsy_str::from_str(&format!("cannot use {}", String::from_utf8_lossy(v))),
                    )
                };
                WSY_EINVAL
            }
            _ => WSY_EUNKNOWN_KEY,
        }
    }

    fn websocksy_abi_host() -> &'static websocksy_abi::wsy_host_api {
        &super::super::host_api::HOST_API
    }

    /// `/peer` → mirror with the newline framing; `/reject` → 403;
    /// `/err` → error; anything else → no answer.
    unsafe extern "C" fn query(
        _: *mut c_void,
        req: *const wsy_request,
        answer: *mut wsy_answer,
    ) -> wsy_status {
        let h = websocksy_abi_host();
        // SAFETY: the host's request, valid during the call.
        let path = unsafe { (*req).path.as_bytes().unwrap() };
        // SAFETY: host functions with the host's handles.
        unsafe {
            match path {
                b"/peer" => {
                    assert_eq!(
                        h.answer_peer.unwrap()(answer, wsy_str::from_str("mirror://")),
                        WSY_OK
                    );
                    assert_eq!(
                        h.answer_framing.unwrap()(
                            answer,
                            wsy_str::from_str("newline"),
                            wsy_str::NONE
                        ),
                        WSY_OK
                    );
                    assert_eq!(h.answer_protocol.unwrap()(answer, 0), WSY_OK);
                    WSY_OK
                }
                b"/hub" => {
                    let peer = wsy_str::from_str("tcp://127.0.0.1:9");
                    assert_eq!(h.answer_peer.unwrap()(answer, peer), WSY_OK);
                    h.answer_hub().unwrap()(answer, 1)
                }
                b"/reject" => h.answer_reject.unwrap()(answer, 403, wsy_str::from_str("forbidden")),
                b"/err" => WSY_ERROR,
                _ => WSY_OK,
            }
        }
    }

    unsafe extern "C" fn cleanup(_: *mut c_void) {
        CLEANED.fetch_add(1, Ordering::SeqCst);
    }

    fn desc() -> BackendDesc {
        BackendDesc {
            name: "unit".into(),
            raw: Desc(wsy_backend {
                size: 64,
                abi_major: 2,
                abi_minor: 0,
                name: c"unit".as_ptr(),
                userdata: std::ptr::null_mut(),
                flags: WSY_BACKEND_NONBLOCKING,
                configure: Some(configure),
                start: None,
                query: Some(query),
                cleanup: Some(cleanup),
            }),
        }
    }

    fn opt(key: &str, value: &str, line: usize) -> BackendOption {
        BackendOption {
            key: key.into(),
            value: value.into(),
            origin: Origin::File {
                path: "w.cfg".into(),
                line,
            },
        }
    }

    fn request(target: &str) -> Request {
        Request {
            target: target.into(),
            headers: vec![],
            protocols: vec!["chat".into()],
            client: "127.0.0.1:1".parse().unwrap(),
            tls: false,
            tls_client: None,
            user: None,
        }
    }

    fn repo() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// Build a C plugin as `tests/` does: `$CC` (default `cc`), the flags
    /// every C plugin must pass, `-I include`.
    fn build_c(src: &std::path::Path, include: &std::path::Path, out: &std::path::Path) {
        let cc = std::env::var("CC")
            .ok()
            .filter(|c| !c.trim().is_empty())
            .unwrap_or_else(|| "cc".into());
        let cc: Vec<&str> = cc.split_whitespace().collect();
        let o = std::process::Command::new(cc[0])
            .args(&cc[1..])
            .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"])
            .args(["-shared", "-fPIC", "-I"])
            .arg(include)
            .arg("-o")
            .arg(out)
            .arg(src)
            .output()
            .expect("run the C compiler ($CC, default cc)");
        assert!(
            o.status.success(),
            "compiling {} failed:\n{}",
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// `backend_<name>.so` from `dir` through the real loader, configured
    /// and started.
    fn load(dir: &std::path::Path, name: &str, options: &[BackendOption]) -> Arc<dyn Backend> {
        let settings = crate::config::Settings {
            plugin_dir: Some(dir.to_path_buf()),
            backend: name.into(),
            ..Default::default()
        };
        let mut registry = Registry::with_builtins();
        let plugins = crate::plugin::Plugins::load(&settings, &mut registry).unwrap();
        plugins
            .create_backend(name, options, &registry)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The 101's extra headers of a peer answer.
    fn answered(d: Decision) -> Vec<(String, String)> {
        match d {
            Decision::Peer(c) => c.headers,
            Decision::Reject { status, reason } => panic!("{status} {reason}"),
        }
    }

    fn get<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
    }

    /// C plugins through the real loader: one built against today's header
    /// sees the user and the TLS client identity the host was given; one
    /// built against the 2.0 header (tests/fixtures/abi-2.0) is handed the
    /// same, larger, request and still reads its 2.0 fields right.
    #[test]
    fn c_plugins_see_the_identity_and_2_0_plugins_their_fields() {
        let dir = std::env::temp_dir().join(format!("websocksy-identity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let root = repo();
        build_c(
            &root.join("tests/plugins/host/backend_identity.c"),
            &root.join("include"),
            &dir.join("backend_identity.so"),
        );
        let fixture = root.join("tests/fixtures/abi-2.0");
        build_c(
            &fixture.join("backend_v20.c"),
            &fixture,
            &dir.join("backend_v20.so"),
        );

        let mut known = request("/who?x=1");
        known.tls = true;
        known.user = Some("alice".into());
        known.tls_client = Some(crate::backend::TlsIdentity {
            subject: "CN=alice,O=Example".into(),
            sans: vec![
                "DNS:alice.example".into(),
                "IP:10.0.0.1".into(),
                "email:alice@example.org".into(),
            ],
        });

        let b = load(&dir, "identity", &[]);
        let h = answered(b.query(&known));
        let size = std::mem::size_of::<websocksy_abi::wsy_request>().to_string();
        assert_eq!(get(&h, "X-Size"), size);
        assert_eq!(get(&h, "X-User"), "[alice]");
        assert_eq!(get(&h, "X-TLS-Subject"), "[CN=alice,O=Example]");
        assert_eq!(
            get(&h, "X-TLS-SANs"),
            "[DNS:alice.example][IP:10.0.0.1][email:alice@example.org]"
        );

        // Nobody authenticated, no certificate: absent, not empty.
        let h = answered(b.query(&request("/anon")));
        assert_eq!(get(&h, "X-User"), "(absent)");
        assert_eq!(get(&h, "X-TLS-Subject"), "(absent)");
        assert_eq!(get(&h, "X-TLS-SANs"), "(none)");

        // A certificate with an empty subject and no SANs is still there.
        let mut bare = request("/bare");
        bare.tls = true;
        bare.tls_client = Some(crate::backend::TlsIdentity::default());
        let h = answered(b.query(&bare));
        assert_eq!(get(&h, "X-User"), "(absent)");
        assert_eq!(get(&h, "X-TLS-Subject"), "[]");
        assert_eq!(get(&h, "X-TLS-SANs"), "(none)");

        let v20 = load(&dir, "v20", &[opt("peer", "mirror://", 1)]);
        let h = answered(v20.query(&known));
        assert_eq!(get(&h, "X-V20-Size"), size);
        assert_eq!(
            get(&h, "X-V20-Sizeof"),
            websocksy_abi::wsy_request::SIZE_2_0.to_string()
        );
        assert_eq!(get(&h, "X-V20-Target"), "[/who?x=1]");
        assert_eq!(get(&h, "X-V20-Path"), "[/who]");
        assert_eq!(get(&h, "X-V20-Query"), "[x=1]");
        assert_eq!(get(&h, "X-V20-Client"), "[127.0.0.1:1]");
        assert_eq!(get(&h, "X-V20-TLS"), "1");
        assert_eq!(get(&h, "X-V20-Header-Count"), "0");
        assert_eq!(get(&h, "X-V20-Protocols"), "[chat]");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn configure_errors_name_the_origin() {
        let ctx = PluginCtx::leak("unitb", PathBuf::from("/x/backend_unit.so"));
        let r = Registry::with_builtins();
        let e = PluginBackend::start(desc(), ctx, &[opt("good", "1", 2), opt("nope", "1", 3)], &r)
            .err()
            .unwrap();
        assert_eq!(e, "w.cfg:3: unknown option 'nope' for backend 'unit'");
        let e = PluginBackend::start(desc(), ctx, &[opt("bad", "zz", 4)], &r)
            .err()
            .unwrap();
        assert_eq!(
            e,
            "w.cfg:4: invalid value 'zz' for option 'bad' of backend 'unit': cannot use zz"
        );
        let mut d = desc();
        d.raw.0.configure = None;
        let e = PluginBackend::start(d, ctx, &[opt("good", "1", 5)], &r)
            .err()
            .unwrap();
        assert_eq!(e, "w.cfg:5: backend 'unit' takes no options (got 'good')");
    }

    #[test]
    fn answers_become_decisions() {
        let ctx = PluginCtx::leak("unitq", PathBuf::from("/x/backend_unit.so"));
        let b = PluginBackend::start(
            desc(),
            ctx,
            &[opt("good", "1", 1)],
            &Registry::with_builtins(),
        )
        .unwrap();
        assert!(!b.blocking());
        match b.query(&request("/peer?x")) {
            Decision::Peer(c) => {
                assert_eq!(c.address, PeerAddress::Mirror);
                assert_eq!(c.framing_name, "newline");
                assert_eq!(c.protocol, Some(0));
                assert!(!c.hub);
            }
            Decision::Reject { status, reason } => panic!("{status} {reason}"),
        }
        match b.query(&request("/hub")) {
            Decision::Peer(c) => assert!(c.hub, "answer_hub"),
            Decision::Reject { status, reason } => panic!("{status} {reason}"),
        }
        let reject = |t: &str| match b.query(&request(t)) {
            Decision::Reject { status, reason } => (status, reason),
            Decision::Peer(_) => panic!("peer for {t}"),
        };
        assert_eq!(reject("/reject"), (403, "forbidden".into()));
        assert_eq!(reject("/err"), (500, "backend 'unit' failed".into()));
        assert_eq!(reject("/other"), (404, "no peer for this request".into()));
        let before = CLEANED.load(Ordering::SeqCst);
        b.shutdown();
        b.shutdown();
        assert_eq!(CLEANED.load(Ordering::SeqCst), before + 1);
        assert_eq!(reject("/peer").0, 503);
    }
}
