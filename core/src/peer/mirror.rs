//! The `mirror://` peer: every message comes straight back to the client
//! with its opcode, through the same output queue real peers use. It keeps
//! message boundaries, which a TCP echo server cannot, so the WebSocket
//! layer can be tested on its own (Autobahn runs against it).
//!
//! It has no socket: the session's raw end holds a [`Mirror`] instead of a
//! stream, is `Open` from the start, and is done when the WebSocket end is.

use crate::pool::Pool;

/// A message being echoed, gathered from the pieces it arrives in (the
/// reader enforces `--max-message-size`). The buffer is the pool's and
/// goes back after each message, so an idle mirror holds nothing.
#[derive(Default)]
pub struct Mirror {
    msg: Vec<u8>,
}

impl Mirror {
    /// One piece of a client message; at its `last` piece, the whole
    /// message to send back. Call [`Mirror::sent`] once it is queued.
    pub fn take(&mut self, piece: &[u8], last: bool, pool: &mut Pool) -> Option<&[u8]> {
        if self.msg.capacity() == 0 && !(last && piece.is_empty()) {
            self.msg = pool.take_out();
        }
        self.msg.extend_from_slice(piece);
        last.then_some(&self.msg[..])
    }

    /// The echo is queued: the buffer goes back to the pool.
    pub fn sent(&mut self, pool: &mut Pool) {
        pool.give_out(std::mem::take(&mut self.msg));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_come_back_as_one_message_and_the_buffer_goes_back() {
        let mut pool = Pool::default();
        let mut m = Mirror::default();
        assert_eq!(m.take(b"ab", false, &mut pool), None);
        assert_eq!(m.take(b"", false, &mut pool), None);
        assert_eq!(m.take(b"cd", true, &mut pool), Some(&b"abcd"[..]));
        m.sent(&mut pool);
        assert_eq!(m.msg.capacity(), 0);
        assert_eq!(m.take(b"", true, &mut pool), Some(&b""[..]));
    }
}
