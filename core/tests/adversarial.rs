//! Frames built to make thoth and a JSON-RPC server disagree, and what thoth says.

use thoth_core::{Message, scan, tool_call};

/// `kind` for accepted frames (`request tools/call read` names method and tool),
/// else the error's snake_case reason.
fn outcome(frame: &[u8]) -> String {
    match scan(frame) {
        Err(e) => e.kind.as_str().to_string(),
        Ok(Message::Request(call)) | Ok(Message::Notification(call)) => {
            let kind = if call.id().is_some() {
                "request"
            } else {
                "notification"
            };
            let mut buf = [0u8; 64];
            let method = call
                .method()
                .unescape_into(&mut buf)
                .unwrap_or("?")
                .to_string();
            match tool_call(&call) {
                Ok(tc) => format!("{kind} {method} {}", tc.name),
                Err(_) => format!("{kind} {method}"),
            }
        }
        Ok(Message::Response(_)) => "response".into(),
        Ok(Message::Batch(batch)) => {
            let parts: Vec<String> = batch
                .elements()
                .map(|e| match e {
                    Ok(Message::Request(c)) => {
                        format!("request {}", String::from_utf8_lossy(c.method().raw()))
                    }
                    Ok(_) => "other".into(),
                    Err(e) => e.kind.as_str().into(),
                })
                .collect();
            format!("batch [{}]", parts.join(", "))
        }
    }
}

#[test]
fn table() {
    let rows: &[(&str, &str)] = &[
        // Member order: params read before or after the method are judged alike (the
        // scanner only validates the params of a method it already knows is another).
        (
            r#"{"params":{"name":"x","name":"y"},"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            "duplicate_member",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","name":"y"}}"#,
            "duplicate_member",
        ),
        (
            r#"{"params":{"Name":"x"},"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            "lookalike_member",
        ),
        (
            r#"{"params":{"name":1,"name":2,"Name":3},"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            "request ping",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"name":1,"name":2,"Name":3}}"#,
            "request ping",
        ),
        (
            r#"{"jsonrpc":"2.0","method":"ping","params":{"a":[1,{"b":"\u00e9"}],"c":tru}}"#,
            "invalid_literal",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"Tools/call","params":{"name":"x"}}"#,
            "lookalike_method",
        ),
        // Duplicated protected members, plain and escaped.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"x"}}"#,
            "duplicate_member",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","\u006dethod":"tools/call","params":{"name":"x"}}"#,
            "duplicate_member",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"params":{"name":"y"}}"#,
            "duplicate_member",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","name":"y"}}"#,
            "duplicate_member",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","n\u0061me":"y"}}"#,
            "duplicate_member",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{},"arguments":{"a":1}}}"#,
            "duplicate_member",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{},"_meta":{}}}"#,
            "duplicate_member",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
            "duplicate_member",
        ),
        (
            r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"ping"}"#,
            "duplicate_member",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{},"result":{}}"#,
            "duplicate_member",
        ),
        // Escaped method names are the method.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"read"}}"#,
            "request tools/call read",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools\u002fcall","params":{"name":"read"}}"#,
            "request tools/call read",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"\u006dethod":"tools/call","params":{"\u006eame":"r\u0065ad"}}"#,
            "request tools/call read",
        ),
        // Look-alikes of protected members.
        (
            r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","method":"ping"}"#,
            "lookalike_member",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"METHOD":"tools/call","method":"ping"}"#,
            "lookalike_member",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method\u0000":"tools/call","method":"ping"}"#,
            "lookalike_member",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","paramſ":{"name":"evil"},"params":{"name":"x"}}"#,
            "lookalike_member",
        ),
        // DEL is legal raw in a JSON string and a control character to strippers.
        (
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\u{7f}\":\"tools/call\",\"method\":\"ping\"}",
            "lookalike_member",
        ),
        (
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"x\",\"na\u{7f}me\":\"evil\"}}",
            "lookalike_member",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","param\u017f":{"name":"evil"},"params":{"name":"x"}}"#,
            "lookalike_member",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","Name":"evil"}}"#,
            "lookalike_member",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","ARGUMENTS":{}}}"#,
            "lookalike_member",
        ),
        (
            r#"{"jsonrpc":"2.0","Id":5,"id":1,"method":"ping"}"#,
            "lookalike_member",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"x"}}"#,
            "lookalike_method",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call\u0000","params":{"name":"x"}}"#,
            "lookalike_method",
        ),
        // Unrelated unknown keys are fine, and params rules apply to tools/call only.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","extra":1},"x-trace":"t"}"#,
            "request tools/call x",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"a","Name":"b"}}"#,
            "request prompts/get",
        ),
        // jsonrpc version.
        (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, "bad_version"),
        (r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#, "bad_version"),
        (r#"{"id":1,"method":"ping"}"#, "missing_version"),
        // Strings.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\ud800"}}"#,
            "lone_surrogate",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\udc00\ud800"}}"#,
            "lone_surrogate",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\u0007"}}"#,
            "name_control_char",
        ),
        // Numbers and literals.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":NaN}}}"#,
            "invalid_number",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":Infinity}}}"#,
            "invalid_number",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":01}}}"#,
            "invalid_number",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":1.}}}"#,
            "invalid_number",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":.5}}}"#,
            "unexpected_byte",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":-}}}"#,
            "invalid_number",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"n":tru}}"#,
            "invalid_literal",
        ),
        // Framing of values.
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}x"#,
            "trailing_data",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"} {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}"#,
            "trailing_data",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping""#,
            "unexpected_end",
        ),
        ("", "empty"),
        ("  ", "empty"),
        // Ids.
        (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, "bad_id"),
        (r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#, "bad_id"),
        (r#"{"jsonrpc":"2.0","id":1.0,"method":"ping"}"#, "bad_id"),
        (r#"{"jsonrpc":"2.0","id":1e2,"method":"ping"}"#, "bad_id"),
        (r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, "bad_id"),
        (r#"{"jsonrpc":"2.0","id":[],"method":"ping"}"#, "bad_id"),
        (
            r#"{"jsonrpc":"2.0","id":9007199254740992,"method":"ping"}"#,
            "bad_id",
        ),
        (r#"{"jsonrpc":"2.0","id":-0,"method":"ping"}"#, "bad_id"),
        (
            r#"{"jsonrpc":"2.0","id":9007199254740991,"method":"ping"}"#,
            "request ping",
        ),
        (
            r#"{"jsonrpc":"2.0","id":"","method":"ping"}"#,
            "request ping",
        ),
        (
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#,
            "response",
        ),
        // Shapes.
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
            "result_and_error",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
            "method_with_result",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","error":{}}"#,
            "method_with_result",
        ),
        (r#"{"jsonrpc":"2.0","id":1}"#, "not_a_message"),
        (r#"{"jsonrpc":"2.0","result":{}}"#, "missing_id"),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
            "method_not_string",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#,
            "params_not_structured",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#,
            "request ping",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["x"]}"#,
            "params_not_object",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            "missing_tool_name",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
            "missing_tool_name",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[]}}"#,
            "arguments_not_object",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":null}}"#,
            "arguments_not_object",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
            "name_not_string",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":1}}"#,
            "meta_not_object",
        ),
        (
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}"#,
            "notification tools/call x",
        ),
        (r#"[1,2]"#, "batch [not_an_object, not_an_object]"),
        (r#"7"#, "not_an_object"),
        (r#""s""#, "not_an_object"),
        // Batches.
        ("[]", "empty_batch"),
        (" [ ] ", "empty_batch"),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#,
            "batch [request tools/call, request ping]",
        ),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","name":"y"}},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#,
            "batch [duplicate_member, request ping]",
        ),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},]"#,
            "unexpected_byte",
        ),
        (
            r#"[[{"jsonrpc":"2.0","id":1,"method":"ping"}]]"#,
            "batch [not_an_object]",
        ),
    ];
    let mut wrong = Vec::new();
    for (frame, want) in rows {
        let got = outcome(frame.as_bytes());
        if got != *want {
            wrong.push(format!("{frame}\n   want {want}\n    got {got}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} rows wrong:\n{}",
        wrong.len(),
        rows.len(),
        wrong.join("\n")
    );
}

#[test]
fn byte_level_cases() {
    let name_utf8 = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"r\xFFad\"}}";
    let args_utf8 = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"r\",\"arguments\":{\"p\":\"\xC0\xAF\"}}}";
    let surrogate = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"\xED\xA0\x80\"}}";
    let bom = b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}";
    let control =
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\x01\"}}";
    let vertical_tab = b"{\"jsonrpc\":\"2.0\",\x0b\"id\":1,\"method\":\"ping\"}";
    let nbsp = b"{\"jsonrpc\":\"2.0\",\xC2\xA0\"id\":1,\"method\":\"ping\"}";
    for (frame, want) in [
        (&name_utf8[..], "invalid_utf8"),
        (args_utf8, "invalid_utf8"),
        (surrogate, "invalid_utf8"),
        (bom, "unexpected_byte"),
        (control, "control_in_string"),
        (vertical_tab, "unexpected_byte"),
        (nbsp, "unexpected_byte"),
    ] {
        assert_eq!(outcome(frame), want, "{}", String::from_utf8_lossy(frame));
    }
}

#[test]
fn deep_nesting_is_rejected_fast() {
    for open in [&b"["[..], b"{\"a\":"] {
        let frame = open.repeat(100_000);
        assert_eq!(outcome(&frame), "too_deep");
        // Fails at depth 65, so it reads a few hundred bytes, not 100,000 levels.
        assert!(scan(&frame).unwrap_err().offset < 500);
    }
}

#[test]
fn rejected_requests_echo_only_an_unambiguous_id() {
    let id_of = |frame: &str| {
        scan(frame.as_bytes())
            .unwrap_err()
            .id
            .map(|s| frame[s.start..s.end].to_string())
    };
    assert_eq!(
        id_of(r#"{"jsonrpc":"2.0","id":"a","method":"ping","method":"x"}"#),
        Some("\"a\"".into())
    );
    assert_eq!(
        id_of(r#"{"jsonrpc":"2.0","method":"x","method":"y","id":17}"#),
        Some("17".into())
    );
    assert_eq!(
        id_of(r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"x"}"#),
        None
    );
    assert_eq!(
        id_of(r#"{"jsonrpc":"2.0","id":1,"ID":2,"method":"x"}"#),
        None
    );
    assert_eq!(id_of(r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#), None);
    // Not JSON at all: a parse error never echoes an id.
    assert_eq!(
        id_of(r#"{"jsonrpc":"2.0","id":1,"method":"x","method":"y""#),
        None
    );
    assert!(
        scan(br#"{"jsonrpc":"2.0","id":1,"method":"x","method":"y""#)
            .unwrap_err()
            .kind
            .is_parse_error()
    );
}
