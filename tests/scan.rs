//! `thoth scan` end to end: the exact line format, oversize resync, `--whole`, and
//! exit codes.

use crate::util::{ADVERSARIAL, Proxy, Scratch, assert_ok, fixture, lines, run_with_input, thoth};
use serde_json::Value;

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
fn reads_a_file_and_fails_with_66_on_a_missing_one_and_74_on_io_errors() {
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
    assert_eq!(out.status.code(), Some(66));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot open") && stderr.contains("missing"),
        "{stderr}"
    );
    // A directory opens but cannot be read: an I/O error, not a missing input.
    let out = thoth().arg("scan").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(74));
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

/// `thoth scan` and `thoth run` read every adversarial frame alike: scan calls it
/// invalid with the very reason run answers with, and a frame scan calls a valid
/// tools/call reaches run's decision (here an allow-all policy: the server answers).
#[test]
fn scan_and_run_agree_on_the_adversarial_table() {
    let s = Scratch::new("scan-agrees");
    let policy = s.write("allow.cedar", "permit (principal, action, resource);");
    let mut frames: Vec<&str> = ADVERSARIAL.iter().map(|(frame, _)| *frame).collect();
    let valid = r#"{"jsonrpc":"2.0","id":50,"method":"tools/call","params":{"name":"echo","arguments":{"message":"a","other":"b"}}}"#;
    frames.push(valid);
    let input: String = frames.iter().map(|f| format!("{f}\n")).collect();
    let scanned = run_with_input(
        {
            let mut cmd = thoth();
            cmd.arg("scan");
            cmd
        },
        input.as_bytes(),
    );
    let scanned: Vec<Value> = lines(&scanned)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(scanned.len(), frames.len());
    let mut run = s.thoth();
    run.args([
        "run",
        "--agent-id",
        "a",
        "--policy",
        policy.to_str().unwrap(),
        "--",
    ])
    .arg(fixture());
    let mut p = Proxy::start(run);
    for (frame, scan) in frames.iter().zip(&scanned) {
        p.send(frame);
        let answer = p.recv_json();
        if *frame == valid {
            assert_eq!(scan["kind"], "request", "{frame}: {scan}");
            assert_eq!(answer["result"]["isError"], false, "{frame}: {answer}");
        } else {
            assert_eq!(scan["kind"], "invalid", "{frame}: {scan}");
            assert_eq!(
                scan["error"], answer["error"]["data"]["reason"],
                "{frame}: scan {scan}, run {answer}"
            );
        }
    }
    p.close_stdin();
    p.wait(std::time::Duration::from_secs(5));
}
