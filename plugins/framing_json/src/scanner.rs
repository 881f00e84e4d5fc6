//! An incremental JSON value scanner: finds where the first JSON value of a
//! buffer ends, keeping its state between calls so that bytes are looked at
//! once however the value is split across reads. Iterative (an explicit
//! stack of open containers, one byte per level), so nesting depth costs no
//! native stack; depth is limited anyway.
//!
//! It validates RFC 8259 grammar, including string escapes and UTF-8 in
//! strings, but does not build anything.

/// Where the scan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// `data[..n]` is leading whitespace plus one complete value.
    Complete(usize),
    /// Everything so far is a valid prefix; more bytes are needed.
    Incomplete,
    /// `data[at]` cannot continue a valid value.
    Invalid(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value (top level, after `:`, after `,` in an array).
    Value,
    /// A value or `]` (just after `[`).
    ValueOrEnd,
    /// A key or `}` (just after `{`).
    KeyOrEnd,
    /// A key (after `,` in an object).
    Key,
    /// `:` after a key.
    Colon,
    /// `,` or the end of the innermost container.
    CommaOrEnd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    /// After `\`.
    Backslash,
    /// After `\u` and this many hex digits.
    Hex(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpInt,
}

impl Num {
    fn next(self, b: u8) -> Option<Num> {
        use Num::*;
        Some(match (self, b) {
            (Minus, b'0') => Zero,
            (Minus, b'1'..=b'9') | (Int, b'0'..=b'9') => Int,
            (Zero | Int, b'.') => Dot,
            (Dot | Frac, b'0'..=b'9') => Frac,
            (Zero | Int | Frac, b'e' | b'E') => Exp,
            (Exp, b'+' | b'-') => ExpSign,
            (Exp | ExpSign | ExpInt, b'0'..=b'9') => ExpInt,
            _ => return None,
        })
    }

    /// The number may end here.
    fn terminal(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpInt)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Between tokens.
    Between,
    /// Inside a string. `need` more UTF-8 continuation bytes are due, the
    /// next one in `lo..=hi`.
    Str {
        key: bool,
        esc: Esc,
        need: u8,
        lo: u8,
        hi: u8,
    },
    Num(Num),
    /// Inside `true`, `false` or `null`; `at` bytes matched.
    Lit {
        word: &'static [u8],
        at: u8,
    },
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The scanner; one per connection.
#[derive(Debug, Clone)]
pub struct Scanner {
    /// Bytes of the buffer already scanned.
    pos: usize,
    /// Open containers, innermost last: true for an object.
    stack: Vec<bool>,
    expect: Expect,
    lex: Lex,
    max_depth: usize,
}

impl Scanner {
    /// A scanner allowing `max_depth` nested containers.
    pub fn new(max_depth: usize) -> Scanner {
        Scanner {
            pos: 0,
            stack: Vec::new(),
            expect: Expect::Value,
            lex: Lex::Between,
            max_depth,
        }
    }

    /// Forget the current value: the next scan starts at the buffer's start.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.stack.clear();
        self.expect = Expect::Value;
        self.lex = Lex::Between;
    }

    /// At the end of the input, would the value be complete? (A top-level
    /// number can only be known complete once something follows it.)
    pub fn complete_at_end(&self) -> bool {
        matches!(self.lex, Lex::Num(n) if n.terminal()) && self.stack.is_empty()
    }

    /// A value ended at `end` (exclusive); `key` if it was an object key.
    fn value_end(&mut self, end: usize, key: bool) -> Option<Scan> {
        self.lex = Lex::Between;
        if key {
            self.expect = Expect::Colon;
            None
        } else if self.stack.is_empty() {
            Some(Scan::Complete(end))
        } else {
            self.expect = Expect::CommaOrEnd;
            None
        }
    }

    /// Scan `data`, the same buffer as on the previous call (minus nothing,
    /// plus new bytes at the end) until [`reset`](Self::reset).
    pub fn scan(&mut self, data: &[u8]) -> Scan {
        if self.pos > data.len() {
            // Not the buffer we saw: start over.
            self.reset();
        }
        let mut i = self.pos;
        while i < data.len() {
            let b = data[i];
            match self.lex {
                Lex::Str {
                    key,
                    esc,
                    need,
                    lo,
                    hi,
                } => {
                    let next = match esc {
                        Esc::Backslash => match b {
                            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Esc::None,
                            b'u' => Esc::Hex(0),
                            _ => return Scan::Invalid(i),
                        },
                        Esc::Hex(n) if b.is_ascii_hexdigit() => {
                            if n == 3 {
                                Esc::None
                            } else {
                                Esc::Hex(n + 1)
                            }
                        }
                        Esc::Hex(_) => return Scan::Invalid(i),
                        Esc::None if need > 0 => {
                            if !(lo..=hi).contains(&b) {
                                return Scan::Invalid(i);
                            }
                            self.lex = Lex::Str {
                                key,
                                esc,
                                need: need - 1,
                                lo: 0x80,
                                hi: 0xBF,
                            };
                            i += 1;
                            continue;
                        }
                        Esc::None => match b {
                            b'"' => {
                                i += 1;
                                if let Some(r) = self.value_end(i, key) {
                                    return r;
                                }
                                continue;
                            }
                            b'\\' => Esc::Backslash,
                            0x00..=0x1F => return Scan::Invalid(i),
                            0x20..=0x7F => Esc::None,
                            _ => {
                                let (need, lo, hi) = match b {
                                    0xC2..=0xDF => (1, 0x80, 0xBF),
                                    0xE0 => (2, 0xA0, 0xBF),
                                    0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
                                    0xED => (2, 0x80, 0x9F),
                                    0xF0 => (3, 0x90, 0xBF),
                                    0xF1..=0xF3 => (3, 0x80, 0xBF),
                                    0xF4 => (3, 0x80, 0x8F),
                                    _ => return Scan::Invalid(i),
                                };
                                self.lex = Lex::Str {
                                    key,
                                    esc: Esc::None,
                                    need,
                                    lo,
                                    hi,
                                };
                                i += 1;
                                continue;
                            }
                        },
                    };
                    self.lex = Lex::Str {
                        key,
                        esc: next,
                        need,
                        lo,
                        hi,
                    };
                    i += 1;
                }
                Lex::Num(n) => match n.next(b) {
                    Some(next) => {
                        self.lex = Lex::Num(next);
                        i += 1;
                    }
                    // `01`: JSON has no leading zeros.
                    None if n == Num::Zero && b.is_ascii_digit() => return Scan::Invalid(i),
                    None if n.terminal() => {
                        // The number ended before `b`; look at `b` again.
                        if let Some(r) = self.value_end(i, false) {
                            return r;
                        }
                    }
                    None => return Scan::Invalid(i),
                },
                Lex::Lit { word, at } => {
                    if b != word[usize::from(at)] {
                        return Scan::Invalid(i);
                    }
                    i += 1;
                    if usize::from(at) + 1 == word.len() {
                        if let Some(r) = self.value_end(i, false) {
                            return r;
                        }
                    } else {
                        self.lex = Lex::Lit { word, at: at + 1 };
                    }
                }
                Lex::Between => {
                    i += 1;
                    if is_ws(b) {
                        continue;
                    }
                    let at = i - 1;
                    match self.expect {
                        Expect::ValueOrEnd if b == b']' => {
                            self.stack.pop();
                            if let Some(r) = self.value_end(i, false) {
                                return r;
                            }
                        }
                        Expect::Value | Expect::ValueOrEnd => match b {
                            b'{' | b'[' => {
                                if self.stack.len() >= self.max_depth {
                                    return Scan::Invalid(at);
                                }
                                self.stack.push(b == b'{');
                                self.expect = if b == b'{' {
                                    Expect::KeyOrEnd
                                } else {
                                    Expect::ValueOrEnd
                                };
                            }
                            b'"' => {
                                self.lex = Lex::Str {
                                    key: false,
                                    esc: Esc::None,
                                    need: 0,
                                    lo: 0,
                                    hi: 0,
                                }
                            }
                            b'-' => self.lex = Lex::Num(Num::Minus),
                            b'0' => self.lex = Lex::Num(Num::Zero),
                            b'1'..=b'9' => self.lex = Lex::Num(Num::Int),
                            b't' => {
                                self.lex = Lex::Lit {
                                    word: b"true",
                                    at: 1,
                                }
                            }
                            b'f' => {
                                self.lex = Lex::Lit {
                                    word: b"false",
                                    at: 1,
                                }
                            }
                            b'n' => {
                                self.lex = Lex::Lit {
                                    word: b"null",
                                    at: 1,
                                }
                            }
                            _ => return Scan::Invalid(at),
                        },
                        Expect::KeyOrEnd if b == b'}' => {
                            self.stack.pop();
                            if let Some(r) = self.value_end(i, false) {
                                return r;
                            }
                        }
                        Expect::KeyOrEnd | Expect::Key if b == b'"' => {
                            self.lex = Lex::Str {
                                key: true,
                                esc: Esc::None,
                                need: 0,
                                lo: 0,
                                hi: 0,
                            };
                        }
                        Expect::Colon if b == b':' => self.expect = Expect::Value,
                        Expect::CommaOrEnd => {
                            let object = *self
                                .stack
                                .last()
                                .expect("CommaOrEnd only inside a container");
                            match (b, object) {
                                (b',', true) => self.expect = Expect::Key,
                                (b',', false) => self.expect = Expect::Value,
                                (b'}', true) | (b']', false) => {
                                    self.stack.pop();
                                    if let Some(r) = self.value_end(i, false) {
                                        return r;
                                    }
                                }
                                _ => return Scan::Invalid(at),
                            }
                        }
                        _ => return Scan::Invalid(at),
                    }
                }
            }
        }
        self.pos = i;
        Scan::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(s: &[u8]) -> Scan {
        Scanner::new(64).scan(s)
    }

    #[test]
    fn values() {
        assert_eq!(scan(b"{}"), Scan::Complete(2));
        assert_eq!(scan(b"[]x"), Scan::Complete(2));
        assert_eq!(
            scan(b" \t\r\n{\"a\" : [1, 2.5e-3, -0, true, false, null, \"x\"] }z"),
            Scan::Complete(52)
        );
        assert_eq!(
            scan(b"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\""),
            Scan::Complete(24)
        );
        assert_eq!(scan("\"é€𝄞\"".as_bytes()), Scan::Complete(11));
        assert_eq!(scan(b"nullx"), Scan::Complete(4));
        assert_eq!(scan(b"12 "), Scan::Complete(2));
        assert_eq!(scan(b"12,"), Scan::Complete(2));
        assert_eq!(scan(b"-0.5E+10]"), Scan::Complete(8));
    }

    #[test]
    fn incomplete() {
        for s in [
            &b""[..],
            b"   ",
            b"{",
            b"{\"a\"",
            b"{\"a\":",
            b"{\"a\":[1,",
            b"\"abc",
            b"\"a\\",
            b"\"a\\u00",
            b"\"\xc3",
            b"\"\xf0\x9f",
            b"tru",
            b"12",
            b"-",
            b"1.",
            b"1e",
            b"1e+",
            b"0",
            b"[1",
        ] {
            assert_eq!(
                scan(s),
                Scan::Incomplete,
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn invalid() {
        let cases: &[(&[u8], usize)] = &[
            (b"xyz", 0),
            (b"{\"a\" 1}", 5),
            (b"{a:1}", 1),
            (b"[1,]", 3),
            (b"{\"a\":1,}", 7),
            (b"[1 2]", 3),
            (b"{\"a\":1]", 6),
            (b"01", 1),
            (b"-a", 1),
            (b"1.e3", 2),
            (b"trux", 3),
            (b"\"a\\x\"", 3),
            (b"\"\\u12g4\"", 5),
            (b"\"a\tb\"", 2),
            (b"\"\xff\"", 1),
            (b"\"\xc3(\"", 2),
            (b"\"\xed\xa0\x80\"", 2),
            (b"\"\xe0\x80\x80\"", 2),
            (b"\"\xf4\x90\x80\x80\"", 2),
            (b"\xc3\xa9", 0),
            (b"}", 0),
            (b"]", 0),
            (b":", 0),
        ];
        for (s, at) in cases {
            assert_eq!(
                scan(s),
                Scan::Invalid(*at),
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn resumes_where_it_stopped() {
        let whole = b"{\"a\":[1,2,{\"b\":\"\xc3\xa9\\\"x\"}],\"c\":-12.5e+3}";
        for split in 0..whole.len() {
            let mut s = Scanner::new(64);
            assert_eq!(s.scan(&whole[..split]), Scan::Incomplete, "split {split}");
            assert_eq!(s.scan(whole), Scan::Complete(whole.len()), "split {split}");
        }
    }

    #[test]
    fn depth_limit_is_iterative() {
        let mut s = Scanner::new(100_000);
        let mut deep = vec![b'['; 100_000];
        deep.extend(vec![b']'; 100_000]);
        assert_eq!(s.scan(&deep), Scan::Complete(200_000));
        let mut s = Scanner::new(3);
        assert_eq!(s.scan(b"[[[]]]"), Scan::Complete(6));
        s.reset();
        assert_eq!(s.scan(b"[[[[]]]]"), Scan::Invalid(3));
    }

    #[test]
    fn complete_at_end() {
        let mut s = Scanner::new(8);
        assert_eq!(s.scan(b" 12.5"), Scan::Incomplete);
        assert!(s.complete_at_end());
        let mut s = Scanner::new(8);
        assert_eq!(s.scan(b"12."), Scan::Incomplete);
        assert!(!s.complete_at_end());
        let mut s = Scanner::new(8);
        assert_eq!(s.scan(b"[12"), Scan::Incomplete);
        assert!(!s.complete_at_end());
    }
}
