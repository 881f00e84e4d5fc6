//! HTTP Basic authentication (`--auth`): the credentials, loaded once at
//! start-up, and the check of an `Authorization` header.
//!
//! Plain passwords are compared in constant time (SHA-256 of both, then
//! `openssl::memcmp::eq`, so not even the length leaks). bcrypt entries cost
//! tens of milliseconds to verify: [`Users::check`] only says which hash to
//! verify, and the session runs that on the verifier threads (never on the
//! worker pool that resolves names). Nothing is cached:
//! a cache keyed by the attempt would hold a password-equivalent in memory
//! for no gain a WebSocket bridge needs (one check per connection).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;

/// What an unknown user's password is compared with when there are no
/// bcrypt entries: the same SHA-256 and constant-time compare as a known
/// plain-password user's, so the answer takes as long.
const DUMMY_PLAIN: [u8; 32] = [0x5a; 32];

enum Secret {
    /// SHA-256 of the password.
    Plain([u8; 32]),
    Bcrypt(String),
}

/// bcrypt checks queued or running at once, for the whole process. They
/// run on threads of their own (`shared::VERIFIERS`), never on the pool
/// that resolves names and runs slow backends, so a flood of guessed
/// passwords (from many addresses, which the per-address cap does not
/// stop) cannot delay a lookup. The queue is bounded so that a flood costs
/// at most this much waiting: beyond it, 503 at once, the cheap answer to a
/// flood, while a burst of real logins waits its turn instead of failing.
pub const MAX_CHECKS: usize = 64;

pub struct Users {
    users: HashMap<String, Secret>,
    /// Verified for an unknown user when bcrypt entries exist, at the
    /// highest cost among them (htpasswd -B writes cost 5 by default): a
    /// fixed cost would answer faster or slower than a real entry, and so
    /// tell which users exist.
    dummy: Option<String>,
    /// The highest cost of the bcrypt entries, once one is loaded.
    max_cost: Option<u32>,
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
            u.make_dummy()
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
        u.make_dummy().map_err(|why| format!("{spec}: {why}"))?;
        Ok(u)
    }

    /// Once every entry is in: the dummy hash for unknown users, at the
    /// entries' cost (hashed once here, at start-up, not per request).
    fn make_dummy(&mut self) -> Result<(), String> {
        self.dummy = match self.max_cost {
            Some(cost) => Some(
                bcrypt::hash("websocksy: no such user", cost)
                    .map_err(|e| format!("cannot make the bcrypt dummy hash: {e}"))?,
            ),
            None => None,
        };
        Ok(())
    }

    fn empty() -> Users {
        Users {
            users: HashMap::new(),
            dummy: None,
            max_cost: None,
            checks: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether any entry is a bcrypt hash (so checks need their threads).
    pub fn has_bcrypt(&self) -> bool {
        self.dummy.is_some()
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
            let parts = secret
                .parse::<bcrypt::HashParts>()
                .map_err(|e| format!("invalid bcrypt hash for '{user}': {e}"))?;
            let cost = parts.get_cost();
            self.max_cost = Some(self.max_cost.map_or(cost, |c| c.max(cost)));
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
            None => match &self.dummy {
                Some(hash) => Verdict::Verify {
                    user: None,
                    password: password.to_string(),
                    hash: hash.clone(),
                },
                None => {
                    // The result is discarded, the time it takes is not.
                    let _ = openssl::memcmp::eq(&DUMMY_PLAIN, &sha256(password.as_bytes()));
                    Verdict::Denied("wrong credentials")
                }
            },
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
        u.make_dummy().unwrap();
        u
    }

    fn cost(hash: &str) -> u32 {
        hash.parse::<bcrypt::HashParts>().unwrap().get_cost()
    }

    #[test]
    fn the_dummy_hash_costs_what_the_entries_cost() {
        let at = |c| {
            bcrypt::hash_with_result("pw", c)
                .unwrap()
                .format_for_version(bcrypt::Version::TwoY)
        };
        for costs in [&[5][..], &[4, 6], &[6, 4, 5]] {
            let lines: Vec<String> = costs
                .iter()
                .enumerate()
                .map(|(i, c)| format!("u{i}:{}", at(*c)))
                .collect();
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            let u = users(&lines);
            let Verdict::Verify {
                user: None, hash, ..
            } = u.check(Some(&basic("nobody:pw")))
            else {
                panic!("expected a dummy verification");
            };
            let want = costs.iter().copied().max().unwrap();
            assert_eq!(cost(&hash), want, "entries at {costs:?}");
        }
        // Plain entries only: an unknown user is refused on the same path
        // as a wrong plain password, with no bcrypt check.
        let u = users(&["alice:s3cret"]);
        assert!(u.dummy.is_none());
        assert_eq!(
            u.check(Some(&basic("nobody:s3cret"))),
            Verdict::Denied("wrong credentials")
        );
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
