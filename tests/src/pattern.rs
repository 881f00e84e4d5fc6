//! A test stream whose every byte is known: byte `i` of a stream is
//! `i % 251`, so a receiver can check that bytes arrived complete and in
//! order without keeping a copy of what was sent. 251 is prime, so chunk
//! and message boundaries do not line up with the pattern by chance.

/// The pattern, one period plus a 64 KiB piece, so any piece of up to
/// [`Pattern::PIECE`] bytes is a slice of it.
pub struct Pattern(Vec<u8>);

impl Pattern {
    pub const PIECE: usize = 64 * 1024;

    pub fn new() -> Pattern {
        Pattern((0..251 + Self::PIECE).map(|i| (i % 251) as u8).collect())
    }

    /// Up to 64 KiB of the stream, from stream offset `at`.
    pub fn at(&self, at: u64, len: usize) -> &[u8] {
        let start = (at % 251) as usize;
        &self.0[start..start + len]
    }

    /// `len` bytes of the stream from offset 0 (any length).
    pub fn bytes(&self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        while v.len() < len {
            let n = (len - v.len()).min(Self::PIECE);
            v.extend_from_slice(self.at(v.len() as u64, n));
        }
        v
    }
}

impl Default for Pattern {
    fn default() -> Self {
        Self::new()
    }
}

/// Checks that received bytes continue the pattern without a gap.
pub struct Check {
    pat: Pattern,
    /// How many bytes have been checked so far.
    pub pos: u64,
}

impl Check {
    pub fn new() -> Check {
        Check {
            pat: Pattern::new(),
            pos: 0,
        }
    }

    /// Check `data` as the next bytes of the stream; panics at the first
    /// byte that is not the expected one, naming its stream offset.
    pub fn feed(&mut self, data: &[u8]) {
        for piece in data.chunks(Pattern::PIECE) {
            let want = self.pat.at(self.pos, piece.len());
            if piece != want {
                let i = piece
                    .iter()
                    .zip(want)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                panic!(
                    "stream corrupted at byte {}: got {}, expected {}",
                    self.pos + i as u64,
                    piece[i],
                    want[i]
                );
            }
            self.pos += piece.len() as u64;
        }
    }
}

impl Default for Check {
    fn default() -> Self {
        Self::new()
    }
}

/// Read binary frames from `s` until `n` more payload bytes have arrived,
/// feeding them to `check`; pings and pongs are skipped, anything else
/// fails, naming `who`.
pub fn read_binary<S: std::io::Read + ?Sized>(s: &mut S, n: u64, check: &mut Check, who: &str) {
    let end = check.pos + n;
    while check.pos < end {
        let f = crate::ws::read_frame(s)
            .unwrap_or_else(|e| panic!("{who}: reading after {} bytes: {e}", check.pos));
        match f.opcode {
            2 => check.feed(&f.payload),
            9 | 10 => {}
            op => panic!(
                "{who}: unexpected frame {op} ({:?}) after {} bytes",
                String::from_utf8_lossy(&f.payload),
                check.pos
            ),
        }
    }
    assert_eq!(check.pos, end, "{who}: more bytes came back than were sent");
}
