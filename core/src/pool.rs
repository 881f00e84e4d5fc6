//! Buffers lent to sessions only while they hold data (sozu's pool idea):
//! an idle connection owns no I/O buffer, and a busy one reuses the same
//! few allocations instead of allocating per message.
//!
//! Input buffers are read into and framed from; output buffers hold what
//! a WebSocket end's queue spills (`session/out_queue.rs`) and whole
//! messages for the mirror, a hub or a datagram peer.

/// Size of a peer read and of a pooled buffer.
pub const CHUNK: usize = 64 * 1024;
/// Buffers kept for reuse, per kind: at most 8 MiB of input buffers and
/// 4 MiB of output buffers stay with the loop after a busy moment.
const KEEP_IN: usize = 128;
const KEEP_OUT: usize = 32;
/// A fresh output buffer: a full read's frames (up to 16 headers) and a
/// few control frames fit without growing.
const OUT_LEN: usize = CHUNK + 1024;
/// Output buffers are kept up to one doubling of a fresh one, which is
/// what an output queue's spill grows to when the client takes nothing
/// (a queue at its high mark plus one more read's frames).
const OUT_KEEP_MAX: usize = 2 * OUT_LEN;

use bytes::BytesMut;

/// Bytes read and not yet used: `data[start..end]`, with room to read
/// after `end`. `data` is zero-filled to its length, so reads go into
/// initialised memory.
pub struct InBuf {
    data: BytesMut,
    start: usize,
    end: usize,
}

impl InBuf {
    fn new() -> InBuf {
        InBuf::with_len(CHUNK)
    }

    fn with_len(len: usize) -> InBuf {
        InBuf {
            data: BytesMut::zeroed(len),
            start: 0,
            end: 0,
        }
    }
    pub fn data(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }
    /// Where `data()` starts in `raw()`.
    pub fn offset(&self) -> usize {
        self.start
    }
    /// The whole storage: offsets taken before `consume` stay valid until
    /// the next read into the buffer, `compact` or `make_room`.
    pub fn raw(&self) -> &[u8] {
        &self.data
    }
    pub fn raw_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
    /// Move the data to the front when the room after it runs short; no
    /// offsets into `raw()` may be held across this.
    pub fn compact(&mut self) {
        if self.start > 0 && self.data.len() - self.end < CHUNK / 4 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
    pub fn is_full(&self) -> bool {
        self.end == self.data.len()
    }
    /// How much can be read in after the data.
    pub fn room(&self) -> usize {
        self.data.len() - self.end
    }
    pub fn spare(&mut self) -> &mut [u8] {
        &mut self.data[self.end..]
    }
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }
    /// Keep only the first `n` bytes of the data (what follows belongs
    /// to a connection that is gone).
    pub fn truncate(&mut self, n: usize) {
        self.end = self.end.min(self.start + n);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
    /// Make room for more input: move the data to the front, or grow up to
    /// `max` bytes. False when the message already fills `max`.
    pub fn make_room(&mut self, max: usize) -> bool {
        if self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            return true;
        }
        let len = self.data.len();
        // Never less than a full buffer.
        let want = if len < CHUNK {
            CHUNK
        } else if len >= max {
            return false;
        } else {
            (len * 2).min(max).max(len + 1)
        };
        let mut fresh = InBuf::with_len(want);
        fresh.data[..self.end].copy_from_slice(&self.data[..self.end]);
        fresh.end = self.end;
        *self = fresh;
        true
    }
}

#[derive(Default)]
pub struct Pool {
    ins: Vec<InBuf>,
    outs: Vec<Vec<u8>>,
    scratch: Vec<u8>,
}

impl Pool {
    pub fn take_in(&mut self) -> InBuf {
        self.ins.pop().unwrap_or_else(InBuf::new)
    }
    pub fn give_in(&mut self, mut b: InBuf) {
        // Buffers grown for one huge message are not worth keeping.
        if b.data.len() == CHUNK && self.ins.len() < KEEP_IN {
            b.start = 0;
            b.end = 0;
            self.ins.push(b);
        }
    }
    pub fn take_out(&mut self) -> Vec<u8> {
        self.outs
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(OUT_LEN))
    }
    pub fn give_out(&mut self, mut v: Vec<u8>) {
        if v.capacity() >= CHUNK && v.capacity() <= OUT_KEEP_MAX && self.outs.len() < KEEP_OUT {
            v.clear();
            self.outs.push(v);
        }
    }
    /// Somewhere to read bytes that are thrown away.
    pub fn scratch(&mut self) -> &mut [u8] {
        if self.scratch.is_empty() {
            self.scratch = vec![0; CHUNK];
        }
        &mut self.scratch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbuf_compacts_then_grows_to_the_limit() {
        let mut b = InBuf::new();
        b.filled(CHUNK);
        b.consume(10);
        assert!(b.make_room(CHUNK));
        assert_eq!(b.data().len(), CHUNK - 10);
        b.filled(10);
        assert!(!b.make_room(CHUNK));
        assert!(b.make_room(3 * CHUNK));
        assert_eq!(b.spare().len(), CHUNK);
    }
}
