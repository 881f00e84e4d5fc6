//! Peer discovery backends: given the upgrade request, choose the peer.
//!
//! A backend either answers at once ([`Backend::blocking`] is false, like the
//! built-in `defaultpeer`) and runs on the event loop, or may be slow (a file,
//! a database) and is run on the worker pool so the loop never waits for it.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::BackendOption;
use crate::framing::{Framing, Registry};
use crate::peer::PeerAddress;
use crate::plugin::Plugins;

pub mod default;

/// What a backend sees of an upgrade request. Owned, so it can travel to a
/// worker thread.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request target as sent: path and query, not decoded.
    pub target: String,
    /// Every request header, names as the client spelled them, in order.
    pub headers: Vec<(String, String)>,
    /// Offered subprotocols: split on commas, trimmed, duplicates dropped,
    /// in the order offered across all `Sec-WebSocket-Protocol` headers.
    pub protocols: Vec<String>,
    /// The client's address: the direct peer, or the address a trusted
    /// proxy reported (PROXY header, `Forwarded`, `X-Forwarded-For`,
    /// `X-Real-IP`).
    pub client: SocketAddr,
    /// The client came over TLS (`wss://`).
    pub tls: bool,
    /// The verified client certificate, when the listener asked for one
    /// and the client sent one.
    pub tls_client: Option<TlsIdentity>,
    /// The user name HTTP Basic authentication accepted.
    pub user: Option<String>,
}

/// What a verified client certificate says of its holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsIdentity {
    /// The subject as one line, `CN=alice,O=Example` (RFC 2253 order).
    pub subject: String,
    /// Subject alternative names: `DNS:name`, `IP:addr`, `email:addr`, `URI:uri`.
    pub sans: Vec<String>,
}

impl Request {
    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The peer a backend chose.
pub struct PeerChoice {
    pub address: PeerAddress,
    pub framing: Arc<dyn Framing>,
    pub framing_name: String,
    pub framing_config: Option<String>,
    /// Index into [`Request::protocols`] of the subprotocol to accept; the
    /// client's spelling is echoed. `None`: no `Sec-WebSocket-Protocol`.
    pub protocol: Option<usize>,
    /// Extra response headers for the 101.
    pub headers: Vec<(String, String)>,
    /// Send a PROXY header of this version to the peer before anything
    /// else (stream peers only).
    pub proxy_protocol: Option<crate::proxy_protocol::Version>,
    /// Share one connection to this peer address with every other client
    /// answered with it and `hub` (a fan-out hub, `crate::hub`).
    pub hub: bool,
    /// How that hub treats its clients (its first client's choice counts).
    pub hub_options: crate::hub::HubOptions,
}

/// A backend's answer.
pub enum Decision {
    Peer(PeerChoice),
    /// Refuse the upgrade with this HTTP status and reason.
    Reject {
        status: u16,
        reason: String,
    },
}

pub trait Backend: Send + Sync {
    /// Choose the peer for one request. May block only if [`blocking`](Self::blocking) says so.
    fn query(&self, request: &Request) -> Decision;

    /// True if `query` may block; the host then runs it off the event loop.
    fn blocking(&self) -> bool {
        true
    }

    /// Called once on the main thread after the event loop returned, before
    /// exit (plugin backends run their `cleanup` here). Queries may still be
    /// running on worker threads; new ones may arrive from them.
    fn shutdown(&self) {}
}

/// Build the named backend from its options: the built-in `defaultpeer`, or
/// one of the `plugins` loaded (see [`crate::plugin::loader`] for how a name
/// finds its library). Errors are one line naming the option's origin or
/// the plugin file.
pub fn create(
    name: &str,
    options: &[BackendOption],
    framings: &Registry,
    plugins: &Plugins,
) -> Result<Arc<dyn Backend>, String> {
    match name {
        "defaultpeer" | "default" => Ok(Arc::new(default::DefaultPeer::configure(
            options, framings,
        )?)),
        other => plugins.create_backend(other, options, framings),
    }
}
