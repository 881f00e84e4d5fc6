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
/// for a socket of ours that is closed just before they bind it. Another
/// process may take it meanwhile: [`nginx`] and [`haproxy`] notice and
/// start once more on new ports.
fn free_port() -> u16 {
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

/// The log says a port was taken (nginx and haproxy both quote errno).
fn port_taken(log: &Path) -> bool {
    std::fs::read_to_string(log).is_ok_and(|l| l.contains("Address already in use"))
}

/// How a front's start ended.
enum Started {
    Listening,
    /// A port was taken by someone else between [`free_port`] and the bind.
    PortTaken,
}

/// Whether process `pid` holds the socket listening on TCP `port`: the
/// listening socket's inode (`/proc/net/tcp`, state 0A) among its fds.
fn holds_listener(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let suffix = format!(":{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[1].ends_with(&suffix) && f[3] == "0A")
                .then(|| format!("socket:[{}]", f[9]))
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|t| inodes.iter().any(|i| t.as_os_str() == i.as_str()))
    })
}

/// Wait until `ports` accept connections on sockets the child holds, the
/// child still running and its log saying nothing of a taken port: a
/// connect alone may reach whoever took a port first (and nginx keeps
/// retrying its bind for a while before it exits).
fn wait_listening(ports: &[u16], child: &mut Child, what: &str, log: &Path) -> Started {
    let deadline = Instant::now() + WAIT;
    loop {
        let all_accept = ports.iter().all(|&port| {
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && holds_listener(child.id(), port)
        });
        if port_taken(log) {
            return Started::PortTaken;
        }
        match child.try_wait() {
            Ok(None) if all_accept => return Started::Listening,
            Ok(None) => {}
            Ok(Some(status)) => {
                if port_taken(log) {
                    return Started::PortTaken;
                }
                panic!(
                    "{what} exited with {status} before listening on {ports:?}:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            Err(e) => panic!("{what}: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "{what} is not listening on {ports:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        // Polling for the connect: nginx and haproxy print nothing
        // parseable when they are ready.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Start a front on the `ports` of the first attempt with `launch` (which
/// gets the ports and returns the child and its log); once more on the
/// second attempt's if one was taken in between.
fn start_on_free_ports(
    what: &str,
    mut ports: impl FnMut() -> Vec<u16>,
    launch: impl Fn(&[u16]) -> (Child, PathBuf),
) -> (Front, Vec<u16>) {
    for attempt in 0..2 {
        let ports = ports();
        let (mut child, log) = launch(&ports);
        match wait_listening(&ports, &mut child, what, &log) {
            Started::Listening => return (Front { child, log }, ports),
            Started::PortTaken if attempt == 0 => {
                // Stopped (and its log read) before the next start reuses it.
                drop(Front {
                    child,
                    log: log.clone(),
                });
            }
            Started::PortTaken => panic!(
                "{what}: ports {ports:?} taken twice:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
    }
    unreachable!("the second attempt returns or panics")
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

/// nginx with `site(port)` (the templated example for that port) inside
/// its `http {}` block; runs in the foreground with everything under
/// `dir`. Returns the front and the port it listens on.
pub fn nginx(dir: &Path, site: impl Fn(u16) -> String) -> (Front, u16) {
    let site_path = dir.join("site.conf");
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
    let (front, ports) = start_on_free_ports(
        "nginx",
        || vec![free_port()],
        |ports| {
            std::fs::write(&site_path, site(ports[0])).expect("write site.conf");
            // A fresh log, so a taken port of an earlier attempt is not read again.
            std::fs::write(&log, "").expect("clear nginx log");
            let child = Command::new("nginx")
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
            (child, log.clone())
        },
    );
    (front, ports[0])
}

/// haproxy running `cfg(ports)` (the templated example, with `count`
/// listening ports) in the foreground; waits until every port accepts.
/// Returns the front and its ports.
pub fn haproxy(dir: &Path, count: usize, cfg: impl Fn(&[u16]) -> String) -> (Front, Vec<u16>) {
    haproxy_on(dir, || (0..count).map(|_| free_port()).collect(), cfg)
}

/// [`haproxy`] on the ports `ports` gives for each attempt: a test of the
/// retry hands it a taken port first.
pub fn haproxy_on(
    dir: &Path,
    ports: impl FnMut() -> Vec<u16>,
    cfg: impl Fn(&[u16]) -> String,
) -> (Front, Vec<u16>) {
    let path = dir.join("haproxy.cfg");
    let log = dir.join("haproxy.log");
    start_on_free_ports("haproxy", ports, |ports| {
        std::fs::write(&path, cfg(ports)).expect("write haproxy.cfg");
        let out = std::fs::File::create(&log).expect("haproxy log");
        let err = out.try_clone().expect("haproxy log");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start haproxy (apt-get install haproxy; .ci/run does)");
        (child, log.clone())
    })
}
