use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use websocksy_plugin::testing::{Recorded, TestRequest};

use super::*;

/// A scratch directory with these files, removed on drop.
struct Dir {
    root: PathBuf,
}

impl Dir {
    fn new(files: &[(&str, &str)]) -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "backend-file-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("base")).unwrap();
        for (name, content) in files {
            let p = root.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        Dir { root }
    }

    fn base(&self) -> String {
        self.root.join("base").display().to_string()
    }

    fn backend(&self, expressions: &[&str]) -> FileBackend {
        let mut b = FileBackend::default();
        b.configure("path", &self.base()).unwrap();
        for e in expressions {
            b.configure("expression", e).unwrap();
        }
        b.start().unwrap();
        b
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn peer(p: &str) -> Recorded {
    Recorded {
        peer: Some(p.into()),
        ..Recorded::default()
    }
}

fn not_found() -> Recorded {
    Recorded {
        reject: Some((404, "no peer for this request".into())),
        ..Recorded::default()
    }
}

fn ok(backend: &FileBackend, req: TestRequest) -> Recorded {
    let (res, rec) = req.query(backend);
    res.unwrap();
    rec
}

const A29: &[&str] = &[
    "%endpoint%.txt",
    "%cookie:session%.txt",
    "%header:X-Foo-Bar%.txt",
    "default.txt",
];

fn a29_dir() -> Dir {
    Dir::new(&[
        ("base/test.txt", "tcp://t1:1 p1\ntcp://t2:2 p2\n"),
        ("base/a_b.txt", "tcp://ab:1 x\n"),
        ("base/sess42.txt", "tcp://sess:1 x\n"),
        ("base/.._.._etc.txt", "tcp://dots:1 x\n"),
        ("base/test?x=1.txt", "tcp://query:1\n"),
    ])
}

#[test]
fn a29_endpoint_first_line_without_protocols() {
    let d = a29_dir();
    let b = d.backend(A29);
    assert_eq!(ok(&b, TestRequest::new("/test")), peer("tcp://t1:1"));
}

#[test]
fn a29_endpoint_protocol_line() {
    let d = a29_dir();
    let b = d.backend(A29);
    let rec = ok(&b, TestRequest::new("/test").protocol("p2"));
    assert_eq!(
        rec,
        Recorded {
            protocol: Some(0),
            ..peer("tcp://t2:2")
        }
    );
    let rec = ok(&b, TestRequest::new("/test").protocol("zz").protocol("p2"));
    assert_eq!(
        rec,
        Recorded {
            protocol: Some(1),
            ..peer("tcp://t2:2")
        }
    );
}

#[test]
fn a29_trailing_slash_and_inner_slashes_and_query() {
    let d = a29_dir();
    let b = d.backend(A29);
    assert_eq!(ok(&b, TestRequest::new("/test/")), peer("tcp://t1:1"));
    assert_eq!(ok(&b, TestRequest::new("/a/b")), peer("tcp://ab:1"));
    assert_eq!(ok(&b, TestRequest::new("/test?x=1")), peer("tcp://query:1"));
}

#[test]
fn a29_cookie_with_and_without_space() {
    let d = a29_dir();
    let b = d.backend(A29);
    assert_eq!(
        ok(
            &b,
            TestRequest::new("/none").header("Cookie", "foo=1; session=sess42")
        ),
        peer("tcp://sess:1")
    );
    // The original missed the second cookie without the space.
    assert_eq!(
        ok(
            &b,
            TestRequest::new("/none").header("Cookie", "foo=1;session=sess42")
        ),
        peer("tcp://sess:1")
    );
}

#[test]
fn a29_header_sanitised() {
    let d = a29_dir();
    let b = d.backend(A29);
    assert_eq!(
        ok(
            &b,
            TestRequest::new("/none").header("X-Foo-Bar", "../../etc")
        ),
        peer("tcp://dots:1")
    );
    // Header names are case-insensitive (the original's were not).
    assert_eq!(
        ok(
            &b,
            TestRequest::new("/none").header("x-foo-bar", "../../etc")
        ),
        peer("tcp://dots:1")
    );
}

#[test]
fn a29_no_match_when_protocols_offered_is_404() {
    let d = a29_dir();
    let b = d.backend(&["%endpoint%.txt"]);
    assert_eq!(
        ok(&b, TestRequest::new("/test").protocol("p9")),
        not_found()
    );
    assert_eq!(ok(&b, TestRequest::new("/missing")), not_found());
}

#[test]
fn falls_through_to_default() {
    let d = Dir::new(&[("base/default.txt", "tcp://default:1\n")]);
    let b = d.backend(A29);
    assert_eq!(
        ok(&b, TestRequest::new("/missing")),
        peer("tcp://default:1")
    );
}

#[test]
fn next_expression_when_file_has_no_matching_line() {
    let d = Dir::new(&[
        ("base/test.txt", "tcp://t:1 p1\n"),
        ("base/default.txt", "tcp://d:1 p2\n"),
    ]);
    let b = d.backend(&["%endpoint%.txt", "default.txt"]);
    assert_eq!(
        ok(&b, TestRequest::new("/test").protocol("p2")),
        Recorded {
            protocol: Some(0),
            ..peer("tcp://d:1")
        }
    );
}

#[test]
fn a30_line_fields() {
    let d = Dir::new(&[(
        "base/f.txt",
        "tcp://h:1 y fixedlength 2\ntcp://h:2 P1 separator ; x\n",
    )]);
    let b = d.backend(&["f.txt"]);
    let rec = ok(&b, TestRequest::new("/").protocol("y"));
    assert_eq!(
        rec,
        Recorded {
            protocol: Some(0),
            framing: Some(("fixedlength".into(), Some("2".into()))),
            ..peer("tcp://h:1")
        }
    );
    let rec = ok(&b, TestRequest::new("/").protocol("P1"));
    assert_eq!(
        rec,
        Recorded {
            protocol: Some(0),
            framing: Some(("separator".into(), Some("; x".into()))),
            ..peer("tcp://h:2")
        }
    );
}

#[test]
fn subprotocol_match_is_case_sensitive_and_star_takes_first_offer() {
    let d = Dir::new(&[("base/f.txt", "tcp://h:1 P1\ntcp://h:2 *\n")]);
    let b = d.backend(&["f.txt"]);
    let rec = ok(&b, TestRequest::new("/").protocol("p1").protocol("q"));
    assert_eq!(
        rec,
        Recorded {
            protocol: Some(0),
            ..peer("tcp://h:2")
        }
    );
    let rec = ok(&b, TestRequest::new("/").protocol("q").protocol("P1"));
    assert_eq!(
        rec,
        Recorded {
            protocol: Some(1),
            ..peer("tcp://h:1")
        }
    );
}

#[test]
fn b50_host_only_line() {
    let d = Dir::new(&[("base/f.txt", "\n# comment\ntcp://only:1\ntcp://h:2 p\n")]);
    let b = d.backend(&["f.txt"]);
    // No offers: the first line, host only (the original crashed here).
    assert_eq!(ok(&b, TestRequest::new("/")), peer("tcp://only:1"));
    // Offers: host-only lines are skipped.
    assert_eq!(
        ok(&b, TestRequest::new("/").protocol("p")),
        Recorded {
            protocol: Some(0),
            ..peer("tcp://h:2")
        }
    );
}

#[test]
fn crlf_and_trailing_spaces() {
    let d = Dir::new(&[("base/f.txt", "tcp://h:1 p separator  \r\n")]);
    let b = d.backend(&["f.txt"]);
    let rec = ok(&b, TestRequest::new("/"));
    assert_eq!(
        rec,
        Recorded {
            framing: Some(("separator".into(), Some(" ".into()))),
            ..peer("tcp://h:1")
        }
    );
}

#[test]
fn unknown_framing_falls_back_to_auto() {
    let d = Dir::new(&[("base/f.txt", "unix:///tmp/app.sock text text\n")]);
    let b = d.backend(&["f.txt"]);
    assert_eq!(ok(&b, TestRequest::new("/")), peer("unix:///tmp/app.sock"));
}

#[test]
fn bad_peer_fails_the_query() {
    let d = Dir::new(&[("base/f.txt", "ftp://nope\n")]);
    let b = d.backend(&["f.txt"]);
    let (res, _) = TestRequest::new("/").query(&b);
    assert!(res.unwrap_err().contains("ftp://nope"));
}

#[test]
fn traversal_never_leaves_path() {
    let d = Dir::new(&[
        ("secret.txt", "tcp://secret:1\n"),
        ("base/sub/x.txt", "tcp://sub:1\n"),
        ("base/.._.._etc_passwd", "tcp://sanitised:1\n"),
    ]);
    // A header that is exactly `..` would climb out of base.
    let b = d.backend(&["%header:X-Dir%/secret.txt", "sub/%header:X-Dir%/sub/x.txt"]);
    assert_eq!(
        ok(&b, TestRequest::new("/").header("X-Dir", "..")),
        not_found()
    );
    assert_eq!(
        ok(&b, TestRequest::new("/").header("X-Dir", "../..")),
        not_found()
    );
    assert_eq!(
        ok(&b, TestRequest::new("/").header("X-Dir", ".")),
        not_found()
    );
    // An expression written with `..` is refused too.
    let b = d.backend(&["../secret.txt"]);
    assert_eq!(ok(&b, TestRequest::new("/")), not_found());
    // The endpoint's slashes are replaced.
    let b = d.backend(&["%endpoint%"]);
    assert_eq!(
        ok(&b, TestRequest::new("/../../etc/passwd")),
        peer("tcp://sanitised:1")
    );
    assert_eq!(ok(&b, TestRequest::new("/..")), not_found());
    // `/` gives an empty endpoint: the directory itself, never a file.
    assert_eq!(ok(&b, TestRequest::new("/")), not_found());
    // A directory is not a peer file.
    assert_eq!(ok(&b, TestRequest::new("/sub")), not_found());
}

#[test]
fn confine_is_component_wise() {
    let base = Path::new("/srv/p");
    assert_eq!(
        confine(base, "a/b.txt"),
        Some(PathBuf::from("/srv/p/a/b.txt"))
    );
    assert_eq!(confine(base, "/a"), Some(PathBuf::from("/srv/p/a")));
    assert_eq!(confine(base, "./a/./b"), Some(PathBuf::from("/srv/p/a/b")));
    assert_eq!(
        confine(base, "...txt"),
        Some(PathBuf::from("/srv/p/...txt"))
    );
    assert_eq!(confine(base, "a/../b"), None);
    assert_eq!(confine(base, ".."), None);
    assert_eq!(confine(base, ""), None);
    assert_eq!(confine(base, "."), None);
}

#[test]
fn missing_or_empty_variables_skip_the_expression() {
    let d = Dir::new(&[
        ("base/.txt", "tcp://empty:1\n"),
        ("base/default.txt", "tcp://d:1\n"),
    ]);
    let b = d.backend(&["%cookie:s%.txt", "%header:X%.txt", "default.txt"]);
    assert_eq!(
        ok(
            &b,
            TestRequest::new("/").header("Cookie", "s=").header("X", "")
        ),
        peer("tcp://d:1")
    );
}

#[test]
fn templates() {
    let t = Template::parse("a%endpoint%%cookie:c%-%header:H%%x%50%").unwrap();
    assert_eq!(
        t.parts,
        [
            Part::Literal("a".into()),
            Part::Endpoint,
            Part::Cookie("c".into()),
            Part::Literal("-".into()),
            Part::Header("H".into()),
            Part::Literal("%x%50%".into()),
        ]
    );
    assert!(Template::parse("%cookie:abc").is_err());
    assert!(Template::parse("%header:%").is_err());
    let req = TestRequest::new("/e/p")
        .header("Cookie", "c=1/2")
        .header("h", "v\0");
    assert_eq!(
        req.with(|r| t.expand(r)),
        Some("ae_p1_2-v_%x%50%".to_string())
    );
}

#[test]
fn endpoint_rules() {
    assert_eq!(endpoint("/test"), Some("test"));
    assert_eq!(endpoint("/test/"), Some("test"));
    assert_eq!(endpoint("/"), Some(""));
    assert_eq!(endpoint("//"), Some(""));
    assert_eq!(endpoint(""), None);
}

#[test]
fn lines() {
    assert_eq!(
        parse_line("tcp://h:1"),
        Some(Line {
            peer: "tcp://h:1",
            subprotocol: None,
            framing: None,
            config: None
        })
    );
    assert_eq!(
        parse_line("tcp://h:1 p f a b  c\r"),
        Some(Line {
            peer: "tcp://h:1",
            subprotocol: Some("p"),
            framing: Some("f"),
            config: Some("a b  c")
        })
    );
    assert_eq!(parse_line("  # x"), None);
    assert_eq!(parse_line(" \r"), None);
}

#[test]
fn a_line_or_the_hub_option_asks_for_a_hub() {
    let d = Dir::new(&[
        ("base/feed.txt", "tcp://127.0.0.1:9000?hub\n"),
        ("base/own.txt", "tcp://127.0.0.1:9001\n"),
    ]);
    let b = d.backend(&["%endpoint%.txt"]);
    let hub = Recorded {
        hub: true,
        ..peer("tcp://127.0.0.1:9000")
    };
    assert_eq!(ok(&b, TestRequest::new("/feed")), hub);
    assert_eq!(
        ok(&b, TestRequest::new("/own")),
        peer("tcp://127.0.0.1:9001")
    );
    // A host older than 2.2 cannot: the query fails rather than answer
    // without the hub it was asked for.
    let (res, _) = TestRequest::new("/feed").host_abi_minor(1).query(&b);
    assert!(res.unwrap_err().contains("hub for"));
    let mut all = d.backend(&["%endpoint%.txt"]);
    all.configure("hub", "on").unwrap();
    assert!(ok(&all, TestRequest::new("/own")).hub);
    assert!(matches!(
        all.configure("hub", "maybe"),
        Err(ConfigError::Invalid(_))
    ));
}

#[test]
fn configuration_errors() {
    let mut b = FileBackend::default();
    assert_eq!(b.configure("nope", "x"), Err(ConfigError::UnknownKey));
    assert!(matches!(
        b.configure("expression", "%cookie:x"),
        Err(ConfigError::Invalid(_))
    ));
    assert!(matches!(
        b.configure("path", ""),
        Err(ConfigError::Invalid(_))
    ));
    assert!(b.start().unwrap_err().contains("path"));
    let d = Dir::new(&[("base/file", "")]);
    b.configure("path", &format!("{}/file", d.base())).unwrap();
    assert!(b.start().unwrap_err().contains("not a directory"));
    b.configure("path", &d.base()).unwrap();
    assert!(b.start().unwrap_err().contains("expression"));
    b.configure("expression", "x").unwrap();
    assert_eq!(b.start(), Ok(()));
}
