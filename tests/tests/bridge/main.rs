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
