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
        if raw.iter().all(|&b| b < 0x7f) {
            // Same length is needed unless a multi-byte character (ſ, K, or an
            // invisible one) is involved, which only non-ASCII keys can hold.
            return names
                .iter()
                .any(|n| n.len() == raw.len() && n.as_bytes().eq_ignore_ascii_case(raw));
        }
    }
    folds_slowly(key, names)
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
