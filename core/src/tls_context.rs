//! TLS contexts built from the settings' files: the listeners' (rebuilt on
//! SIGHUP) and, for `tls://` peers, the connector's.
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
    select_next_proto, AlpnError, Ssl, SslAcceptor, SslConnector, SslContext, SslContextBuilder,
    SslFiletype, SslMethod, SslMode, SslOptions, SslVerifyMode, SslVersion,
};
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::{X509Name, X509};

use crate::config::{BindSpec, ClientCertMode, Located, Settings};

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
fn system_store() -> Result<Option<X509Store>, String> {
    let mut store = X509StoreBuilder::new()
        .map_err(|e| format!("cannot create a certificate store: {}", reason(&e)))?;
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let candidates: Vec<PathBuf> = match from_env {
        // Set on purpose: no silent fallback to another bundle.
        Some(f) => vec![f],
        None => SYSTEM_BUNDLES.iter().map(PathBuf::from).collect(),
    };
    let fallback = "OpenSSL's default CA paths are used, and verifying a tls:// peer may \
                    read certificate files on the event loop; give --peer-ca to avoid it";
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
        log::debug!("peer TLS: {count} CAs from '{}'", path.display());
        return Ok(Some(store.build()));
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    log::warn!(
        "no system CA bundle (tried {}): {fallback}",
        tried.join(", ")
    );
    Ok(None)
}

impl PeerTls {
    /// `backend_ca`: a `peer-ca` option of the default backend, used when
    /// `--peer-ca` is not given.
    pub fn load(s: &Settings, backend_ca: Option<Located<PathBuf>>) -> Result<PeerTls, String> {
        let mut b = SslConnector::builder(SslMethod::tls_client())
            .map_err(|e| format!("cannot create a TLS context: {}", reason(&e)))?;
        // The builder's store has OpenSSL's default paths, with the hashed
        // directory looked up at verification time: replaced whole when a
        // bundle is found, so trust comes only from files read here, at
        // start-up.
        let ca = s.peer_ca.clone().or(backend_ca);
        if ca.is_none() && !s.peer_insecure {
            if let Some(store) = system_store()? {
                b.set_cert_store(store);
            }
        } else {
            let empty = X509StoreBuilder::new()
                .map_err(|e| format!("cannot create a certificate store: {}", reason(&e)))?;
            b.set_cert_store(empty.build());
        }
        // TLS 1.0 and 1.1 are deprecated (RFC 8996); a peer asking to
        // renegotiate would cost a handshake mid-stream for nothing.
        b.set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(|e| format!("cannot set the peer TLS version: {}", reason(&e)))?;
        b.set_options(SslOptions::NO_RENEGOTIATION);
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

/// The context of `wss://` servers a client connection dials. Until its
/// own options land, it is the peers' context built from the connection's
/// `--ca`, `--cert`/`--key` and `--insecure`.
pub struct ClientTls(PeerTls);

impl ClientTls {
    pub fn load(c: &crate::config::ConnectSettings) -> Result<Option<ClientTls>, String> {
        if !c.url.tls {
            return Ok(None);
        }
        let located = |p: &Option<PathBuf>| {
            p.clone().map(|value| Located {
                value,
                at: c.at.clone(),
            })
        };
        let s = Settings {
            peer_ca: located(&c.ca),
            peer_cert: located(&c.cert),
            peer_key: located(&c.key),
            peer_insecure: c.insecure,
            ..Settings::default()
        };
        Ok(Some(ClientTls(PeerTls::load(&s, None)?)))
    }

    pub fn ssl(&self, host: &str) -> std::io::Result<Ssl> {
        self.0.ssl(host)
    }
}
