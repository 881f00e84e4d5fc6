//! The README's "Writing a backend in C" example, taken from the README
//! itself, built with the command it gives, and used as a user would.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use websocksy_tests::peers;
use websocksy_tests::ws;
use websocksy_tests::{temp_dir, Bridge};

/// The first fenced block of `lang` after `heading` in README.md.
fn readme_block(heading: &str, lang: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("read README.md");
    let at = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let fence = format!("```{lang}\n");
    let start = readme[at..].find(&fence).expect("a code block") + at + fence.len();
    let len = readme[start..].find("```").expect("a closed code block");
    readme[start..start + len].to_string()
}

#[test]
fn readme_c_backend_builds_with_its_command_and_bridges() {
    let echo = peers::tcp_echo();
    let source = readme_block("### Writing a backend in C", "c")
        .replace("tcp://127.0.0.1:5900", &format!("tcp://{echo}"));
    assert!(
        source.lines().count() <= 40,
        "the example should stay about 30 lines"
    );
    let dir = temp_dir("readme-c");
    std::fs::write(dir.join("hello.c"), source).unwrap();
    // The README's command line, run from the repository root.
    let command = readme_block("### Writing a backend in C", "sh");
    let cc_line = command
        .lines()
        .find(|l| l.starts_with("cc "))
        .expect("a cc command");
    let args: Vec<String> = cc_line
        .split_whitespace()
        .skip(1)
        .map(|a| match a {
            "-Iinclude" => format!("-I{}/../include", env!("CARGO_MANIFEST_DIR")),
            "backend_hello.so" => dir.join("backend_hello.so").display().to_string(),
            "hello.c" => dir.join("hello.c").display().to_string(),
            other => other.to_string(),
        })
        .collect();
    let cc = std::env::var("CC")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| "cc".into());
    let out = Command::new(&cc).args(&args).output().expect("run cc");
    assert!(
        out.status.success(),
        "{cc} {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let so = dir.join("backend_hello.so");
    let b = Bridge::start(&["-b", so.to_str().unwrap()]);
    // Without the cookie: 401 and the reason.
    let mut s = b.connect();
    s.write_all(ws::request("/vnc", &[]).as_bytes()).unwrap();
    let r = ws::read_response(&mut s).unwrap();
    assert_eq!(r.status, 401, "{}", r.head);
    // With it: bridged to the echo peer.
    let mut s = b.connect();
    ws::upgrade(&mut s, "/vnc", &["Cookie: token=abc"]);
    s.write_all(&ws::text("through the README backend"))
        .unwrap();
    let f = ws::read_frame(&mut s).unwrap();
    assert_eq!(f.payload, b"through the README backend");
}
