//! WebSocket frames as they arrive, piece by piece (RFC 6455 section 5).
//!
//! tungstenite's message-level reader cannot stream: it keeps a whole
//! message (and a read buffer as large as the largest frame it ever saw)
//! before handing anything over, so a bridge built on it holds up to
//! `--max-message-size` per connection and never gives the memory back.
//! This reader keeps only the state of the frame being read; payload is
//! unmasked in place in the caller's buffer and handed over in whatever
//! pieces arrived, so a bridge can pass a 48 MiB message on with one read
//! buffer. tungstenite still does the wire format: [`FrameHeader::parse`]
//! and [`FrameHeader::format`], its opcodes and close codes.
//!
//! The rules stay as strict as a message-level reader's: reserved bits and
//! opcodes, masking by role, control frame size and fragmentation,
//! continuation order (1002); text is validated incrementally and fails at
//! the first byte that cannot start or continue a character (1007); a
//! message larger than the limit fails as soon as a header announces it
//! (1009).

use std::io::Cursor;

use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use crate::framing::Opcode;

/// Which end of the WebSocket connection this is: it decides who masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepted a client: frames in are masked, frames out are not.
    Server,
    /// Dialled a server: frames in are unmasked, frames out are masked.
    Client,
}

/// Why the connection fails: the close code to send and a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fail {
    pub code: u16,
    pub reason: &'static str,
}

const fn fail(code: u16, reason: &'static str) -> Fail {
    Fail { code, reason }
}

/// A control frame's payload: at most 125 bytes, kept whole.
#[derive(Clone, Copy)]
pub struct Control125 {
    buf: [u8; 125],
    len: u8,
}

impl Control125 {
    const EMPTY: Control125 = Control125 {
        buf: [0; 125],
        len: 0,
    };
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl std::fmt::Debug for Control125 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

/// What one step of [`FrameReader::next`] found.
#[derive(Debug)]
pub enum Event {
    /// A header, or part of a control frame: nothing to act on yet.
    Nothing,
    /// `buf[start..start + len]` is payload of the current data message,
    /// unmasked in place (and, for text, valid so far). `first` marks the
    /// message's first piece, `last` its final one; an empty frame gives
    /// a piece with `len` 0.
    Data {
        opcode: Opcode,
        start: usize,
        len: usize,
        first: bool,
        last: bool,
    },
    Ping(Control125),
    Pong,
    /// The close code (None when the frame had no payload) and the reason,
    /// already checked: the code is one an endpoint may send, the reason UTF-8.
    Close(Option<u16>, Control125),
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Data,
    Ping,
    Pong,
    Close,
}

/// The frame whose payload is being read.
#[derive(Debug)]
struct Current {
    kind: Kind,
    remaining: u64,
    mask: Option<[u8; 4]>,
    /// Payload bytes read so far: where the mask continues.
    offset: u64,
    fin: bool,
}

/// The data message in progress, from its first frame to its final one.
#[derive(Debug)]
struct Message {
    opcode: Opcode,
    len: u64,
    /// Nothing of it handed over yet (the next piece is its first).
    fresh: bool,
    utf8: Option<Utf8Stream>,
}

/// Parser state for one direction of one connection: a few dozen bytes,
/// whatever the size of the messages it sees.
#[derive(Debug)]
pub struct FrameReader {
    role: Role,
    max_message: u64,
    current: Option<Current>,
    message: Option<Message>,
    control: Control125,
}

/// Is `code` one a peer may put in a close frame (RFC 6455 7.4.1, and the
/// IANA registry: 1012-1014 are registered since)?
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

impl FrameReader {
    pub fn new(role: Role, max_message: usize) -> FrameReader {
        FrameReader {
            role,
            max_message: max_message as u64,
            current: None,
            message: None,
            control: Control125::EMPTY,
        }
    }

    /// Look at the unread bytes `buf` (starting where the last step ended).
    /// `Ok(None)`: more bytes are needed and nothing was used. Otherwise the
    /// number of bytes used and what they were.
    pub fn next(&mut self, buf: &mut [u8]) -> Result<Option<(usize, Event)>, Fail> {
        match self.current.as_mut() {
            None => self.header(buf),
            Some(cur) => {
                let take = (cur.remaining.min(buf.len() as u64)) as usize;
                if take == 0 && cur.remaining > 0 {
                    return Ok(None);
                }
                let piece = &mut buf[..take];
                if let Some(mask) = cur.mask {
                    unmask(piece, mask, cur.offset);
                }
                cur.offset += take as u64;
                cur.remaining -= take as u64;
                let done = cur.remaining == 0;
                let (kind, fin) = (cur.kind, cur.fin);
                if done {
                    self.current = None;
                }
                match kind {
                    Kind::Data => self
                        .data_piece(0, take, buf, fin && done)
                        .map(|e| Some((take, e))),
                    _ => {
                        let c = &mut self.control;
                        let at = c.len as usize;
                        c.buf[at..at + take].copy_from_slice(&buf[..take]);
                        c.len += take as u8;
                        if done {
                            self.control_done(kind).map(|e| Some((take, e)))
                        } else {
                            Ok(Some((take, Event::Nothing)))
                        }
                    }
                }
            }
        }
    }

    fn header(&mut self, buf: &mut [u8]) -> Result<Option<(usize, Event)>, Fail> {
        let mut cursor = Cursor::new(&buf[..]);
        let (head, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(None),
            // Its only refusal is a reserved opcode.
            Err(_) => return Err(fail(1002, "reserved opcode")),
        };
        let used = cursor.position() as usize;
        if len >> 63 != 0 {
            return Err(fail(
                1002,
                "64-bit length with the most significant bit set",
            ));
        }
        if head.rsv1 || head.rsv2 || head.rsv3 {
            return Err(fail(1002, "reserved bits set without an extension"));
        }
        match (self.role, head.mask.is_some()) {
            (Role::Server, false) => return Err(fail(1002, "unmasked frame from a client")),
            (Role::Client, true) => return Err(fail(1002, "masked frame from a server")),
            _ => {}
        }
        let kind = match head.opcode {
            OpCode::Control(c) => {
                if !head.is_final {
                    return Err(fail(1002, "fragmented control frame"));
                }
                if len > 125 {
                    return Err(fail(1002, "control frame longer than 125 bytes"));
                }
                self.control.len = 0;
                match c {
                    Control::Ping => Kind::Ping,
                    Control::Pong => Kind::Pong,
                    Control::Close => {
                        if len == 1 {
                            return Err(fail(1002, "close frame with a one-byte payload"));
                        }
                        Kind::Close
                    }
                    Control::Reserved(_) => return Err(fail(1002, "reserved opcode")),
                }
            }
            OpCode::Data(d) => {
                let so_far = match (d, self.message.as_mut()) {
                    (Data::Continue, Some(m)) => m.len,
                    (Data::Continue, None) => {
                        return Err(fail(1002, "continuation frame without a message"))
                    }
                    (Data::Text | Data::Binary, Some(_)) => {
                        return Err(fail(1002, "new message inside a fragmented one"))
                    }
                    (Data::Text | Data::Binary, None) => {
                        let text = d == Data::Text;
                        self.message = Some(Message {
                            opcode: if text { Opcode::Text } else { Opcode::Binary },
                            len: 0,
                            fresh: true,
                            utf8: text.then(Utf8Stream::default),
                        });
                        0
                    }
                    (Data::Reserved(_), _) => return Err(fail(1002, "reserved opcode")),
                };
                if so_far.checked_add(len).is_none_or(|n| n > self.max_message) {
                    return Err(fail(1009, "message too big"));
                }
                if let Some(m) = self.message.as_mut() {
                    m.len += len;
                }
                Kind::Data
            }
        };
        self.current = Some(Current {
            kind,
            remaining: len,
            mask: head.mask,
            offset: 0,
            fin: head.is_final,
        });
        if len > 0 {
            return Ok(Some((used, Event::Nothing)));
        }
        // An empty frame is complete with its header.
        self.current = None;
        let event = match kind {
            Kind::Data => self.data_piece(used, 0, buf, head.is_final)?,
            _ => self.control_done(kind)?,
        };
        Ok(Some((used, event)))
    }

    fn data_piece(
        &mut self,
        start: usize,
        len: usize,
        buf: &[u8],
        last: bool,
    ) -> Result<Event, Fail> {
        let Some(m) = self.message.as_mut() else {
            return Err(fail(1002, "data without a message"));
        };
        if let Some(u) = m.utf8.as_mut() {
            if !u.feed(&buf[start..start + len]) || (last && !u.complete()) {
                return Err(fail(1007, "invalid UTF-8 in text message"));
            }
        }
        let event = Event::Data {
            opcode: m.opcode,
            start,
            len,
            first: m.fresh,
            last,
        };
        m.fresh = false;
        if last {
            self.message = None;
        }
        Ok(event)
    }

    fn control_done(&mut self, kind: Kind) -> Result<Event, Fail> {
        let payload = self.control;
        Ok(match kind {
            Kind::Ping => Event::Ping(payload),
            Kind::Pong => Event::Pong,
            Kind::Close => {
                let p = payload.as_slice();
                if p.is_empty() {
                    Event::Close(None, Control125::EMPTY)
                } else {
                    let code = u16::from_be_bytes([p[0], p[1]]);
                    if !close_code_allowed(code) {
                        return Err(fail(1002, "invalid close code"));
                    }
                    if std::str::from_utf8(&p[2..]).is_err() {
                        return Err(fail(1007, "invalid UTF-8 in close reason"));
                    }
                    let mut reason = Control125::EMPTY;
                    reason.buf[..p.len() - 2].copy_from_slice(&p[2..]);
                    reason.len = (p.len() - 2) as u8;
                    Event::Close(Some(code), reason)
                }
            }
            Kind::Data => Event::Nothing,
        })
    }
}

/// XOR `buf` with `mask`, starting `offset` bytes into the frame's payload.
fn unmask(buf: &mut [u8], mask: [u8; 4], offset: u64) {
    let s = (offset % 4) as usize;
    let m = [
        mask[s],
        mask[(s + 1) % 4],
        mask[(s + 2) % 4],
        mask[(s + 3) % 4],
    ];
    let wide = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i & 3];
    }
}

/// UTF-8 checked across piece boundaries: at most the 3 bytes of a
/// character cut in two are carried to the next piece.
#[derive(Debug, Default)]
struct Utf8Stream {
    carry: [u8; 4],
    len: usize,
}

impl Utf8Stream {
    /// False at the first byte that makes the text invalid.
    fn feed(&mut self, mut data: &[u8]) -> bool {
        if self.len > 0 {
            let want = match self.carry[0] {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            let take = (want - self.len).min(data.len());
            let mut tmp = self.carry;
            tmp[self.len..self.len + take].copy_from_slice(&data[..take]);
            match std::str::from_utf8(&tmp[..self.len + take]) {
                Ok(_) => {
                    self.len = 0;
                    data = &data[take..];
                }
                Err(e) if e.error_len().is_none() => {
                    self.carry = tmp;
                    self.len += take;
                    return true;
                }
                Err(_) => return false,
            }
        }
        match std::str::from_utf8(data) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() => {
                let tail = &data[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.len = tail.len();
                true
            }
            Err(_) => false,
        }
    }

    fn complete(&self) -> bool {
        self.len == 0
    }
}

/// A frame header ready to send: at most 14 bytes.
#[derive(Clone, Copy)]
pub struct Head {
    bytes: [u8; 14],
    len: u8,
}

impl Head {
    pub const EMPTY: Head = Head {
        bytes: [0; 14],
        len: 0,
    };

    /// A final frame of `len` payload bytes. A client masks; the caller
    /// then XORs the payload with [`Head::mask`].
    pub fn new(opcode: OpCode, len: usize, mask: Option<[u8; 4]>) -> Head {
        let header = FrameHeader {
            is_final: true,
            opcode,
            mask,
            ..FrameHeader::default()
        };
        let mut bytes = [0u8; 14];
        let mut cursor = Cursor::new(&mut bytes[..]);
        // The longest header is 14 bytes: it always fits.
        let _ = header.format(len as u64, &mut cursor);
        let len = cursor.position() as u8;
        Head { bytes, len }
    }

    pub fn data(op: Opcode, len: usize) -> Head {
        Head::new(data_opcode(op), len, None)
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

pub fn data_opcode(op: Opcode) -> OpCode {
    match op {
        Opcode::Text => OpCode::Data(Data::Text),
        Opcode::Binary => OpCode::Data(Data::Binary),
    }
}

/// Append one final, unmasked frame to `out` (control frames, and data the
/// bridge builds itself).
pub fn encode(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    out.extend_from_slice(Head::new(opcode, payload.len(), None).as_slice());
    out.extend_from_slice(payload);
}

/// A close frame's payload: code, then the reason cut at 123 bytes on a
/// character boundary.
pub fn close_payload(code: u16, reason: &str) -> ([u8; 125], usize) {
    let mut p = [0u8; 125];
    p[..2].copy_from_slice(&code.to_be_bytes());
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    p[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    (p, 2 + end)
}

#[cfg(test)]
pub(crate) mod testing {
    /// A masked frame as a client sends it; `first_byte` is FIN, RSV and opcode.
    pub(crate) fn client_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut v = vec![first_byte];
        match payload.len() {
            n if n < 126 => v.push(0x80 | n as u8),
            n if n < 65536 => {
                v.push(0x80 | 126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(0x80 | 127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        v
    }
}

#[cfg(test)]
mod tests;
