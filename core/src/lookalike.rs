//! Look-alikes of protected member names.
//!
//! Some JSON-RPC servers decode with case-insensitive matching (Go's `encoding/json`,
//! and so the MCP Go SDK before its fix), and some strip control characters. To them
//! `"Method"`, `"paramſ"` (U+017F folds to `s`), `"\u212Aey"` (Kelvin sign folds to `k`)
//! or `"method\u0000"` *is* `method`, while thoth would see an unknown key: a parser
//! differential, hence a policy bypass. A key that folds onto a protected name without
//! being it exactly is therefore rejected.

use crate::text::RawStr;

/// Longest protected name we compare against, in bytes.
const LONGEST: usize = 16;

/// True when `key`, folded (simple case folding onto ASCII, controls and invisible
/// format characters dropped), equals one of `names`. Callers have already checked
/// that `key` is not exactly one of them.
#[inline(always)]
pub(crate) fn folds_onto(key: &RawStr<'_>, names: &[&str]) -> bool {
    // An unescaped ASCII key has no control character (the validator refuses raw
    // ones) and folds by ASCII case alone. This keeps ordinary keys off the slow path,
    // and inline: every key of every envelope and params object comes through here.
    if !key.has_escapes() {
        let raw = key.raw();
        // Below DEL: ASCII with no character a lenient decoder could drop (raw C0
        // controls are refused by the validator; DEL is legal raw JSON).
        if below_del(raw) {
            // Same length is needed unless a multi-byte character (ſ, K, or an
            // invisible one) is involved, which only non-ASCII keys can hold.
            return names
                .iter()
                .any(|n| n.len() == raw.len() && n.as_bytes().eq_ignore_ascii_case(raw));
        }
    }
    folds_slowly(key, names)
}

/// True when every byte is below 0x7F, eight bytes at a time: with no such byte, adding
/// one to each byte never carries and never sets a high bit; the lowest byte of 0x7F
/// or more always shows in the result.
#[inline(always)]
fn below_del(raw: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut words = raw.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let w = u64::from_le_bytes(bytes);
        if (w | w.wrapping_add(ONES)) & HIGH != 0 {
            return false;
        }
    }
    words.remainder().iter().all(|&b| b < 0x7f)
}

/// The general case: escapes or non-ASCII characters.
#[cold]
#[inline(never)]
fn folds_slowly(key: &RawStr<'_>, names: &[&str]) -> bool {
    let mut folded = heapless::Vec::<u8, LONGEST>::new();
    for c in key.chars() {
        if is_ignorable(c) {
            continue;
        }
        let c = match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        };
        let Ok(byte) = u8::try_from(c) else {
            return false;
        };
        if !byte.is_ascii() || folded.push(byte).is_err() {
            return false;
        }
    }
    names.iter().any(|n| n.as_bytes() == folded.as_slice())
}

/// Characters a lenient decoder may drop: C0/C1 controls, DEL, and invisible format
/// characters (soft hyphen, zero-width and bidi marks, word joiners, BOM).
fn is_ignorable(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{AD}'
                | '\u{34F}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{FEFF}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVELOPE: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];

    #[test]
    fn below_del_is_exact() {
        for len in 0..20 {
            for at in 0..len {
                for bad in [0x7f_u8, 0x80, 0xff, 0xc3] {
                    let mut key = [b'a'; 20];
                    if let Some(b) = key.get_mut(at) {
                        *b = bad;
                    }
                    assert!(!below_del(&key[..len]), "{len} {at} {bad:#x}");
                }
            }
            assert!(below_del(&[0x7e; 20][..len]));
            assert!(below_del(&[0x01; 20][..len]));
        }
    }

    #[test]
    fn table() {
        let cases: &[(&[u8], bool)] = &[
            (b"Method", true),
            (b"METHOD", true),
            (br"method\u0000", true),
            (b"method\x7f", true),
            (b"\x7fid", true),
            (br"\u0000m\u0000e\u0000t\u0000hod", true),
            ("paramſ".as_bytes(), true),
            (br"param\u017f", true),
            (br"I\u200Bd", true),
            (b"methods", false),
            (b"metho", false),
            (b"foo", false),
            (b"\xC3\xA9", false),
            (br"m\u00e9thod", false),
        ];
        for (raw, want) in cases {
            let key = RawStr::new(raw, raw.contains(&b'\\'));
            assert_eq!(
                folds_onto(&key, ENVELOPE),
                *want,
                "{:?}",
                core::str::from_utf8(raw)
            );
        }
        let kelvin = RawStr::new("\u{212A}".as_bytes(), false);
        assert!(folds_onto(&kelvin, &["k"]));
    }
}
