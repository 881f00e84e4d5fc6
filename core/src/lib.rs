//! websocksy: a bridge between WebSocket clients and TCP, UDP and Unix
//! sockets, driven by one mio event loop.
//!
//! Where things are: `event_loop` (poll, accept, timers, signals),
//! `session` (one connection's state machine, see `SESSION.md`),
//! `handshake` (the HTTP upgrade), `peer` (TCP, UDP, Unix, mirror),
//! `framing` (how peer bytes become messages), `backend` (peer discovery),
//! `workers` (blocking calls off the loop), `config` (CLI and file),
//! `plugin` (shared-object backends and framings).
pub mod backend;
pub mod config;
pub mod event_loop;
pub mod framing;
pub mod peer;
pub mod plugin;
mod pool;
pub mod server;
pub mod session;
pub mod shared;
mod timers;
pub mod transport;
mod workers;
pub mod ws;
