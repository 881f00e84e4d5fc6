//! What waits to be written to the WebSocket end: a queue of shared slices.
//!
//! A frame from the raw end goes out straight from the peer's input buffer
//! with one writev while the WebSocket end keeps up; only what it does not
//! take is queued, as a slice of that same buffer ([`InBuf::detach`]), so
//! a partly written frame is never copied. Frames the bridge builds itself
//! (HTTP responses, control frames, data headers, and the whole messages of
//! the mirror and of a peer's unframed tail at EOF) are written into a build
//! buffer and split off as slices. Because the slices are
//! reference-counted, one frame can later sit in many clients' queues (a
//! hub) without a copy.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Bytes, BytesMut};
use tungstenite::protocol::frame::coding::OpCode;

use crate::framing::Opcode;
use crate::pool::InBuf;
use crate::transport::Stream;
use crate::ws::frame::{self, Head};
use crate::ws::mask::{self, MaskKeys};

/// Slices written with one writev at most.
const MAX_IOV: usize = 64;

#[derive(Default)]
pub struct OutQueue {
    q: VecDeque<Bytes>,
    /// Bytes of the front slice already written.
    head: usize,
    /// Unwritten bytes in all.
    len: usize,
    build: BytesMut,
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
            self.q.push_back(b);
        }
    }

    /// Queue a copy of bytes the bridge made.
    pub fn push_copy(&mut self, bytes: &[u8]) {
        self.build.extend_from_slice(bytes);
        let b = self.build.split().freeze();
        self.push(b);
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
    pub fn encode(&mut self, opcode: OpCode, payload: &[u8]) {
        let key = self.next_mask();
        self.build
            .extend_from_slice(Head::new(opcode, payload.len(), key).as_slice());
        let at = self.build.len();
        self.build.extend_from_slice(payload);
        if let Some(k) = key {
            mask::apply(&mut self.build[at..], k);
        }
        let b = self.build.split().freeze();
        self.push(b);
    }

    /// Drop everything unwritten (the other side is gone).
    pub fn clear(&mut self) {
        self.q.clear();
        self.head = 0;
        self.len = 0;
        self.release();
    }

    /// Write as much as `stream` takes, with one writev per round.
    /// `Ok(n)`: bytes written before WouldBlock or the end of the queue;
    /// `Err`: the stream failed (never WouldBlock).
    pub fn write_to(&mut self, stream: &mut Stream, writable: &mut bool) -> io::Result<usize> {
        let mut total = 0;
        while self.len > 0 && *writable {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut k = 0;
            for (i, b) in self.q.iter().take(MAX_IOV).enumerate() {
                iov[k] = IoSlice::new(if i == 0 { &b[self.head..] } else { b });
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
            self.release();
        }
        Ok(total)
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let Some(front) = self.q.front() else { return };
            let left = front.len() - self.head;
            if n < left {
                self.head += n;
                return;
            }
            n -= left;
            self.head = 0;
            self.q.pop_front();
        }
    }

    /// An idle connection keeps no buffer: the build buffer goes once
    /// every slice of it is written.
    fn release(&mut self) {
        self.build = BytesMut::new();
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
/// is queued before them; what is not written is queued, the payload as a
/// slice of `buf` (no copy), keeping the order.
pub fn write_parts(
    stream: &mut Stream,
    writable: &mut bool,
    out: &mut OutQueue,
    buf: &mut InBuf,
    parts: &[Part],
) -> io::Result<()> {
    let mut written = 0;
    if out.is_empty() {
        let raw = buf.raw();
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
    // Queue the rest; detaching shifts `buf`'s offsets down by `shift`.
    let mut skip = written;
    let mut shift = 0;
    for p in parts {
        let head = p.head.as_slice();
        if skip >= head.len() {
            skip -= head.len();
        } else {
            out.push_copy(&head[skip..]);
            skip = 0;
        }
        if skip >= p.len {
            skip -= p.len;
            continue;
        }
        let (from, to) = (p.start + skip - shift, p.start + p.len - shift);
        out.push(buf.detach(from, to));
        shift += to;
        skip = 0;
    }
    Ok(())
}
