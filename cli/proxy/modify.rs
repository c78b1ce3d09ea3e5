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

/// `frame` (a tools/call the core accepted) without the members of `params` named in
/// `names` (compared unescaped); every other member's bytes kept, in order. The result
/// is re-scanned and must still call the same tool with the same argument bytes.
pub fn without_params_members(frame: &[u8], names: &[&str]) -> Result<Vec<u8>, ModifyError> {
    let fail = |why: &str| Err(ModifyError(why.into()));
    let Ok(Message::Request(call)) = thoth_core::scan(frame) else {
        return fail("frame is not a request");
    };
    let Ok(before) = thoth_core::tool_call(&call) else {
        return fail("frame is not a tools/call");
    };
    let Some(params) = call.params() else {
        return fail("tools/call without params");
    };
    let Some(members) = object_members(frame, params) else {
        return fail("internal: params do not read as an object");
    };
    let mut out = Vec::with_capacity(frame.len());
    out.extend_from_slice(frame.get(..params.start + 1).unwrap_or_default());
    let mut first = true;
    for member in members {
        let key: Option<String> = frame
            .get(member.key.start..member.key.end)
            .and_then(|k| serde_json::from_slice(k).ok());
        if key.is_some_and(|k| names.contains(&k.as_str())) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(frame.get(member.key.start..member.end).unwrap_or_default());
    }
    out.push(b'}');
    out.extend_from_slice(frame.get(params.end..).unwrap_or_default());
    let Ok(Message::Request(new_call)) = thoth_core::scan(&out) else {
        return fail("the frame does not scan without those members");
    };
    match thoth_core::tool_call(&new_call) {
        Ok(after)
            if after.name == before.name
                && after.arguments.map(|s| s.of(&out)) == before.arguments.map(|s| s.of(frame)) =>
        {
            Ok(out)
        }
        _ => fail("the frame without those members does not call the same tool"),
    }
}

/// One member of an object: its key's span (quotes included) and where its value ends.
struct Member {
    key: Span,
    end: usize,
}

/// The members of the object at `object` in `json` (already validated JSON).
fn object_members(json: &[u8], object: Span) -> Option<Vec<Member>> {
    let ws = |mut i: usize| {
        while json
            .get(i)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            i += 1;
        }
        i
    };
    let mut members = Vec::new();
    let mut i = ws(object.start + 1);
    if json.get(i) == Some(&b'}') {
        return Some(members);
    }
    loop {
        let key_start = i;
        let key_end = skip_value(json, key_start)?;
        i = ws(key_end);
        if json.get(i) != Some(&b':') {
            return None;
        }
        let end = skip_value(json, ws(i + 1))?;
        members.push(Member {
            key: Span::new(key_start, key_end),
            end,
        });
        i = ws(end);
        match json.get(i) {
            Some(b',') => i = ws(i + 1),
            Some(b'}') => return Some(members),
            _ => return None,
        }
    }
}

/// Where the JSON value starting at `i` ends (validated JSON: strings and nesting are
/// all there is to track).
fn skip_value(json: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    loop {
        match json.get(i)? {
            b'"' => {
                i += 1;
                loop {
                    match json.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            _ if depth == 0 => {
                // A number, `true`, `false` or `null`.
                while json.get(i).is_some_and(|b| {
                    !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
                }) {
                    i += 1;
                }
                return Some(i);
            }
            _ => i += 1,
        }
        if depth == 0 {
            return Some(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn members_are_removed_and_nothing_else_changes() {
        let f = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"w", "requestState":"thoth:approval:x","arguments":{"requestState":1},"input\u0052esponses":{"a":{"b":"}"}},"_meta":{}}}"#;
        let out = without_params_members(f, &["requestState", "inputResponses"]).unwrap();
        assert_eq!(
            out,
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"w","arguments":{"requestState":1},"_meta":{}}}"#
        );
        let f = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"requestState":"s"}}"#;
        assert!(
            without_params_members(f, &["requestState"]).is_err(),
            "no name left"
        );
        let f = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{ "name" : "w" , "x" : [1, {"y": "]"}] }}"#;
        assert_eq!(
            without_params_members(f, &["x"]).unwrap(),
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name" : "w"}}"#
        );
    }

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
