//! HTTP Basic authentication (`--auth`): the credentials, loaded once at
//! start-up, and the check of an `Authorization` header.
//!
//! Plain passwords are compared in constant time (SHA-256 of both, then
//! `openssl::memcmp::eq`, so not even the length leaks). bcrypt entries cost
//! tens of milliseconds to verify: [`Users::check`] only says which hash to
//! verify, and the session runs that on the worker pool. Nothing is cached:
//! a cache keyed by the attempt would hold a password-equivalent in memory
//! for no gain a WebSocket bridge needs (one check per connection).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;

/// A dummy bcrypt hash verified for an unknown user when bcrypt entries
/// exist, so the time to answer does not tell which users exist.
const DUMMY_HASH: &str = "$2b$10$CwTycUXWue0Thq9StjUM0uJ8.xGi/XHqKQZpx0S7rRk5Ry3bq3Kqe";

enum Secret {
    /// SHA-256 of the password.
    Plain([u8; 32]),
    Bcrypt(String),
}

/// bcrypt checks queued or running at once, for the whole process. The
/// worker pool also resolves names and runs slow backends: without a bound,
/// a flood of guessed passwords (from many addresses, so the per-address
/// cap does not stop it) would queue ahead of them and time out every
/// other connection. Beyond it, 503 at once; a few seconds of checks at
/// bcrypt's usual cost.
const MAX_CHECKS: usize = 64;

pub struct Users {
    users: HashMap<String, Secret>,
    any_bcrypt: bool,
    checks: Arc<AtomicUsize>,
}

/// One admitted bcrypt check; dropped (by the worker, whatever happens to
/// the session that asked) when it is over.
pub struct Ticket(Arc<AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Users({} entries)", self.users.len())
    }
}

/// What an `Authorization` header is worth.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted(String),
    Denied(&'static str),
    /// Run `bcrypt::verify(password, hash)` off the loop; `user` is `None`
    /// when the answer is no whatever the result (an unknown user).
    Verify {
        user: Option<String>,
        password: String,
        hash: String,
    },
}

fn sha256(b: &[u8]) -> [u8; 32] {
    openssl::sha::sha256(b)
}

fn is_bcrypt(s: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| s.starts_with(p))
}

impl Users {
    /// From `--auth SPEC`: `$NAME` or a file.
    pub fn load(spec: &str) -> Result<Users, String> {
        if let Some(name) = spec.strip_prefix('$') {
            let v = std::env::var(name).map_err(|_| {
                format!("--auth ${name}: the environment variable {name} is not set or not UTF-8")
            })?;
            let mut u = Users::empty();
            u.add_line(v.trim_end_matches(['\r', '\n']))
                .map_err(|why| format!("--auth ${name}: {why}"))?;
            return Ok(u);
        }
        let text = std::fs::read_to_string(spec)
            .map_err(|e| format!("cannot read auth file '{spec}': {e}"))?;
        let mut u = Users::empty();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            u.add_line(t)
                .map_err(|why| format!("{spec}:{}: {why}", i + 1))?;
        }
        if u.users.is_empty() {
            return Err(format!("auth file '{spec}' has no users"));
        }
        Ok(u)
    }

    fn empty() -> Users {
        Users {
            users: HashMap::new(),
            any_bcrypt: false,
            checks: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Room for one more bcrypt check, or `None` while [`MAX_CHECKS`] run.
    pub fn ticket(&self) -> Option<Ticket> {
        self.checks
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CHECKS).then_some(n + 1)
            })
            .ok()
            .map(|_| Ticket(Arc::clone(&self.checks)))
    }

    fn add_line(&mut self, line: &str) -> Result<(), String> {
        let Some((user, secret)) = line.split_once(':') else {
            return Err("expected user:password or user:$2y$... (htpasswd -B)".into());
        };
        if user.is_empty() {
            return Err("empty user name".into());
        }
        let secret = if is_bcrypt(secret) {
            secret
                .parse::<bcrypt::HashParts>()
                .map_err(|e| format!("invalid bcrypt hash for '{user}': {e}"))?;
            self.any_bcrypt = true;
            Secret::Bcrypt(secret.to_string())
        } else if secret.starts_with("$apr1$") || secret.starts_with("{SHA}") {
            return Err(format!(
                "unsupported hash for '{user}': only bcrypt (htpasswd -B) or plain passwords"
            ));
        } else {
            Secret::Plain(sha256(secret.as_bytes()))
        };
        if self.users.insert(user.to_string(), secret).is_some() {
            return Err(format!("user '{user}' appears twice"));
        }
        Ok(())
    }

    /// The verdict on a request's `Authorization` header.
    pub fn check(&self, authorization: Option<&str>) -> Verdict {
        let Some(v) = authorization else {
            return Verdict::Denied("no credentials");
        };
        let v = v.trim();
        let Some((scheme, token)) = v.split_once(' ') else {
            return Verdict::Denied("malformed credentials");
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return Verdict::Denied("not Basic credentials");
        }
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else {
            return Verdict::Denied("malformed credentials");
        };
        let Ok(pair) = String::from_utf8(raw) else {
            return Verdict::Denied("malformed credentials");
        };
        let Some((user, password)) = pair.split_once(':') else {
            return Verdict::Denied("malformed credentials");
        };
        match self.users.get(user) {
            Some(Secret::Plain(want)) => {
                if openssl::memcmp::eq(want, &sha256(password.as_bytes())) {
                    Verdict::Accepted(user.to_string())
                } else {
                    Verdict::Denied("wrong credentials")
                }
            }
            Some(Secret::Bcrypt(hash)) => Verdict::Verify {
                user: Some(user.to_string()),
                password: password.to_string(),
                hash: hash.clone(),
            },
            None if self.any_bcrypt => Verdict::Verify {
                user: None,
                password: password.to_string(),
                hash: DUMMY_HASH.to_string(),
            },
            None => Verdict::Denied("wrong credentials"),
        }
    }
}

/// The worker's half of a [`Verdict::Verify`]: slow on purpose.
pub fn verify(password: &str, hash: &str) -> bool {
    bcrypt::verify(password, hash).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(up: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(up)
        )
    }

    fn users(lines: &[&str]) -> Users {
        let mut u = Users::empty();
        for l in lines {
            u.add_line(l).unwrap();
        }
        u
    }

    #[test]
    fn plain_passwords() {
        let u = users(&["alice:s3cret", "bob:pa:ss"]);
        assert_eq!(
            u.check(Some(&basic("alice:s3cret"))),
            Verdict::Accepted("alice".into())
        );
        assert_eq!(
            u.check(Some(&basic("bob:pa:ss"))),
            Verdict::Accepted("bob".into())
        );
        assert!(matches!(
            u.check(Some(&basic("alice:s3cre"))),
            Verdict::Denied(_)
        ));
        assert!(matches!(
            u.check(Some(&basic("carol:s3cret"))),
            Verdict::Denied(_)
        ));
        assert!(matches!(u.check(None), Verdict::Denied(_)));
        assert!(matches!(u.check(Some("Bearer x")), Verdict::Denied(_)));
        assert!(matches!(u.check(Some("Basic !!!")), Verdict::Denied(_)));
    }

    #[test]
    fn bcrypt_entries_verify_off_the_check() {
        let h = bcrypt::hash_with_result("pw", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let u = users(&[&format!("carol:{h}")]);
        let Verdict::Verify {
            user,
            password,
            hash,
        } = u.check(Some(&basic("carol:pw")))
        else {
            panic!("expected a verification");
        };
        assert_eq!(user.as_deref(), Some("carol"));
        assert!(verify(&password, &hash));
        assert!(!verify("wrong", &hash));
        // Unknown users take as long, and always fail.
        let Verdict::Verify {
            user: None,
            password,
            hash,
        } = u.check(Some(&basic("dave:pw")))
        else {
            panic!("expected a dummy verification");
        };
        assert!(!verify(&password, &hash));
    }

    #[test]
    fn bcrypt_checks_are_bounded() {
        let u = users(&[]);
        let tickets: Vec<_> = (0..MAX_CHECKS).map_while(|_| u.ticket()).collect();
        assert_eq!(tickets.len(), MAX_CHECKS);
        assert!(u.ticket().is_none());
        drop(tickets);
        assert!(u.ticket().is_some());
    }

    #[test]
    fn bad_lines() {
        let mut u = Users::empty();
        assert!(u.add_line("nopassword").is_err());
        assert!(u.add_line(":x").is_err());
        assert!(u.add_line("a:$2y$xx").is_err());
        assert!(u.add_line("a:$apr1$abc").is_err());
        u.add_line("a:b").unwrap();
        assert!(u.add_line("a:c").is_err());
    }
}
