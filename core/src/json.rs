//! Strict JSON validation: RFC 8259 plus the I-JSON rules that matter for safety.
//!
//! Well-formed UTF-8 only (no BOM, overlongs or encoded surrogates), no raw control
//! characters in strings, escapes checked and `\u` surrogates paired, the exact number
//! grammar, only space/tab/CR/LF between tokens, exactly one value, and a nesting limit
//! tracked on a 128-bit stack instead of the call stack.
//!
//! The lexer is hand-written rather than built from `nom` combinators: the string loop
//! skips 16 ASCII bytes per step with one vector compare (`wide`: SSE2 on x86-64, chosen
//! at compile time, no run-time detection and no `unsafe` of ours), which is where a
//! JSON-RPC frame spends its time. The same [`Lexer`] serves
//! [`crate::rpc`], which walks the envelope while everything else is validated.

use crate::error::{Error, ErrorKind};
use crate::text::{RawStr, hex4};

/// Nesting limit used by [`validate`] and [`crate::scan`].
pub const DEFAULT_MAX_DEPTH: u8 = 64;
/// The largest nesting limit the bit stack can track.
pub const MAX_DEPTH: u8 = 127;

/// Validates `frame` as exactly one strict JSON value, nesting at most
/// [`DEFAULT_MAX_DEPTH`] deep.
pub fn validate(frame: &[u8]) -> Result<(), Error> {
    validate_with_depth(frame, DEFAULT_MAX_DEPTH)
}

/// [`validate`] with another nesting limit (clamped to 1..=[`MAX_DEPTH`]).
pub fn validate_with_depth(frame: &[u8], max_depth: u8) -> Result<(), Error> {
    let mut lx = Lexer::new(frame, max_depth);
    if lx.peek_non_ws().is_none() {
        return Err(Error::at(ErrorKind::Empty, lx.pos));
    }
    lx.skip_value(0)?;
    lx.expect_end()
}

#[cfg(test)]
const LO: u64 = 0x0101_0101_0101_0101;
#[cfg(test)]
const HI: u64 = 0x8080_8080_8080_8080;

/// Bytes of `w` (little-endian lanes) that a string cannot skip: a quote, a backslash,
/// a control character or a non-ASCII byte. The lowest flagged lane is always exact.
/// (The scalar reference for [`special_lanes16`], kept for its tests.)
#[cfg(test)]
#[inline(always)]
const fn special_lanes(w: u64) -> u64 {
    let quote = w ^ (LO * b'"' as u64);
    let backslash = w ^ (LO * b'\\' as u64);
    let zero_quote = quote.wrapping_sub(LO) & !quote;
    let zero_backslash = backslash.wrapping_sub(LO) & !backslash;
    let control = w.wrapping_sub(LO * 0x20) & !w;
    (zero_quote | zero_backslash | control | w) & HI
}

/// The same test on 16 bytes at once with a vector (SSE2 on x86-64, chosen at compile
/// time; `wide` falls back to scalar code elsewhere): bit n of the first mask is set
/// when byte n is special, bit n of the second when it is a quote. Every lane is exact,
/// not only the lowest: the string loop walks all flagged lanes of a chunk.
#[inline(always)]
fn special_lanes16(chunk: [u8; 16]) -> (u32, u32) {
    use wide::u8x16;
    let v = u8x16::from(chunk);
    let quote = v.simd_eq(u8x16::splat(b'"'));
    let backslash = v.simd_eq(u8x16::splat(b'\\'));
    let control = v.min(u8x16::splat(0x1F)).simd_eq(v);
    (
        (quote | backslash | control).to_bitmask() | v.to_bitmask(),
        quote.to_bitmask(),
    )
}

/// True when the first special byte [`special_lanes16`] found is a quote: the string
/// closes there, and the mask says so without reading the byte again.
#[inline(always)]
fn closes_first(lanes: u32, quotes: u32) -> bool {
    quotes & lanes & lanes.wrapping_neg() != 0
}

/// A member name: its text and, when it is unescaped and at most 15 bytes, its bytes
/// packed little-endian into a word with the length in the top byte (else 0), so names
/// are matched by one compare. (The length keeps `"a\u0000"` apart from `"a"`.)
#[derive(Clone, Copy, Debug)]
pub(crate) struct Key<'a> {
    pub(crate) text: RawStr<'a>,
    pub(crate) word: u128,
}

/// `name` packed as [`Key::word`] packs it (names longer than 16 bytes pack to 0).
pub(crate) const fn pack(name: &[u8]) -> u128 {
    if name.is_empty() || name.len() > 15 {
        return 0;
    }
    let mut word = 0u128;
    let mut rest = name;
    while let [head @ .., last] = rest {
        word = word << 8 | *last as u128;
        rest = head;
    }
    word | (name.len() as u128) << 120
}

/// Packs `raw`, which starts at `start` in `bytes`: one 16-byte load, masked, when the
/// frame has 16 bytes there, else byte by byte.
#[inline]
fn pack_at(bytes: &[u8], start: usize, raw: &[u8]) -> u128 {
    let len = raw.len();
    if len == 0 || len > 15 {
        return 0;
    }
    match bytes
        .get(start..start + 16)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
    {
        Some(chunk) => {
            u128::from_le_bytes(chunk) & (u128::MAX >> (8 * (16 - len))) | (len as u128) << 120
        }
        None => pack(raw),
    }
}

/// A cursor over one frame.
#[derive(Clone, Debug)]
pub(crate) struct Lexer<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
    max_depth: u8,
    /// Lone `\u` surrogate escapes pass (the server side's lax check, [`crate::lax`]).
    lone_surrogates: bool,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(bytes: &'a [u8], max_depth: u8) -> Self {
        Self {
            bytes,
            pos: 0,
            max_depth: max_depth.clamp(1, MAX_DEPTH),
            lone_surrogates: false,
        }
    }

    /// A lexer that lets lone `\u` surrogate escapes pass, at the deepest nesting.
    pub(crate) fn lax(bytes: &'a [u8]) -> Self {
        Self {
            lone_surrogates: true,
            ..Self::new(bytes, MAX_DEPTH)
        }
    }

    pub(crate) fn at(&self, pos: usize) -> Self {
        Self {
            bytes: self.bytes,
            pos,
            max_depth: self.max_depth,
            lone_surrogates: self.lone_surrogates,
        }
    }

    pub(crate) fn err(&self, kind: ErrorKind) -> Error {
        Error::at(kind, self.pos)
    }

    /// Skips whitespace and returns the next byte without consuming it.
    #[inline(always)]
    pub(crate) fn peek_non_ws(&mut self) -> Option<u8> {
        while let Some(&b) = self.bytes.get(self.pos) {
            if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
                self.pos += 1;
            } else {
                return Some(b);
            }
        }
        None
    }

    /// Like [`Self::peek_non_ws`], but the end of the frame is an error.
    #[inline(always)]
    pub(crate) fn next_token(&mut self) -> Result<u8, Error> {
        self.peek_non_ws()
            .ok_or_else(|| self.err(ErrorKind::UnexpectedEnd))
    }

    /// Only whitespace may follow the value.
    pub(crate) fn expect_end(&mut self) -> Result<(), Error> {
        match self.peek_non_ws() {
            None => Ok(()),
            Some(_) => Err(self.err(ErrorKind::TrailingData)),
        }
    }

    /// Reads `"key"` and the `:` after it; the cursor is at the opening quote.
    #[inline(always)]
    pub(crate) fn member_key(&mut self) -> Result<Key<'a>, Error> {
        if self.bytes.get(self.pos) != Some(&b'"') {
            return Err(self.err(ErrorKind::UnexpectedByte));
        }
        let start = self.pos + 1;
        let text = self.string()?;
        let word = if text.has_escapes() {
            0
        } else {
            pack_at(self.bytes, start, text.raw())
        };
        if self.next_token()? != b':' {
            return Err(self.err(ErrorKind::UnexpectedByte));
        }
        self.pos += 1;
        Ok(Key { text, word })
    }

    /// Skips `"key"` and the `:` after it (the cursor is at the opening quote), when
    /// only validity matters.
    #[inline(always)]
    fn skip_key(&mut self) -> Result<(), Error> {
        if self.bytes.get(self.pos) != Some(&b'"') {
            return Err(self.err(ErrorKind::UnexpectedByte));
        }
        self.string()?;
        if self.next_token()? != b':' {
            return Err(self.err(ErrorKind::UnexpectedByte));
        }
        self.pos += 1;
        Ok(())
    }

    /// After a member value: `,` then the next key (`Some`), or `}` (`None`).
    #[inline(always)]
    pub(crate) fn next_member(&mut self) -> Result<Option<Key<'a>>, Error> {
        match self.next_token()? {
            b',' => {
                self.pos += 1;
                self.next_token()?;
                self.member_key().map(Some)
            }
            b'}' => {
                self.pos += 1;
                Ok(None)
            }
            _ => Err(self.err(ErrorKind::UnexpectedByte)),
        }
    }

    /// The cursor is at `{`: consumes it and reads the first key, `None` for `{}`.
    #[inline(always)]
    pub(crate) fn open_object(&mut self) -> Result<Option<Key<'a>>, Error> {
        self.pos += 1;
        if self.next_token()? == b'}' {
            self.pos += 1;
            Ok(None)
        } else {
            self.member_key().map(Some)
        }
    }

    /// Reads a string; the cursor is at its opening quote.
    #[inline(always)]
    pub(crate) fn string(&mut self) -> Result<RawStr<'a>, Error> {
        // Most strings are short plain ASCII: one vector compare finds the closing
        // quote, inline; anything else takes the general loop.
        let start = self.pos + 1;
        if let Some(chunk) = self
            .bytes
            .get(start..start + 16)
            .and_then(|c| <[u8; 16]>::try_from(c).ok())
        {
            let (lanes, quotes) = special_lanes16(chunk);
            if closes_first(lanes, quotes) {
                let end = start + lanes.trailing_zeros() as usize;
                self.pos = end + 1;
                let raw = self.bytes.get(start..end).unwrap_or_default();
                return Ok(RawStr::new(raw, false));
            }
            if lanes == 0 {
                // Sixteen ordinary bytes: the loop goes on after them.
                return self.string_loop(start + 16);
            }
        }
        self.string_loop(start)
    }

    /// [`Self::string`] for strings longer than 15 bytes or holding an escape, a
    /// control or a non-ASCII byte; the bytes before `from` are known to be ordinary.
    #[inline(never)]
    fn string_loop(&mut self, from: usize) -> Result<RawStr<'a>, Error> {
        let bytes = self.bytes;
        let start = self.pos + 1;
        let mut i = from;
        let mut escaped = false;
        loop {
            // Sixteen bytes at a time: ordinary chunks are skipped in a tight loop; in
            // the first chunk that is not, one vector compare has flagged every special
            // byte, and they are handled in order from that one mask (escape-dense text,
            // such as source code, has several per chunk).
            let mut found = None;
            while let Some(chunk) = bytes
                .get(i..i + 16)
                .and_then(|c| <[u8; 16]>::try_from(c).ok())
            {
                let (lanes, quotes) = special_lanes16(chunk);
                if lanes != 0 {
                    found = Some((chunk, lanes, quotes));
                    break;
                }
                i += 16;
            }
            if let Some((chunk, mut lanes, quotes)) = found {
                let base = i;
                i += 16;
                while lanes != 0 {
                    let first = lanes.trailing_zeros() as usize;
                    let at = base + first;
                    // The closing quote, known from the mask without reading it again.
                    if quotes & (1 << first) != 0 {
                        self.pos = at + 1;
                        let raw = bytes.get(start..at).unwrap_or_default();
                        return Ok(RawStr::new(raw, escaped));
                    }
                    let next = match chunk.get(first).copied().unwrap_or(0) {
                        b'\\' => {
                            escaped = true;
                            // The two-byte escapes (nearly all of them) without a call.
                            if bytes.get(at + 1).is_some_and(|&e| short_escape(e)) {
                                at + 2
                            } else {
                                escape_end(bytes, at, self.lone_surrogates)
                                    .map_err(|kind| Error::at(kind, at))?
                            }
                        }
                        0x80..=0xFF => {
                            utf8_end(bytes, at).ok_or(Error::at(ErrorKind::InvalidUtf8, at))?
                        }
                        _ => return Err(Error::at(ErrorKind::ControlInString, at)),
                    };
                    // What that sequence covered is done: later lanes of the chunk only.
                    let done = next - base;
                    if done >= 16 {
                        i = next;
                        break;
                    }
                    lanes &= u32::MAX << done;
                }
                continue;
            }
            // The last bytes, fewer than sixteen.
            let Some(&c) = bytes.get(i) else {
                self.pos = i;
                return Err(self.err(ErrorKind::UnexpectedEnd));
            };
            match c {
                b'"' => {
                    self.pos = i + 1;
                    let raw = bytes.get(start..i).unwrap_or_default();
                    return Ok(RawStr::new(raw, escaped));
                }
                b'\\' => {
                    escaped = true;
                    i = escape_end(bytes, i, self.lone_surrogates)
                        .map_err(|kind| Error::at(kind, i))?;
                }
                0x00..=0x1F => return Err(Error::at(ErrorKind::ControlInString, i)),
                0x80..=0xFF => {
                    i = utf8_end(bytes, i).ok_or(Error::at(ErrorKind::InvalidUtf8, i))?;
                }
                _ => i += 1,
            }
        }
    }

    /// Reads a number in the exact JSON grammar; the cursor is at `-` or a digit.
    pub(crate) fn number(&mut self) -> Result<(), Error> {
        let bytes = self.bytes;
        let start = self.pos;
        let mut i = start;
        let digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
        let bad = |i: usize| Err(Error::at(ErrorKind::InvalidNumber, i));
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
        match bytes.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits_end(bytes, i + 1),
            _ => return bad(i),
        }
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            if !digit(i) {
                return bad(i);
            }
            i = digits_end(bytes, i);
        }
        if matches!(bytes.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(bytes.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digit(i) {
                return bad(i);
            }
            i = digits_end(bytes, i);
        }
        // "01", "1.2.3", "1e5e5", "2x": the number is malformed, not merely followed by junk.
        if matches!(
            bytes.get(i),
            Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
        ) || bytes.get(i).is_some_and(u8::is_ascii_alphabetic)
        {
            return bad(i);
        }
        self.pos = i;
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), Error> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end) == Some(word)
            && !self.bytes.get(end).is_some_and(u8::is_ascii_alphanumeric)
        {
            self.pos = end;
            Ok(())
        } else {
            Err(self.err(ErrorKind::InvalidLiteral))
        }
    }

    /// Validates one value at the cursor (after whitespace). `depth` is how many
    /// containers enclose it. Iterative: the open containers live on a bit stack.
    pub(crate) fn skip_value(&mut self, depth: u8) -> Result<(), Error> {
        // Bit n of `stack` is set when the container n levels down is an object.
        let mut stack: u128 = 0;
        let mut open: u8 = 0;
        'value: loop {
            match self.next_token()? {
                b'{' => {
                    self.push(depth, &mut open)?;
                    stack = stack << 1 | 1;
                    self.pos += 1;
                    if self.next_token()? == b'}' {
                        self.pos += 1;
                        open -= 1;
                        stack >>= 1;
                    } else {
                        self.skip_key()?;
                        continue 'value;
                    }
                }
                b'[' => {
                    self.push(depth, &mut open)?;
                    stack <<= 1;
                    self.pos += 1;
                    if self.next_token()? == b']' {
                        self.pos += 1;
                        open -= 1;
                        stack >>= 1;
                    } else {
                        continue 'value;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b'-' | b'0'..=b'9' => self.number()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'N' | b'I' => return Err(self.err(ErrorKind::InvalidNumber)),
                _ => return Err(self.err(ErrorKind::UnexpectedByte)),
            }
            // A value is complete: close containers until one expects more.
            while open > 0 {
                let in_object = stack & 1 == 1;
                match self.next_token()? {
                    b',' => {
                        self.pos += 1;
                        if in_object {
                            self.next_token()?;
                            self.skip_key()?;
                        }
                        continue 'value;
                    }
                    b'}' if in_object => {}
                    b']' if !in_object => {}
                    _ => return Err(self.err(ErrorKind::UnexpectedByte)),
                }
                self.pos += 1;
                open -= 1;
                stack >>= 1;
            }
            return Ok(());
        }
    }

    fn push(&self, depth: u8, open: &mut u8) -> Result<(), Error> {
        *open += 1;
        if u16::from(depth) + u16::from(*open) > u16::from(self.max_depth) {
            Err(self.err(ErrorKind::TooDeep))
        } else {
            Ok(())
        }
    }

    /// True when `depth` enclosing containers plus one more would exceed the limit.
    pub(crate) fn too_deep(&self, depth: u8) -> bool {
        depth >= self.max_depth
    }
}

/// The index of the first byte at or after `i` that is not an ASCII digit, eight bytes
/// at a time: a digit (0x30..=0x39) has the high nibble 3, and adding 6 to its low
/// nibble does not carry out of it (nor, at most 21, out of the byte).
#[inline(always)]
fn digits_end(bytes: &[u8], mut i: usize) -> usize {
    const NIBBLES_HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const NIBBLES_LOW: u64 = 0x0F0F_0F0F_0F0F_0F0F;
    while let Some(word) = bytes
        .get(i..i + 8)
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
    {
        let w = u64::from_le_bytes(word);
        let high = (w & NIBBLES_HIGH) ^ 0x3030_3030_3030_3030;
        let low = ((w & NIBBLES_LOW) + 0x0606_0606_0606_0606) & NIBBLES_HIGH;
        let not_digit = high | low;
        if not_digit != 0 {
            return i + (not_digit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// Whether `e` ends a two-byte escape (`\"` `\\` `\/` `\b` `\f` `\n` `\r` `\t`).
#[inline(always)]
const fn short_escape(e: u8) -> bool {
    matches!(e, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't')
}

/// Checks the escape at `i` (a backslash) and returns the index after it.
#[inline]
fn escape_end(bytes: &[u8], i: usize, lone_surrogates: bool) -> Result<usize, ErrorKind> {
    match bytes.get(i + 1) {
        Some(&e) if short_escape(e) => Ok(i + 2),
        Some(b'u') => {
            let cp = hex4(bytes.get(i + 2..i + 6)).ok_or(ErrorKind::InvalidEscape)?;
            if lone_surrogates {
                // Any four hex digits; a pair is two such escapes.
                return Ok(i + 6);
            }
            match cp {
                0xD800..=0xDBFF => {
                    if bytes.get(i + 6..i + 8) != Some(b"\\u") {
                        return Err(ErrorKind::LoneSurrogate);
                    }
                    match hex4(bytes.get(i + 8..i + 12)) {
                        Some(0xDC00..=0xDFFF) => Ok(i + 12),
                        Some(_) => Err(ErrorKind::LoneSurrogate),
                        None => Err(ErrorKind::InvalidEscape),
                    }
                }
                0xDC00..=0xDFFF => Err(ErrorKind::LoneSurrogate),
                _ => Ok(i + 6),
            }
        }
        None => Err(ErrorKind::UnexpectedEnd),
        Some(_) => Err(ErrorKind::InvalidEscape),
    }
}

/// Checks the multi-byte UTF-8 sequence at `i` (Unicode Table 3-7) and returns the
/// index after it.
#[inline]
fn utf8_end(bytes: &[u8], i: usize) -> Option<usize> {
    let cont = |j: usize| {
        bytes
            .get(i + j)
            .is_some_and(|&b| (0x80..=0xBF).contains(&b))
    };
    let in_range =
        |j: usize, lo: u8, hi: u8| bytes.get(i + j).is_some_and(|&b| (lo..=hi).contains(&b));
    let ok = match *bytes.get(i)? {
        0xC2..=0xDF => return cont(1).then_some(i + 2),
        0xE0 => in_range(1, 0xA0, 0xBF) && cont(2),
        0xE1..=0xEC | 0xEE..=0xEF => cont(1) && cont(2),
        0xED => in_range(1, 0x80, 0x9F) && cont(2),
        0xF0 => return (in_range(1, 0x90, 0xBF) && cont(2) && cont(3)).then_some(i + 4),
        0xF1..=0xF3 => return (cont(1) && cont(2) && cont(3)).then_some(i + 4),
        0xF4 => return (in_range(1, 0x80, 0x8F) && cont(2) && cont(3)).then_some(i + 4),
        _ => false,
    };
    ok.then_some(i + 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_and_scalar_lanes_agree() {
        for byte in 0..=255u8 {
            for pos in 0..16 {
                let mut chunk = *b"abcdefghijklmnop";
                chunk[pos] = byte;
                let scalar = u32::from(
                    special_lanes(u64::from_le_bytes(chunk[..8].try_into().unwrap())) != 0,
                ) | u32::from(
                    special_lanes(u64::from_le_bytes(chunk[8..].try_into().unwrap())) != 0,
                );
                let (vector, quotes) = special_lanes16(chunk);
                assert_eq!(quotes != 0, chunk.contains(&b'"'));
                assert_eq!(vector != 0, scalar != 0, "{byte:#x} at {pos}");
                if vector != 0 {
                    assert_eq!(vector.trailing_zeros(), pos as u32);
                }
            }
        }
    }

    /// Every lane of both masks, with several special bytes in one chunk (the string
    /// loop walks them all from one mask).
    #[test]
    fn every_lane_of_the_masks_is_exact() {
        let alphabet = [
            b'a', b'"', b'\\', 0x00, 0x1F, 0x20, 0x7F, 0x80, 0xC3, 0xFF, b'u',
        ];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            let mut chunk = [0u8; 16];
            for byte in chunk.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *byte = alphabet[(seed % alphabet.len() as u64) as usize];
            }
            let (lanes, quotes) = special_lanes16(chunk);
            for (n, &b) in chunk.iter().enumerate() {
                let special = b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b);
                assert_eq!(lanes >> n & 1 == 1, special, "{chunk:?} lane {n}");
                assert_eq!(quotes >> n & 1 == 1, b == b'"', "{chunk:?} lane {n}");
            }
            assert_eq!(lanes >> 16, 0);
        }
    }

    #[test]
    fn strings_read_alike_on_the_short_path_and_the_loop() {
        extern crate std;
        use std::{string::String, vec};
        // Every length around the 16-byte fast path, with each kind of special byte at
        // each position: the result must be the general loop's and serde_json's.
        let specials: &[&[u8]] = &[
            b"\\\"",
            b"\\u00e9",
            b"\\n",
            b"\xC3\xA9",
            b"\x7f",
            b"\x01",
            b"\xFF",
            b"\\x",
            b"\"",
        ];
        for len in 0..40 {
            for at in 0..=len {
                for special in specials {
                    let mut body = vec![b'a'; len];
                    body.splice(at..at, special.iter().copied());
                    let mut frame = vec![b'"'];
                    frame.extend_from_slice(&body);
                    frame.extend_from_slice(b"\" ");
                    let theirs = serde_json::from_slice::<serde_json::Value>(&frame).is_ok();
                    let mut lx = Lexer::new(&frame, 8);
                    let fast = lx.string().map(|s| (s.raw(), lx.pos));
                    let mut slow_lx = Lexer::new(&frame, 8);
                    let slow = slow_lx.string_loop(1).map(|s| (s.raw(), slow_lx.pos));
                    assert_eq!(fast, slow, "{:?}", String::from_utf8_lossy(&frame));
                    let whole = validate(&frame).is_ok();
                    assert_eq!(whole, theirs, "{:?}", String::from_utf8_lossy(&frame));
                }
            }
        }
    }

    #[test]
    fn digit_runs_end_at_the_first_other_byte() {
        for len in 0..20 {
            for at in 0..=len {
                for byte in 0..=255u8 {
                    let mut text = [b'7'; 20];
                    let text = &mut text[..len];
                    if let Some(b) = text.get_mut(at) {
                        *b = byte;
                    }
                    let want = text.iter().position(|b| !b.is_ascii_digit()).unwrap_or(len);
                    assert_eq!(digits_end(text, 0), want, "{byte:#x} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn special_lanes_find_the_first_special_byte() {
        for pos in 0..8 {
            for special in [b'"', b'\\', 0x00, 0x1F, 0x80, 0xFF] {
                let mut w = *b"abcdefgh";
                w[pos] = special;
                let lanes = special_lanes(u64::from_le_bytes(w));
                assert_eq!(
                    lanes.trailing_zeros() / 8,
                    pos as u32,
                    "{special:#x} at {pos}"
                );
            }
        }
        assert_eq!(special_lanes(u64::from_le_bytes(*b" ~!#[]{}")), 0);
    }

    #[test]
    fn packed_keys_match_only_their_name() {
        let frame = br#""method":1,"method\u0000":2,"progressToken":3,"m":4"#;
        let mut lx = Lexer::new(frame, 8);
        let method = lx.member_key().unwrap();
        assert_eq!(method.word, pack(b"method"));
        lx.pos = 11;
        let escaped = lx.member_key().unwrap();
        assert_eq!(escaped.word, 0, "escaped keys are packed after unescaping");
        assert_ne!(pack(b"method\0"), pack(b"method"));
        lx.pos = 28;
        assert_eq!(lx.member_key().unwrap().word, pack(b"progressToken"));
        lx.pos = 46;
        assert_eq!(
            lx.member_key().unwrap().word,
            pack(b"m"),
            "short tail: byte by byte"
        );
        assert_eq!(pack(b"sixteen-bytes-xx"), 0);
    }

    #[test]
    fn table() {
        let cases: &[(&[u8], Option<ErrorKind>)] = &[
            (b"{}", None),
            (
                b" [1, -0.5e+3, \"a\\u00e9\", true, false, null, {\"k\": []}] ",
                None,
            ),
            (b"\"\\ud83d\\ude00\"", None),
            (b"", Some(ErrorKind::Empty)),
            (b"  ", Some(ErrorKind::Empty)),
            (b"{", Some(ErrorKind::UnexpectedEnd)),
            (b"[1,]", Some(ErrorKind::UnexpectedByte)),
            (b"{\"a\":1,}", Some(ErrorKind::UnexpectedByte)),
            (b"01", Some(ErrorKind::InvalidNumber)),
            (b"1.", Some(ErrorKind::InvalidNumber)),
            (b".5", Some(ErrorKind::UnexpectedByte)),
            (b"-", Some(ErrorKind::InvalidNumber)),
            (b"NaN", Some(ErrorKind::InvalidNumber)),
            (b"-Infinity", Some(ErrorKind::InvalidNumber)),
            (b"tru", Some(ErrorKind::InvalidLiteral)),
            (b"1 2", Some(ErrorKind::TrailingData)),
            (b"\"\\ud800\"", Some(ErrorKind::LoneSurrogate)),
            (b"\"\\udc00\\ud800\"", Some(ErrorKind::LoneSurrogate)),
            (b"\"\\x\"", Some(ErrorKind::InvalidEscape)),
            (b"\"\x01\"", Some(ErrorKind::ControlInString)),
            (b"\xEF\xBB\xBF{}", Some(ErrorKind::UnexpectedByte)),
            (b"\"\xC0\xAF\"", Some(ErrorKind::InvalidUtf8)),
            (b"\"\xED\xA0\x80\"", Some(ErrorKind::InvalidUtf8)),
            (b"\"\xE2\x82\"", Some(ErrorKind::InvalidUtf8)),
            (b"\x0c{}", Some(ErrorKind::UnexpectedByte)),
        ];
        for (input, want) in cases {
            assert_eq!(
                validate(input).err().map(|e| e.kind),
                *want,
                "{:?}",
                core::str::from_utf8(input)
            );
        }
    }

    #[test]
    fn depth_limit_is_exact_and_fast() {
        let mut deep = [0u8; 200];
        deep[..64].fill(b'[');
        deep[64..128].fill(b']');
        assert!(validate(&deep[..128]).is_ok());
        deep[..65].fill(b'[');
        deep[65..130].fill(b']');
        assert_eq!(validate(&deep[..130]).unwrap_err().kind, ErrorKind::TooDeep);
        assert!(validate_with_depth(&deep[..130], 65).is_ok());
        deep.fill(b'[');
        assert_eq!(
            validate_with_depth(&deep, 255).unwrap_err().kind,
            ErrorKind::TooDeep
        );
    }
}
