//! What waits to be written to the WebSocket end.
//!
//! A frame from the raw end goes out straight from the peer's input buffer
//! with one writev while the WebSocket end keeps up; only what it does not
//! take is queued. Bytes the queue holds itself (what a writev left of such
//! frames, HTTP responses, control frames, the whole messages of the mirror
//! and of a peer's unframed tail at EOF) are copied into one spill buffer,
//! lent by the loop's pool while it holds something, so queueing allocates
//! nothing once the pool has buffers: a copy of what the client did not
//! take costs what the fresh zeroed buffer of a shared slice would have,
//! without the allocation. Frames shared between many clients (a hub's)
//! are queued as reference-counted slices, without a copy.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::Bytes;
use tungstenite::protocol::frame::coding::OpCode;

use crate::framing::Opcode;
use crate::pool::{InBuf, Pool};
use crate::transport::Stream;
use crate::ws::frame::{self, Head};
use crate::ws::mask::{self, MaskKeys};

/// Slices written with one writev at most.
const MAX_IOV: usize = 64;

/// One run of queued bytes.
enum Item {
    /// A slice shared with others (a hub's frame).
    Shared(Bytes),
    /// The next this many bytes of the spill buffer.
    Spill(usize),
}

#[derive(Default)]
pub struct OutQueue {
    q: VecDeque<Item>,
    /// Bytes of the front item already written.
    head: usize,
    /// Unwritten bytes in all.
    len: usize,
    /// Bytes copied in, in queue order; `spill[spill_at..]` is unwritten.
    spill: Vec<u8>,
    spill_at: usize,
    /// Keys for the frames a client-role end sends (all of them masked);
    /// `None` for the server role.
    mask: Option<Box<MaskKeys>>,
}

impl OutQueue {
    /// Unwritten bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queue a shared slice as it is.
    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.len += b.len();
            self.q.push_back(Item::Shared(b));
        }
    }

    /// Queue a copy of `bytes`.
    pub fn push_copy(&mut self, bytes: &[u8], pool: &mut Pool) {
        if bytes.is_empty() {
            return;
        }
        let at = self.spill_room(bytes.len(), pool);
        self.spill.extend_from_slice(bytes);
        self.spilled(at);
    }

    /// Room for `n` more bytes at the end of the spill buffer, taken from
    /// the pool if there is none; returns where they will start.
    fn spill_room(&mut self, n: usize, pool: &mut Pool) -> usize {
        if self.spill.capacity() == 0 {
            self.spill = pool.take_out();
            return 0;
        }
        if self.spill.len() + n <= self.spill.capacity() {
            return self.spill.len();
        }
        // Written bytes at the front make room without growing. Spilled
        // runs are joined, so the front run may be the one still growing
        // at the back: what of it is written goes too, or a client that
        // keeps taking a little would let the buffer grow without end.
        let mut written = self.spill_at;
        if let Some(Item::Spill(m)) = self.q.front_mut() {
            written += self.head;
            *m -= self.head;
            self.head = 0;
        }
        if written > 0 {
            self.spill.drain(..written);
            self.spill_at = 0;
        }
        self.spill.len()
    }

    /// The spill buffer grew from `at`: queue those bytes, joined to a
    /// spill run already at the back (one slice for the writev).
    fn spilled(&mut self, at: usize) {
        let n = self.spill.len() - at;
        if n == 0 {
            return;
        }
        self.len += n;
        match self.q.back_mut() {
            Some(Item::Spill(m)) => *m += n,
            _ => self.q.push_back(Item::Spill(n)),
        }
    }

    /// From now on every frame is masked: this queue feeds a client-role end.
    pub fn set_masking(&mut self) {
        self.mask = Some(Box::default());
    }

    /// The key for the next frame a client-role end sends; `None` for a server.
    pub fn next_mask(&mut self) -> Option<[u8; 4]> {
        self.mask.as_mut().map(|m| m.key())
    }

    /// Queue one final frame built from `payload` (control frames, and
    /// messages the bridge holds whole), masked for the client role.
    pub fn encode(&mut self, opcode: OpCode, payload: &[u8], pool: &mut Pool) {
        let key = self.next_mask();
        let head = Head::new(opcode, payload.len(), key);
        let start = self.spill_room(head.as_slice().len() + payload.len(), pool);
        self.spill.extend_from_slice(head.as_slice());
        let at = self.spill.len();
        self.spill.extend_from_slice(payload);
        if let Some(k) = key {
            mask::apply(&mut self.spill[at..], k);
        }
        self.spilled(start);
    }

    /// Drop everything unwritten (the other side is gone); the spill
    /// buffer goes back to the pool.
    pub fn clear(&mut self, pool: &mut Pool) {
        self.q.clear();
        self.head = 0;
        self.len = 0;
        self.release(pool);
    }

    /// Write as much as `stream` takes, with one writev per round.
    /// `Ok(n)`: bytes written before WouldBlock or the end of the queue;
    /// `Err`: the stream failed (never WouldBlock).
    pub fn write_to(
        &mut self,
        stream: &mut Stream,
        writable: &mut bool,
        pool: &mut Pool,
    ) -> io::Result<usize> {
        let mut total = 0;
        while self.len > 0 && *writable {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut k = 0;
            let mut off = self.spill_at;
            for (i, item) in self.q.iter().take(MAX_IOV).enumerate() {
                let skip = if i == 0 { self.head } else { 0 };
                iov[k] = IoSlice::new(match item {
                    Item::Shared(b) => &b[skip..],
                    Item::Spill(n) => {
                        let s = &self.spill[off + skip..off + n];
                        off += n;
                        s
                    }
                });
                k += 1;
            }
            match stream.write_vectored(&iov[..k]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    total += n;
                    self.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => *writable = false,
                Err(e) => return Err(e),
            }
        }
        if self.len == 0 {
            self.release(pool);
        }
        Ok(total)
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.q.front() else { return };
            let size = match front {
                Item::Shared(b) => b.len(),
                Item::Spill(m) => *m,
            };
            let left = size - self.head;
            if n < left {
                self.head += n;
                return;
            }
            n -= left;
            self.head = 0;
            if let Some(Item::Spill(m)) = self.q.pop_front() {
                self.spill_at += m;
            }
        }
    }

    /// An idle connection keeps no buffer: the spill buffer goes back to
    /// the pool once everything in it is written.
    fn release(&mut self, pool: &mut Pool) {
        if self.spill.capacity() > 0 {
            pool.give_out(std::mem::take(&mut self.spill));
        }
        self.spill_at = 0;
        if self.q.capacity() > MAX_IOV {
            self.q = VecDeque::new();
        }
    }
}

/// One outbound data frame: its header, and where its payload sits in the
/// raw end's input buffer.
#[derive(Clone, Copy)]
pub struct Part {
    pub head: Head,
    pub start: usize,
    pub len: usize,
    /// The client role's key: the payload is masked in place with it
    /// before it is written ([`Part::mask_payload`]).
    pub mask: Option<[u8; 4]>,
}

impl Part {
    pub const EMPTY: Part = Part {
        head: Head::EMPTY,
        start: 0,
        len: 0,
        mask: None,
    };

    pub fn new(op: Opcode, start: usize, len: usize, mask: Option<[u8; 4]>) -> Part {
        Part {
            head: Head::new(frame::data_opcode(op), len, mask),
            start,
            len,
            mask,
        }
    }

    /// Mask the payload where it sits: it is sent from there and never
    /// read again, so the client role costs one pass and no copy.
    pub fn mask_payload(&self, raw: &mut [u8]) {
        if let (Some(k), Some(p)) = (self.mask, raw.get_mut(self.start..self.start + self.len)) {
            mask::apply(p, k);
        }
    }
}

/// Frames sent with one writev at most.
pub const MAX_PARTS: usize = 16;

/// Send frames whose payloads sit in `buf` (already consumed from it): with
/// one writev straight from there when the stream is writable and nothing
/// is queued before them; what is not written is copied into the queue,
/// keeping the order, so `buf` is free again as soon as this returns.
pub fn write_parts(
    stream: &mut Stream,
    writable: &mut bool,
    out: &mut OutQueue,
    buf: &InBuf,
    parts: &[Part],
    pool: &mut Pool,
) -> io::Result<()> {
    let raw = buf.raw();
    let mut written = 0;
    if out.is_empty() {
        let mut iov = [IoSlice::new(&[]); 2 * MAX_PARTS];
        let mut k = 0;
        for p in parts {
            iov[k] = IoSlice::new(p.head.as_slice());
            iov[k + 1] = IoSlice::new(&raw[p.start..p.start + p.len]);
            k += 2;
        }
        while *writable {
            match stream.write_vectored(&iov[..k]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written = n;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => *writable = false,
                Err(e) => return Err(e),
            }
        }
    }
    let mut skip = written;
    for p in parts {
        for piece in [p.head.as_slice(), &raw[p.start..p.start + p.len]] {
            if skip >= piece.len() {
                skip -= piece.len();
            } else {
                out.push_copy(&piece[skip..], pool);
                skip = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use bytes::Bytes;
    use tungstenite::protocol::frame::coding::{Control, OpCode};

    use super::OutQueue;
    use crate::pool::Pool;
    use crate::transport::Stream;

    #[test]
    fn spilled_and_shared_bytes_leave_in_order_and_the_spill_goes_back() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut stream = Stream::Unix(mio::net::UnixStream::from_std(a));
        let mut other = b;
        let mut pool = Pool::default();
        let mut q = OutQueue::default();
        q.push_copy(b"abc", &mut pool);
        q.push(Bytes::from_static(b"shared"));
        q.push_copy(b"def", &mut pool);
        q.push_copy(b"ghi", &mut pool);
        q.encode(OpCode::Control(Control::Pong), b"p", &mut pool);
        assert_eq!(q.len(), 3 + 6 + 3 + 3 + 3);
        let mut writable = true;
        let n = q.write_to(&mut stream, &mut writable, &mut pool).unwrap();
        assert_eq!(n, 18);
        assert!(q.is_empty());
        let mut got = [0u8; 18];
        other.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcshareddefghi\x8a\x01p");
        // The spill buffer is back in the pool: the next one is the same.
        assert_eq!(q.spill.capacity(), 0);
        let v = pool.take_out();
        assert!(v.capacity() > 0 && v.is_empty());
    }

    #[test]
    fn a_partly_written_spill_keeps_its_place_when_room_is_made() {
        let mut pool = Pool::default();
        let mut q = OutQueue::default();
        let big = vec![7u8; q_cap(&mut pool) - 10];
        q.push_copy(&big, &mut pool);
        // Pretend a writev took all but 5 bytes of it.
        q.consume(big.len() - 5);
        q.push_copy(b"0123456789abcdef", &mut pool);
        // Room was made by moving the unwritten bytes to the front.
        assert_eq!((q.spill_at, q.head), (0, 0));
        assert_eq!(q.spill.len(), 5 + 16);
        assert_eq!(q.spill.capacity(), big.len() + 10);
        assert_eq!(q.len(), 5 + 16);
        let mut out = Vec::new();
        let mut off = q.spill_at;
        for (i, item) in q.q.iter().enumerate() {
            let skip = if i == 0 { q.head } else { 0 };
            if let super::Item::Spill(n) = item {
                out.extend_from_slice(&q.spill[off + skip..off + n]);
                off += n;
            }
        }
        assert_eq!(&out[..5], &[7u8; 5]);
        assert_eq!(&out[5..], b"0123456789abcdef");
    }

    /// The capacity of a fresh pooled output buffer.
    fn q_cap(pool: &mut Pool) -> usize {
        let v = pool.take_out();
        let c = v.capacity();
        pool.give_out(v);
        c
    }
}
