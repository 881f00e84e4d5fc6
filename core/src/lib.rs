//! websocksy: a bridge between WebSocket clients and TCP, UDP and Unix
//! sockets, driven by one mio event loop.
//!
//! Where things are:
//! - `server` binds the listeners (`listener`: TCP, TLS, Unix; TLS
//!   contexts come from `tls_context`) and runs the event loops (one today; more
//!   loops are created there); `shared` is what all loops share (settings,
//!   backend, worker pool, connection count); `event_loop` is one loop
//!   (poll, accept, timers, signals).
//! - `session` is one connection's state machine (see `session/SESSION.md`):
//!   `ws_end` and `raw_end` are its two ends, `open` the server role's way
//!   in, `dial` the client role's, `out_queue` what waits for the WebSocket
//!   end, `hub_end` a raw end that is a member of a fan-out `hub` (one peer
//!   shared by many clients). `connector` is a client connection
//!   (`websocksy connect`, `[connect]`) at run time, shared by its sessions.
//! - `transport` is the stream type every socket is (TCP, Unix, UDP, Unix
//!   datagram; TLS plugs in there); `peer` is where peers are and how each
//!   kind connects, and the mirror peer.
//! - `ws` is the WebSocket protocol: `frame` (frames in and out), `mask`
//!   (the client's masking), `upgrade_server` and `upgrade_client` (the
//!   HTTP upgrade, each side), `url` (the URLs a client dials).
//! - `framing` (how peer bytes become messages), `backend` (peer discovery),
//!   `workers` (blocking calls off the loop), `pool` (buffers lent while
//!   they hold data), `config` (one table of keys for the command line and
//!   the file), `plugin` (shared-object backends and framings).
pub mod admission;
pub mod backend;
pub mod config;
pub mod connector;
pub mod event_loop;
pub mod forwarded;
pub mod framing;
pub mod handoff;
pub mod hub;
pub mod listener;
pub mod peer;
pub mod plugin;
mod pool;
pub mod proxy_protocol;
pub mod server;
pub mod session;
pub mod shared;
pub mod spin;
mod timers;
pub mod tls_context;
pub mod transport;
mod workers;
pub mod ws;
