//! Detection and redaction over arbitrary lines: never a panic; a line that passes the
//! relay's lax check comes out of redaction still passing it, with only the contents
//! of strings changed (parsed, it has the same shape: the same keys, the same numbers,
//! literals and nesting); and a second pass redacts nothing the first one left.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The value with every string replaced by the same placeholder: what redaction may
/// not change.
fn shape(v: &Value) -> Value {
    match v {
        Value::String(_) => Value::Null,
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        other => other.clone(),
    }
}

fuzz_target!(|line: &[u8]| {
    let first = thoth::inspect_line(line, |_| true);
    if thoth_core::check_line(line).is_err() {
        return;
    }
    let Some(redacted) = first.redacted else {
        return;
    };
    assert!(thoth_core::check_line(&redacted).is_ok(), "redaction broke the line");
    let before: Option<Value> = serde_json::from_slice(line).ok();
    let after: Option<Value> = serde_json::from_slice(&redacted).ok();
    if let (Some(before), Some(after)) = (before, after) {
        assert_eq!(shape(&before), shape(&after), "redaction changed more than strings");
    }
    let second = thoth::inspect_line(&redacted, |_| true);
    assert!(second.redactions == 0 || second.redacted.is_some());
    assert_eq!(second.redactions, 0, "a second pass found text to redact");
});
