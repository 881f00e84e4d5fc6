//! End-to-end tests: the real binary, real sockets, real peers.

mod smoke;
mod handshake;
mod peers;
mod protocol;
mod framing;
mod flow;
mod cli;
mod liveness;
mod shutdown;
mod plugins_c;
mod plugin_host;
mod plugins_rust;
mod plugins_v1;
