//! The WebSocket protocol pieces a session's WebSocket end uses: frames in
//! and out, and the server's side of the upgrade. A client role adds its
//! upgrade beside `upgrade_server` and reuses the rest.

pub mod frame;
pub mod upgrade_server;
