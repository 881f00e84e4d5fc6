//! `websocksy connect URL --from LOCAL [options]`, the client mode, run
//! as a child process: a [`Bridge`] (the same spawn, the log collected
//! from stderr, `wait_log`, `count_log`, `signal`, `wait_exit`, kill on
//! drop; reached through `Deref`) plus its stdin, written by the test,
//! and its stdout, collected as bytes, for `--from -` pipelines.
//!
//! Nothing here waits for `listening on`: a client with `--from
//! mirror://` or `--from -` listens nowhere. For a listening local side
//! (`--from tcp-listen://127.0.0.1:0`) use [`Bridge::listener`].

use std::io::{Read, Write};
use std::ops::{Deref, DerefMut};
use std::process::{ChildStdin, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::{Bridge, WAIT};

/// What the process wrote to stdout so far, and whether it closed it.
#[derive(Default)]
struct Out {
    state: Mutex<(Vec<u8>, bool)>,
    grew: Condvar,
}

/// A running `websocksy connect`. Killed on drop.
pub struct Connect {
    bridge: Bridge,
    stdin: Option<ChildStdin>,
    out: Arc<Out>,
}

impl Deref for Connect {
    type Target = Bridge;
    fn deref(&self) -> &Bridge {
        &self.bridge
    }
}

impl DerefMut for Connect {
    fn deref_mut(&mut self) -> &mut Bridge {
        &mut self.bridge
    }
}

impl Connect {
    /// `websocksy connect URL --from FROM ARGS...`
    pub fn start(url: &str, from: &str, args: &[&str]) -> Connect {
        let mut full = vec!["connect", url, "--from", from];
        full.extend_from_slice(args);
        Self::spawn(&full)
    }

    /// `websocksy ARGS...` exactly (e.g. `connect ...`, or a configuration
    /// file with `[connect]` sections), stdin and stdout piped.
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Connect {
        Self::spawn_env(args, &[])
    }

    /// [`Connect::spawn`] with extra environment variables (after the
    /// default `RUST_LOG`), e.g. `$NAME` credentials for `--auth`.
    pub fn spawn_env<S: AsRef<std::ffi::OsStr>>(args: &[S], envs: &[(&str, &str)]) -> Connect {
        let mut bridge = Bridge::spawn_io(args, envs, Stdio::piped(), Stdio::piped());
        let stdin = bridge.child.stdin.take();
        let mut stdout = bridge.child.stdout.take().expect("stdout");
        let out = Arc::new(Out::default());
        let o2 = Arc::clone(&out);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                let n = match stdout.read(&mut buf) {
                    Ok(0) => 0,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => 0,
                };
                let mut st = o2.state.lock().unwrap();
                if n == 0 {
                    st.1 = true;
                    o2.grew.notify_all();
                    return;
                }
                st.0.extend_from_slice(&buf[..n]);
                o2.grew.notify_all();
            }
        });
        Connect { bridge, stdin, out }
    }

    /// Write `data` to its stdin (blocks while the pipe is full, i.e. while
    /// websocksy is not reading: write from a thread, with
    /// [`Connect::take_stdin`], to watch backpressure). Panics if stdin was
    /// closed or the process stopped reading it for good.
    pub fn write_stdin(&mut self, data: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        if let Err(e) = stdin.write_all(data).and_then(|()| stdin.flush()) {
            panic!(
                "writing {} bytes to websocksy's stdin: {e}; log:\n{}",
                data.len(),
                self.logs()
            );
        }
    }

    /// Close its stdin: the end of input (`--from -` then sends what it
    /// read and closes with 1000).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Its stdin, for a writer thread; stdin closes when that is dropped.
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("stdin already taken or closed")
    }

    /// Everything it wrote to stdout so far.
    pub fn stdout(&self) -> Vec<u8> {
        self.out.state.lock().unwrap().0.clone()
    }

    /// Bytes it wrote to stdout so far.
    pub fn stdout_len(&self) -> usize {
        self.out.state.lock().unwrap().0.len()
    }

    /// Wait until stdout holds at least `len` bytes; return all of it.
    /// Panics after [`WAIT`] (or at EOF short of `len`) with the log.
    pub fn wait_stdout(&self, len: usize) -> Vec<u8> {
        self.wait_stdout_until(WAIT, |b| b.len() >= len)
            .unwrap_or_else(|got| {
                panic!(
                    "stdout has {} of {len} bytes; log:\n{}",
                    got.len(),
                    self.logs()
                )
            })
    }

    /// Wait until stdout contains `needle`; return all of it. Panics after
    /// [`WAIT`] (or at EOF without it), showing stdout and the log.
    pub fn wait_stdout_contains(&self, needle: &[u8]) -> Vec<u8> {
        self.wait_stdout_until(WAIT, |b| {
            b.windows(needle.len().max(1)).any(|w| w == needle)
        })
        .unwrap_or_else(|got| {
            panic!(
                "stdout never held {:?}; it has {:?}; log:\n{}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&got),
                self.logs()
            )
        })
    }

    /// Wait up to `wait` for the end of stdout (websocksy closed it or
    /// exited); return all of it. Panics after `wait` with the log.
    pub fn wait_stdout_eof(&self, wait: Duration) -> Vec<u8> {
        let deadline = Instant::now() + wait;
        let mut st = self.out.state.lock().unwrap();
        loop {
            if st.1 {
                return st.0.clone();
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "stdout still open after {wait:?} ({} bytes); log:\n{}",
                st.0.len(),
                self.logs()
            );
            st = self.out.grew.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    /// Wait up to `wait` until `done(stdout so far)` holds: `Ok(stdout)`,
    /// or `Err(stdout)` on timeout or at EOF without it.
    pub fn wait_stdout_until(
        &self,
        wait: Duration,
        mut done: impl FnMut(&[u8]) -> bool,
    ) -> Result<Vec<u8>, Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut st = self.out.state.lock().unwrap();
        loop {
            if done(&st.0) {
                return Ok(st.0.clone());
            }
            let now = Instant::now();
            if st.1 || now >= deadline {
                return Err(st.0.clone());
            }
            st = self.out.grew.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    /// The exit status if it has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if let Some(s) = self.bridge.exit {
            return Some(s);
        }
        let s = self.bridge.child.try_wait().expect("try_wait")?;
        self.bridge.exit = Some(s);
        Some(s)
    }

    /// Wait for it to exit (panics after `wait`) and require exit code
    /// `code`, showing the log otherwise.
    pub fn expect_exit(&mut self, wait: Duration, code: i32) -> ExitStatus {
        let s = self.bridge.wait_exit(wait);
        assert_eq!(
            s.code(),
            Some(code),
            "websocksy connect exited with {s}, expected {code}; log:\n{}",
            self.logs()
        );
        s
    }
}
