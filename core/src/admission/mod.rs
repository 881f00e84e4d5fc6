//! Who may come in: the checks the server role runs once per connection,
//! at the door, after the upgrade request is read and before the backend
//! is asked (`session/open.rs`). Nothing here runs per message.
//!
//! Order: the client's real address first (`forwarded.rs`, over what a
//! PROXY header said), then the `Origin` allow-list (403: cheapest, no
//! state), then the per-address cap (429: before authentication, so one
//! address cannot keep more bcrypt checks running than its cap), then
//! HTTP Basic authentication (401, bcrypt on threads of its own), then the
//! backend, which thus never sees a request the bridge would refuse.

pub mod auth;
pub mod origin;
pub mod per_ip;

use crate::config::Settings;
use crate::forwarded::TrustedProxies;

#[derive(Debug, Default)]
pub struct Admission {
    pub origins: origin::Origins,
    pub per_ip: Option<per_ip::PerIp>,
    pub users: Option<auth::Users>,
    pub trusted: TrustedProxies,
}

impl Admission {
    /// From the settings; reads the `--auth` file or variable (a start-up
    /// error names the file and line).
    pub fn new(s: &Settings) -> Result<Admission, String> {
        Ok(Admission {
            origins: origin::Origins::new(&s.origins)?,
            per_ip: s.max_connections_per_ip.map(per_ip::PerIp::new),
            users: s.auth.as_deref().map(auth::Users::load).transpose()?,
            trusted: TrustedProxies::new(
                &s.trusted_proxies,
                s.trusted_unix,
                s.trusted_proxy_header,
            ),
        })
    }
}
