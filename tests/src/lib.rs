//! Harness for end-to-end tests: runs the real `websocksy` binary on an
//! ephemeral port and talks to it over real sockets.
//!
//! Readiness is never waited for with sleeps: the bridge prints
//! `listening on ADDR` and tests wait for log lines or connects.

pub mod certs;
pub mod connect;
pub mod fronts;
pub mod pattern;
pub mod peers;
pub mod pyserver;
pub mod ws;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::{Duration, Instant};

/// Default patience for anything that should happen "at once".
pub const WAIT: Duration = Duration::from_secs(10);

static BUILD: Once = Once::new();

/// Path of the workspace's target directory for this profile.
fn target_dir() -> PathBuf {
    // tests run from target/<profile>/deps/bridge-<hash>
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// The `websocksy` binary, built once per test run with the same profile.
pub fn binary() -> PathBuf {
    let dir = target_dir();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "websocksy",
            "--bin",
            "websocksy",
            "-p",
            "backend_file",
            "-p",
            "framing_fixedlength",
            "-p",
            "framing_dynamic32",
            "-p",
            "framing_json",
            "-p",
            "framing_test_panic",
            "--lib",
        ]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building websocksy failed");
    });
    dir.join("websocksy")
}

/// The flags every C plugin of this repository builds with (quiche's, plus C99).
pub const CFLAGS: &[&str] = &[
    "-std=c99",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-pedantic",
    "-shared",
    "-fPIC",
];

/// `$CC` split on whitespace, else `cc`.
pub fn cc() -> Vec<String> {
    let v = std::env::var("CC")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "cc".into());
    v.split_whitespace().map(str::to_string).collect()
}

/// Build the C source `src` into the shared object `out` with [`CFLAGS`],
/// `-I include` and `extra`; panics with the compiler's output on failure.
pub fn compile_plugin(src: &Path, include: &Path, out: &Path, extra: &[&str]) {
    let cc = cc();
    let mut cmd = Command::new(&cc[0]);
    cmd.args(&cc[1..])
        .args(CFLAGS)
        .args(extra)
        .arg("-I")
        .arg(include)
        .arg("-o")
        .arg(out)
        .arg(src);
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?} (set $CC to a C compiler): {e}"));
    assert!(
        o.status.success(),
        "compiling {} failed: {cmd:?}\n{}{}",
        src.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A unique scratch directory for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "websocksy-test-{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

/// Lines a process wrote (its log, or a peer's events), each with the
/// time it was read, collected by a reader thread; waited on with a
/// condition variable, never by polling.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<(Instant, String)>>,
    grew: Condvar,
    /// Set when the stream reached EOF (the process closed it or exited).
    done: std::sync::atomic::AtomicBool,
}

impl Log {
    /// Collect `r`'s lines on a thread; `echo` names the process when
    /// `WEBSOCKSY_TEST_ECHO` is set (each line is copied to stderr).
    fn spawn_reader<R: Read + Send + 'static>(r: R, echo: &'static str) -> Arc<Log> {
        let log = Arc::new(Log::default());
        let l2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("WEBSOCKSY_TEST_ECHO").is_some() {
                    eprintln!("{echo}: {line}");
                }
                let mut v = l2.lines.lock().unwrap();
                v.push((Instant::now(), line));
                l2.grew.notify_all();
            }
            let _v = l2.lines.lock().unwrap();
            l2.done.store(true, Ordering::SeqCst);
            l2.grew.notify_all();
        });
        log
    }

    /// The first line containing `needle` (and when it was read), waiting
    /// up to `wait` for it; `None` if it did not come or the stream ended
    /// without it.
    fn wait(&self, needle: &str, wait: Duration) -> Option<(Instant, String)> {
        let deadline = Instant::now() + wait;
        let mut v = self.lines.lock().unwrap();
        loop {
            if let Some(l) = v.iter().find(|(_, l)| l.contains(needle)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if now >= deadline || self.done.load(Ordering::SeqCst) {
                return None;
            }
            v = self.grew.wait_timeout(v, deadline - now).unwrap().0;
        }
    }

    /// Wait up to `wait` until `n` lines contain `needle`; all of those
    /// there are then (fewer on timeout or at the end of the stream).
    fn wait_n(&self, needle: &str, n: usize, wait: Duration) -> Vec<(Instant, String)> {
        let deadline = Instant::now() + wait;
        let mut v = self.lines.lock().unwrap();
        loop {
            let found: Vec<_> = v
                .iter()
                .filter(|(_, l)| l.contains(needle))
                .cloned()
                .collect();
            let now = Instant::now();
            if found.len() >= n || now >= deadline || self.done.load(Ordering::SeqCst) {
                return found;
            }
            v = self.grew.wait_timeout(v, deadline - now).unwrap().0;
        }
    }

    fn count(&self, needle: &str) -> usize {
        let v = self.lines.lock().unwrap();
        v.iter().filter(|(_, l)| l.contains(needle)).count()
    }

    fn all(&self) -> Vec<String> {
        let v = self.lines.lock().unwrap();
        v.iter().map(|(_, l)| l.clone()).collect()
    }

    fn timed(&self) -> Vec<(Instant, String)> {
        self.lines.lock().unwrap().clone()
    }
}

/// A running bridge. Killed on drop.
pub struct Bridge {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Log>,
    exit: Option<ExitStatus>,
}

impl Bridge {
    /// Start with these arguments plus `-l 127.0.0.1 -p 0` (unless the
    /// arguments are a single config file, or already say where to listen).
    pub fn start(args: &[&str]) -> Bridge {
        let mut full: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let single_file = args.len() == 1 && !args[0].starts_with('-');
        if !single_file {
            if !args.iter().any(|a| *a == "-p" || *a == "--port") {
                full.extend(["-p".into(), "0".into()]);
            }
            if !args.iter().any(|a| *a == "-l" || *a == "--listen") {
                full.extend(["-l".into(), "127.0.0.1".into()]);
            }
        }
        Self::spawn(&full)
    }

    /// Start with exactly these arguments.
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Bridge {
        Self::spawn_env(args, &[])
    }

    /// `ws://addr/path`
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// The address of the listener logged as `listening on PREFIX...`,
    /// e.g. `wss://` or `ws://` (a `--bind` listener); panics after [`WAIT`].
    pub fn listener(&self, prefix: &str) -> SocketAddr {
        let needle = format!("listening on {prefix}");
        let line = self.wait_log(&needle);
        let rest = line.split(&needle).nth(1).unwrap_or_default();
        rest.split_whitespace()
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect to bridge");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// Wait for a log line containing `needle`; return it. Panics after [`WAIT`].
    pub fn wait_log(&self, needle: &str) -> String {
        self.wait_log_for(needle, WAIT)
            .unwrap_or_else(|| panic!("no log line with {needle:?}; log:\n{}", self.logs()))
    }

    pub fn wait_log_for(&self, needle: &str, wait: Duration) -> Option<String> {
        self.log.wait(needle, wait).map(|(_, l)| l)
    }

    /// Wait until `n` log lines contain `needle` and return them with the
    /// time each was read (for intervals between retries, say); panics
    /// with the log after `wait`.
    pub fn wait_log_n(&self, needle: &str, n: usize, wait: Duration) -> Vec<(Instant, String)> {
        let got = self.log.wait_n(needle, n, wait);
        assert!(
            got.len() >= n,
            "{} of {n} log lines with {needle:?}; log:\n{}",
            got.len(),
            self.logs()
        );
        got
    }

    /// Number of log lines containing `needle` so far.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log.count(needle)
    }

    pub fn logs(&self) -> String {
        self.log.all().join("\n")
    }

    /// Every log line so far with the time it was read.
    pub fn log_lines_timed(&self) -> Vec<(Instant, String)> {
        self.log.timed()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal (libc::SIGINT, SIGTERM, ...).
    pub fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits in pid_t");
        // SAFETY: kill(2) with a pid we spawned and a valid signal number.
        let r = unsafe { libc::kill(pid, sig) };
        assert_eq!(r, 0, "kill failed");
    }

    /// Wait for the process to exit; panics after `wait`.
    pub fn wait_exit(&mut self, wait: Duration) -> ExitStatus {
        if let Some(s) = self.exit {
            return s;
        }
        let deadline = Instant::now() + wait;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.exit = Some(s);
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "bridge did not exit; log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run the binary to completion (for command-line errors): (status, stdout, stderr).
pub fn run_cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (i32, String, String) {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn websocksy");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut out = String::new();
            let mut err = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code().unwrap_or(-1), out, err);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!(
                "websocksy {:?} did not exit",
                args.iter()
                    .map(|a| a.as_ref().to_owned())
                    .collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Bridge {
    /// [`Bridge::spawn`] with extra environment variables for the bridge
    /// (set after the default `RUST_LOG`, so they may override it), e.g.
    /// `LD_PRELOAD` and `ASAN_OPTIONS` to run C plugins built with
    /// AddressSanitizer.
    pub fn spawn_env<S: AsRef<std::ffi::OsStr>>(args: &[S], envs: &[(&str, &str)]) -> Bridge {
        let mut b = Self::spawn_io(args, envs, Stdio::null(), Stdio::null());
        let line = b.wait_log("listening on ");
        let rest = line
            .split("listening on ")
            .nth(1)
            .expect("address after 'listening on'");
        let addr = rest.split_whitespace().next().expect("address");
        // `--bind` listeners are logged with their scheme; a Unix one
        // has no address to give here.
        let addr = addr
            .strip_prefix("ws://")
            .or_else(|| addr.strip_prefix("wss://"))
            .unwrap_or(addr);
        if !addr.starts_with("unix:") {
            b.addr = addr
                .parse()
                .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        }
        b
    }
}

/// `WEBSOCKSY_TEST_THREADS=N` runs every bridge of the suite with
/// `--threads N` (unless a test sets it, or runs `connect`, which has
/// one loop): `WEBSOCKSY_TEST_THREADS=1 cargo test` is the whole suite
/// on one loop, and without it each bridge has its default, one loop per CPU.
fn forced_threads<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Vec<String> {
    let Ok(n) = std::env::var("WEBSOCKSY_TEST_THREADS") else {
        return Vec::new();
    };
    let given = args.iter().any(|a| {
        let a = a.as_ref().to_string_lossy();
        a == "--threads" || a.starts_with("--threads=")
    });
    let connect = args
        .first()
        .is_some_and(|a| a.as_ref().to_string_lossy() == "connect");
    if given || connect {
        return Vec::new();
    }
    vec!["--threads".into(), n]
}

impl Bridge {
    /// Spawn the binary with these arguments, environment, stdin and
    /// stdout, its stderr collected as the log; returns at once (no wait
    /// for `listening on`, and `addr` is `0.0.0.0:0`). [`Bridge::spawn_env`]
    /// and [`connect::Connect`] are built on it.
    pub(crate) fn spawn_io<S: AsRef<std::ffi::OsStr>>(
        args: &[S],
        envs: &[(&str, &str)],
        stdin: Stdio,
        stdout: Stdio,
    ) -> Bridge {
        let mut child = Command::new(binary())
            .args(args)
            .args(forced_threads(args))
            .env(
                "RUST_LOG",
                std::env::var("WEBSOCKSY_TEST_LOG").unwrap_or_else(|_| "debug".into()),
            )
            .envs(envs.iter().copied())
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn websocksy");
        let log = Log::spawn_reader(child.stderr.take().expect("stderr"), "bridge");
        Bridge {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            log,
            exit: None,
        }
    }
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

/// Raise this process's soft limit on open descriptors to its hard limit
/// (a bridge started afterwards inherits it) and return the soft limit now
/// in force, for tests that hold thousands of sockets.
pub fn raise_nofile_limit() -> libc::rlim_t {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes into the rlimit struct we pass.
    let r = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
    assert_eq!(
        r,
        0,
        "getrlimit(RLIMIT_NOFILE): {}",
        std::io::Error::last_os_error()
    );
    if l.rlim_cur < l.rlim_max {
        let want = libc::rlimit {
            rlim_cur: l.rlim_max,
            rlim_max: l.rlim_max,
        };
        // SAFETY: setrlimit(2) reads the rlimit struct we pass. A hard
        // limit of "unlimited" cannot become the soft one: keep the old.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            l = want;
        }
    }
    l.rlim_cur
}

/// How long a transfer must stand still to count as stalled.
pub const QUIET: Duration = Duration::from_millis(300);

/// Wait until `read` (byte counters of a transfer) has not changed for
/// [`QUIET`], and return its value then; panics after `limit`. This waits
/// for backpressure to take hold, a condition on progress, not for a
/// process to be ready.
pub fn wait_stalled<T: PartialEq + std::fmt::Debug>(
    what: &str,
    limit: Duration,
    mut read: impl FnMut() -> T,
) -> T {
    let deadline = Instant::now() + limit;
    let mut last = read();
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = read();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= QUIET {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never stalled: {last:?} bytes written so far"
        );
    }
}
