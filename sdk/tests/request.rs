//! The safe request view and the test host's answer recording.

use websocksy_plugin::testing::{Recorded, TestRequest};
use websocksy_plugin::{Answer, Backend, Request};

#[test]
fn target_path_query() {
    TestRequest::new("/a/b?x=1&y").with(|r| {
        assert_eq!(r.target(), "/a/b?x=1&y");
        assert_eq!(r.path(), "/a/b");
        assert_eq!(r.query(), Some("x=1&y"));
    });
    TestRequest::new("/a").with(|r| assert_eq!(r.query(), None));
    TestRequest::new("/a?").with(|r| assert_eq!(r.query(), Some("")));
}

#[test]
fn headers_case_insensitive_first_wins() {
    let t = TestRequest::new("/")
        .header("X-Foo", "1")
        .header("x-foo", "2")
        .header("Host", "h");
    t.with(|r| {
        assert_eq!(r.header("x-FOO"), Some("1"));
        assert_eq!(r.header("host"), Some("h"));
        assert_eq!(r.header("missing"), None);
        let names: Vec<&str> = r.headers().map(|h| h.name).collect();
        assert_eq!(names, ["X-Foo", "x-foo", "Host"]);
    });
}

#[test]
fn cookies_with_and_without_space_across_headers() {
    let t = TestRequest::new("/")
        .header("Cookie", "foo=1;session=x")
        .header("cookie", " a = 2 ; b=3=4;novalue; session=later")
        .header("Cookie", "empty=");
    t.with(|r| {
        assert_eq!(r.cookie("foo"), Some("1"));
        assert_eq!(r.cookie("session"), Some("x"));
        assert_eq!(r.cookie("a"), Some("2"));
        assert_eq!(r.cookie("b"), Some("3=4"));
        assert_eq!(r.cookie("novalue"), None);
        assert_eq!(r.cookie("empty"), Some(""));
        assert_eq!(r.cookie("Session"), None, "cookie names are case-sensitive");
    });
}

#[test]
fn protocols_address_tls() {
    let t = TestRequest::new("/")
        .protocol("p1")
        .protocol("p2")
        .client_address("[::1]:5")
        .tls(true);
    t.with(|r| {
        assert_eq!(r.protocols().collect::<Vec<_>>(), ["p1", "p2"]);
        assert_eq!(r.protocols().len(), 2);
        assert_eq!(r.client_address(), "[::1]:5");
        assert!(r.tls());
    });
}

struct Echo;

impl Backend for Echo {
    const NAME: &'static str = "echo";

    fn query(&self, request: &Request<'_>, answer: &mut Answer<'_>) -> Result<(), String> {
        match request.path() {
            "/reject" => answer.reject(403, "no")?,
            "/badreject" => answer.reject(200, "no")?,
            "/badpeer" => answer.peer("ftp://x")?,
            "/badframing" => answer.framing("nosuch", None)?,
            "/badprotocol" => answer.protocol(5)?,
            "/hub" => {
                answer.peer("tcp://127.0.0.1:7000")?;
                answer.hub(true)?;
            }
            _ => {
                answer.peer("mirror://")?;
                answer.framing("json", Some("max-depth=3"))?;
                answer.header("X-A", "b")?;
            }
        }
        Ok(())
    }
}

#[test]
fn answers_are_recorded_and_checked() {
    let (res, rec) = TestRequest::new("/").query(&Echo);
    assert_eq!(res, Ok(()));
    assert_eq!(
        rec,
        Recorded {
            peer: Some("mirror://".into()),
            framing: Some(("json".into(), Some("max-depth=3".into()))),
            headers: vec![("X-A".into(), "b".into())],
            ..Recorded::default()
        }
    );
    assert_eq!(
        TestRequest::new("/reject").query(&Echo).1.reject,
        Some((403, "no".into()))
    );
    for bad in ["/badreject", "/badpeer", "/badframing", "/badprotocol"] {
        let (res, _) = TestRequest::new(bad).query(&Echo);
        let err = res.unwrap_err();
        assert!(err.contains("invalid argument"), "{bad}: {err}");
    }
}

#[test]
fn a_hub_answer_needs_a_2_2_host() {
    let (res, rec) = TestRequest::new("/hub").query(&Echo);
    assert_eq!(res, Ok(()));
    assert!(rec.hub);
    assert!(!TestRequest::new("/").query(&Echo).1.hub);
    for older in [0, 1] {
        let (res, rec) = TestRequest::new("/hub").host_abi_minor(older).query(&Echo);
        let err = res.unwrap_err();
        assert!(err.contains("unsupported ABI version"), "2.{older}: {err}");
        assert!(!rec.hub);
    }
}

#[test]
fn user_and_tls_client_on_a_2_1_host() {
    let t = TestRequest::new("/")
        .tls(true)
        .user("alice")
        .tls_client("CN=alice,O=Example", &["DNS:alice.example", "IP:10.0.0.1"]);
    t.with(|r| {
        assert_eq!(r.user(), Some("alice"));
        assert_eq!(r.tls_subject(), Some("CN=alice,O=Example"));
        assert_eq!(
            r.tls_sans().collect::<Vec<_>>(),
            ["DNS:alice.example", "IP:10.0.0.1"]
        );
        let debug = format!("{r:?}");
        assert!(debug.contains("user: Some(\"alice\")"), "{debug}");
    });
    // Nobody authenticated, no certificate.
    TestRequest::new("/").with(|r| {
        assert_eq!(r.user(), None);
        assert_eq!(r.tls_subject(), None);
        assert_eq!(r.tls_sans().count(), 0);
    });
    // A certificate with an empty subject and no SANs is still present.
    TestRequest::new("/").tls_client("", &[]).with(|r| {
        assert_eq!(r.tls_subject(), Some(""));
        assert_eq!(r.tls_sans().count(), 0);
    });
}

#[test]
fn an_older_host_has_no_user_or_tls_client() {
    // The fields are set in memory, but a 2.0 host's `size` ends before
    // them: the SDK must not read them.
    let t = TestRequest::new("/a?b")
        .header("X-A", "1")
        .protocol("p")
        .client_address("10.0.0.9:1")
        .tls(true)
        .user("alice")
        .tls_client("CN=alice", &["DNS:alice.example"])
        .host_abi_minor(0);
    t.with(|r| {
        assert_eq!(r.user(), None);
        assert_eq!(r.tls_subject(), None);
        assert_eq!(r.tls_sans().count(), 0);
        // The 2.0 fields are all there.
        assert_eq!((r.path(), r.query()), ("/a", Some("b")));
        assert_eq!(r.header("x-a"), Some("1"));
        assert_eq!(r.protocols().collect::<Vec<_>>(), ["p"]);
        assert_eq!(r.client_address(), "10.0.0.9:1");
        assert!(r.tls());
    });
}

/// Routes by identity: the certificate's first SAN, else the user, else 403.
struct ByIdentity;

impl Backend for ByIdentity {
    const NAME: &'static str = "by-identity";

    fn query(&self, request: &Request<'_>, answer: &mut Answer<'_>) -> Result<(), String> {
        let who = request
            .tls_sans()
            .next()
            .or(request.user())
            .map(str::to_owned);
        match who {
            Some(who) => {
                answer.peer("mirror://")?;
                answer.header("X-Who", &who)?;
            }
            None => answer.reject(403, "who are you?")?,
        }
        Ok(())
    }
}

#[test]
fn a_backend_answers_by_identity_and_refuses_on_an_older_host() {
    let t = TestRequest::new("/").user("bob");
    let (res, rec) = t.query(&ByIdentity);
    assert_eq!(res, Ok(()));
    assert_eq!(rec.headers, [("X-Who".to_string(), "bob".to_string())]);
    let t = t.tls_client("CN=c", &["email:c@example.org"]);
    assert_eq!(
        t.query(&ByIdentity).1.headers,
        [("X-Who".to_string(), "email:c@example.org".to_string())]
    );
    let (res, rec) = t.host_abi_minor(0).query(&ByIdentity);
    assert_eq!(res, Ok(()));
    assert_eq!(rec.reject, Some((403, "who are you?".into())));
}
