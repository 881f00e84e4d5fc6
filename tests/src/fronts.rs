//! Real nginx and haproxy in front of the bridge, started from the example
//! files the project ships (`examples/nginx/websocksy.conf`,
//! `examples/haproxy/websocksy.cfg`), templated only for ports and paths:
//! each replacement must match the example at least once, so an example
//! that drifts from what the tests run fails here instead of going stale.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::WAIT;

/// A port that was free a moment ago: nginx and haproxy cannot listen on
/// port 0 and report the port, so the port comes from the kernel's choice
/// for a socket of ours that is closed just before they bind it.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// The example file at `examples/<rel>`, with each `(from, to)` applied.
pub fn example(rel: &str, replace: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(rel);
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    for (from, to) in replace {
        assert!(
            text.contains(from),
            "{} no longer contains {from:?}: update the test's template",
            path.display()
        );
        text = text.replace(from, to);
    }
    text
}

/// Wait until something accepts connections on `port`.
fn wait_listening(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + WAIT;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status} before listening on {port}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} is not listening on {port}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        // Polling for the connect: nginx and haproxy print nothing
        // parseable when they are ready.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A front-end process, stopped on drop.
pub struct Front {
    child: Child,
    pub log: PathBuf,
}

impl Front {
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        // SIGTERM: nginx's master stops its workers on it (a SIGKILL would
        // leave them behind); haproxy exits.
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx with `site` (the templated example) inside its `http {}` block,
/// listening on `port`; runs in the foreground with everything under `dir`.
pub fn nginx(dir: &Path, site: &str, port: u16) -> Front {
    let site_path = dir.join("site.conf");
    std::fs::write(&site_path, site).expect("write site.conf");
    let log = dir.join("nginx-error.log");
    // As root, workers would run as `nobody`; run them as ourselves so they
    // can reach the test's Unix socket under a private temp directory.
    // SAFETY: geteuid(2) has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;\n"
    } else {
        ""
    };
    let main = format!(
        "{user}worker_processes 1;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {log} info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n  \
         include {site};\n}}\n",
        dir = dir.display(),
        log = log.display(),
        site = site_path.display()
    );
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, main).expect("write nginx.conf");
    let mut child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx (apt-get install nginx; .ci/run does)");
    wait_listening(port, &mut child, "nginx", &log);
    Front { child, log }
}

/// haproxy running `cfg` (the templated example) in the foreground; waits
/// until `port` accepts.
pub fn haproxy(dir: &Path, cfg: &str, port: u16) -> Front {
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).expect("write haproxy.cfg");
    let log = dir.join("haproxy.log");
    let out = std::fs::File::create(&log).expect("haproxy log");
    let err = out.try_clone().expect("haproxy log");
    let mut child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start haproxy (apt-get install haproxy; .ci/run does)");
    wait_listening(port, &mut child, "haproxy", &log);
    Front { child, log }
}
