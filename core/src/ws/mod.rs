//! The WebSocket protocol pieces a session's WebSocket end uses: frames in
//! and out, and both sides of the upgrade: the server role's
//! (`upgrade_server`) and the client role's (`upgrade_client`); everything
//! after the 101 is shared.

pub mod frame;
pub mod mask;
pub mod upgrade_client;
pub mod upgrade_server;
pub mod url;
