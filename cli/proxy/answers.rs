//! The replies thoth itself sends to the client: protocol errors, denials, and the
//! `tool_result` deny style. The id is always the request's raw id bytes.

use serde_json::{Value, json};

use crate::domain::DenyStyle;
use crate::enforce::{Decision, Verdict};

/// JSON-RPC codes thoth answers with. -32001 and -32002 are stable public API.
pub const BLOCKED: i32 = -32001;
pub const STEP_UP_REQUIRED: i32 = -32002;
pub const INTERNAL: i32 = -32603;

/// `{"jsonrpc":"2.0","id":…,"error":{…}}` as one line (no newline).
pub fn error(id: Option<&[u8]>, code: i32, message: &str, data: Option<&Value>) -> Vec<u8> {
    let data_text = data.map(Value::to_string);
    let id_len = id.map_or(4, <[u8]>::len);
    let mut buf =
        vec![0u8; 96 + id_len + message.len() * 6 + data_text.as_ref().map_or(0, String::len)];
    match thoth_core::write_error_reply(
        &mut buf,
        id,
        code,
        message,
        data_text.as_deref().map(str::as_bytes),
    ) {
        Ok(n) => {
            buf.truncate(n);
            buf
        }
        // The buffer is sized for the worst case; never send a truncated frame.
        Err(_) => {
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}"#
                .to_vec()
        }
    }
}

/// `notifications/progress` for the request whose progress token is `token`.
pub fn progress(token: &[u8], step: u64, message: &str) -> Vec<u8> {
    let mut frame = b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":".to_vec();
    frame.extend_from_slice(token);
    frame.extend_from_slice(
        format!(
            ",\"progress\":{step},\"message\":{}}}}}",
            Value::String(message.to_string())
        )
        .as_bytes(),
    );
    frame
}

/// The answer to a rejected frame (-32700, -32600 or -32602).
pub fn rejected(frame: &[u8], e: &thoth_core::Error) -> Vec<u8> {
    let code = e.kind.code();
    let message = match code {
        -32700 => "Parse error",
        -32602 => "Invalid params",
        _ => "Invalid Request",
    };
    let id = e.id.map(|s| s.of(frame));
    error(
        id,
        code,
        message,
        Some(&json!({ "reason": e.kind.as_str(), "offset": e.offset })),
    )
}

/// What the client is told about a decision (every known field, docs/architecture.md §3).
pub fn decision_data(
    decision: &Decision,
    tool: &str,
    trace_id: &str,
    attestation_id: &str,
) -> Value {
    let mut data = json!({
        "decision": decision.verdict.as_str(),
        "reason": decision.reason,
        "tool_name": tool,
        "enforcement_trace_id": trace_id,
        "action_attestation_id": attestation_id,
    });
    let fields = [
        ("violation_id", &decision.violation_id),
        ("decision_reason_code", &decision.decision_reason_code),
        ("hold_token", &decision.hold_token),
        ("approval_url", &decision.approval_url),
        ("expires_at", &decision.expires_at),
    ];
    if let Some(map) = data.as_object_mut() {
        for (key, value) in fields {
            if let Some(v) = value {
                map.insert(key.into(), json!(v));
            }
        }
        if !decision.matched_rule_ids.is_empty() {
            map.insert("matched_rule_ids".into(), json!(decision.matched_rule_ids));
        }
        for (key, value) in &decision.extra {
            map.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    data
}

/// The answer to a denied call: -32001 / -32002, or an `isError` tool result.
pub fn denied(id: &[u8], decision: &Decision, data: &Value, style: DenyStyle) -> Vec<u8> {
    let (code, message) = match decision.verdict {
        Verdict::StepUp => (
            STEP_UP_REQUIRED,
            format!(
                "Step-up approval required by Thoth policy: {}",
                decision.reason
            ),
        ),
        _ => (
            BLOCKED,
            format!("Blocked by Thoth policy: {}", decision.reason),
        ),
    };
    match style {
        DenyStyle::Error => error(Some(id), code, &message, Some(data)),
        DenyStyle::ToolResult => error_result(id, &message, data),
    }
}

/// A tool result with `isError: true` saying `message` (the model reads it), thoth's
/// `data` under `_meta.thoth`.
fn error_result(id: &[u8], message: &str, data: &Value) -> Vec<u8> {
    let result = json!({
        "content": [{ "type": "text", "text": message }],
        "isError": true,
        "_meta": { "thoth": data },
    });
    let mut out = b"{\"jsonrpc\":\"2.0\",\"id\":".to_vec();
    out.extend_from_slice(id);
    out.extend_from_slice(b",\"result\":");
    out.extend_from_slice(result.to_string().as_bytes());
    out.push(b'}');
    out
}

/// The first protocol revision whose clients get schema errors as a tool result (the
/// model reads it and can correct its call) rather than -32602.
pub const TOOL_RESULT_SCHEMA_ERRORS: &str = "2025-11-25";

/// The answer to a call whose arguments the tool's own schema refuses: -32602 under
/// protocol revisions before 2025-11-25 (or when none was negotiated), else a tool
/// result with `isError: true` naming the schema error.
/// The answer to a governed request whose params cannot be decided (-32602).
pub fn params_refused(id: &[u8], why: &str) -> Vec<u8> {
    error(
        Some(id),
        -32602,
        "Invalid params",
        Some(&json!({ "reason": "params_not_decidable", "detail": why })),
    )
}

pub fn schema_refused(id: &[u8], tool: &str, why: &str, protocol: Option<&str>) -> Vec<u8> {
    let message = format!("Invalid arguments for tool {tool}: {why}");
    let data =
        json!({ "reason": "arguments_do_not_match_schema", "tool_name": tool, "detail": why });
    match protocol {
        // Revisions are dates: their strings order as the dates do.
        Some(version) if version >= TOOL_RESULT_SCHEMA_ERRORS => error_result(id, &message, &data),
        _ => error(Some(id), -32602, &message, Some(&data)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_valid_json_rpc_with_the_raw_id() {
        let d = Decision::new(Verdict::Block, "no \"writes\"");
        let data = decision_data(&d, "write_file", "t", "a");
        for style in [DenyStyle::Error, DenyStyle::ToolResult] {
            let line = denied(br#""x\u0031""#, &d, &data, style);
            let v: Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(v["id"], "x1");
            assert!(String::from_utf8_lossy(&line).contains(r#""id":"x\u0031""#));
        }
        let v: Value = serde_json::from_slice(&denied(b"7", &d, &data, DenyStyle::Error)).unwrap();
        assert_eq!(v["error"]["code"], -32001);
        assert_eq!(
            v["error"]["message"],
            "Blocked by Thoth policy: no \"writes\""
        );
        assert_eq!(v["error"]["data"]["tool_name"], "write_file");
    }

    #[test]
    fn schema_errors_follow_the_negotiated_revision() {
        for (protocol, tool_result) in [
            (None, false),
            (Some("2025-03-26"), false),
            (Some("2025-06-18"), false),
            (Some("2025-11-25"), true),
            (Some("2026-07-28"), true),
        ] {
            let line = schema_refused(
                b"4",
                "launch",
                "at /armed: \"true\" is not of type \"boolean\"",
                protocol,
            );
            let v: Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(v["id"], 4);
            if tool_result {
                assert_eq!(v["result"]["isError"], true, "{protocol:?}");
                assert!(
                    v["result"]["content"][0]["text"]
                        .as_str()
                        .unwrap()
                        .contains("is not of type")
                );
            } else {
                assert_eq!(v["error"]["code"], -32602, "{protocol:?}");
                assert_eq!(
                    v["error"]["data"]["reason"],
                    "arguments_do_not_match_schema"
                );
            }
        }
    }
}
