//! `thoth scan` end to end: the exact line format, oversize resync, `--whole`, and
//! exit codes.

use crate::util::{assert_ok, lines, run_with_input, thoth};

fn scan(args: &[&str], input: &[u8]) -> std::process::Output {
    let mut cmd = thoth();
    cmd.arg("scan").args(args);
    run_with_input(cmd, input)
}

#[test]
fn one_line_per_frame_in_the_documented_shape() {
    let input = concat!(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"re\u0061d","arguments":{"a":1}}}"#,
        "\r\n",
        "\n",
        r#"[{"jsonrpc":"2.0","id":2,"method":"ping"},3,{"jsonrpc":"2.0","id":"z","result":{}}]"#,
        "\n",
        r#"{"jsonrpc":"2.0","id":"q","method":"a","method":"b"}"#,
        "\n",
        "garbage\n",
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    let out = scan(&[], input.as_bytes());
    assert_ok(&out);
    assert_eq!(
        lines(&out),
        [
            r#"{"frame":1,"kind":"request","method":"tools/call","id":1,"tool":"read","arguments":[88,95]}"#,
            r#"{"frame":2,"kind":"batch","elements":[{"kind":"request","method":"ping","id":2},{"kind":"invalid","error":"not_an_object"},{"kind":"response","id":"z"}]}"#,
            r#"{"frame":3,"kind":"invalid","id":"q","error":"duplicate_member"}"#,
            r#"{"frame":4,"kind":"invalid","error":"unexpected_byte"}"#,
            r#"{"frame":5,"kind":"notification","method":"notifications/initialized"}"#,
        ]
    );
    let first = &input.as_bytes()[..input.find('\r').unwrap()];
    assert_eq!(&first[88..95], br#"{"a":1}"#);
    assert!(out.stderr.is_empty());
}

#[test]
fn oversized_frames_are_reported_once_and_the_stream_resyncs() {
    let mut input = vec![b'x'; 5000];
    input.extend_from_slice(b"\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
    input.extend_from_slice(&[b'y'; 3000]);
    let out = scan(&["--max-frame-bytes", "1024"], &input);
    assert_ok(&out);
    assert_eq!(
        lines(&out),
        [
            r#"{"frame":1,"kind":"invalid","error":"frame_too_large"}"#,
            r#"{"frame":2,"kind":"request","method":"ping","id":1}"#,
            r#"{"frame":3,"kind":"invalid","error":"frame_too_large"}"#,
        ]
    );
}

#[test]
fn whole_reads_the_input_as_one_frame() {
    let pretty = b"{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 7,\n  \"method\": \"ping\"\n}\n";
    let out = scan(&["--whole"], pretty);
    assert_eq!(
        lines(&out),
        [r#"{"frame":1,"kind":"request","method":"ping","id":7}"#]
    );
    let out = scan(&[], pretty);
    assert_eq!(lines(&out).len(), 5, "without --whole each line is a frame");
}

#[test]
fn reads_a_file_and_fails_with_2_on_io_errors() {
    let dir = std::env::temp_dir().join(format!("thoth-scan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("frames.jsonl");
    std::fs::write(&file, b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n").unwrap();
    let out = thoth().arg("scan").arg(&file).output().unwrap();
    assert_eq!(lines(&out), [r#"{"frame":1,"kind":"response","id":1}"#]);

    let out = thoth()
        .arg("scan")
        .arg(dir.join("missing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot open") && stderr.contains("missing"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn version() {
    let out = thoth().arg("--version").output().unwrap();
    assert_ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("thoth {}", env!("CARGO_PKG_VERSION"))
    );
}
