//! End-to-end tests: the real binary, real sockets, real peers.

mod admission;
mod cli;
mod connect_edges;
mod connect_harness;
mod deploy;
mod flow;
mod framing;
mod handshake;
mod hub;
mod identity;
mod liveness;
mod memory;
mod peers;
mod plugin_abi20;
mod plugin_host;
mod plugins_c;
mod plugins_rust;
mod plugins_v1;
mod protocol;
mod readme;
mod shutdown;
mod smoke;
mod stall;
mod tls;
