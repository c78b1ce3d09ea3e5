//! The canonical line: the bytes thoth writes for one frame are read as exactly one
//! line, holding exactly the value thoth decided, by every mainstream line reader.
//!
//! Readers of newline-delimited JSON-RPC do not agree on what ends a line:
//!
//! | class | splits on | who |
//! |---|---|---|
//! | a | `\n` (one trailing `\r` stripped) | TypeScript SDK, Go `bufio.Scanner`, rmcp, tokio-util `LinesCodec` |
//! | b | `\r`, `\n`, `\r\n` | Python `TextIOWrapper` (the Python MCP SDK), Java `readLine`, Node `readline` |
//! | c | b, and U+2028, U+2029 | JavaScript line readers that follow ECMAScript's line terminators |
//! | d | c, and `\v`, `\f`, `\x1c`–`\x1e`, U+0085 | Python `str.splitlines()` |
//! | e | nothing: a stream of JSON values | Go `encoding/json.Decoder`, serde_json `StreamDeserializer` |
//!
//! A frame that thoth has validated can still hold bytes that some class treats as a
//! line break: a raw CR is JSON whitespace, and U+2028, U+2029 and U+0085 may sit raw
//! inside strings. (`\v`, `\f` and `\x1c`–`\x1e` cannot: raw control characters are
//! invalid both between tokens and inside strings, so a valid frame never has them.)
//! A universal-newline reader would split `{"a":<CR>{…another request…}<CR>}` into three
//! lines and run the middle one, which thoth decided as part of a harmless value.
//!
//! The rule, applied to every frame thoth writes (after validation, so the context of
//! each byte is known without re-parsing):
//!
//! - a raw CR becomes a space: in a valid frame it can only be whitespace, and so can
//!   a space — the value is unchanged;
//! - raw U+2028, U+2029 and U+0085 become the escapes `\u2028`, `\u2029`, `\u0085`: in
//!   a valid frame they can only be inside strings, where the escape means the same
//!   character — the value is unchanged.
//!
//! Nothing else is touched, and a frame without any of these bytes (almost all of
//! them) is written as it came, without a copy. The frame's terminator is a bare `\n`,
//! which every class ends the line at. What the rule must never do is change a value:
//! each substitution is counted ([`Rewrites`]) so the caller can report it.
//!
//! [`LineRewriter`] applies the same rule to a line that arrives in pieces (the server
//! → client relay streams lines too long to hold), carrying a sequence cut between two
//! pieces over to the next.

/// How many substitutions the canonical line made in a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rewrites {
    /// Raw CRs written as spaces.
    pub carriage_returns: u32,
    /// Raw U+2028, U+2029 or U+0085 written as `\u` escapes.
    pub separators: u32,
}

impl Rewrites {
    /// True when nothing was substituted.
    pub const fn is_empty(&self) -> bool {
        self.carriage_returns == 0 && self.separators == 0
    }

    /// Adds `other`'s counts (saturating).
    pub fn add(&mut self, other: Rewrites) {
        self.carriage_returns = self.carriage_returns.saturating_add(other.carriage_returns);
        self.separators = self.separators.saturating_add(other.separators);
    }
}

/// What one byte sequence at the start of `bytes` is rewritten to, and its length.
#[inline]
fn substitute(bytes: &[u8]) -> Option<(&'static [u8], usize)> {
    match bytes {
        [b'\r', ..] => Some((b" ", 1)),
        [0xE2, 0x80, 0xA8, ..] => Some((b"\\u2028", 3)),
        [0xE2, 0x80, 0xA9, ..] => Some((b"\\u2029", 3)),
        [0xC2, 0x85, ..] => Some((b"\\u0085", 2)),
        _ => None,
    }
}

/// The next byte at or after `from` that may start a substitution.
#[inline]
fn next_candidate(frame: &[u8], from: usize) -> Option<usize> {
    let rest = frame.get(from..)?;
    memchr::memchr3(b'\r', 0xE2, 0xC2, rest).map(|i| from + i)
}

/// True when `frame` holds a byte the canonical line rewrites.
pub fn needs_rewrite(frame: &[u8]) -> bool {
    let mut at = 0;
    while let Some(i) = next_candidate(frame, at) {
        if substitute(frame.get(i..).unwrap_or_default()).is_some() {
            return true;
        }
        at = i + 1;
    }
    false
}

/// The length of `frame`'s canonical form: larger than the frame when it holds
/// separators (U+0085 grows from 2 bytes to 6, U+2028 and U+2029 from 3 to 6), so a
/// caller that bounds what it writes bounds this, not the frame.
pub fn canonical_len(frame: &[u8]) -> usize {
    let mut len = 0usize;
    write_canonical(frame, |piece| len = len.saturating_add(piece.len()));
    len
}

/// Writes the canonical form of `frame` (a frame that passed validation, without its
/// terminator) through `emit`, in order, and returns what was substituted. The pieces
/// concatenated are the frame with each substitution of the module doc applied.
pub fn write_canonical(frame: &[u8], mut emit: impl FnMut(&[u8])) -> Rewrites {
    let mut rewrites = Rewrites::default();
    let mut done = 0;
    let mut at = 0;
    while let Some(i) = next_candidate(frame, at) {
        match substitute(frame.get(i..).unwrap_or_default()) {
            Some((with, len)) => {
                emit(frame.get(done..i).unwrap_or_default());
                emit(with);
                count(&mut rewrites, len);
                done = i + len;
                at = done;
            }
            None => at = i + 1,
        }
    }
    emit(frame.get(done..).unwrap_or_default());
    rewrites
}

fn count(rewrites: &mut Rewrites, len: usize) {
    if len == 1 {
        rewrites.carriage_returns = rewrites.carriage_returns.saturating_add(1);
    } else {
        rewrites.separators = rewrites.separators.saturating_add(1);
    }
}

/// The first bytes of a separator cut at the end of a piece.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Carry {
    #[default]
    None,
    E2,
    E2x80,
    C2,
}

impl Carry {
    fn bytes(self) -> &'static [u8] {
        match self {
            Carry::None => b"",
            Carry::E2 => b"\xE2",
            Carry::E2x80 => b"\xE2\x80",
            Carry::C2 => b"\xC2",
        }
    }

    /// What `piece` leaves to carry over: the start of a separator at its very end.
    fn at_end_of(piece: &[u8]) -> Carry {
        match piece {
            [.., 0xE2, 0x80] => Carry::E2x80,
            [.., 0xE2] => Carry::E2,
            [.., 0xC2] => Carry::C2,
            _ => Carry::None,
        }
    }
}

/// The canonical line over a line that arrives in pieces.
#[derive(Clone, Debug, Default)]
pub struct LineRewriter {
    carry: Carry,
    rewrites: Rewrites,
}

impl LineRewriter {
    /// A rewriter at the start of a line.
    pub const fn new() -> Self {
        Self {
            carry: Carry::None,
            rewrites: Rewrites {
                carriage_returns: 0,
                separators: 0,
            },
        }
    }

    /// Writes the canonical form of the next piece through `emit`. Up to two bytes that
    /// may begin a separator finished by the next piece are held back until then.
    pub fn feed(&mut self, piece: &[u8], mut emit: impl FnMut(&[u8])) {
        let mut piece = piece;
        // Finish, or give up, the separator the last piece began.
        while self.carry != Carry::None {
            let Some((&next, rest)) = piece.split_first() else {
                return;
            };
            let separator: Option<&'static [u8]> = match (self.carry, next) {
                (Carry::E2, 0x80) => {
                    self.carry = Carry::E2x80;
                    piece = rest;
                    continue;
                }
                (Carry::E2x80, 0xA8) => Some(b"\\u2028"),
                (Carry::E2x80, 0xA9) => Some(b"\\u2029"),
                (Carry::C2, 0x85) => Some(b"\\u0085"),
                _ => None,
            };
            match separator {
                Some(with) => {
                    emit(with);
                    count(&mut self.rewrites, 2);
                    piece = rest;
                }
                // Not a separator after all: the held bytes go out as they were.
                None => emit(self.carry.bytes()),
            }
            self.carry = Carry::None;
        }
        let carry = Carry::at_end_of(piece);
        let now = piece
            .get(..piece.len() - carry.bytes().len())
            .unwrap_or_default();
        let rewrites = write_canonical(now, &mut emit);
        self.rewrites.add(rewrites);
        self.carry = carry;
    }

    /// Ends the line: writes the held bytes, if any, and returns what was substituted
    /// in the whole line. The rewriter is ready for the next line.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) -> Rewrites {
        if self.carry != Carry::None {
            emit(self.carry.bytes());
        }
        let rewrites = self.rewrites;
        *self = Self::new();
        rewrites
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    fn canonical(frame: &[u8]) -> (Vec<u8>, Rewrites) {
        let mut out = Vec::new();
        let rewrites = write_canonical(frame, |p| out.extend_from_slice(p));
        (out, rewrites)
    }

    #[test]
    fn table() {
        let cr = |n| Rewrites {
            carriage_returns: n,
            separators: 0,
        };
        let sep = |n| Rewrites {
            carriage_returns: 0,
            separators: n,
        };
        // (frame, canonical form, substitutions)
        let cases: &[(&[u8], &[u8], Rewrites)] = &[
            (b"{}", b"{}", Rewrites::default()),
            (b"{\r}", b"{ }", cr(1)),
            (b"\r{\"a\":\r1\r}\r", b" {\"a\": 1 } ", cr(4)),
            ("\"a\u{2028}b\"".as_bytes(), b"\"a\\u2028b\"", sep(1)),
            (
                "\"\u{2029}\u{85}\"".as_bytes(),
                b"\"\\u2029\\u0085\"",
                sep(2),
            ),
            // Characters that share a lead byte with a separator are left alone.
            (
                "\"\u{2026}\u{e9}\u{80}\"".as_bytes(),
                "\"\u{2026}\u{e9}\u{80}\"".as_bytes(),
                Rewrites::default(),
            ),
            (
                "\"\u{2028}\"\r".as_bytes(),
                b"\"\\u2028\" ",
                Rewrites {
                    carriage_returns: 1,
                    separators: 1,
                },
            ),
        ];
        for (frame, want, rewrites) in cases {
            let (out, got) = canonical(frame);
            assert_eq!(out, *want, "{frame:?}");
            assert_eq!(got, *rewrites, "{frame:?}");
            assert_eq!(needs_rewrite(frame), !rewrites.is_empty(), "{frame:?}");
            assert_eq!(canonical_len(frame), want.len(), "{frame:?}");
        }
    }

    #[test]
    fn values_are_unchanged() {
        let frames: &[&str] = &[
            "{\"a\":\r\"x\u{2028}y\u{2029}z\u{85}\"\r,\"\u{2028}\":[\r1]}",
            "[\r{\"jsonrpc\":\"2.0\",\"method\":\"m\"}\r]",
        ];
        for frame in frames {
            let (out, _) = canonical(frame.as_bytes());
            let before: serde_json::Value = serde_json::from_str(frame).unwrap();
            let after: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(before, after);
            assert!(!needs_rewrite(&out));
        }
    }

    const PARTS: &[&[u8]] = &[
        b"\r", b"\xE2", b"\x80", b"\xA8", b"\xA9", b"\xC2", b"\x85", b"a", b"\"",
    ];

    proptest::proptest! {
        /// However a line is cut into pieces, the streaming rewriter writes what the
        /// whole-frame one does.
        #[test]
        fn pieces_rewrite_like_the_whole(
            parts in proptest::collection::vec(
                proptest::sample::select(PARTS),
                0..40,
            ),
            cuts in proptest::collection::vec(0usize..40, 0..6),
        ) {
            let line: Vec<u8> = parts.concat();
            let (whole, whole_rewrites) = canonical(&line);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(line.len())).collect();
            cuts.sort_unstable();
            let mut out = Vec::new();
            let mut rewriter = LineRewriter::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([line.len()]) {
                rewriter.feed(&line[from..cut], |p| out.extend_from_slice(p));
                from = cut;
            }
            let rewrites = rewriter.finish(|p| out.extend_from_slice(p));
            proptest::prop_assert_eq!(out, whole);
            proptest::prop_assert_eq!(rewrites, whole_rewrites);
        }
    }
}
