//! The `wsy_request` a backend's query sees: views into the core's
//! [`Request`], registered as live while the query runs, so `request_header`
//! and `request_cookie` refuse a request whose query is over instead of
//! reading freed memory.

use std::collections::BTreeSet;
use std::sync::Mutex;

use websocksy_abi::{
    wsy_header, wsy_request, wsy_status, wsy_str, WSY_EINVAL, WSY_ERROR, WSY_ESTATE, WSY_OK,
};

use super::{bytes, guard, lock};
use crate::backend::Request;

/// Addresses of the `wsy_request`s whose query is running now.
static REQUESTS: Mutex<BTreeSet<usize>> = Mutex::new(BTreeSet::new());

/// A `wsy_request` viewing a [`Request`]; registered as live while it exists.
pub(crate) struct RequestView<'a>(websocksy_abi::RequestView<'a>);

impl<'a> RequestView<'a> {
    pub fn new(req: &'a Request) -> Box<RequestView<'a>> {
        let mut raw = websocksy_abi::RequestView::new(
            &req.target,
            req.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            req.protocols.iter().map(String::as_str),
            req.client.to_string(),
            req.tls,
        )
        .with_user(req.user.as_deref());
        if let Some(id) = &req.tls_client {
            raw = raw.with_tls_client(&id.subject, id.sans.iter().map(String::as_str));
        }
        // Boxed: the address of the wsy_request is what REQUESTS holds.
        let view = Box::new(RequestView(raw));
        lock(&REQUESTS).insert(view.as_ptr() as usize);
        view
    }

    pub fn as_ptr(&self) -> *const wsy_request {
        self.0.raw()
    }
}

impl Drop for RequestView<'_> {
    fn drop(&mut self) {
        lock(&REQUESTS).remove(&(self.as_ptr() as usize));
    }
}

/// Look a name up in a live request: `find` gets the request's headers and
/// returns the value's bytes (a sub-slice of the request's memory).
///
/// # Safety
/// `value` NULL or writable; `name` a valid view (the plugin's promise).
unsafe fn lookup(
    request: *const wsy_request,
    name: wsy_str,
    value: *mut wsy_str,
    find: impl Fn(&[wsy_header], &[u8]) -> Option<wsy_str>,
) -> wsy_status {
    // SAFETY: the caller's promise; checked for NULL.
    let Some(out) = (unsafe { value.as_mut() }) else {
        return WSY_EINVAL;
    };
    *out = wsy_str::NONE;
    // SAFETY: the view is the plugin's, valid during this call.
    let Some(name) = (unsafe { bytes(name) }) else {
        return WSY_EINVAL;
    };
    if request.is_null() {
        return WSY_EINVAL;
    }
    // Held while reading, so the request cannot be freed under us.
    let live = lock(&REQUESTS);
    if !live.contains(&(request as usize)) {
        log::warn!(target: "websocksy::plugin", "request_* called with a request whose query is over (WSY_ESTATE)");
        return WSY_ESTATE;
    }
    // SAFETY: `request` is a RequestView's wsy_request, alive while in REQUESTS.
    let req = unsafe { &*request };
    let headers: &[wsy_header] = if req.headers.is_null() {
        &[]
    } else {
        // SAFETY: built by RequestView::new from a Vec of header_count headers.
        unsafe { std::slice::from_raw_parts(req.headers, req.header_count) }
    };
    match find(headers, name) {
        Some(v) => {
            *out = v;
            WSY_OK
        }
        None => WSY_ERROR,
    }
}

/// The bytes of a header view the host built.
fn host_bytes<'a>(s: wsy_str) -> &'a [u8] {
    // SAFETY: only called on views RequestView::new made from Strings that
    // outlive the query, and only inside `lookup`'s `find`, while the
    // request is held live.
    unsafe { s.as_bytes() }.unwrap_or_default()
}

fn view(b: &[u8]) -> wsy_str {
    wsy_str {
        ptr: b.as_ptr().cast(),
        len: b.len(),
    }
}

pub(super) unsafe extern "C" fn request_header(
    request: *const wsy_request,
    name: wsy_str,
    value: *mut wsy_str,
) -> wsy_status {
    guard(WSY_ERROR, || {
        let find = |headers: &[wsy_header], name: &[u8]| {
            headers
                .iter()
                .find(|h| host_bytes(h.name).eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        // SAFETY: the plugin's pointers, checked inside.
        unsafe { lookup(request, name, value, find) }
    })
}

/// The value of cookie `name` in one Cookie header value.
pub(crate) fn find_cookie<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let (n, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        (n.trim_ascii() == name).then(|| v.trim_ascii())
    })
}

pub(super) unsafe extern "C" fn request_cookie(
    request: *const wsy_request,
    name: wsy_str,
    value: *mut wsy_str,
) -> wsy_status {
    guard(WSY_ERROR, || {
        let find = |headers: &[wsy_header], name: &[u8]| {
            headers
                .iter()
                .filter(|h| host_bytes(h.name).eq_ignore_ascii_case(b"cookie"))
                .find_map(|h| find_cookie(host_bytes(h.value), name))
                .map(view)
        };
        // SAFETY: the plugin's pointers, checked inside.
        unsafe { lookup(request, name, value, find) }
    })
}

#[cfg(test)]
mod tests {
    use super::super::s;
    use super::*;

    fn request() -> Request {
        Request {
            target: "/a/b?x=1".into(),
            headers: vec![
                ("Host".into(), "h".into()),
                ("Cookie".into(), "a=1; sid=abc".into()),
                ("X-Token".into(), "t1".into()),
                ("cookie".into(), "SID=upper;b=2;empty=".into()),
                ("x-token".into(), "t2".into()),
            ],
            protocols: vec!["p1".into(), "p2".into()],
            client: "[::1]:4000".parse().unwrap(),
            tls: false,
            tls_client: None,
            user: None,
        }
    }

    fn get(
        f: unsafe extern "C" fn(*const wsy_request, wsy_str, *mut wsy_str) -> wsy_status,
        r: *const wsy_request,
        name: &str,
    ) -> (wsy_status, Option<String>) {
        let mut out = s("junk");
        // SAFETY: valid pointers to locals.
        let st = unsafe { f(r, s(name), &mut out) };
        // SAFETY: NULL or a view into the live request.
        let v = unsafe { out.as_bytes() }.map(|b| String::from_utf8(b.to_vec()).unwrap());
        (st, v)
    }

    #[test]
    fn request_views() {
        let req = request();
        let v = RequestView::new(&req);
        let r = v.as_ptr();
        // SAFETY: a live view.
        let raw = unsafe { &*r };
        // SAFETY: views into `req`.
        unsafe {
            assert_eq!(raw.path.as_bytes(), Some(&b"/a/b"[..]));
            assert_eq!(raw.query.as_bytes(), Some(&b"x=1"[..]));
            assert_eq!(raw.client_address.as_bytes(), Some(&b"[::1]:4000"[..]));
        }
        assert_eq!((raw.header_count, raw.protocol_count), (5, 2));
        assert_eq!(
            get(request_header, r, "x-TOKEN"),
            (WSY_OK, Some("t1".into()))
        );
        assert_eq!(get(request_header, r, "nope"), (WSY_ERROR, None));
        assert_eq!(get(request_cookie, r, "sid"), (WSY_OK, Some("abc".into())));
        assert_eq!(
            get(request_cookie, r, "SID"),
            (WSY_OK, Some("upper".into()))
        );
        assert_eq!(get(request_cookie, r, "b"), (WSY_OK, Some("2".into())));
        assert_eq!(
            get(request_cookie, r, "empty"),
            (WSY_OK, Some(String::new()))
        );
        assert_eq!(get(request_cookie, r, "Sid"), (WSY_ERROR, None));
        let mut out = wsy_str::NONE;
        // SAFETY: NULL checks only.
        unsafe {
            assert_eq!(
                request_header(r, s("Host"), std::ptr::null_mut()),
                WSY_EINVAL
            );
            assert_eq!(
                request_header(std::ptr::null(), s("Host"), &mut out),
                WSY_EINVAL
            );
            assert_eq!(request_header(r, wsy_str::NONE, &mut out), WSY_EINVAL);
        }
        drop(v);
        // The request's query is over: refused without reading it.
        assert_eq!(get(request_header, r, "Host"), (WSY_ESTATE, None));

        let bare = Request {
            target: "/p".into(),
            headers: vec![],
            protocols: vec![],
            ..req
        };
        let v = RequestView::new(&bare);
        // SAFETY: a live view.
        let raw = unsafe { &*v.as_ptr() };
        assert!(raw.query.ptr.is_null() && raw.headers.is_null());
        assert_eq!(get(request_cookie, v.as_ptr(), "a"), (WSY_ERROR, None));
    }

    #[test]
    fn identity_views() {
        let mut req = request();
        let v = RequestView::new(&req);
        // SAFETY: a live view.
        let raw = unsafe { &*v.as_ptr() };
        assert_eq!(raw.size as usize, std::mem::size_of::<wsy_request>());
        assert!(raw.user.ptr.is_null() && raw.tls_subject.ptr.is_null());
        assert!(raw.tls_sans.is_null() && raw.tls_san_count == 0);
        drop(v);

        req.user = Some("alice".into());
        req.tls_client = Some(crate::backend::TlsIdentity {
            subject: "CN=alice".into(),
            sans: vec!["DNS:a.example".into(), "IP:10.0.0.1".into()],
        });
        let v = RequestView::new(&req);
        // SAFETY: a live view.
        let raw = unsafe { &*v.as_ptr() };
        assert_eq!(raw.tls_san_count, 2);
        // SAFETY: views into `req` and the view's own array, alive here.
        unsafe {
            assert_eq!(raw.user.as_bytes(), Some(&b"alice"[..]));
            assert_eq!(raw.tls_subject.as_bytes(), Some(&b"CN=alice"[..]));
            let sans = std::slice::from_raw_parts(raw.tls_sans, raw.tls_san_count);
            assert_eq!(sans[0].as_bytes(), Some(&b"DNS:a.example"[..]));
            assert_eq!(sans[1].as_bytes(), Some(&b"IP:10.0.0.1"[..]));
        }
        drop(v);

        // A certificate with an empty subject and no SANs: present, empty.
        req.tls_client = Some(crate::backend::TlsIdentity::default());
        let v = RequestView::new(&req);
        // SAFETY: a live view.
        let raw = unsafe { &*v.as_ptr() };
        // SAFETY: as above.
        assert_eq!(unsafe { raw.tls_subject.as_bytes() }, Some(&b""[..]));
        assert!(raw.tls_sans.is_null() && raw.tls_san_count == 0);
    }

    #[test]
    fn cookies() {
        assert_eq!(find_cookie(b"a=1; b = 2 ;c=x=y", b"b"), Some(&b"2"[..]));
        assert_eq!(find_cookie(b"a=1; b = 2 ;c=x=y", b"c"), Some(&b"x=y"[..]));
        assert_eq!(find_cookie(b"flag; a=1", b"flag"), Some(&b""[..]));
        assert_eq!(find_cookie(b"", b"a"), None);
    }
}
