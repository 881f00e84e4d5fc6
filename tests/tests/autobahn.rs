//! Autobahn|Testsuite conformance: `scripts/autobahn.sh` runs wstest's
//! fuzzingclient (cases 1-7, 9, 10) against `websocksy -c host=mirror://`
//! built in release mode, over `ws://` and again over `wss://`
//! (`--tls`), and these tests require that no case FAILED and that no
//! case's close behavior deviates (e.g. FAILED BY CLIENT: the server left
//! closing the TCP connection to the client). `scripts/autobahn-client.sh`
//! does the same for the client mode: wstest's fuzzingserver against
//! `websocksy connect URL --from mirror://`, one process per case, where
//! additionally every case must be in the report and no websocksy may
//! hang, crash or panic. The runs take turns: side by side they would
//! share the CPU with each other's timeouts.
//!
//! wstest lives in pyenv's Python 2.7.18; when it is missing this test
//! installs it (`scripts/autobahn.sh --install`, every version pinned). If
//! that fails the test fails, saying how to install it, unless
//! `WEBSOCKSY_SKIP_AUTOBAHN=1` is set, in which case it says it was skipped.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Run `scripts/NAME` with these arguments.
fn script(name: &str, args: &[&str]) -> Output {
    let root = workspace_root();
    Command::new("bash")
        .arg(root.join("scripts").join(name))
        .args(args)
        .current_dir(&root)
        // The full case set, whatever the caller's shell has.
        .env_remove("AUTOBAHN_CASES")
        .env_remove("WEBSOCKSY_BIN")
        // Close-behavior deviations count as failures here.
        .env_remove("AUTOBAHN_STRICT_CLOSE")
        .output()
        .unwrap_or_else(|e| panic!("run bash scripts/{name}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The `RESULT ...` line's `key=value` fields.
fn result_field(out: &str, key: &str) -> Option<u64> {
    let line = out.lines().rev().find(|l| l.starts_with("RESULT "))?;
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

const SERVER: &str = "autobahn.sh";
const CLIENT: &str = "autobahn-client.sh";

#[test]
fn autobahn_fuzzingclient_has_no_failed_case() {
    conformance(SERVER, &[]);
}

#[test]
fn autobahn_fuzzingclient_over_wss_has_no_failed_case() {
    conformance(SERVER, &["--tls"]);
}

/// The client mode against wstest's fuzzingserver.
#[test]
fn autobahn_fuzzingserver_against_connect_has_no_failed_case() {
    conformance(CLIENT, &[]);
}

/// Run the whole case set with `scripts/NAME` and these extra arguments
/// and require a clean result.
fn conformance(name: &str, args: &[&str]) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if std::env::var("WEBSOCKSY_SKIP_AUTOBAHN").as_deref() == Ok("1") {
        // Written past the test harness's capture so it shows in every run.
        let _ = std::io::stderr().write_all(
            b"autobahn: SKIPPED: WEBSOCKSY_SKIP_AUTOBAHN=1 is set, no conformance run\n",
        );
        return;
    }
    let mut check = script(name, &["--check"]);
    if !check.status.success() {
        // A fresh machine: install the pinned wstest into pyenv's 2.7.18 so
        // the README's one test command works there too.
        let install = script(name, &["--install"]);
        if !install.status.success() {
            panic!("installing Autobahn|Testsuite failed:\n{}", text(&install));
        }
        check = script(name, &["--check"]);
    }
    if !check.status.success() {
        panic!(
            "Autobahn|Testsuite (wstest) is not installed, so conformance cannot be tested.\n\
             Install it with `scripts/autobahn.sh --install` (pip install -r \
             scripts/autobahn/requirements-py27.txt into $(pyenv root)/versions/2.7.18), \
             or set WEBSOCKSY_SKIP_AUTOBAHN=1 to skip this test (scripts/{name} --check \
             also needs Python 3's websockets, which .ci/run installs).\n{}",
            text(&check)
        );
    }

    let run = script(name, args);
    let out = text(&run);
    // Shown with --nocapture, and in the failure message otherwise.
    println!("{out}");
    let total = result_field(&out, "total");
    let failed = result_field(&out, "failed");
    let close_failed = result_field(&out, "close_failed");
    let reports = match (name, args.contains(&"--tls")) {
        (SERVER, false) => "autobahn",
        (SERVER, true) => "autobahn-wss",
        (_, false) => "autobahn-client",
        (_, true) => "autobahn-client-wss",
    };
    assert!(
        run.status.success(),
        "scripts/{name} failed ({}); reports in reports/{reports}/:\n{out}",
        run.status
    );
    // Guard against a run that passed by running nothing.
    assert!(
        total.is_some_and(|n| n >= 300),
        "expected the full case set (301 cases with wstest 0.8.2), got {total:?}:\n{out}"
    );
    assert_eq!(failed, Some(0), "FAILED cases:\n{out}");
    assert_eq!(close_failed, Some(0), "close behavior FAILED:\n{out}");
    // Text is validated as it arrives, so invalid UTF-8 fails at the first
    // bad byte: 6.4.3 and 6.4.4 are OK, not NON-STRICT.
    assert_eq!(
        result_field(&out, "non_strict"),
        Some(0),
        "NON-STRICT cases:\n{out}"
    );
    assert_eq!(
        result_field(&out, "close_deviations"),
        Some(0),
        "close-behavior deviations:\n{out}"
    );
    if name == CLIENT {
        // One websocksy per case: a case that never reached the report
        // (websocksy could not connect, hung, or died) is a failure too.
        assert_eq!(
            result_field(&out, "missing"),
            Some(0),
            "cases missing:\n{out}"
        );
    }
}
