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
