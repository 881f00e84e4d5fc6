//! The built-in `defaultpeer` backend: one configured peer for everyone.

use std::sync::Arc;

use super::{Backend, Decision, PeerChoice, Request};
use crate::config::{bool_value, seconds_or_off, size_value, BackendOption};
use crate::framing::{Framing, Registry};
use crate::hub::HubOptions;
use crate::peer::PeerAddress;
use crate::proxy_protocol::Version as ProxyVersion;

pub struct DefaultPeer {
    address: PeerAddress,
    framing: Arc<dyn Framing>,
    framing_name: String,
    framing_config: Option<String>,
    protocol: Option<String>,
    proxy_protocol: Option<ProxyVersion>,
    hub: bool,
    hub_options: HubOptions,
}

impl DefaultPeer {
    /// Options: `host` (default `tcp://localhost`), `port` (default 5900,
    /// used when `host` has none), `framing` (default `auto`),
    /// `framing-config`, `protocol` (`*` = the first offered),
    /// `proxy-protocol` (`v1`/`v2`: a PROXY header to the peer; also as a
    /// `?proxy-protocol=` suffix on `host`), `peer-ca` (CAs for a `tls://`
    /// peer, read with the TLS settings), `hub` (`on`: every client shares
    /// one peer connection, `crate::hub`), `hub-queue` (bytes that may wait
    /// for one client, default 1M), `hub-overflow` (`close`, the default:
    /// a client over it is closed with 1008; `drop-oldest`: it loses its
    /// oldest messages), `hub-linger` (seconds the peer connection outlives
    /// its last client, default 0).
    pub fn configure(options: &[BackendOption], framings: &Registry) -> Result<Self, String> {
        let mut host = ("tcp://localhost".to_string(), None);
        let mut port = ("5900".to_string(), None);
        let mut framing = ("auto".to_string(), None);
        let mut framing_config = (None, None);
        let mut protocol = None;
        let mut proxy = None;
        let mut hub = (false, None);
        let mut hub_options = HubOptions::default();
        for opt in options {
            let bad = |e: String| {
                format!(
                    "{}: invalid value '{}' for {}: {e}",
                    opt.origin, opt.value, opt.key
                )
            };
            let origin = Some(&opt.origin);
            match opt.key.as_str() {
                "host" => host = (opt.value.clone(), origin),
                "port" => port = (opt.value.clone(), origin),
                "framing" => framing = (opt.value.clone(), origin),
                "framing-config" => framing_config = (Some(opt.value.clone()), origin),
                "protocol" => protocol = Some(opt.value.clone()),
                "proxy-protocol" => {
                    proxy = Some((
                        ProxyVersion::parse(&opt.value)
                            .map_err(|e| format!("{}: {e}", opt.origin))?,
                        &opt.origin,
                    ))
                }
                // Read with the TLS settings (`--peer-ca`'s twin).
                "peer-ca" => {}
                "hub" => hub = (bool_value(&opt.value).map_err(bad)?, origin),
                "hub-queue" => hub_options.queue = size_value(&opt.value).map_err(bad)?,
                "hub-overflow" => {
                    hub_options.drop_oldest = match opt.value.as_str() {
                        "close" => false,
                        "drop-oldest" => true,
                        _ => return Err(bad("expected close or drop-oldest".into())),
                    }
                }
                "hub-linger" => {
                    hub_options.linger = seconds_or_off(&opt.value)
                        .map_err(bad)?
                        .unwrap_or_default()
                }
                _ => {
                    return Err(format!(
                        "{}: unknown defaultpeer option '{}' (expected host, port, framing, framing-config, protocol, proxy-protocol, peer-ca, hub, hub-queue, hub-overflow, hub-linger)",
                        opt.origin, opt.key
                    ))
                }
            }
        }
        let at =
            |o: Option<&crate::config::Origin>| o.map(|o| format!("{o}: ")).unwrap_or_default();
        let (address, suffix) = PeerAddress::parse_with_options(&host.0, Some(&port.0))
            .map_err(|e| format!("{}invalid peer: {e}", at(host.1.or(port.1))))?;
        let proxy_protocol = proxy.map(|(v, _)| v).or(suffix);
        if proxy_protocol.is_some() && !address.is_stream() {
            let origin = proxy.map(|(_, o)| o).or(host.1);
            return Err(format!(
                "{}proxy-protocol needs a stream peer (tcp://, tls:// or unix://), not {address}",
                at(origin)
            ));
        }
        if hub.0 && address == PeerAddress::Mirror {
            return Err(format!(
                "{}hub needs a peer to share, not mirror://",
                at(hub.1.or(host.1))
            ));
        }
        if hub.0 && proxy_protocol.is_some() {
            return Err(format!(
                "{}hub cannot be used with proxy-protocol (one peer connection serves many clients)",
                at(hub.1)
            ));
        }
        let f = framings.get(&framing.0).ok_or_else(|| {
            format!(
                "{}unknown framing '{}' (available: {})",
                at(framing.1),
                framing.0,
                framings.names().join(", ")
            )
        })?;
        // Fail at start-up, not on the first connection.
        f.new_state(framing_config.0.as_deref()).map_err(|e| {
            format!(
                "{}invalid framing-config for '{}': {e}",
                at(framing_config.1.or(framing.1)),
                framing.0
            )
        })?;
        Ok(DefaultPeer {
            address,
            framing: f,
            framing_name: framing.0,
            framing_config: framing_config.0,
            protocol,
            proxy_protocol,
            hub: hub.0,
            hub_options,
        })
    }

    pub fn address(&self) -> &PeerAddress {
        &self.address
    }
}

/// websocksy's rule: the first offer equal to `wanted` ignoring ASCII case,
/// or the first offer for `*`.
pub fn select_protocol(wanted: Option<&str>, offered: &[String]) -> Option<usize> {
    match wanted? {
        "*" if !offered.is_empty() => Some(0),
        w => offered.iter().position(|p| p.eq_ignore_ascii_case(w)),
    }
}

impl Backend for DefaultPeer {
    fn query(&self, request: &Request) -> Decision {
        Decision::Peer(PeerChoice {
            address: self.address.clone(),
            framing: self.framing.clone(),
            framing_name: self.framing_name.clone(),
            framing_config: self.framing_config.clone(),
            protocol: select_protocol(self.protocol.as_deref(), &request.protocols),
            headers: Vec::new(),
            proxy_protocol: self.proxy_protocol,
            hub: self.hub,
            hub_options: self.hub_options,
        })
    }

    fn blocking(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_selection_follows_websocksy() {
        let offered = vec!["p1".to_string(), "P2".to_string()];
        assert_eq!(select_protocol(Some("*"), &offered), Some(0));
        assert_eq!(select_protocol(Some("p2"), &offered), Some(1));
        assert_eq!(select_protocol(Some("p3"), &offered), None);
        assert_eq!(select_protocol(None, &offered), None);
        assert_eq!(select_protocol(Some("*"), &[]), None);
    }
}
