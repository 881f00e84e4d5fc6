//! Test certificates, made at test time with the `openssl` command (EC
//! P-256 keys, so it takes a fraction of a second), once per test process.
//!
//! - `ca_cert`: the CA the bridge trusts for clients and tests trust for
//!   the bridge; `server_cert` (chain: leaf then CA) for `localhost`,
//!   `127.0.0.1` and `::1`, with `server_key`;
//! - `client_cert`/`client_key`: `CN=alice,O=Example`, SAN
//!   `email:alice@example.com`, signed by the CA;
//! - `expired_cert`/`expired_key`: like the server's, signed by the CA,
//!   expired;
//! - `other_ca_cert`, and `other_client_cert`/`other_client_key` signed by
//!   it: a CA nobody trusts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

#[derive(Debug, Clone)]
pub struct Certs {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub expired_cert: PathBuf,
    pub expired_key: PathBuf,
    pub other_ca_cert: PathBuf,
    pub other_client_cert: PathBuf,
    pub other_client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running openssl {args:?}: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// A self-signed CA `name`.pem / `name`.key.
fn ca(dir: &Path, name: &str, subject: &str) {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    let mut args = vec!["req", "-x509"];
    args.extend(EC);
    args.extend([
        "-keyout",
        &key,
        "-out",
        &cert,
        "-days",
        "30",
        "-subj",
        subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &args);
}

/// A leaf `name`.pem / `name`.key signed by the CA `ca`, with the
/// extensions in `ext` (an extfile's lines).
fn leaf(dir: &Path, name: &str, ca: &str, subject: &str, ext: &str, days: &str) {
    let (cert, key, csr, extfile) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extfile), ext).expect("write extfile");
    let mut args = vec!["req"];
    args.extend(EC);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
    openssl(dir, &args);
    let (ca_cert, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-set_serial",
            &serial(),
            "-days",
            days,
            "-extfile",
            &extfile,
            "-out",
            &cert,
        ],
    );
}

fn serial() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    (1000 + N.fetch_add(1, Ordering::Relaxed)).to_string()
}

/// Make the set in `dir` (created if needed).
pub fn make(dir: &Path) -> Certs {
    std::fs::create_dir_all(dir).expect("create cert dir");
    ca(dir, "ca", "/O=Example/CN=websocksy test CA");
    ca(dir, "other-ca", "/O=Elsewhere/CN=untrusted CA");
    let server_ext = "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n\
                      extendedKeyUsage=serverAuth\n";
    leaf(dir, "server-leaf", "ca", "/CN=localhost", server_ext, "30");
    leaf(dir, "expired", "ca", "/CN=localhost", server_ext, "-1");
    let client_ext = "subjectAltName=email:alice@example.com\nextendedKeyUsage=clientAuth\n";
    leaf(dir, "client", "ca", "/O=Example/CN=alice", client_ext, "30");
    leaf(
        dir,
        "other-client",
        "other-ca",
        "/CN=mallory",
        client_ext,
        "30",
    );
    // The server's file holds the chain, as a real deployment's would.
    let chain = [
        std::fs::read(dir.join("server-leaf.pem")).expect("read leaf"),
        std::fs::read(dir.join("ca.pem")).expect("read CA"),
    ]
    .concat();
    std::fs::write(dir.join("server.pem"), chain).expect("write chain");
    let p = |n: &str| dir.join(n);
    Certs {
        dir: dir.to_path_buf(),
        ca_cert: p("ca.pem"),
        server_cert: p("server.pem"),
        server_key: p("server-leaf.key"),
        client_cert: p("client.pem"),
        client_key: p("client.key"),
        expired_cert: p("expired.pem"),
        expired_key: p("expired.key"),
        other_ca_cert: p("other-ca.pem"),
        other_client_cert: p("other-client.pem"),
        other_client_key: p("other-client.key"),
    }
}

/// The set for this test process, made on first use.
pub fn shared() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| make(&crate::temp_dir("certs")))
}
