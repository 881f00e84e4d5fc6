//! `[connect]` sections in a configuration file (issue 8): client
//! connections side by side with a server listener in the same process
//! (dialling that process's own listener), and a file with only
//! `[connect]` sections, which binds no server port.

use std::io::{Read, Write};
use std::net::TcpStream;

use websocksy_tests::connect::Connect;
use websocksy_tests::pyserver::{field, header, message_data, PyServer};
use websocksy_tests::{peers, temp_dir, WAIT};

use crate::connect_util::listening_ports;

fn write_cfg(text: &str) -> String {
    let path = temp_dir("connect-config").join("websocksy.cfg");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn echo(at: std::net::SocketAddr, msg: &[u8]) {
    let mut s = TcpStream::connect(at).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
}

#[test]
fn connect_sections_beside_a_server_listener_dial_its_own_listener() {
    let port = peers::closed_port();
    let py = PyServer::start(&["--send", "to the mirror section", "--sink"]);
    let cfg = write_cfg(&format!(
        "[core]\nlisten = 127.0.0.1\nport = {port}\n\n\
         [backend]\nhost = mirror://\n\n\
         [connect]\nurl = ws://127.0.0.1:{port}/self\nfrom = tcp-listen://127.0.0.1:0\n\n\
         [connect]\nurl = {}\nfrom = mirror://\n",
        py.url("/second")
    ));
    let c = Connect::spawn(&[&cfg]);
    c.wait_log(&format!("listening on 127.0.0.1:{port}"));
    let local = c.listener("tcp-listen://");
    // Through the process's own server listener and its mirror backend.
    echo(local, b"round trip through myself");
    c.wait_log("accepted from 127.0.0.1:");
    // The second section runs at the same time.
    let m = py.wait_line("message conn=1 ");
    assert_eq!(message_data(&m), Some(b"to the mirror section".to_vec()));
    assert_eq!(
        listening_ports(c.pid()),
        {
            let mut v = vec![port, local.port()];
            v.sort_unstable();
            v
        },
        "{}",
        c.logs()
    );
}

#[test]
fn a_file_with_only_connect_sections_binds_no_server_port() {
    let py = PyServer::start(&["--echo"]);
    let cfg = write_cfg(&format!(
        "[connect]\nurl = {}\nfrom = tcp-listen://127.0.0.1:0\n\
         header = X-A: 1\nheader = X-B: two\nprotocol = chat\n",
        py.url("/only")
    ));
    let c = Connect::spawn(&[&cfg]);
    let local = c.listener("tcp-listen://");
    echo(local, b"only a client");
    let open = py.wait_line("open conn=1 ");
    assert_eq!(field(&open, "path").as_deref(), Some("/only"));
    assert_eq!(header(&open, "x-a").as_deref(), Some("1"));
    assert_eq!(header(&open, "x-b").as_deref(), Some("two"));
    assert_eq!(
        header(&open, "sec-websocket-protocol").as_deref(),
        Some("chat")
    );
    assert_eq!(
        listening_ports(c.pid()),
        vec![local.port()],
        "a server port is bound:\n{}",
        c.logs()
    );
    assert_eq!(c.count_log("listening on "), 1, "{}", c.logs());
}
