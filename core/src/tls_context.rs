//! TLS contexts built from the settings' files: the listeners' (rebuilt on
//! SIGHUP) and the connectors of `tls://` peers and of `wss://` client
//! connections (`websocksy connect`, `[connect]`).
//!
//! Files are read on the thread that calls [`ServerTls::load`] or
//! [`ServerTls::reload`]: at start-up, and on SIGHUP on the loop that
//! handles signals. That is a short blocking read of a few local files,
//! accepted there (as for the configuration file); connections never wait
//! on it otherwise, since the context in use is swapped, not edited.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use openssl::error::ErrorStack;
use openssl::ssl::{
    select_next_proto, AlpnError, Ssl, SslAcceptor, SslConnector, SslConnectorBuilder, SslContext,
    SslContextBuilder, SslFiletype, SslMethod, SslMode, SslOptions, SslVerifyMode, SslVersion,
};
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::{X509Name, X509};

use crate::config::{BindSpec, ClientCertMode, ConnectSettings, Located, Settings};

/// The first OpenSSL reason of a failure, e.g. "no start line".
fn reason(e: &ErrorStack) -> String {
    e.errors()
        .iter()
        .filter_map(|e| e.reason())
        .next()
        .map(str::to_string)
        .unwrap_or_else(|| e.to_string())
}

/// How every TLS stream of the bridge writes and keeps memory: the
/// session's queue hands the same bytes back after a WANT_WRITE, from
/// wherever they sit by then, and takes partial writes; and OpenSSL may
/// free its record buffers (about 17 KiB each way) while a connection is
/// idle, as the bridge does with its own.
fn io_mode() -> SslMode {
    SslMode::ACCEPT_MOVING_WRITE_BUFFER | SslMode::ENABLE_PARTIAL_WRITE | SslMode::RELEASE_BUFFERS
}

/// The files of a TLS listener, with where each was given.
#[derive(Clone)]
struct ServerFiles {
    cert: Located<PathBuf>,
    key: Located<PathBuf>,
    client_ca: Option<Located<PathBuf>>,
    client_cert: ClientCertMode,
}

/// The listeners' context; new handshakes take the current one, open
/// connections keep the one they started with (each `Ssl` holds a
/// reference to its context).
pub struct ServerTls {
    files: ServerFiles,
    current: RwLock<SslContext>,
}

/// A file must be there and readable before OpenSSL's vaguer reasons apply.
fn readable(f: &Located<PathBuf>, what: &str) -> Result<(), String> {
    std::fs::File::open(&f.value)
        .map(drop)
        .map_err(|e| format!("{}: cannot read {what} '{}': {e}", f.at, f.value.display()))
}

/// A certificate chain and its key into `b`, for a listener or as the
/// client certificate shown to peers; errors name the option (or the file
/// and line) and the file.
fn load_pair(
    b: &mut SslContextBuilder,
    cert: &Located<PathBuf>,
    key: &Located<PathBuf>,
) -> Result<(), String> {
    let name = |p: &Path| p.display().to_string();
    readable(cert, "certificate")?;
    b.set_certificate_chain_file(&cert.value).map_err(|e| {
        format!(
            "{}: bad certificate '{}': {}",
            cert.at,
            name(&cert.value),
            reason(&e)
        )
    })?;
    readable(key, "key")?;
    let mismatch = || {
        format!(
            "{}: key '{}' does not match certificate '{}'",
            key.at,
            name(&key.value),
            name(&cert.value)
        )
    };
    b.set_private_key_file(&key.value, SslFiletype::PEM)
        .map_err(|e| match reason(&e) {
            // OpenSSL 3 checks the pair as it loads the key.
            r if r.contains("mismatch") => mismatch(),
            r => format!("{}: bad key '{}': {r}", key.at, name(&key.value)),
        })?;
    b.check_private_key().map_err(|_| mismatch())
}

fn build(files: &ServerFiles) -> Result<SslContext, String> {
    let ServerFiles {
        cert,
        key,
        client_ca,
        client_cert,
    } = files;
    let name = |p: &Path| p.display().to_string();
    // TLS 1.2 and 1.3 with Mozilla's "intermediate" ciphers.
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(|e| format!("cannot create a TLS context: {}", reason(&e)))?;
    load_pair(&mut b, cert, key)?;
    b.set_alpn_select_callback(|_, offered| {
        select_next_proto(b"\x08http/1.1", offered).ok_or(AlpnError::NOACK)
    });
    b.set_mode(io_mode());
    // A TLS 1.2 client asking to renegotiate costs a handshake each time
    // and buys a browser or a proxy nothing.
    b.set_options(SslOptions::NO_RENEGOTIATION);
    // Resumption (the session cache and tickets are on by default) needs
    // an id context once client certificates are verified.
    b.set_session_id_context(b"websocksy")
        .map_err(|e| format!("cannot set the TLS session context: {}", reason(&e)))?;
    if let Some(ca) = client_ca {
        readable(ca, "client CA")?;
        let bad = |e: ErrorStack| {
            format!(
                "{}: bad client CA '{}': {}",
                ca.at,
                name(&ca.value),
                reason(&e)
            )
        };
        b.set_ca_file(&ca.value).map_err(bad)?;
        b.set_client_ca_list(X509Name::load_client_ca_file(&ca.value).map_err(bad)?);
        b.set_verify(match client_cert {
            ClientCertMode::Require => SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
            ClientCertMode::Optional => SslVerifyMode::PEER,
        });
    }
    Ok(b.build().into_context())
}

impl ServerTls {
    /// The listeners' context, if any listener speaks TLS; every mistake
    /// in the TLS settings is one line naming the option or file line.
    pub fn load(s: &Settings) -> Result<Option<ServerTls>, String> {
        let wss_bind: Option<&Located<BindSpec>> = s.binds.iter().find(|b| b.value.tls);
        if let (Some(m), None) = (&s.client_cert, &s.client_ca) {
            return Err(format!("{}: client-cert needs client-ca", m.at));
        }
        let (cert, key) = match (&s.cert, &s.key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            (Some(c), None) => return Err(format!("{}: cert needs key", c.at)),
            (None, Some(k)) => return Err(format!("{}: key needs cert", k.at)),
            (None, None) => {
                if let Some(b) = wss_bind {
                    return Err(format!("{}: {} needs cert and key", b.at, b.value));
                }
                if let Some(ca) = &s.client_ca {
                    return Err(format!("{}: client-ca needs cert and key", ca.at));
                }
                return Ok(None);
            }
        };
        let files = ServerFiles {
            cert,
            key,
            client_ca: s.client_ca.clone(),
            client_cert: s
                .client_cert
                .as_ref()
                .map_or(ClientCertMode::Require, |m| m.value),
        };
        let ctx = build(&files)?;
        Ok(Some(ServerTls {
            files,
            current: RwLock::new(ctx),
        }))
    }

    /// The context new handshakes use (a reference count, not a copy).
    pub fn context(&self) -> SslContext {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Read the files again; on failure the old context stays.
    pub fn reload(&self) -> Result<(), String> {
        let ctx = build(&self.files)?;
        match self.current.write() {
            Ok(mut c) => *c = ctx,
            Err(poisoned) => *poisoned.into_inner() = ctx,
        }
        Ok(())
    }
}

/// The context of `tls://` peers, built once at start-up: the system's
/// CAs or `--peer-ca`, hostname checks unless `--peer-insecure`, and an
/// optional client certificate.
pub struct PeerTls {
    connector: SslConnector,
    insecure: bool,
}

/// Where the system's CA bundle usually is (Debian and its kin, Fedora
/// and its kin, openSUSE, Alpine and the BSDs), after `SSL_CERT_FILE`.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The system's CAs, read once. OpenSSL's default paths would also look
/// certificates up in `/etc/ssl/certs/<hash>.N` during each verification,
/// a file read on the event loop; a store filled here reads nothing later.
/// `None` when no bundle is found or one cannot be parsed: the caller then
/// keeps OpenSSL's default paths (as trusting nothing would break `tls://`
/// peers on a system whose bundle lives elsewhere), and the warning says
/// what that costs.
///
/// `what` names the connections it is for and `ca_option` the option that
/// avoids the fallback, for the warning.
fn system_store(what: &str, ca_option: &str) -> Result<Option<X509Store>, String> {
    let mut store = X509StoreBuilder::new()
        .map_err(|e| format!("cannot create a certificate store: {}", reason(&e)))?;
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let candidates: Vec<PathBuf> = match from_env {
        // Set on purpose: no silent fallback to another bundle.
        Some(f) => vec![f],
        None => SYSTEM_BUNDLES.iter().map(PathBuf::from).collect(),
    };
    let fallback = format!(
        "OpenSSL's default CA paths are used, and verifying {what} may read certificate \
         files on the event loop; give {ca_option} to avoid it"
    );
    for path in &candidates {
        let Ok(pem) = std::fs::read(path) else {
            continue;
        };
        let certs = match X509::stack_from_pem(&pem) {
            Ok(c) => c,
            Err(e) => {
                log::warn!(
                    "bad system CA bundle '{}' ({}): {fallback}",
                    path.display(),
                    reason(&e)
                );
                return Ok(None);
            }
        };
        let count = certs.len();
        for c in certs {
            // A bundle may list a certificate twice; OpenSSL 1.1 calls that
            // an error, and it changes nothing.
            let _ = store.add_cert(c);
        }
        log::debug!("{what}: {count} CAs from '{}'", path.display());
        return Ok(Some(store.build()));
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    log::warn!(
        "no system CA bundle (tried {}): {fallback}",
        tried.join(", ")
    );
    Ok(None)
}

/// The base of every client-side context (`tls://` peers, `wss://`
/// servers). The builder's store has OpenSSL's default paths, with the
/// hashed directory looked up at verification time: replaced whole, by
/// the system bundle when `system` (for `what`; `flag` is the option that
/// names other CAs), else by an empty store the caller fills, so trust
/// comes only from files read here, at start-up. TLS 1.0 and 1.1 are
/// deprecated (RFC 8996); a server asking to renegotiate would cost a
/// handshake mid-stream for nothing.
fn client_builder(system: bool, what: &str, flag: &str) -> Result<SslConnectorBuilder, String> {
    let mut b = SslConnector::builder(SslMethod::tls_client())
        .map_err(|e| format!("cannot create a TLS context: {}", reason(&e)))?;
    if system {
        if let Some(store) = system_store(what, flag)? {
            b.set_cert_store(store);
        }
    } else {
        let empty = X509StoreBuilder::new()
            .map_err(|e| format!("cannot create a certificate store: {}", reason(&e)))?;
        b.set_cert_store(empty.build());
    }
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(|e| format!("cannot set the TLS version for {what}: {}", reason(&e)))?;
    b.set_options(SslOptions::NO_RENEGOTIATION);
    Ok(b)
}

impl PeerTls {
    /// `backend_ca`: a `peer-ca` option of the default backend, used when
    /// `--peer-ca` is not given.
    pub fn load(s: &Settings, backend_ca: Option<Located<PathBuf>>) -> Result<PeerTls, String> {
        let ca = s.peer_ca.clone().or(backend_ca);
        let system = ca.is_none() && !s.peer_insecure;
        let mut b = client_builder(system, "a tls:// peer", "--peer-ca")?;
        let name = |p: &Path| p.display().to_string();
        if let Some(ca) = ca {
            readable(&ca, "peer CA")?;
            b.set_ca_file(&ca.value).map_err(|e| {
                format!(
                    "{}: bad peer CA '{}': {}",
                    ca.at,
                    name(&ca.value),
                    reason(&e)
                )
            })?;
        }
        match (&s.peer_cert, &s.peer_key) {
            (Some(cert), Some(key)) => load_pair(&mut b, cert, key)?,
            (Some(c), None) => return Err(format!("{}: peer-cert needs peer-key", c.at)),
            (None, Some(k)) => return Err(format!("{}: peer-key needs peer-cert", k.at)),
            (None, None) => {}
        }
        if s.peer_insecure {
            b.set_verify(SslVerifyMode::NONE);
            log::warn!("peer TLS certificates are not verified (peer-insecure)");
        }
        b.set_mode(io_mode());
        Ok(PeerTls {
            connector: b.build(),
            insecure: s.peer_insecure,
        })
    }

    /// A client-side `Ssl` for `host`: SNI (unless an IP literal) and,
    /// unless insecure, the certificate must name `host`.
    pub fn ssl(&self, host: &str) -> std::io::Result<Ssl> {
        let mut ssl = self
            .connector
            .configure()
            .and_then(|c| c.verify_hostname(!self.insecure).into_ssl(host))
            .map_err(std::io::Error::other)?;
        ssl.set_connect_state();
        Ok(ssl)
    }
}

/// The context of one `wss://` client connection (`websocksy connect`, a
/// `[connect]` section), built once at start-up and shared by all its
/// attempts: `--ca` or the system's CAs, an optional client certificate,
/// TLS 1.2 at least, no renegotiation, ALPN `http/1.1` (the upgrade is an
/// HTTP/1.1 request), and the server's name checked unless `--insecure`.
pub struct ClientTls {
    connector: SslConnector,
    insecure: bool,
    /// `--sni`: sent instead of the URL's host and verified instead of it.
    sni: Option<String>,
}

impl ClientTls {
    /// `None` for a `ws://` URL. Errors name the option (`--cert`) or the
    /// section (`FILE:LINE: [connect] cert`) and the file.
    pub fn load(c: &ConnectSettings) -> Result<Option<ClientTls>, String> {
        if !c.url.tls {
            return Ok(None);
        }
        let at = |key: &str, path: &PathBuf| Located {
            value: path.clone(),
            at: c.option_at(key),
        };
        let system = c.ca.is_none() && !c.insecure;
        let mut b = client_builder(system, "a wss:// server", "--ca")?;
        // A server speaking HTTP/2 by default must not pick it: the
        // upgrade to WebSocket is an HTTP/1.1 request (RFC 8441 aside).
        b.set_alpn_protos(b"\x08http/1.1")
            .map_err(|e| format!("cannot set ALPN: {}", reason(&e)))?;
        if let Some(ca) = &c.ca {
            let ca = at("ca", ca);
            readable(&ca, "CA file")?;
            b.set_ca_file(&ca.value).map_err(|e| {
                format!(
                    "{}: bad CA file '{}': {}",
                    ca.at,
                    ca.value.display(),
                    reason(&e)
                )
            })?;
        }
        match (&c.cert, &c.key) {
            (Some(cert), Some(key)) => load_pair(&mut b, &at("cert", cert), &at("key", key))?,
            (Some(_), None) => return Err(format!("{} needs a key", c.option_at("cert"))),
            (None, Some(_)) => return Err(format!("{} needs a certificate", c.option_at("key"))),
            (None, None) => {}
        }
        if c.insecure {
            b.set_verify(SslVerifyMode::NONE);
            log::warn!(
                "connect to {}: --insecure: the server's certificate is not verified",
                c.url_shown()
            );
        }
        b.set_mode(io_mode());
        Ok(Some(ClientTls {
            connector: b.build(),
            insecure: c.insecure,
            sni: c.sni.clone(),
        }))
    }

    /// A client-side `Ssl` in the connect state, to wrap with
    /// [`TlsStream::new`](crate::transport::tls::TlsStream::new) around the
    /// TCP socket to `host` (the URL's host, without brackets). SNI is the
    /// `--sni` name, else `host` unless it is an IP literal; unless
    /// insecure, the certificate must name that same name (or the IP).
    pub fn ssl(&self, host: &str) -> std::io::Result<Ssl> {
        let name = self.sni.as_deref().unwrap_or(host);
        let mut ssl = self
            .connector
            .configure()
            .and_then(|c| c.verify_hostname(!self.insecure).into_ssl(name))
            .map_err(std::io::Error::other)?;
        ssl.set_connect_state();
        Ok(ssl)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::path::PathBuf;

    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::ssl::{SslAcceptor, SslMethod, SslVerifyMode};
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509Builder, X509NameBuilder, X509};

    use super::ClientTls;
    use crate::config::{ConnectSettings, Local};
    use crate::ws::url::Url;

    /// A self-signed certificate for `server.example` and 127.0.0.1.
    fn self_signed() -> (X509, PKey<Private>) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "server.example").unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        let san = SubjectAlternativeName::new()
            .dns("server.example")
            .ip("127.0.0.1")
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(san).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        (b.build(), key)
    }

    /// Files removed on drop.
    struct Files(Vec<PathBuf>);

    impl Drop for Files {
        fn drop(&mut self) {
            for f in &self.0 {
                let _ = std::fs::remove_file(f);
            }
        }
    }

    fn write(files: &mut Files, name: &str, pem: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "websocksy-client-tls-{}-{name}.pem",
            std::process::id()
        ));
        std::fs::write(&path, pem).unwrap();
        files.0.push(path.clone());
        path
    }

    fn settings(url: &str) -> ConnectSettings {
        ConnectSettings::new(
            Url::parse(url).unwrap(),
            Local::Stdio,
            "command line".into(),
        )
    }

    /// What the server saw of one handshake: SNI, ALPN, whether a client
    /// certificate came.
    type Seen = (Option<String>, Option<Vec<u8>>, bool);

    /// One handshake; `Err` is the client's failure.
    fn handshake(
        tls: &ClientTls,
        host: &str,
        cert: &X509,
        key: &PKey<Private>,
    ) -> Result<Seen, String> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
        b.set_certificate(cert).unwrap();
        b.set_private_key(key).unwrap();
        b.set_alpn_select_callback(|_, offered| {
            openssl::ssl::select_next_proto(b"\x08http/1.1", offered)
                .ok_or(openssl::ssl::AlpnError::NOACK)
        });
        // Any client certificate will do: only whether one came is checked.
        b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
        let acceptor = b.build();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            acceptor.accept(s).ok().map(|s| {
                let ssl = s.ssl();
                (
                    ssl.servername(openssl::ssl::NameType::HOST_NAME)
                        .map(str::to_string),
                    ssl.selected_alpn_protocol().map(<[u8]>::to_vec),
                    ssl.peer_certificate().is_some(),
                )
            })
        });
        let ssl = tls.ssl(host).map_err(|e| e.to_string())?;
        let result = ssl
            .connect(TcpStream::connect(addr).unwrap())
            .map(drop)
            .map_err(|e| e.to_string());
        let seen = server.join().unwrap();
        result.map(|()| seen.unwrap())
    }

    #[test]
    fn ws_urls_have_no_tls() {
        assert!(ClientTls::load(&settings("ws://h/")).unwrap().is_none());
        assert!(ClientTls::load(&settings("http://h/")).unwrap().is_none());
    }

    #[test]
    fn verifies_the_server_with_the_given_ca_and_names() {
        let (cert, key) = self_signed();
        let mut files = Files(Vec::new());
        let ca = write(&mut files, "ca", &cert.to_pem().unwrap());

        let mut c = settings("wss://127.0.0.1:1/");
        c.ca = Some(ca.clone());
        let tls = ClientTls::load(&c).unwrap().unwrap();
        // An IP literal: no SNI, the certificate's IP entry is checked.
        let (sni, alpn, client_cert) = handshake(&tls, "127.0.0.1", &cert, &key).unwrap();
        assert_eq!(sni, None);
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert!(!client_cert);
        // A name: sent as SNI and checked.
        let (sni, _, _) = handshake(&tls, "server.example", &cert, &key).unwrap();
        assert_eq!(sni.as_deref(), Some("server.example"));
        let err = handshake(&tls, "other.example", &cert, &key).unwrap_err();
        assert!(err.contains("certificate verify failed"), "{err}");

        // --sni replaces the URL's host for both.
        c.sni = Some("server.example".into());
        let tls = ClientTls::load(&c).unwrap().unwrap();
        let (sni, _, _) = handshake(&tls, "10.9.9.9", &cert, &key).unwrap();
        assert_eq!(sni.as_deref(), Some("server.example"));

        // Without the CA, the system's do not know this certificate.
        let tls = ClientTls::load(&settings("wss://h/")).unwrap().unwrap();
        assert!(handshake(&tls, "server.example", &cert, &key).is_err());
        // Unless told not to check.
        let mut c = settings("wss://h/");
        c.insecure = true;
        let tls = ClientTls::load(&c).unwrap().unwrap();
        handshake(&tls, "other.example", &cert, &key).unwrap();
    }

    #[test]
    fn client_certificate() {
        let (cert, key) = self_signed();
        let mut files = Files(Vec::new());
        let ca = write(&mut files, "cc-ca", &cert.to_pem().unwrap());
        let (client, client_key) = self_signed();
        let client_pem = write(&mut files, "cc-cert", &client.to_pem().unwrap());
        let key_pem = write(
            &mut files,
            "cc-key",
            &client_key.private_key_to_pem_pkcs8().unwrap(),
        );
        let mut c = settings("wss://server.example/");
        c.ca = Some(ca);
        c.cert = Some(client_pem.clone());
        c.key = Some(key_pem);
        let tls = ClientTls::load(&c).unwrap().unwrap();
        let (_, _, sent) = handshake(&tls, "server.example", &cert, &key).unwrap();
        assert!(sent);

        // Errors name the option and the file.
        let mut bad = c.clone();
        bad.key = Some(client_pem.clone());
        let err = ClientTls::load(&bad).err().unwrap();
        assert!(err.starts_with("--key: bad key '"), "{err}");
        bad.key = None;
        assert_eq!(ClientTls::load(&bad).err().unwrap(), "--cert needs a key");
        let mut bad = c.clone();
        bad.at = "/etc/w.cfg:7".into();
        bad.ca = Some("/no/such/ca.pem".into());
        let err = ClientTls::load(&bad).err().unwrap();
        assert!(
            err.starts_with("/etc/w.cfg:7: [connect] ca: cannot read CA file '/no/such/ca.pem'"),
            "{err}"
        );
    }
}
