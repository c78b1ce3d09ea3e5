//! `thoth doctor` against the fixture server: resolution report, initialize,
//! tools/list through the proxy, and each tool's decision; failure with the stderr tail.

use crate::util::{READ_ONLY, Scratch, assert_ok, fixture};
use serde_json::Value;

#[test]
fn reports_every_tool_with_its_decision() {
    let s = Scratch::new("doctor-ok");
    let out = s
        .thoth()
        .args(["doctor", "--json", "--policy", READ_ONLY, "--"])
        .arg(fixture())
        .output()
        .unwrap();
    assert_ok(&out);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(
        report["resolution"]["resolved"],
        fixture().to_str().unwrap()
    );
    assert_eq!(report["server"]["name"], "fixture");
    let decisions: Vec<(String, String)> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["decision"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(decisions.contains(&("read_file".into(), "ALLOW".into())));
    assert!(decisions.contains(&("write_file".into(), "BLOCK".into())));
    assert!(decisions.contains(&("exec_command".into(), "BLOCK".into())));
    assert_eq!(decisions.len(), 9);

    let text = s
        .thoth()
        .args(["doctor", "--policy", READ_ONLY, "--"])
        .arg(fixture())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&text.stdout);
    assert!(
        table.contains(
            "write_file      BLOCK     destructive,open-world  pinned   read-only policy"
        ),
        "{table}"
    );
    // The --json run above was the first sight: it pinned every tool.
    assert!(!table.contains("first sight"), "{table}");
    // Each tool's own claims, as the server listed them.
    assert!(
        table.contains("read_file       ALLOW     read-only               "),
        "{table}"
    );
    let read = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "read_file")
        .unwrap()
        .clone();
    assert_eq!(read["title"], "Read a file");
    assert_eq!(read["annotations"]["readOnlyHint"], true);
    assert_eq!(read["annotations"]["destructiveHint"], false);
}

#[test]
fn a_server_that_dies_fails_with_its_stderr_tail() {
    let s = Scratch::new("doctor-fail");
    let out = s
        .thoth()
        .args([
            "doctor",
            "--json",
            "--timeout",
            "5",
            "--",
            "sh",
            "-c",
            "echo 'missing module foo' >&2; exit 4",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert!(
        report["stderr_tail"]
            .to_string()
            .contains("missing module foo"),
        "{report}"
    );
    let out = s
        .thoth()
        .args(["doctor", "--", "no-such-server-xyz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
}

#[test]
fn a_dead_server_shows_its_exit_status_and_thoth_lines_apart_from_its_stderr() {
    let s = Scratch::new("doctor-status");
    let out = s
        .thoth()
        .args([
            "doctor",
            "--timeout",
            "5",
            "--",
            "sh",
            "-c",
            "echo 'missing module foo' >&2; exit 4",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("\nserver exit status: 4\n"), "{report}");
    let (thoth_part, server_part) = report
        .split_once("server stderr (last 20 lines):")
        .unwrap_or_else(|| panic!("{report}"));
    assert!(server_part.contains("missing module foo"), "{report}");
    // thoth run's own lines (its WARN about the starter policy) are not the server's.
    assert!(
        !server_part.contains(" WARN ") && !server_part.contains(" INFO "),
        "{report}"
    );
    assert!(
        thoth_part.contains("thoth run said:\n   WARN local mode: policy allows every tool"),
        "{report}"
    );
}

#[test]
fn a_slow_server_gets_progress_lines_and_a_timeout_names_the_fix() {
    let s = Scratch::new("doctor-slow");
    let out = s
        .thoth()
        .env("THOTH_TEST_PROGRESS_MS", "200")
        .args(["doctor", "--timeout", "1", "--", "sh", "-c", "sleep 30"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("INFO waiting for the server to answer initialize ("),
        "{err}"
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("FAILED: no answer to initialize within 1s (a server that builds or downloads itself on its first start may need a longer --timeout)"), "{report}");
    // doctor stopped it: no exit status of its own to show.
    assert!(!report.contains("exit status"), "{report}");
}
