//! The server role's way in: read the PROXY header where the listener
//! requires one, read the upgrade request, let the door decide
//! (`admission`: real client address, origin, per-address cap, Basic
//! authentication), ask the backend for a peer, resolve and connect it,
//! and only then answer 101. A client
//! role (dialling a `ws://` server) will be a second way in beside this
//! one; from `Open` on, both share the same pump.

use std::io;

use log::{debug, info};

use super::{Chosen, Ctx, RawState, Session, WsState};
use crate::admission::auth::Verdict;
use crate::backend::{Decision, PeerChoice, Request, TlsIdentity};
use crate::peer::mirror::Mirror;
use crate::peer::{self, PeerAddress};
use crate::proxy_protocol::{self, Received};
use crate::transport::{tls, Ready, Started, Stream};
use crate::workers::{Job, Outcome};
use crate::ws::upgrade_server::{self, Upgrade};

impl Session {
    /// `WsState::Proxy`: the header is peeked, then exactly its bytes are
    /// read, so what follows (the request, or a TLS ClientHello for a TLS
    /// stream) stays in the socket for the next state.
    pub(super) fn read_proxy_header(&mut self) -> bool {
        if !self.proxy_protocol {
            self.ws.state = WsState::Http;
            return true;
        }
        if !self.ws.rd.r() {
            return false;
        }
        let mut buf = [0u8; proxy_protocol::MAX_HEADER];
        let n = match self.ws.stream.peek(&mut buf) {
            Ok(0) => {
                self.proxy_failed("closed before its PROXY header");
                return true;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.ws.rd.clear_r();
                return false;
            }
            Err(e) => {
                self.proxy_failed(&format!("reading the PROXY header: {e}"));
                return true;
            }
        };
        let (len, source, destination) = match proxy_protocol::parse(&buf[..n]) {
            // The peek keeps showing the same bytes after a FIN: no more
            // will come, so do not wait for the deadline.
            Received::Incomplete if self.ws.rd.hup() => {
                self.proxy_failed("closed inside its PROXY header");
                return true;
            }
            // A peek never returns WouldBlock while bytes wait: the next
            // bytes will raise a new edge, so wait for it.
            Received::Incomplete => {
                self.ws.rd.clear_r();
                return false;
            }
            Received::Invalid(why) => {
                self.proxy_failed(&why);
                return true;
            }
            Received::Header {
                len,
                source,
                destination,
            } => (len, source, destination),
        };
        let mut got = 0;
        while got < len {
            match self.ws.stream.read_raw(&mut buf[got..len]) {
                Ok(0) => {
                    self.proxy_failed("closed inside its PROXY header");
                    return true;
                }
                Ok(k) => got += k,
                Err(e) => {
                    // The bytes were peeked: they are there to read.
                    self.proxy_failed(&format!("reading the PROXY header: {e}"));
                    return true;
                }
            }
        }
        if let Some(s) = source {
            debug!(
                "conn {} {} PROXY header: client {s}",
                self.id, self.client_addr
            );
            self.client_addr = s;
            self.local_addr = destination.or(self.local_addr);
            self.proxied = true;
        }
        self.ws.state = WsState::Http;
        true
    }

    /// A connection without a valid PROXY header: nobody to answer in HTTP
    /// (the proxy in front speaks for the client), so just close.
    fn proxy_failed(&mut self, why: &str) {
        info!("conn {} {} closed: {why}", self.id, self.client_addr);
        self.client_gone();
    }

    /// The upgrade request is complete: the door's checks, in order, then
    /// the backend.
    pub(super) fn on_request(&mut self, u: Upgrade, cx: &mut Ctx) {
        self.ws.state = WsState::Waiting;
        self.deadline = cx.now + cx.shared.limits.connect_timeout;
        // A copy of the reference: the checks below may refuse (`&mut cx`).
        let shared = cx.shared;
        let adm = &shared.admission;
        let direct = self.client_addr;
        // A Unix-socket client's address is a placeholder: `--trusted-proxy
        // unix` decides for it, unless a PROXY header gave a real one.
        let via_unix = matches!(self.ws.stream, Stream::Unix(_)) && !self.proxied;
        self.client_addr = adm.trusted.client(direct, via_unix, &u.headers);
        if self.client_addr != direct {
            debug!(
                "conn {} {direct} forwards for {}",
                self.id, self.client_addr
            );
        }
        let header = |name: &str| {
            u.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        if let Some(why) = adm.origins.check(header("origin")) {
            return self.refuse(403, &why, cx);
        }
        if let Some(p) = &adm.per_ip {
            match p.admit(self.client_addr.ip()) {
                Some(ip) => self.ip_slot = Some(ip),
                None => {
                    return self.refuse(429, "too many connections from this address", cx);
                }
            }
        }
        let Some(users) = &adm.users else {
            self.ws.upgrade = Some(Box::new(u));
            return self.ask_backend(cx);
        };
        let verdict = users.check(header("authorization"));
        self.ws.upgrade = Some(Box::new(u));
        match verdict {
            Verdict::Accepted(user) => {
                self.user = Some(user);
                self.ask_backend(cx);
            }
            Verdict::Denied(why) => self.refuse_unauthorized(why, cx),
            Verdict::Verify {
                user,
                password,
                hash,
            } => {
                let (Some(verifiers), Some(ticket)) = (&cx.shared.verifiers, users.ticket()) else {
                    return self.refuse(503, "too many password checks in progress", cx);
                };
                self.verifying = Some(user);
                let cancelled = std::sync::Arc::default();
                self.verify_cancel = Some(std::sync::Arc::clone(&cancelled));
                verifiers.submit(
                    cx.inbox,
                    self.key,
                    self.id,
                    Job::Verify {
                        password,
                        hash,
                        ticket,
                        cancelled,
                    },
                );
            }
        }
    }

    fn refuse_unauthorized(&mut self, why: &str, cx: &mut Ctx) {
        self.refuse_with(
            401,
            why,
            &[("WWW-Authenticate", "Basic realm=\"websocksy\"")],
            cx,
        );
    }

    fn ask_backend(&mut self, cx: &mut Ctx) {
        let Some(u) = self.ws.upgrade.as_ref() else {
            return;
        };
        // Credentials the bridge checked itself are its own: backends get
        // the user name, never the password.
        let consumed = cx.shared.admission.users.is_some();
        let request = Request {
            target: u.target.clone(),
            headers: u
                .headers
                .iter()
                .filter(|(n, _)| !(consumed && n.eq_ignore_ascii_case("authorization")))
                .cloned()
                .collect(),
            protocols: u.protocols.clone(),
            client: self.client_addr,
            tls: self.ws.stream.is_tls(),
            tls_client: self.tls_identity(),
            user: self.user.clone(),
        };
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
        if self.client.is_some()
            && self.ws.state == WsState::Dialing
            && self.raw.state != RawState::Resolving
        {
            // The server's name, for a client-role dial.
            return self.on_dial_outcome(outcome, cx);
        }
        match (outcome, self.raw.state) {
            (Outcome::Verified(ok), RawState::None)
                if self.ws.state == WsState::Waiting && self.verifying.is_some() =>
            {
                self.verify_cancel = None;
                match self.verifying.take().flatten() {
                    Some(user) if ok => {
                        self.user = Some(user);
                        self.ask_backend(cx);
                    }
                    _ => self.refuse_unauthorized("wrong credentials", cx),
                }
            }
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
        let mut preface = Vec::new();
        if let Some(v) = choice.proxy_protocol {
            if !choice.address.is_stream() {
                return self.refuse(
                    502,
                    &format!(
                        "proxy-protocol needs a stream peer (tcp://, tls:// or unix://), not {}",
                        choice.address
                    ),
                    cx,
                );
            }
            preface = proxy_protocol::encode(v, self.client_addr, self.local_addr);
        }
        let address = choice.address;
        self.choice = Some(Box::new(Chosen {
            address: address.clone(),
            protocol,
            headers: choice.headers,
            preface,
            hub: false,
        }));
        if choice.hub
            && self.hub_join(
                &address,
                choice.proxy_protocol.is_some(),
                choice.hub_options,
                cx,
            )
        {
            return;
        }
        self.connect_peer(cx);
    }

    /// Reach the peer `choice` names: the mirror at once, a name through
    /// the resolver on the worker pool, an address with a non-blocking
    /// connect. Both roles come here; [`peer_connected`] goes on.
    pub(super) fn connect_peer(&mut self, cx: &mut Ctx) {
        let Some(address) = self.choice.as_ref().map(|c| c.address.clone()) else {
            return;
        };
        match &address {
            PeerAddress::Mirror => {
                self.raw.mirror = Some(Mirror::default());
                self.raw.state = RawState::Open;
                self.peer_ready(cx);
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
            // Every attempt owes the peer the whole header: a `tls://`
            // attempt sent it before a handshake that then failed.
            self.raw.preface.clear();
            if let Some(c) = self.choice.as_ref() {
                self.raw.preface.extend_from_slice(&c.preface);
            }
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
        let preface = &mut self.raw.preface;
        match sock.connect_result().and_then(|up| {
            if up && sock.is_tls() && !preface.is_empty() {
                // The PROXY header goes in clear, before the handshake; a
                // fresh socket's send buffer takes it whole. Emptied only
                // for this attempt: `connect_next` refills it from `Chosen`.
                if sock.write_raw(preface)? != preface.len() {
                    return Err(io::Error::other("cannot write the PROXY header at once"));
                }
                preface.clear();
            }
            if up {
                sock.handshake()
            } else {
                Ok(false)
            }
        }) {
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
        if self.raw.hub.is_some() {
            return self.hub_adopt(cx);
        }
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
        self.peer_ready(cx);
    }

    /// The peer is up: the server role answers 101; the client role
    /// (whose peer is its local side) dials the server.
    fn peer_ready(&mut self, cx: &mut Ctx) {
        if self.client.is_some() {
            self.dial(cx);
        } else {
            self.open_ws(cx);
        }
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
        self.ws.out.push_copy(&response, cx.pool);
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
            "conn {} {} -> {} open{}{}{identity}",
            self.id,
            self.client_addr,
            self.peer_label(),
            match protocol {
                Some(p) => format!(" (protocol {p})"),
                None => String::new(),
            },
            match &self.user {
                Some(u) => format!(" user {u}"),
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
        if self.client.is_some() {
            // The client role's local peer failed: nobody to answer in HTTP.
            return self.give_up(reason, cx);
        }
        self.hub_refused(status, reason, cx);
        info!(
            "conn {} {} -> {} refused: {status} {reason}",
            self.id,
            self.client_addr,
            self.peer_label()
        );
        self.drop_peer(cx);
        self.raw.state = RawState::Gone;
        self.ws.out.clear(cx.pool);
        let mut response = Vec::with_capacity(256);
        upgrade_server::error_response(status, reason, headers, &mut response);
        self.ws.out.push_copy(&response, cx.pool);
        self.ws.http = Vec::new();
        self.ws.state = WsState::Refusing;
        self.begin_close(cx.now);
        self.close_code = Some(status);
    }
}
