//! `scan` never panics, every span lies in the frame, and an `arguments` span re-parses
//! as a JSON object with serde_json.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thoth_core::{Message, Span, scan, tool_call};

fn inside(span: Span, frame: &[u8]) {
    assert!(span.start <= span.end && span.end <= frame.len(), "{span:?}");
}

fn check(frame: &[u8], message: &Message<'_>) {
    match message {
        Message::Request(call) | Message::Notification(call) => {
            inside(call.span(), frame);
            if let Some(id) = call.id() {
                inside(id.span, frame);
            }
            if let Ok(tc) = tool_call(call) {
                if let Some(args) = tc.arguments {
                    inside(args, frame);
                    let value: serde_json::Value =
                        serde_json::from_slice(args.of(frame)).expect("arguments re-parse");
                    assert!(value.is_object());
                }
                if let Some(token) = tc.progress_token {
                    inside(token, frame);
                }
            }
        }
        Message::Response(r) => inside(r.id().span, frame),
        Message::Batch(b) => {
            inside(b.span(), frame);
            for element in b.elements().flatten() {
                check(frame, &element);
            }
        }
    }
}

fuzz_target!(|frame: &[u8]| {
    match scan(frame) {
        Ok(message) => check(frame, &message),
        Err(e) => {
            assert!(e.offset <= frame.len());
            if let Some(id) = e.id {
                inside(id, frame);
            }
        }
    }
});
