//! Property tests: what serde_json writes, thoth-core accepts and reads the same way;
//! no byte string panics or yields a span outside its frame; framing does not depend on
//! how the stream is chunked.

use proptest::prelude::*;
use serde_json::{Value, json};
use thoth_core::frame::Frame;
use thoth_core::{FrameStep, Frames, LineFramer, Message, Span, scan, tool_call, validate};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn arguments() -> impl Strategy<Value = Value> {
    prop::collection::vec(("[a-zA-Z_]{1,8}", json_value()), 0..5).prop_map(|kv| {
        let mut map = serde_json::Map::new();
        for (k, v) in kv {
            // Keys that collide under case folding are the std side's business.
            if !map.keys().any(|e: &String| e.eq_ignore_ascii_case(&k)) {
                map.insert(k, v);
            }
        }
        Value::Object(map)
    })
}

fn id() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<String>().prop_map(Value::String),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(Value::from),
    ]
}

fn in_frame(span: Span, frame: &[u8]) -> bool {
    span.start <= span.end && span.end <= frame.len()
}

fn check_spans(frame: &[u8], message: &Message<'_>) {
    match message {
        Message::Request(call) | Message::Notification(call) => {
            assert!(in_frame(call.span(), frame));
            if let Some(id) = call.id() {
                assert!(in_frame(id.span, frame));
            }
            if let Some(params) = call.params() {
                assert!(in_frame(params, frame));
            }
            if let Ok(tc) = tool_call(call) {
                for span in tc.arguments.iter().chain(tc.progress_token.iter()) {
                    assert!(in_frame(*span, frame));
                }
            }
        }
        Message::Response(r) => assert!(in_frame(r.id().span, frame)),
        Message::Batch(b) => {
            assert!(in_frame(b.span(), frame));
            for element in b.elements().flatten() {
                check_spans(frame, &element);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn serde_json_output_is_accepted(value in json_value()) {
        let compact = serde_json::to_vec(&value).unwrap();
        prop_assert!(validate(&compact).is_ok(), "{}", String::from_utf8_lossy(&compact));
        let pretty = serde_json::to_vec_pretty(&value).unwrap();
        prop_assert!(validate(&pretty).is_ok());
    }

    #[test]
    fn scan_agrees_with_serde_json(
        method in prop_oneof![Just("tools/call".to_string()), Just("ping".to_string()), "[a-z/]{1,12}"],
        id in proptest::option::of(id()),
        name in "[^\\p{Cc}]{1,40}",
        args in proptest::option::of(arguments()),
        token in proptest::option::of(id()),
        reorder in any::<bool>(),
    ) {
        let mut params = serde_json::Map::new();
        params.insert("name".into(), json!(name));
        if let Some(args) = &args {
            params.insert("arguments".into(), args.clone());
        }
        if let Some(token) = &token {
            params.insert("_meta".into(), json!({ "progressToken": token }));
        }
        let mut envelope = serde_json::Map::new();
        if reorder {
            envelope.insert("params".into(), Value::Object(params));
            envelope.insert("method".into(), json!(method));
            envelope.insert("jsonrpc".into(), json!("2.0"));
        } else {
            envelope.insert("jsonrpc".into(), json!("2.0"));
            envelope.insert("method".into(), json!(method));
            envelope.insert("params".into(), Value::Object(params));
        }
        if let Some(id) = &id {
            envelope.insert("id".into(), id.clone());
        }
        let frame = serde_json::to_vec(&Value::Object(envelope)).unwrap();
        let message = scan(&frame).unwrap();
        let call = match (message, &id) {
            (Message::Request(call), Some(_)) | (Message::Notification(call), None) => call,
            (other, _) => panic!("{other:?}"),
        };
        prop_assert!(call.method().eq_str(&method));
        if let (Some(got), Some(want)) = (call.id(), &id) {
            prop_assert_eq!(&serde_json::from_slice::<Value>(got.raw).unwrap(), want);
        }
        if method == "tools/call" {
            let tc = tool_call(&call).unwrap();
            prop_assert_eq!(tc.name.as_str(), name.as_str());
            match (&args, tc.arguments) {
                (Some(want), Some(span)) => {
                    let got: Value = serde_json::from_slice(span.of(&frame)).unwrap();
                    prop_assert_eq!(&got, want);
                }
                (None, None) => {}
                (want, got) => panic!("arguments {want:?} vs {got:?}"),
            }
            match (&token, tc.progress_token) {
                (Some(want), Some(span)) => {
                    prop_assert_eq!(&serde_json::from_slice::<Value>(span.of(&frame)).unwrap(), want);
                }
                (None, None) => {}
                (want, got) => panic!("token {want:?} vs {got:?}"),
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(frame in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(message) = scan(&frame) {
            check_spans(&frame, &message);
        }
        if let Err(e) = scan(&frame) {
            prop_assert!(e.offset <= frame.len());
            if let Some(id) = e.id {
                prop_assert!(in_frame(id, &frame));
            }
        }
    }

    #[test]
    fn mutated_frames_never_panic(
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        insert in any::<bool>(),
    ) {
        let base = br#"[{"jsonrpc":"2.0","id":"a\u0062","method":"tools/call","params":{"name":"r\u00e9ad","arguments":{"p":["x",1.5e3,{"q":null}]},"_meta":{"progressToken":7}}},{"jsonrpc":"2.0","id":2,"result":{}}]"#;
        let mut frame = base.to_vec();
        let i = at.index(frame.len());
        if insert { frame.insert(i, byte) } else { frame[i] = byte }
        for candidate in [&frame[..], &frame[1..frame.len() - 1]] {
            let result = scan(candidate);
            if let Ok(message) = &result {
                check_spans(candidate, message);
            }
            // Validation and scanning agree on what is JSON.
            let valid = validate(candidate).is_ok();
            match result {
                Ok(_) => prop_assert!(valid),
                Err(e) => prop_assert_eq!(e.kind.is_parse_error(), !valid, "{:?}", e),
            }
        }
    }

    #[test]
    fn framing_ignores_chunking(
        lines in prop::collection::vec(
            (prop::collection::vec(prop::sample::select(&b"a{ \r\t"[..]), 0..24), any::<bool>()),
            0..12,
        ),
        unterminated in any::<bool>(),
        max in 1usize..20,
        chunks in prop::collection::vec(1usize..9, 1..64),
    ) {
        let mut stream = Vec::new();
        for (content, crlf) in &lines {
            stream.extend_from_slice(content);
            stream.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
        }
        if unterminated {
            stream.extend_from_slice(b"tail");
        }
        let whole: Vec<Result<Vec<u8>, u64>> = Frames::new(&stream, max)
            .map(|f| match f {
                Frame::Line { bytes, .. } => Ok(bytes.to_vec()),
                Frame::Oversized { dropped } => Err(dropped),
            })
            .collect();

        let mut framer = LineFramer::new(max);
        let mut buf: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        let mut pos = 0;
        let mut sizes = chunks.iter().cycle();
        let mut eof = false;
        while !eof {
            let n = (*sizes.next().unwrap()).min(stream.len() - pos);
            buf.extend_from_slice(&stream[pos..pos + n]);
            pos += n;
            eof = pos == stream.len();
            loop {
                match framer.step(&buf) {
                    FrameStep::Frame { frame, consumed } => {
                        got.push(Ok(frame.of(&buf).to_vec()));
                        buf.drain(..consumed);
                    }
                    FrameStep::Oversized { dropped, consumed } => {
                        got.push(Err(dropped));
                        buf.drain(..consumed);
                    }
                    FrameStep::NeedMore { consumed } => {
                        buf.drain(..consumed);
                        break;
                    }
                }
            }
            prop_assert!(buf.len() <= max + 1, "never buffers more than a frame");
        }
        match framer.finish(&buf) {
            FrameStep::Frame { frame, .. } => got.push(Ok(frame.of(&buf).to_vec())),
            FrameStep::Oversized { dropped, .. } => got.push(Err(dropped)),
            FrameStep::NeedMore { .. } => {}
        }
        prop_assert_eq!(got, whole);
    }
}
