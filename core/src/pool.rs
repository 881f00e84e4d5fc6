//! Buffers lent to sessions only while they hold data (sozu's pool idea):
//! an idle connection owns no I/O buffer, and a busy one reuses the same
//! few allocations instead of allocating per message.
//!
//! An input buffer is a `BytesMut`, so a framed message can leave it as a
//! shared slice ([`InBuf::detach`]) when it has to wait in an output queue.

/// Size of a peer read and of a pooled buffer.
pub const CHUNK: usize = 64 * 1024;
/// Buffers kept for reuse, per kind: at most 8 MiB of input buffers and
/// 4 MiB of message buffers stay with the loop after a busy moment.
const KEEP_IN: usize = 128;
const KEEP_OUT: usize = 32;

use bytes::{Bytes, BytesMut};

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
    /// the next read into the buffer, `compact`, `make_room` or `detach`.
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
        // What is left after a detach may be short: start a full buffer.
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

    /// `raw()[from..to]` as a shared slice, without a copy, to be written
    /// later. Everything before `to` must be consumed already; offsets into
    /// `raw()` shift down by `to`. The buffer keeps the rest of its
    /// allocation, which is freed once the slice is written and dropped.
    pub fn detach(&mut self, from: usize, to: usize) -> Bytes {
        let to = to.min(self.data.len());
        let front = self.data.split_to(to);
        // An emptied buffer starts again at 0, so these may already be below `to`.
        self.start = self.start.saturating_sub(to);
        self.end = self.end.saturating_sub(to);
        front.freeze().slice(from.min(to)..)
    }
}

#[derive(Default)]
pub struct Pool {
    ins: Vec<InBuf>,
    outs: Vec<Vec<u8>>,
    scratch: Vec<u8>,
}

// A buffer that lent part of itself to a queue is shorter than CHUNK and
// is not kept: its allocation is freed with the last slice.

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
            .unwrap_or_else(|| Vec::with_capacity(CHUNK + 64))
    }
    pub fn give_out(&mut self, mut v: Vec<u8>) {
        if v.capacity() >= CHUNK && v.capacity() <= 2 * CHUNK && self.outs.len() < KEEP_OUT {
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
    fn detached_slices_survive_the_buffer_moving_on() {
        let mut b = InBuf::new();
        b.spare()[..10].copy_from_slice(b"0123456789");
        b.filled(10);
        b.consume(6);
        let s = b.detach(2, 6);
        assert_eq!(&s[..], b"2345");
        assert_eq!(b.data(), b"6789");
        assert_eq!(b.offset(), 0);
        b.spare()[..2].copy_from_slice(b"ab");
        b.filled(2);
        assert_eq!(b.data(), b"6789ab");
        assert_eq!(&s[..], b"2345");
        // Short after the detach: room means a fresh full buffer.
        b.consume(6);
        let room = b.spare().len();
        b.filled(room);
        assert!(b.make_room(CHUNK));
        assert_eq!(b.raw().len(), CHUNK);
    }

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
