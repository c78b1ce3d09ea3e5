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
    assert_eq!(decisions.len(), 8);

    let text = s
        .thoth()
        .args(["doctor", "--policy", READ_ONLY, "--"])
        .arg(fixture())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&text.stdout);
    assert!(
        table.contains("write_file      BLOCK     read-only policy"),
        "{table}"
    );
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
