//! The canonical line, both ways. Client bytes go through the real pumps under a
//! policy that allows only the tool `safe`: every class of line reader must parse the
//! same messages from what reached the server, and the only tools/call any of them
//! sees is an allowed request. The same bytes as a server's output go through the
//! relay: every line reader must parse the same messages from what reached the client,
//! and each is a JSON-RPC message (an object with `jsonrpc`, or a batch of them). A
//! stream decoder reads a prefix of them: when a long line is cut off after part of it
//! was relayed, a decoder that ignores lines cannot get past the half value (nothing
//! can un-send it), while line readers drop that line and read on.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use thoth::{Reader, tool_calls};

fn only_safe() -> &'static PathBuf {
    static POLICY: OnceLock<PathBuf> = OnceLock::new();
    POLICY.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("thoth-fuzz-only-safe-{}.cedar", std::process::id()));
        std::fs::write(
            &path,
            "permit (principal, action, resource) when { resource.name == \"safe\" };\n",
        )
        .expect("write the fuzz policy");
        path
    })
}

fn is_message(value: &Value) -> bool {
    match value {
        Value::Object(members) => members.contains_key("jsonrpc"),
        Value::Array(items) => !items.is_empty() && items.iter().all(|item| {
            item.as_object().is_some_and(|m| m.contains_key("jsonrpc"))
        }),
        _ => false,
    }
}

fn same_for_every_reader(bytes: &[u8], cut_lines: bool) -> Vec<Value> {
    let seen = Reader::Newline.messages(bytes);
    for reader in Reader::ALL {
        let theirs = reader.messages(bytes);
        let agrees = if cut_lines && reader == Reader::ValueStream {
            seen.starts_with(&theirs)
        } else {
            theirs == seen
        };
        assert!(agrees, "{reader:?} reads {theirs:?} from {:?}", String::from_utf8_lossy(bytes));
    }
    seen
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(control & 0x3F) + 1;

    let (to_server, replies) = thoth::run_bytes(only_safe(), stream, chunk, false)
        .expect("the pumps run");
    for call in tool_calls(&same_for_every_reader(&to_server, false)) {
        assert_eq!(call["params"]["name"], "safe", "{call}");
        assert!(call.get("id").is_some(), "{call}");
    }
    // thoth's own answers carry client bytes (ids, names): canonical lines too.
    for message in same_for_every_reader(&replies, false) {
        assert!(is_message(&message), "{message}");
    }

    let scan_limit = if control & 0x40 == 0 { 1 << 20 } else { 16 };
    let to_client = thoth::relay_bytes(stream, chunk, scan_limit);
    for message in same_for_every_reader(&to_client, true) {
        assert!(is_message(&message), "{message}");
    }
});
