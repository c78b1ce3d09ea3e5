//! Zero-copy views of validated JSON strings.
//!
//! A [`RawStr`] is only ever made by the validator, so its bytes are known to be
//! well-formed UTF-8 with well-formed escapes; decoding still never panics if that
//! promise were broken, it yields U+FFFD instead.

/// The content of a JSON string between its quotes, still escaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawStr<'a> {
    raw: &'a [u8],
    escaped: bool,
}

impl<'a> RawStr<'a> {
    pub(crate) const fn new(raw: &'a [u8], escaped: bool) -> Self {
        Self { raw, escaped }
    }

    /// The escaped bytes between the quotes.
    pub const fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// True when the string holds at least one backslash escape.
    pub const fn has_escapes(&self) -> bool {
        self.escaped
    }

    /// The unescaped characters.
    pub fn chars(&self) -> Chars<'a> {
        Chars { rest: self.raw }
    }

    /// Compares the unescaped string with `s` without allocating.
    #[inline(always)]
    pub fn eq_str(&self, s: &str) -> bool {
        if self.escaped {
            self.chars_eq(s)
        } else {
            self.raw == s.as_bytes()
        }
    }

    #[inline(never)]
    fn chars_eq(&self, s: &str) -> bool {
        self.chars().eq(s.chars())
    }

    /// The string as `&str` when it has no escapes (then it is its own unescaping).
    pub fn as_unescaped_str(&self) -> Option<&'a str> {
        if self.escaped {
            None
        } else {
            core::str::from_utf8(self.raw).ok()
        }
    }

    /// Length in bytes of the unescaped string.
    pub fn unescaped_len(&self) -> usize {
        if self.escaped {
            self.chars().map(char::len_utf8).sum()
        } else {
            self.raw.len()
        }
    }

    /// Unescapes into `out` and returns the text, or `None` when `out` is too small.
    pub fn unescape_into<'b>(&self, out: &'b mut [u8]) -> Option<&'b str> {
        let mut len = 0usize;
        for c in self.chars() {
            let end = len.checked_add(c.len_utf8())?;
            let dst = out.get_mut(len..end)?;
            c.encode_utf8(dst);
            len = end;
        }
        core::str::from_utf8(out.get(..len)?).ok()
    }
}

/// Iterator over the unescaped characters of a [`RawStr`].
#[derive(Clone, Debug)]
pub struct Chars<'a> {
    rest: &'a [u8],
}

impl Iterator for Chars<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let (&first, after) = self.rest.split_first()?;
        if first == b'\\' {
            let (c, used) = decode_escape(after);
            self.rest = after.get(used..).unwrap_or_default();
            return Some(c);
        }
        if first < 0x80 {
            self.rest = after;
            return Some(char::from(first));
        }
        let len = match first {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            _ => 4,
        };
        let seq = self.rest.get(..len).unwrap_or(self.rest);
        self.rest = self.rest.get(seq.len()..).unwrap_or_default();
        Some(
            core::str::from_utf8(seq)
                .ok()
                .and_then(|s| s.chars().next())
                .unwrap_or(char::REPLACEMENT_CHARACTER),
        )
    }
}

/// Decodes the escape after a backslash; returns the char and the bytes used.
fn decode_escape(after: &[u8]) -> (char, usize) {
    let simple = match after.first() {
        Some(b'"') => '"',
        Some(b'\\') => '\\',
        Some(b'/') => '/',
        Some(b'b') => '\u{8}',
        Some(b'f') => '\u{c}',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(b'u') => {
            let Some(hi) = hex4(after.get(1..5)) else {
                return (char::REPLACEMENT_CHARACTER, after.len().min(5));
            };
            if (0xD800..0xDC00).contains(&hi) {
                if after.get(5..7) == Some(b"\\u")
                    && let Some(lo) = hex4(after.get(7..11))
                    && (0xDC00..0xE000).contains(&lo)
                {
                    let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    return (
                        char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER),
                        11,
                    );
                }
                return (char::REPLACEMENT_CHARACTER, 5);
            }
            return (char::from_u32(hi).unwrap_or(char::REPLACEMENT_CHARACTER), 5);
        }
        _ => char::REPLACEMENT_CHARACTER,
    };
    (simple, 1)
}

/// Reads four hex digits.
pub(crate) fn hex4(digits: Option<&[u8]>) -> Option<u32> {
    let digits = digits?;
    if digits.len() != 4 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        Some(acc << 4 | u32::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes() {
        let cases: &[(&[u8], &str)] = &[
            (b"plain", "plain"),
            (br"\u006dethod", "method"),
            (br"tools\/call", "tools/call"),
            (br"a\nb\t\u00e9\ud83d\ude00", "a\nb\té😀"),
            ("é😀".as_bytes(), "é😀"),
        ];
        for (raw, want) in cases {
            let s = RawStr::new(raw, raw.contains(&b'\\'));
            assert!(s.eq_str(want), "{raw:?}");
            let mut buf = [0u8; 32];
            assert_eq!(s.unescape_into(&mut buf), Some(*want));
            assert_eq!(s.unescaped_len(), want.len());
            let mut small = [0u8; 2];
            assert_eq!(s.unescape_into(&mut small).is_some(), want.len() <= 2);
        }
    }
}
