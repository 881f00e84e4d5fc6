//! The server role's way in: read the upgrade request, ask the backend
//! for a peer, resolve and connect it, and only then answer 101. A client
//! role (dialling a `ws://` server) will be a second way in beside this
//! one; from `Open` on, both share the same pump.

use log::info;

use super::{Chosen, Ctx, RawState, Session, WsState};
use crate::backend::{Decision, PeerChoice, Request, TlsIdentity};
use crate::peer::mirror::Mirror;
use crate::peer::{self, PeerAddress};
use crate::transport::{tls, Ready, Started, Stream};
use crate::workers::{Job, Outcome};
use crate::ws::upgrade_server::{self, Upgrade};

impl Session {
    pub(super) fn on_request(&mut self, u: Upgrade, cx: &mut Ctx) {
        self.ws.state = WsState::Waiting;
        self.deadline = cx.now + cx.shared.limits.connect_timeout;
        let request = Request {
            target: u.target.clone(),
            headers: u.headers.clone(),
            protocols: u.protocols.clone(),
            client: self.client_addr,
            tls: self.ws.stream.is_tls(),
            tls_client: self.tls_identity(),
            user: None,
        };
        self.ws.upgrade = Some(Box::new(u));
        let backend = cx.shared.backend.clone();
        if backend.blocking() {
            self.raw.state = RawState::Querying;
            cx.shared.workers.submit(
                cx.inbox,
                self.key,
                self.id,
                Job::Query {
                    backend,
                    request: Box::new(request),
                },
            );
        } else {
            let decision = backend.query(&request);
            self.on_decision(decision, cx);
        }
    }

    /// The client certificate the TLS handshake verified (a listener
    /// with `--client-ca`; with `optional`, the client may have sent none).
    fn tls_identity(&self) -> Option<TlsIdentity> {
        let Stream::Tls(t) = &self.ws.stream else {
            return None;
        };
        let cert = t.peer_certificate()?;
        Some(TlsIdentity {
            subject: tls::subject_line(&cert),
            sans: tls::sans(&cert),
        })
    }

    /// A worker finished a job for this session.
    pub fn on_outcome(&mut self, outcome: Outcome, cx: &mut Ctx) {
        match (outcome, self.raw.state) {
            (Outcome::Queried(d), RawState::Querying) => self.on_decision(d, cx),
            (Outcome::Resolved(Ok(addrs)), RawState::Resolving) if !addrs.is_empty() => {
                self.raw.addrs = addrs;
                self.raw.addr_next = 0;
                self.connect_next(cx);
            }
            (Outcome::Resolved(r), RawState::Resolving) => {
                let why = match r {
                    Ok(_) => "no addresses".to_string(),
                    Err(e) => e.to_string(),
                };
                let label = self.peer_label();
                self.refuse(502, &format!("cannot resolve peer {label}: {why}"), cx);
            }
            // The session moved on (timed out, shut down): nothing to do.
            _ => {}
        }
    }

    pub(super) fn on_decision(&mut self, d: Decision, cx: &mut Ctx) {
        let choice: PeerChoice = match d {
            Decision::Reject { status, reason } => return self.refuse(status, &reason, cx),
            Decision::Peer(c) => c,
        };
        match choice.framing.new_state(choice.framing_config.as_deref()) {
            Ok(f) => self.raw.framing = Some(f),
            Err(e) => {
                return self.refuse(
                    500,
                    &format!("framing '{}' rejected its config: {e}", choice.framing_name),
                    cx,
                )
            }
        }
        let protocol = match (choice.protocol, &self.ws.upgrade) {
            (Some(i), Some(u)) => u.protocols.get(i).cloned(),
            _ => None,
        };
        self.choice = Some(Box::new(Chosen {
            address: choice.address.clone(),
            protocol,
            headers: choice.headers,
        }));
        match &choice.address {
            PeerAddress::Mirror => {
                self.raw.mirror = Some(Mirror::default());
                self.raw.state = RawState::Open;
                self.open_ws(cx);
            }
            PeerAddress::Tcp(hp) | PeerAddress::Tls(hp) | PeerAddress::Udp(hp) => {
                match hp.literal() {
                    Some(a) => {
                        self.raw.addrs = vec![a];
                        self.connect_next(cx);
                    }
                    None => {
                        // getaddrinfo blocks: never on the loop thread.
                        self.raw.state = RawState::Resolving;
                        cx.shared.workers.submit(
                            cx.inbox,
                            self.key,
                            self.id,
                            Job::Resolve {
                                host: hp.host.clone(),
                                port: hp.port,
                            },
                        );
                    }
                }
            }
            PeerAddress::Unix(_) | PeerAddress::UnixDgram(_) => {
                self.raw.addrs.clear();
                self.connect_next(cx);
            }
        }
    }

    /// Try the next resolved address (or the Unix path).
    pub(super) fn connect_next(&mut self, cx: &mut Ctx) {
        let Some(address) = self.choice.as_ref().map(|c| c.address.clone()) else {
            return;
        };
        loop {
            let target = match address {
                PeerAddress::Unix(_) | PeerAddress::UnixDgram(_) if self.raw.addr_next == 0 => None,
                PeerAddress::Tcp(_) | PeerAddress::Tls(_) | PeerAddress::Udp(_)
                    if self.raw.addr_next < self.raw.addrs.len() =>
                {
                    Some(self.raw.addrs[self.raw.addr_next])
                }
                _ => {
                    let why = self
                        .raw
                        .connect_error
                        .take()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "no address".into());
                    return self.refuse(
                        502,
                        &format!("cannot connect to peer {address}: {why}"),
                        cx,
                    );
                }
            };
            self.raw.addr_next += 1;
            let started =
                peer::start(&address, target, cx.shared.peer_tls.as_ref()).and_then(|s| {
                    let (mut sock, done) = match s {
                        Started::Connected(s) => (s, true),
                        Started::InProgress(s) => (s, false),
                    };
                    sock.register(cx.registry, self.raw_token())?;
                    Ok((sock, done))
                });
            match started {
                Ok((sock, done)) => {
                    self.raw.stream = Some(sock);
                    self.raw.rd = Ready::default();
                    if done {
                        self.peer_connected(cx);
                    } else {
                        self.raw.state = RawState::Connecting;
                    }
                    return;
                }
                Err(e) => self.raw.connect_error = Some(e),
            }
        }
    }

    /// The TCP connect, then (`tls://`) the TLS handshake: the peer is up
    /// only when both are done, all within the connect deadline.
    pub(super) fn check_connect(&mut self, cx: &mut Ctx) -> bool {
        if !self.raw.rd.w() {
            return false;
        }
        let Some(sock) = self.raw.stream.as_mut() else {
            return false;
        };
        match sock
            .connect_result()
            .and_then(|up| if up { sock.handshake() } else { Ok(false) })
        {
            Ok(true) => {
                self.peer_connected(cx);
                true
            }
            Ok(false) => {
                self.raw.rd.clear_w();
                // A TLS handshake waits for either direction; any event
                // on it sets both again (`Stream::widen`).
                if self.raw.stream.as_ref().is_some_and(Stream::is_tls) {
                    self.raw.rd.clear_r();
                }
                false
            }
            Err(e) => {
                self.drop_peer(cx);
                self.raw.connect_error = Some(e);
                self.connect_next(cx);
                true
            }
        }
    }

    pub(super) fn peer_connected(&mut self, cx: &mut Ctx) {
        self.raw.state = RawState::Open;
        // Records that came with the end of the handshake raise no event.
        if self
            .raw
            .stream
            .as_ref()
            .is_some_and(Stream::has_buffered_input)
        {
            self.raw.rd.insert(Ready::readable());
        }
        self.open_ws(cx);
    }

    /// Send the 101 and start speaking WebSocket.
    pub(super) fn open_ws(&mut self, cx: &mut Ctx) {
        let Some(u) = self.ws.upgrade.take() else {
            return;
        };
        let (protocol, headers) = match &self.choice {
            Some(c) => (c.protocol.as_deref(), c.headers.as_slice()),
            None => (None, &[][..]),
        };
        let mut response = Vec::with_capacity(256);
        upgrade_server::switching_protocols(&u.accept, protocol, headers, &mut response);
        self.ws.out.push_copy(&response);
        // Frames pipelined behind the request are already here: hand them
        // over and look at them now, no new event will announce them.
        let rest = self.ws.http.get(u.head_len..).unwrap_or(&[]);
        if !rest.is_empty() {
            let mut b = cx.pool.take_in();
            let n = rest.len().min(b.spare().len());
            b.spare()[..n].copy_from_slice(&rest[..n]);
            b.filled(n);
            self.ws.input = Some(b);
        }
        self.ws.http = Vec::new();
        // Pipelined bytes are parsed from `input` before any read; bytes that
        // arrived meanwhile left R set. Only input a stream holds in user
        // space (TLS records) raises no event: mark it by hand.
        if self.ws.stream.has_buffered_input() {
            self.ws.rd.insert(Ready::readable());
        }
        self.ws.state = WsState::Open;
        self.last_rx = cx.now;
        self.last_activity = cx.now;
        self.opened = true;
        let identity = match self.tls_identity() {
            Some(c) if c.sans.is_empty() => format!(" (client cert {})", c.subject),
            Some(c) => format!(" (client cert {}; {})", c.subject, c.sans.join(", ")),
            None => String::new(),
        };
        info!(
            "conn {} {} -> {} open{}{identity}",
            self.id,
            self.client_addr,
            self.peer_label(),
            match protocol {
                Some(p) => format!(" (protocol {p})"),
                None => String::new(),
            }
        );
    }

    pub(super) fn refuse(&mut self, status: u16, reason: &str, cx: &mut Ctx) {
        self.refuse_with(status, reason, &[], cx)
    }

    pub(super) fn refuse_with(
        &mut self,
        status: u16,
        reason: &str,
        headers: &[(&str, &str)],
        cx: &mut Ctx,
    ) {
        info!(
            "conn {} {} -> {} refused: {status} {reason}",
            self.id,
            self.client_addr,
            self.peer_label()
        );
        self.drop_peer(cx);
        self.raw.state = RawState::Gone;
        self.ws.out.clear();
        let mut response = Vec::with_capacity(256);
        upgrade_server::error_response(status, reason, headers, &mut response);
        self.ws.out.push_copy(&response);
        self.ws.http = Vec::new();
        self.ws.state = WsState::Refusing;
        self.begin_close(cx.now);
        self.close_code = Some(status);
    }
}
