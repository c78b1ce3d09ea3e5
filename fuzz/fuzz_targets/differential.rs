//! thoth-core and serde_json agree on what is JSON, and on what a JSON-RPC message says.
//!
//! Where they may differ by design the input is skipped: nesting deeper than 64 (our
//! limit; serde_json allows 128). serde_json is built with `arbitrary_precision`, so
//! numbers of any size are compared rather than excluded; it already rejects lone
//! surrogate escapes, control characters and invalid UTF-8 as we do. A message we accept
//! has no duplicated or look-alike protected member, so serde_json's last-wins reading
//! is the only reading and must match ours.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use thoth_core::{ErrorKind, Message, scan, tool_call, validate};

fuzz_target!(|frame: &[u8]| {
    let ours = validate(frame);
    let theirs = serde_json::from_slice::<Value>(frame);
    match (&ours, &theirs) {
        (Err(e), Ok(_)) if e.kind == ErrorKind::TooDeep => return,
        (Ok(()), Ok(_)) | (Err(_), Err(_)) => {}
        _ => panic!("validate {ours:?} but serde_json {theirs:?}"),
    }
    let Ok(value) = theirs else { return };
    let Ok(Message::Request(call)) = scan(frame) else {
        return;
    };
    let method: String = call.method().chars().collect();
    assert_eq!(value["method"], Value::String(method.clone()));
    let id: Value = serde_json::from_slice(call.id().expect("request id").raw).expect("id");
    assert_eq!(value["id"], id);
    if method == "tools/call" {
        let tc = tool_call(&call).expect("tool_call of an accepted tools/call");
        assert_eq!(value["params"]["name"], Value::String(tc.name.to_string()));
        let args = match tc.arguments {
            Some(span) => serde_json::from_slice(span.of(frame)).expect("arguments"),
            None => Value::Null,
        };
        assert_eq!(value["params"]["arguments"], args);
    }
});
