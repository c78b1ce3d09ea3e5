//! Inspection of a raw JSON line (a server's answer) with redaction in place: each
//! string token is decoded, inspected, and — where what it holds is to be redacted —
//! written anew with the matched text replaced by `[REDACTED:<detector>]`. Every other
//! byte of the line stays as it was.
//!
//! The line has passed the relay's lax check (one JSON value, well-formed UTF-8), so a
//! string token runs from a quote to the next quote not escaped. A key is inspected
//! but never rewritten (a rewritten key could collide with another): a key holding
//! text to redact is reported, and the caller blocks instead.

use super::{Class, Detections, Finding, scan_text};

/// Passes of redaction over one string at most.
const MAX_ROUNDS: usize = 4;

/// What inspecting a line gave.
#[derive(Debug, Default)]
pub struct Inspected {
    pub detections: Detections,
    /// The line with its redactions, when any was made.
    pub redacted: Option<Vec<u8>>,
    /// How many matches were redacted.
    pub redactions: usize,
    /// A key holds text of a class to redact (it cannot be redacted in place).
    pub unredactable: bool,
}

/// Inspects `line`; the findings of a class for which `redact` says so are redacted.
pub fn inspect_line(line: &[u8], redact: impl Fn(Class) -> bool) -> Inspected {
    let mut inspected = Inspected::default();
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut found = Vec::new();
    let of_classes_to_redact = |found: &[Finding]| -> Vec<Finding> {
        found
            .iter()
            .copied()
            .filter(|f| redact(f.detector().class))
            .collect()
    };
    let mut i = 0;
    while let Some(start) = memchr::memchr(b'"', line.get(i..).unwrap_or_default()).map(|p| p + i) {
        let Some(end) = string_end(line, start) else {
            break;
        };
        i = end + 1;
        let token = line.get(start..=end).unwrap_or_default();
        let Some(text) = decoded(token) else {
            continue;
        };
        found.clear();
        scan_text(&text, &mut found);
        if found.is_empty() {
            continue;
        }
        for f in &found {
            inspected.detections.add(f);
        }
        let to_redact = of_classes_to_redact(&found);
        if to_redact.is_empty() {
            continue;
        }
        // What a redaction cannot remove whole is withheld instead: a key (it could
        // collide with another), a service account's JSON (its key is elsewhere in
        // it), a private key whose end is not in the string.
        let partial = to_redact.iter().any(|f| match f.detector().name {
            "gcp_service_account" => true,
            "private_key" => !text
                .get(f.start..f.end)
                .unwrap_or_default()
                .contains("-----END"),
            _ => false,
        });
        if partial || is_key(line, end) {
            inspected.unredactable = true;
            continue;
        }
        let (mut rewritten, mut n) = with_redactions(&text, to_redact);
        // A marker next to what is left can complete a new match: redacted again until
        // nothing is left (bounded; past the bound the answer is withheld).
        let mut settled = false;
        for _ in 0..MAX_ROUNDS {
            found.clear();
            scan_text(&rewritten, &mut found);
            let more = of_classes_to_redact(&found);
            if more.is_empty() {
                settled = true;
                break;
            }
            let (again, m) = with_redactions(&rewritten, more);
            rewritten = again;
            n += m;
        }
        if !settled {
            inspected.unredactable = true;
            continue;
        }
        let Ok(encoded) = serde_json::to_vec(&rewritten) else {
            inspected.unredactable = true;
            continue;
        };
        let buf = out.get_or_insert_with(|| Vec::with_capacity(line.len()));
        buf.extend_from_slice(line.get(copied..start).unwrap_or_default());
        buf.extend_from_slice(&encoded);
        copied = end + 1;
        inspected.redactions += n;
    }
    if let Some(mut buf) = out {
        buf.extend_from_slice(line.get(copied..).unwrap_or_default());
        inspected.redacted = Some(buf);
    }
    inspected
}

/// The index of the quote that ends the string token starting at `start`.
fn string_end(line: &[u8], start: usize) -> Option<usize> {
    let mut j = start + 1;
    loop {
        let rel = memchr::memchr2(b'"', b'\\', line.get(j..)?)?;
        j += rel;
        match line.get(j)? {
            b'\\' => j += 2,
            _ => return Some(j),
        }
    }
}

/// A string token's text, decoded as clients decode it (a lone surrogate escape as
/// U+FFFD).
fn decoded(token: &[u8]) -> Option<String> {
    let inner = token.get(1..token.len().saturating_sub(1))?;
    if !inner.contains(&b'\\') {
        return std::str::from_utf8(inner).ok().map(str::to_string);
    }
    serde_json::from_slice::<String>(token)
        .ok()
        .or_else(|| serde_json::from_slice(&crate::catalog::without_lone_surrogates(token)).ok())
}

/// Whether the string token ending at `end` is an object key (a `:` follows it).
fn is_key(line: &[u8], end: usize) -> bool {
    line.get(end + 1..).and_then(|rest| {
        rest.iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    }) == Some(&b':')
}

/// `text` with each finding's range replaced by `[REDACTED:<detector>]` (overlapping
/// findings merged into the first); how many were replaced.
fn with_redactions(text: &str, mut findings: Vec<Finding>) -> (String, usize) {
    findings.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut n = 0;
    for f in findings {
        if f.start < at || !text.is_char_boundary(f.start) || !text.is_char_boundary(f.end) {
            continue;
        }
        out.push_str(text.get(at..f.start).unwrap_or_default());
        out.push_str("[REDACTED:");
        out.push_str(f.detector().name);
        out.push(']');
        at = f.end;
        n += 1;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    (out, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_matched_text_changes() {
        let line = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"key AKIAIOSFODNN7EXAMPLE and ann@acme-health.com"}],"note":"plain \u00e9"}}"#;
        let inspected = inspect_line(line, |c| c == Class::Secret);
        let redacted = String::from_utf8(inspected.redacted.unwrap()).unwrap();
        assert_eq!(
            redacted,
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"key [REDACTED:aws_access_key_id] and ann@acme-health.com"}],"note":"plain \u00e9"}}"#
        );
        assert_eq!(inspected.redactions, 1);
        assert_eq!(inspected.detections.count(), 2);
        // Nothing left for a second pass to redact.
        let again = inspect_line(redacted.as_bytes(), |c| c == Class::Secret);
        assert!(again.redacted.is_none());
    }

    #[test]
    fn what_cannot_be_removed_whole_is_not_redacted() {
        let whole = br#"{"k":"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----\nbye"}"#;
        let inspected = inspect_line(whole, |_| true);
        let text = String::from_utf8(inspected.redacted.unwrap()).unwrap();
        assert_eq!(text, r#"{"k":"[REDACTED:private_key]\nbye"}"#);
        for partial in [
            &br#"{"k":"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg"}"#[..],
            br#"{"k":"{\"type\": \"service_account\", \"private_key\": \"x\"}"}"#,
        ] {
            let inspected = inspect_line(partial, |_| true);
            assert!(
                inspected.unredactable,
                "{}",
                String::from_utf8_lossy(partial)
            );
        }
    }

    #[test]
    fn a_marker_completing_a_new_match_is_redacted_too() {
        // (Found by the fuzz target: the tag character's marker made the rest of the
        // value look like an assigned secret.)
        let line = br#"{"a":"password:db81\ubc41\udb40\udc42 this"}"#;
        let first = inspect_line(line, |_| true);
        let redacted = first.redacted.unwrap();
        let second = inspect_line(&redacted, |_| true);
        assert!(
            second.redacted.is_none(),
            "{}",
            String::from_utf8_lossy(&redacted)
        );
    }

    #[test]
    fn escaped_secrets_are_found_and_keys_never_rewritten() {
        let line = br#"{"a":"\u0041KIAIOSFODNN7EXAMPLE","AKIAIOSFODNN7EXAMPLE":1}"#;
        let inspected = inspect_line(line, |_| true);
        assert!(inspected.unredactable);
        let redacted = String::from_utf8(inspected.redacted.unwrap()).unwrap();
        assert_eq!(
            redacted,
            r#"{"a":"[REDACTED:aws_access_key_id]","AKIAIOSFODNN7EXAMPLE":1}"#
        );
        let none = inspect_line(br#"{"a":"nothing here \"quoted\""}"#, |_| true);
        assert!(none.redacted.is_none() && none.detections.is_empty());
    }
}
