//! MODIFY: forward the call with `params.arguments` replaced by the enforcer's.
//!
//! The splice replaces exactly the bytes of the arguments span, or inserts the member
//! right after `params`' opening brace when it is absent; every other byte of the frame
//! is kept. The result is re-scanned and must still be a tools/call of the same tool
//! with the new arguments, and those arguments must pass the checks a client's do
//! (no duplicate keys, no two keys equal under case folding, at any depth), else the
//! caller blocks. The arguments are spliced in as their canonical line
//! (`thoth_core::canon`), like everything thoth writes.

use thoth_core::{Message, Span};

/// Why a MODIFY could not be applied (the call is then blocked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModifyError(pub String);

/// Replaces (or inserts) `params.arguments` in `frame` with `arguments` (JSON text of
/// an object); `max_len` bounds the result.
pub fn splice_arguments(
    frame: &[u8],
    arguments: &[u8],
    max_len: usize,
) -> Result<Vec<u8>, ModifyError> {
    let fail = |why: &str| Err(ModifyError(why.into()));
    if arguments.first() != Some(&b'{') {
        return fail("modified arguments are not an object");
    }
    if let Err(e) = crate::enforce::arguments::parse(arguments) {
        return Err(ModifyError(format!(
            "modified arguments are ambiguous: {}",
            e.0
        )));
    }
    // The enforcer's arguments may hold raw U+2028 and the like (serde_json writes them
    // raw): they go in as their canonical form, so `max_len` bounds what is written.
    let mut canonical = Vec::with_capacity(arguments.len());
    thoth_core::write_canonical(arguments, |piece| canonical.extend_from_slice(piece));
    let arguments = canonical.as_slice();
    let Ok(Message::Request(call)) = thoth_core::scan(frame) else {
        return fail("frame is not a request");
    };
    let Ok(before) = thoth_core::tool_call(&call) else {
        return fail("frame is not a tools/call");
    };
    // Spans come from scanning this very frame; `get` keeps a mistake from panicking.
    let (head, tail) = match before.arguments {
        Some(Span { start, end }) => (frame.get(..start), frame.get(end..)),
        None => {
            let Some(params) = call.params() else {
                return fail("tools/call without params");
            };
            // `params` is an object here: its span starts at `{`.
            let open = params.start + 1;
            (frame.get(..open), frame.get(open..))
        }
    };
    let (Some(head), Some(tail)) = (head, tail) else {
        return fail("internal: span outside the frame");
    };
    let inserted = before.arguments.is_none();
    let mut out = Vec::with_capacity(frame.len() + arguments.len() + 16);
    out.extend_from_slice(head);
    if inserted {
        out.extend_from_slice(b"\"arguments\":");
    }
    out.extend_from_slice(arguments);
    // An inserted member needs a comma unless `params` was empty.
    if inserted
        && tail
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            != Some(&b'}')
    {
        out.push(b',');
    }
    out.extend_from_slice(tail);
    if out.len() > max_len {
        return fail("modified frame exceeds the maximum frame size");
    }
    let Ok(Message::Request(new_call)) = thoth_core::scan(&out) else {
        return fail("modified frame does not scan");
    };
    match thoth_core::tool_call(&new_call) {
        Ok(after)
            if after.name == before.name
                && after.arguments.map(|s| s.of(&out)) == Some(arguments) =>
        {
            Ok(out)
        }
        _ => fail("modified frame does not carry the same tool with the new arguments"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn replaces_or_inserts() {
        let f = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"w","arguments":{"p":"/etc"}},"x":1}"#;
        let out = splice_arguments(f, br#"{"p":"/tmp"}"#, 1 << 20).unwrap();
        assert_eq!(out, br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"w","arguments":{"p":"/tmp"}},"x":1}"#);
        let f = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"w"}}"#;
        let out = splice_arguments(f, br#"{"a":1}"#, 1 << 20).unwrap();
        assert_eq!(out, br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"a":1},"name":"w"}}"#);
        assert!(splice_arguments(f, b"[1]", 1 << 20).is_err());
        assert!(splice_arguments(f, br#"{"a":1}"#, 10).is_err());
        assert!(
            splice_arguments(f, br#"{"a":1}, "name":"other"}"#, 1 << 20).is_err(),
            "an injection is caught by the re-scan"
        );
        // Raw separators in the enforcer's arguments go in escaped.
        let out = splice_arguments(f, "{\"t\":\"a\u{2028}b\"}".as_bytes(), 1 << 20).unwrap();
        assert!(out.windows(6).any(|w| w == br"\u2028") && !thoth_core::needs_rewrite(&out));
        // What a client may not send, the enforcer may not either.
        for ambiguous in [
            &br#"{"a":1,"A":2}"#[..],
            "{\"K\":1,\"\u{212a}\":2}".as_bytes(),
            br#"{"x":{"b":1,"B":2}}"#,
            br#"{"a":1,"a":2}"#,
        ] {
            let refused = splice_arguments(f, ambiguous, 1 << 20).unwrap_err();
            assert!(refused.0.contains("ambiguous"), "{refused:?}");
        }
    }

    proptest! {
        #[test]
        fn only_the_arguments_bytes_change(
            args in proptest::option::of("[a-z]{1,6}"),
            new_value in "[a-zA-Z0-9 ]{0,12}",
            extra_before in any::<bool>(),
        ) {
            let params = match (&args, extra_before) {
                (Some(a), true) => format!(r#"{{"_meta":{{}},"name":"t","arguments":{{"k":"{a}"}}}}"#),
                (Some(a), false) => format!(r#"{{"name":"t","arguments":{{"k":"{a}"}},"z":[1]}}"#),
                (None, true) => r#"{"_meta":{},"name":"t"}"#.to_string(),
                (None, false) => r#"{"name":"t"}"#.to_string(),
            };
            let frame = format!(r#"{{"jsonrpc":"2.0","id":"q","method":"tools/call","params":{params}}}"#);
            let new_args = serde_json::json!({ "v": new_value }).to_string();
            let out = splice_arguments(frame.as_bytes(), new_args.as_bytes(), 1 << 20).unwrap();
            let got: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let mut want: serde_json::Value = serde_json::from_str(&frame).unwrap();
            want["params"]["arguments"] = serde_json::from_str(&new_args).unwrap();
            prop_assert_eq!(got, want);
            // Everything outside the arguments is byte-identical.
            let Ok(Message::Request(call)) = thoth_core::scan(&out) else { panic!() };
            let span = thoth_core::tool_call(&call).unwrap().arguments.unwrap();
            let (head, tail) = (&out[..span.start], &out[span.end..]);
            if args.is_some() {
                prop_assert!(frame.as_bytes().starts_with(head));
                prop_assert!(frame.as_bytes().ends_with(tail));
            }
        }
    }
}
