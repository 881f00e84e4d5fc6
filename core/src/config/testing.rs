//! Helpers for the configuration's unit tests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{parse_args, BackendOption, ConfigError, FramingOption, Origin, Parsed, Settings};

/// A file under the temp dir, removed on drop; unique per process and call
/// so parallel tests (and parallel test runs) never share one.
pub(super) struct TempFile(PathBuf);

impl TempFile {
    pub(super) fn new(contents: &[u8]) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "websocksy-config-test-{}-{n}.cfg",
            std::process::id()
        ));
        std::fs::write(&path, contents).expect("write temp config");
        TempFile(path)
    }

    pub(super) fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(super) fn run(args: &[&str]) -> Settings {
    let argv = std::iter::once("websocksy").chain(args.iter().copied());
    match parse_args(argv) {
        Ok(Parsed::Run(s)) => s,
        other => panic!("{args:?} gave {other:?}"),
    }
}

pub(super) fn fail(args: &[&str]) -> String {
    let argv = std::iter::once("websocksy").chain(args.iter().copied());
    match parse_args(argv) {
        Err(ConfigError(msg)) => {
            assert!(!msg.contains('\n'), "not one line: {msg:?}");
            assert!(!msg.starts_with("error:"), "{msg:?}");
            msg
        }
        other => panic!("{args:?} gave {other:?}"),
    }
}

pub(super) fn exit(args: &[&str]) -> (String, i32) {
    let argv = std::iter::once("websocksy").chain(args.iter().copied());
    match parse_args(argv) {
        Ok(Parsed::Exit { text, code }) => (text, code),
        other => panic!("{args:?} gave {other:?}"),
    }
}

pub(super) fn arg_opt(key: &str, value: &str) -> BackendOption {
    BackendOption {
        key: key.into(),
        value: value.into(),
        origin: Origin::Argument(format!("-c {key}={value}")),
    }
}

pub(super) fn file_opt(key: &str, value: &str, path: &str, line: usize) -> BackendOption {
    BackendOption {
        key: key.into(),
        value: value.into(),
        origin: Origin::File {
            path: path.into(),
            line,
        },
    }
}

pub(super) const SECS: fn(u64) -> Duration = Duration::from_secs;

pub(super) fn framing_opt(framing: &str, key: &str, value: &str, origin: Origin) -> FramingOption {
    FramingOption {
        framing: framing.into(),
        key: key.into(),
        value: value.into(),
        origin,
    }
}

pub(super) fn at(path: &str, line: usize) -> Origin {
    Origin::File {
        path: path.into(),
        line,
    }
}

pub(super) const SPEC_EXAMPLE: &str = "[core]
port = 8951
listen = 127.0.0.1
ping = 0
[backend]
host = tcp://127.0.0.1
port = 7951
framing = newline
framing-config = lf
protocol = *
";
