//! Test-only framing `test-panic`, for checking that a panicking Rust plugin
//! costs one connection and not the process.
//!
//! - config `panic`: `state_new` panics (the connection is refused with 500);
//! - otherwise it passes bytes through as binary messages, except that a
//!   read containing `panic` makes `frame` panic (the host closes that
//!   connection with 1011).
//!
//! Not for production: it exists only for the end-to-end tests.

use websocksy_plugin::{Frame, Framing};

/// The `test-panic` framing.
pub struct TestPanic;

impl Framing for TestPanic {
    type State = ();
    const NAME: &'static str = "test-panic";

    fn new_state(&self, config: Option<&str>) -> Result<(), String> {
        if config == Some("panic") {
            panic!("test-panic: state_new asked to panic");
        }
        Ok(())
    }

    fn frame(&self, _: &mut (), data: &[u8], _last_read: usize) -> Frame {
        if data.windows(5).any(|w| w == b"panic") {
            panic!("test-panic: the peer said panic");
        }
        Frame::binary(data.len())
    }
}

websocksy_plugin::export!(framings: [TestPanic]);
