//! The remote enforcer path end to end: `thoth run` against a real `thoth enforcer
//! serve`, and against a fault-injecting HTTP server on 127.0.0.1.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{
    Canned, Enforcer, HIPAA, Proxy, READ_ONLY, Scratch, Seen, TestServer, assert_ok, fixture, http,
    http_get,
};
use serde_json::{Value, json};

const KEY: &str = "proxy-key-7f3a";

fn remote_proxy(s: &Scratch, url: &str, envs: &[(&str, &str)]) -> Proxy {
    let mut cmd = s.thoth();
    cmd.args(["run", "--agent-id", "fixture", "--tenant-id", "acme", "--"])
        .arg(fixture())
        .env("THOTH_ENFORCER_URL", url)
        .env("THOTH_API_KEY", KEY)
        .env("FIXTURE_LOG", s.path("received.log"));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    Proxy::start(cmd)
}

/// A proxy to `url` that holds a STEP_UP for 1 s, polling every 100 ms.
fn held_proxy(s: &Scratch, url: &str) -> Proxy {
    remote_proxy(
        s,
        url,
        &[
            ("THOTH_STEP_UP_HOLD_SECONDS", "1"),
            ("THOTH_STEP_UP_POLL_MS", "100"),
        ],
    )
}

fn call(id: u32, tool: &str, args: Value) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": tool, "arguments": args } }).to_string()
}

/// A call waiting for the enforcer is pending: `notifications/cancelled` for it resolves
/// it then and there, and neither the call nor the cancellation reaches the server. A
/// task-augmented call (2025-11-25) is no different: no task exists until the server
/// has the call, so the client cancels it by its request id.
#[test]
fn cancelling_a_pending_call_resolves_it_without_forwarding() {
    let task_call = json!({ "jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": { "name": "read_file", "arguments": {}, "task": { "ttl": 60000 } } }).to_string();
    for (name, frame) in [
        ("cancel", call(41, "read_file", json!({}))),
        ("cancel-task", task_call),
    ] {
        let s = Scratch::new(name);
        // An enforcer that takes its time: the call is still pending when the cancellation
        // is read.
        let enforcer = TestServer::start(|_| {
            std::thread::sleep(Duration::from_millis(1500));
            Canned::json(200, json!({ "decision": "ALLOW" }))
        });
        let mut p = remote_proxy(&s, &enforcer.url, &[("THOTH_ENV", "dev")]);
        let pair = format!(
            "{}\n{}\n",
            frame,
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":41,"reason":"user"}}"#
        );
        p.send_bytes(pair.as_bytes());
        // A later ping still works, and no answer for 41 ever comes.
        p.send(r#"{"jsonrpc":"2.0","id":42,"method":"ping"}"#);
        assert_eq!(p.recv_json()["id"], 42);
        p.close_stdin();
        p.wait(Duration::from_secs(10));
        assert!(p.rest().is_empty(), "{:?}", p.rest());
        assert_eq!(
            s.read("received.log"),
            "{\"jsonrpc\":\"2.0\",\"id\":42,\"method\":\"ping\"}\n"
        );
        assert!(p.stderr().contains("cancelled call 41"), "{}", p.stderr());
    }
}

/// Observe mode forwards a call at once, before the enforcer answers, as its canonical
/// line: written once, so each raw CR is counted once in the session's audit log.
#[test]
fn observe_mode_forwards_the_canonical_line_once() {
    let s = Scratch::new("observe-canonical");
    let enforcer =
        TestServer::start(|_| Canned::json(200, json!({ "decision": "BLOCK", "reason": "no" })));
    let mut cmd = s.thoth();
    cmd.args(["run", "--agent-id", "fixture", "--tenant-id", "acme"])
        .args(["--enforcement-mode", "observe", "--"])
        .arg(fixture())
        .env("THOTH_ENFORCER_URL", &enforcer.url)
        .env("THOTH_API_KEY", KEY)
        .env("THOTH_ENV", "dev")
        .env("FIXTURE_LOG", s.path("received.log"));
    let mut p = Proxy::start(cmd);
    // Two raw CRs where JSON allows whitespace.
    let frame = call(1, "read_file", json!({ "path": "a" })).replacen(',', ",\r", 2);
    p.send(&frame);
    assert_eq!(
        p.recv_json()["result"]["isError"],
        false,
        "observe mode forwards"
    );
    p.close_stdin();
    assert!(p.wait(Duration::from_secs(10)).success(), "{}", p.stderr());
    let received = s.read("received.log");
    assert_eq!(received.lines().count(), 1, "{received:?}");
    assert!(!received.contains('\r'), "{received:?}");
    let audit = s.audit();
    let event: Value = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "relay_changes")
        .unwrap_or_else(|| panic!("no relay_changes event: {audit}"));
    assert_eq!(event["client_carriage_returns"], 2, "{event}");
}

#[test]
fn decisions_come_from_the_enforcer_service() {
    let s = Scratch::new("remote-serve");
    let enforcer = Enforcer::start(&s, READ_ONLY, KEY, "approver-9c1");
    let mut p = remote_proxy(&s, &enforcer.url, &[]);
    p.send(&call(1, "read_file", json!({ "path": "/etc/hosts" })));
    assert_eq!(p.recv_json()["result"]["isError"], false);
    p.send(&call(2, "write_file", json!({ "path": "/etc/passwd" })));
    let v = p.recv_json();
    assert_eq!(v["error"]["code"], -32001);
    assert_eq!(
        v["error"]["data"]["matched_rule_ids"],
        json!(["read-only-no-writes"])
    );
    assert_eq!(v["error"]["data"]["http_status"], 200);
    // Enriched by /v1/explain, in data and in the message.
    let explanation = &v["error"]["data"]["explanation"];
    assert_eq!(
        explanation["why_it_was_blocked"],
        "read-only policy: this tool writes, deletes or executes"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ask your administrator"),
        "{v}"
    );
    assert!(
        !v.to_string().contains(KEY),
        "the API key never reaches a reply"
    );
    p.close_stdin();
    p.wait(Duration::from_secs(5));
    let received = s.read("received.log");
    assert!(received.contains("read_file") && !received.contains("write_file"));
    let stderr = p.stderr();
    assert!(
        stderr
            .lines()
            .next()
            .unwrap()
            .contains("remote mode: Thoth enforcer http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(KEY),
        "the API key never reaches a log line"
    );
}

#[test]
fn holds_are_approved_by_the_approver_key_never_the_proxy_key() {
    let s = Scratch::new("remote-hold");
    let enforcer = Enforcer::start(&s, HIPAA, KEY, "approver-9c1");
    let mut p = held_proxy(&s, &enforcer.url);
    p.send(&call(1, "patient_lookup", json!({ "mrn": "7" })));
    let v = p.recv_json();
    assert_eq!(v["error"]["code"], -32002);
    let data = &v["error"]["data"];
    let token = data["hold_token"].as_str().unwrap().to_string();
    assert!(
        data["approval_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/approve/{token}"))
    );
    assert!(data["expires_at"].is_string());
    p.close_stdin();
    p.wait(Duration::from_secs(5));

    let post = |action: &str, key: &str| {
        let out = s
            .thoth()
            .args([action, &token, "--enforcer-url", &enforcer.url, "--json"])
            .env("THOTH_APPROVER_KEY", key)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = post("approve", KEY);
    assert_eq!(code, Some(1));
    assert!(err.contains("the proxy API key cannot approve"), "{err}");
    let (code, _, err) = post("approve", "guess");
    assert_eq!(code, Some(1));
    assert!(err.contains("wrong approver key"), "{err}");
    let (code, out, err) = post("approve", "approver-9c1");
    assert_eq!(code, Some(0), "{err}");
    let status: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (status["resolved"].clone(), status["resolution"].clone()),
        (json!(true), json!("ALLOW"))
    );
    // Without --json, the approver reads a sentence.
    for (action, said) in [
        (
            "approve",
            "approved: the held call to patient_lookup runs when its proxy next asks (the approval holds until ",
        ),
        (
            "deny",
            "denied: the held call to patient_lookup will not run",
        ),
    ] {
        let mut p = held_proxy(&s, &enforcer.url);
        p.send(&call(2, "patient_lookup", json!({ "mrn": "8" })));
        let held = p.recv_json()["error"]["data"]["hold_token"]
            .as_str()
            .unwrap()
            .to_string();
        p.close_stdin();
        p.wait(Duration::from_secs(5));
        let out = s
            .thoth()
            .args([action, &held, "--enforcer-url", &enforcer.url])
            .env("THOTH_APPROVER_KEY", "approver-9c1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with(said), "{action}: {stdout}");
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
    }
    // Once resolved, a hold never changes: a later deny or approve is refused (409).
    for action in ["deny", "approve"] {
        let (code, _, err) = post(action, "approver-9c1");
        assert_eq!(code, Some(1), "{action}: {err}");
        assert!(err.contains("already resolved: ALLOW"), "{action}: {err}");
    }
}

/// `enforcer serve` warns when its user may also run MCP clients (here: a client
/// config in its home), since that user's agents could approve their own holds.
#[test]
fn serve_warns_when_its_user_runs_mcp_clients() {
    let s = Scratch::new("serve-self-approval");
    s.write(".claude.json", "{}");
    let enforcer = Enforcer::start(&s, HIPAA, KEY, "approver-9c1");
    assert!(
        enforcer.startup.contains("approve their own held calls")
            && enforcer.startup.contains(".claude.json"),
        "{}",
        enforcer.startup
    );
}

/// The approval page shows the held call's arguments, escaped, under headers that keep
/// it out of frames, caches and referrers; its form's key is decoded as browsers
/// encode it.
#[test]
fn the_approval_page_shows_the_arguments_safely() {
    let s = Scratch::new("approval-page");
    let approver = "appr+ver/9c1&x=y %";
    let enforcer = Enforcer::start(&s, HIPAA, KEY, approver);
    let mut p = held_proxy(&s, &enforcer.url);
    p.send(&call(
        1,
        "patient_lookup",
        json!({ "mrn": "<script>alert(1)</script>", "note": "'\"&" }),
    ));
    let v = p.recv_json();
    assert_eq!(v["error"]["code"], -32002, "{v}");
    let token = v["error"]["data"]["hold_token"]
        .as_str()
        .unwrap()
        .to_string();
    p.close_stdin();
    p.wait(Duration::from_secs(5));
    let page = http(&enforcer.url, &format!("GET /approve/{token} HTTP/1.1"), "");
    let (head, body) = page.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    for header in [
        "content-security-policy: default-src 'none'",
        "x-frame-options: deny",
        "cache-control: no-store",
        "referrer-policy: no-referrer",
    ] {
        assert!(head.contains(header), "{header}: {head}");
    }
    assert!(
        body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{body}"
    );
    assert!(!body.contains("<script>"), "{body}");
    let form = format!("approver_key={}", "appr%2Bver%2F9c1%26x%3Dy+%25");
    let answer = http(
        &enforcer.url,
        &format!(
            "POST /v1/holds/{token}/approve HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded"
        ),
        &form,
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""resolution":"ALLOW""#), "{answer}");
}

/// A denied hold stays denied (a later approve is 409), and an expired hold, approved or
/// not, answers BLOCK to polls.
#[test]
fn a_resolved_or_expired_hold_never_changes() {
    let s = Scratch::new("remote-hold-final");
    let enforcer = Enforcer::start_with(&s, HIPAA, KEY, "approver-9c1", &["--hold-seconds", "4"]);
    let mut p = held_proxy(&s, &enforcer.url);
    let mut tokens = Vec::new();
    for id in [1, 2] {
        p.send(&call(id, "patient_lookup", json!({ "mrn": id })));
        let v = p.recv_json();
        assert_eq!(v["error"]["code"], -32002, "{v}");
        tokens.push(
            v["error"]["data"]["hold_token"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    p.close_stdin();
    p.wait(Duration::from_secs(5));
    let act = |action: &str, token: &str| {
        let out = s
            .thoth()
            .args([action, token, "--enforcer-url", &enforcer.url])
            .env("THOTH_APPROVER_KEY", "approver-9c1")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = act("deny", &tokens[0]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = act("approve", &tokens[0]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("already resolved: BLOCK"), "{err}");
    assert_eq!(act("approve", &tokens[1]).0, Some(0));
    // The second hold was made about 1 s in and lives 4 s.
    std::thread::sleep(Duration::from_millis(3200));
    let (code, err) = act("deny", &tokens[1]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("expired"), "{err}");
    let poll = http_get(
        &enforcer.url,
        &format!("/v1/enforce/hold/{}", tokens[1]),
        KEY,
    );
    assert_eq!(poll["resolution"], "BLOCK", "{poll}");
}

/// The fault cases of the failure policy: each gives the documented decision within
/// the (shortened) timeout.
#[test]
fn enforcer_faults_give_the_documented_decision() {
    let s = Scratch::new("remote-faults");
    let cases: Vec<(&str, Option<Canned>, i64, &str)> = vec![
        ("refused", None, -32001, "unreachable"),
        (
            "timeout",
            Some(Canned {
                status: 200,
                body: json!({ "decision": "ALLOW" }).to_string(),
                delay: Duration::from_millis(1500),
            }),
            -32001,
            "timed out",
        ),
        (
            "500",
            Some(Canned::json(500, json!({}))),
            -32001,
            "failed (500)",
        ),
        (
            "429",
            Some(Canned::json(429, json!({}))),
            -32001,
            "rate limiting",
        ),
        (
            "402",
            Some(Canned::json(
                402,
                json!({ "error": { "type": "billing_error", "message": "plan expired" } }),
            )),
            -32001,
            "plan expired",
        ),
        (
            "403",
            Some(Canned::json(403, json!({}))),
            -32001,
            "rotate THOTH_API_KEY",
        ),
        (
            "invalid",
            Some(Canned {
                status: 200,
                body: "{not json".into(),
                delay: Duration::ZERO,
            }),
            -32001,
            "invalid JSON",
        ),
        (
            "duplicated decision",
            Some(Canned {
                status: 200,
                body: r#"{"decision":"BLOCK","decision":"ALLOW"}"#.into(),
                delay: Duration::ZERO,
            }),
            -32001,
            "appears twice",
        ),
        (
            "unknown",
            Some(Canned::json(200, json!({ "decision": "MAYBE" }))),
            -32001,
            "unknown decision",
        ),
        (
            "step_up",
            Some(Canned::json(
                200,
                json!({ "decision": "CHALLENGE", "reason": "needs a human" }),
            )),
            -32002,
            "needs a human",
        ),
    ];
    for (name, canned, code, needle) in cases {
        let url = match canned {
            None => "http://127.0.0.1:9".to_string(),
            Some(canned) => {
                let canned = std::sync::Mutex::new(Some(canned));
                let server = TestServer::start(move |seen| {
                    // Telemetry goes to the same URL: only enforce calls get the fault.
                    if seen.path != "/v1/enforce" {
                        return Canned::json(202, json!({}));
                    }
                    canned
                        .lock()
                        .unwrap()
                        .take()
                        .unwrap_or(Canned::json(500, json!({})))
                });
                let url = server.url.clone();
                std::mem::forget(server);
                url
            }
        };
        let mut p = remote_proxy(&s, &url, &[("THOTH_ENFORCER_TIMEOUT_MS", "400")]);
        let started = Instant::now();
        p.send(&call(1, "read_file", json!({})));
        let v = p.recv_json();
        let took = started.elapsed();
        assert_eq!(v["error"]["code"], code, "{name}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{name}: {v}"
        );
        assert!(took < Duration::from_millis(2500), "{name} took {took:?}");
        let fallback = v["error"]["data"]["fallback"] == json!(true);
        assert_eq!(
            fallback,
            matches!(
                name,
                "refused" | "timeout" | "500" | "429" | "invalid" | "duplicated decision"
            ),
            "{name}: {v}"
        );
        eprintln!(
            "fault {name}: {} in {took:?}",
            v["error"]["data"]["decision"]
        );
        p.close_stdin();
        p.wait(Duration::from_secs(5));
    }
    assert_eq!(
        s.read("received.log"),
        "",
        "no faulty decision let a call through"
    );
}

#[test]
fn allow_fallback_is_honoured_in_dev_and_refused_in_prod() {
    let s = Scratch::new("remote-fallback");
    let dead = "http://127.0.0.1:9";
    let mut p = remote_proxy(&s, dead, &[("THOTH_ENFORCER_FAILURE_DECISION", "allow")]);
    p.send(&call(1, "read_file", json!({})));
    assert_eq!(
        p.recv_json()["result"]["isError"],
        false,
        "dev: allowed by the fallback"
    );
    p.close_stdin();
    p.wait(Duration::from_secs(5));
    assert!(p.stderr().contains("ALLOWED without a policy decision"));

    let mut p = remote_proxy(
        &s,
        dead,
        &[
            ("THOTH_ENFORCER_FAILURE_DECISION", "allow"),
            ("THOTH_ENV", "prod"),
            ("THOTH_REQUIRE_NON_ROOT", "false"),
        ],
    );
    p.send(&call(2, "read_file", json!({})));
    let v = p.recv_json();
    assert_eq!(v["error"]["code"], -32001, "prod: the fallback stays block");
    p.close_stdin();
    p.wait(Duration::from_secs(5));
    assert!(p.stderr().contains("is ignored in prod"), "{}", p.stderr());

    // In prod a non-loopback http enforcer is a startup error.
    let out = s
        .thoth()
        .args(["run", "--agent-id", "a", "--", "true"])
        .env("THOTH_ENFORCER_URL", "http://enforcer.example.com")
        .env("THOTH_API_KEY", KEY)
        .env("THOTH_ENV", "prod")
        .env("THOTH_REQUIRE_NON_ROOT", "false")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must use https in prod"));
}

#[test]
fn modify_forwards_the_enforcers_arguments_only() {
    let s = Scratch::new("remote-modify");
    let server = TestServer::start(|_| {
        Canned::json(
            200,
            json!({ "decision": "MODIFIED", "modifiedToolArgs": { "path": "/safe/copy.txt" }, "modification_reason": "redirected" }),
        )
    });
    let mut p = remote_proxy(&s, &server.url, &[]);
    p.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/etc/shadow","secret":"x1"}}}"#);
    assert_eq!(
        p.recv_json()["result"]["content"][0]["text"],
        r#"{"path":"/safe/copy.txt"}"#
    );
    // Without an arguments member, MODIFY inserts it.
    p.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_file"}}"#);
    assert_eq!(
        p.recv_json()["result"]["content"][0]["text"],
        r#"{"path":"/safe/copy.txt"}"#
    );
    p.close_stdin();
    p.wait(Duration::from_secs(5));
    let received = s.read("received.log");
    assert_eq!(
        received,
        concat!(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/safe/copy.txt"}}}"#,
            "\n",
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"arguments":{"path":"/safe/copy.txt"},"name":"read_file"}}"#,
            "\n",
        )
    );
    // What the enforcer was sent: docs/architecture.md §4's body, the key in x-api-key only.
    let first = &server
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/enforce")
        .unwrap();
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("POST", "/v1/enforce")
    );
    assert_eq!(first.header("x-api-key"), Some(KEY));
    let body = first.json();
    for field in [
        "agent_id",
        "tenant_id",
        "user_id",
        "identity_binding",
        "tool_name",
        "tool_args",
        "session_id",
        "session_tool_calls",
        "approved_scope",
        "enforcement_mode",
        "environment",
        "enforcement_trace_id",
        "action_attestation_id",
    ] {
        assert!(body.get(field).is_some(), "{field} missing from {body}");
    }
    assert_eq!(
        body["tool_args"],
        json!({ "path": "/etc/shadow", "secret": "x1" })
    );
    assert_eq!(body["tenant_id"], "acme");
    assert!(!String::from_utf8_lossy(&first.body).contains(KEY));
}

fn approve(s: &Scratch, enforcer: &Enforcer, token: &str, action: &str) {
    let out = s
        .thoth()
        .args([action, token, "--enforcer-url", &enforcer.url])
        .env("THOTH_APPROVER_KEY", "approver-9c1")
        .output()
        .unwrap();
    assert_ok(&out);
}

/// The hold token of the call held on the enforcer: the approval URL's last segment.
fn held_token(p: &Proxy) -> (String, Vec<Value>) {
    let mut progress = Vec::new();
    loop {
        let v = p.recv_json();
        if v["method"] == "notifications/progress" {
            let message = v["params"]["message"].as_str().unwrap().to_string();
            progress.push(v);
            if let Some(token) = message.rsplit('/').next().filter(|t| t.len() == 32) {
                return (token.to_string(), progress);
            }
        } else {
            panic!("expected progress while held, got {v}");
        }
    }
}

#[test]
fn a_held_call_is_forwarded_when_approved_and_answered_when_denied() {
    let s = Scratch::new("remote-held");
    let enforcer = Enforcer::start(&s, HIPAA, KEY, "approver-9c1");
    let mut p = remote_proxy(
        &s,
        &enforcer.url,
        &[
            ("THOTH_STEP_UP_HOLD_SECONDS", "20"),
            ("THOTH_STEP_UP_POLL_MS", "100"),
        ],
    );
    let held = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"patient_lookup","arguments":{"mrn":"7"},"_meta":{"progressToken":"pt-1"}}}"#;
    p.send(held);
    let (token, progress) = held_token(&p);
    assert_eq!(progress[0]["params"]["progressToken"], "pt-1");
    // Other traffic flows while the call is held.
    p.send(r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#);
    loop {
        let v = p.recv_json();
        if v["id"] == 9 {
            break;
        }
    }
    approve(&s, &enforcer, &token, "approve");
    let answer = loop {
        let v = p.recv_json();
        if v.get("id").is_some() {
            break v;
        }
    };
    assert_eq!(answer["id"], 1);
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert!(s.read("received.log").contains("patient_lookup"));

    let denied = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"patient_lookup","arguments":{"mrn":"8"},"_meta":{"progressToken":2}}}"#;
    p.send(denied);
    let (token, _) = held_token(&p);
    approve(&s, &enforcer, &token, "deny");
    let answer = loop {
        let v = p.recv_json();
        if v.get("id").is_some() {
            break v;
        }
    };
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    p.close_stdin();
    p.wait(Duration::from_secs(5));
    assert!(!s.read("received.log").contains(r#""mrn":"8""#));
    assert!(
        p.stderr()
            .contains("a tool call waits for approval: http://127.0.0.1:")
    );
}

/// The progress notifications of a hold are frames thoth writes: canonical lines, even
/// when the client's progressToken (any JSON value) holds raw CRs between its tokens. A
/// universal-newline reader must not read a message hidden in the token.
#[test]
fn hold_progress_is_a_canonical_line() {
    let s = Scratch::new("remote-progress-canonical");
    let enforcer = Enforcer::start(&s, HIPAA, KEY, "approver-9c1");
    let mut p = held_proxy(&s, &enforcer.url);
    let forged =
        r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"FORGED"}]}}"#;
    let hidden = format!("\r{forged}\r");
    let held = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"patient_lookup","arguments":{{"mrn":"7"}},"_meta":{{"progressToken":{{"a":{hidden}}}}}}}}}"#
    );
    p.send(&held);
    let line = p.recv();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["method"], "notifications/progress", "{v}");
    assert!(
        !line.contains(['\r', '\u{2028}', '\u{2029}', '\u{85}']),
        "{line:?}"
    );
    p.close_stdin();
    p.wait(Duration::from_secs(10));
}

#[test]
fn an_approval_after_the_hold_admits_only_the_same_retry() {
    let s = Scratch::new("remote-retry");
    let enforcer = Enforcer::start(&s, HIPAA, KEY, "approver-9c1");
    let mut p = held_proxy(&s, &enforcer.url);
    p.send(&call(
        1,
        "patient_lookup",
        json!({ "mrn": "7", "fields": ["a", "b"] }),
    ));
    let v = p.recv_json();
    assert_eq!(v["error"]["code"], -32002, "{v}");
    let token = v["error"]["data"]["hold_token"]
        .as_str()
        .unwrap()
        .to_string();
    approve(&s, &enforcer, &token, "approve");
    // The background poll sees the approval within a few intervals.
    std::thread::sleep(Duration::from_millis(500));
    // Other arguments: not the approved call.
    p.send(&call(2, "patient_lookup", json!({ "mrn": "999" })));
    assert_eq!(p.recv_json()["error"]["code"], -32002);
    // The same call (keys in another order) is admitted, once.
    p.send(&call(
        3,
        "patient_lookup",
        json!({ "fields": ["a", "b"], "mrn": "7" }),
    ));
    assert_eq!(p.recv_json()["result"]["isError"], false);
    p.send(&call(
        4,
        "patient_lookup",
        json!({ "mrn": "7", "fields": ["a", "b"] }),
    ));
    assert_eq!(
        p.recv_json()["error"]["code"],
        -32002,
        "an approval admits one retry"
    );
    p.close_stdin();
    p.wait(Duration::from_secs(5));
}

#[test]
fn telemetry_batches_carry_no_arguments_and_both_auth_headers() {
    let s = Scratch::new("remote-telemetry");
    let enforcer = Enforcer::start(&s, READ_ONLY, KEY, "approver-9c1");
    let ingest = TestServer::start(|_| Canned::json(202, json!({})));
    let mut p = remote_proxy(
        &s,
        &enforcer.url,
        &[
            ("THOTH_API_URL", &ingest.url),
            ("THOTH_EVENT_INGEST_TOKEN", "ingest-tok"),
        ],
    );
    for i in 0..12 {
        let tool = if i % 3 == 0 {
            "write_file"
        } else {
            "read_file"
        };
        p.send(&call(i, tool, json!({ "secret_argument": "hunter2" })));
        p.recv_json();
    }
    p.close_stdin();
    p.wait(Duration::from_secs(6));
    let batches = ingest.requests();
    assert!(!batches.is_empty());
    let mut kinds = std::collections::BTreeMap::new();
    for b in &batches {
        assert_eq!(
            (b.method.as_str(), b.path.as_str()),
            ("POST", "/v1/events/batch")
        );
        assert_eq!(
            b.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert_eq!(b.header("x-api-key"), Some(KEY));
        assert_eq!(b.header("x-thoth-event-ingest-token"), Some("ingest-tok"));
        let events = b.json();
        let events = events.as_array().unwrap();
        assert!(
            !events.is_empty() && events.len() <= 10,
            "{} events in one batch",
            events.len()
        );
        for e in events {
            *kinds
                .entry(e["event_type"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
            assert_eq!(e["agent_id"], "fixture");
            assert!(e["session_id"].is_string() && e["event_id"].is_string());
        }
        assert!(
            !String::from_utf8_lossy(&b.body).contains("hunter2"),
            "no arguments in telemetry"
        );
    }
    assert_eq!(kinds.get("TOOL_CALL_PRE"), Some(&12));
    assert_eq!(kinds.get("TOOL_CALL_POST"), Some(&8));
    assert_eq!(kinds.get("TOOL_CALL_BLOCK"), Some(&4));
}

#[test]
fn aws_backed_certificates_need_an_arn_and_send_it_for_attestation() {
    let s = Scratch::new("remote-aws");
    let server = TestServer::start(|_| Canned::json(200, json!({ "decision": "ALLOW" })));
    let out = s
        .thoth()
        .args(["run", "--agent-id", "a", "--", "true"])
        .env("THOTH_ENFORCER_URL", &server.url)
        .env("THOTH_API_KEY", KEY)
        .env("THOTH_TLS_REQUIRE_AWS_BACKED_CERTS", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs THOTH_TLS_AWS_ACM_CERT_ARN"));
    let arn = "arn:aws:acm:eu-west-1:123456789012:certificate/abcd-1234";
    let mut p = remote_proxy(
        &s,
        &server.url,
        &[
            ("THOTH_TLS_REQUIRE_AWS_BACKED_CERTS", "true"),
            ("THOTH_TLS_AWS_ACM_CERT_ARN", arn),
        ],
    );
    p.send(&call(1, "read_file", json!({})));
    assert_eq!(p.recv_json()["result"]["isError"], false);
    p.close_stdin();
    p.wait(Duration::from_secs(5));
    let enforce = server
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/enforce")
        .unwrap();
    assert_eq!(enforce.json()["metadata"]["aws_certificate_arn"], arn);
}

/// A 127.0.0.1 HTTP server whose answers are written raw by `respond` (redirects, slow
/// or oversized bodies); it records every request, one per connection.
fn raw_server(
    respond: impl Fn(&Seen, &mut TcpStream) + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let respond = Arc::new(respond);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let (log, respond) = (log.clone(), respond.clone());
            std::thread::spawn(move || {
                let Some(request) = crate::util::read_request(&stream) else {
                    return;
                };
                log.lock().unwrap().push(request.clone());
                respond(&request, &mut stream);
            });
        }
    });
    (url, seen)
}

fn respond_json(stream: &mut TcpStream, status: u16, body: &Value) {
    let body = body.to_string();
    let _ = stream.write_all(
        format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

fn respond_redirect(stream: &mut TcpStream, status: u16, location: &str) {
    let _ = stream.write_all(
        format!("HTTP/1.1 {status} X\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    );
}

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The issue's item 6: an enforcer (or a path in front of it) that redirects to another
/// origin. Before: the 302/307/308 was followed, the other origin got the `x-api-key`
/// (with 307/308 also the tool arguments) and its ALLOW was obeyed; hold polls took its
/// `resolved: ALLOW`; telemetry sent it the key and the ingest token. Now no client
/// follows a redirect: the call gets the failure decision, the redirect is logged once,
/// and the other origin never sees a request.
#[test]
fn redirects_to_another_origin_are_never_followed() {
    let s = Scratch::new("remote-redirect");
    // The other origin: it would allow everything and resolve every hold as ALLOW.
    let (evil, evil_seen) = raw_server(|seen, stream| {
        let body = if seen.path.starts_with("/v1/enforce/hold/") {
            json!({ "resolved": true, "resolution": "ALLOW" })
        } else {
            json!({ "decision": "ALLOW" })
        };
        respond_json(stream, 200, &body);
    });
    for status in [302u16, 307, 308] {
        let target = evil.clone();
        let (url, seen) = raw_server(move |request, stream| {
            respond_redirect(stream, status, &format!("{target}{}", request.path));
        });
        // The failure decision applies: block (the default), or step_up when asked.
        let (failure, code) = if status == 302 {
            ("block", -32001)
        } else {
            ("step_up", -32002)
        };
        let mut p = remote_proxy(
            &s,
            &url,
            &[
                ("THOTH_EVENT_INGEST_TOKEN", "ingest-tok"),
                ("THOTH_ENFORCER_FAILURE_DECISION", failure),
            ],
        );
        for id in 1..=2 {
            p.send(&call(
                id,
                "read_file",
                json!({ "secret_argument": "hunter2" }),
            ));
            let v = p.recv_json();
            assert_eq!(
                v["error"]["code"], code,
                "{status}: the failure decision: {v}"
            );
            let data = &v["error"]["data"];
            assert_eq!(data["fallback"], true, "{v}");
            assert_eq!(data["http_status"], status, "{v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("the enforcer answered a redirect ({status})")),
                "{v}"
            );
        }
        p.close_stdin();
        p.wait(Duration::from_secs(6));
        let stderr = p.stderr();
        assert_eq!(
            stderr.matches("thoth never follows redirects").count(),
            1,
            "logged once, not per call: {stderr}"
        );
        assert!(
            stderr.contains(&format!("to {evil}/v1/enforce")),
            "{stderr}"
        );
        let asked: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.path.clone())
            .collect();
        assert!(
            asked.iter().filter(|p| *p == "/v1/enforce").count() == 2
                && asked.iter().any(|p| p == "/v1/events/batch"),
            "the enforcer and telemetry were asked: {asked:?}"
        );
    }

    // A hold whose polls (and explanation) are redirected to the other origin.
    let target = evil.clone();
    let (url, seen) = raw_server(move |request, stream| match request.path.as_str() {
        "/v1/enforce" => respond_json(
            stream,
            200,
            &json!({ "decision": "STEP_UP", "reason": "needs a human", "hold_token": "h1", "approval_url": "https://approve.example/h1" }),
        ),
        path => respond_redirect(stream, 307, &format!("{target}{path}")),
    });
    let mut p = remote_proxy(
        &s,
        &url,
        &[
            ("THOTH_STEP_UP_HOLD_SECONDS", "1"),
            ("THOTH_STEP_UP_POLL_MS", "100"),
        ],
    );
    p.send(&call(
        3,
        "read_file",
        json!({ "secret_argument": "hunter2" }),
    ));
    let v = p.recv_json();
    assert_eq!(v["error"]["code"], -32002, "still held, not approved: {v}");
    assert!(v["error"]["data"].get("explanation").is_none(), "{v}");
    p.close_stdin();
    p.wait(Duration::from_secs(6));
    let polls = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == "/v1/enforce/hold/h1")
        .count();
    assert!(polls >= 2, "the hold was polled ({polls} polls)");

    let evil_seen = evil_seen.lock().unwrap();
    assert!(
        evil_seen.is_empty(),
        "the other origin was asked: {:?}",
        evil_seen
            .iter()
            .map(|r| (&r.method, &r.path, r.header("x-api-key")))
            .collect::<Vec<_>>()
    );
    assert_eq!(s.read("received.log"), "", "no call reached the server");
}

/// Item 7: unbounded answers. Before: a 300 MB enforce answer was buffered whole (623
/// MB RSS) and its ALLOW obeyed, and a 50 MB explanation was copied into the reply's
/// `message`, `reason` and `explanation`. Now an answer over 1 MiB is an enforcer
/// failure, read no further than the limit, and each text copied into a reply is cut
/// to 2 KiB.
#[test]
fn oversized_answers_are_enforcer_failures_and_texts_are_bounded() {
    let s = Scratch::new("remote-oversized");
    let pad = "x".repeat(3 << 20);
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let long_next = "n".repeat(20_000);
    let (url, _) = raw_server(move |request, stream| {
        let tool = request.json()["tool_name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match (request.path.as_str(), tool.as_str()) {
            // 3 MiB announced by content-length: valid JSON that says ALLOW.
            ("/v1/enforce", "announced") => {
                respond_json(stream, 200, &json!({ "decision": "ALLOW", "pad": pad }))
            }
            // 64 MiB chunked (no length), then a valid ALLOW.
            ("/v1/enforce", "chunked") => {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
                );
                let head = b"{\"decision\":\"ALLOW\",\"pad\":\"";
                let _ = stream.write_all(format!("{:x}\r\n", head.len()).as_bytes());
                let _ = stream.write_all(head);
                let _ = stream.write_all(b"\r\n");
                let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
                for _ in 0..1024 {
                    if stream.write_all(chunk.as_bytes()).is_err() {
                        return;
                    }
                    counter.fetch_add(0x10000, Ordering::SeqCst);
                }
                let _ = stream.write_all(b"2\r\n\"}\r\n0\r\n\r\n");
            }
            ("/v1/enforce", _) => respond_json(
                stream,
                200,
                &json!({ "decision": "BLOCK", "reason": "r".repeat(100_000) }),
            ),
            ("/v1/explain", "huge_explanation") => respond_json(
                stream,
                200,
                &json!({ "what_happened": "h".repeat(5 << 20), "what_to_do_next": "ask" }),
            ),
            ("/v1/explain", _) => respond_json(
                stream,
                200,
                &json!({ "what_happened": "h".repeat(20_000), "why_it_was_blocked": "w", "what_to_do_next": long_next }),
            ),
            _ => respond_json(stream, 202, &json!({})),
        }
    });
    let mut p = remote_proxy(&s, &url, &[]);
    let pid = p.child.id();
    for (id, tool) in [(1, "announced"), (2, "chunked")] {
        p.send(&call(id, tool, json!({})));
        let v = p.recv_json();
        assert_eq!(v["error"]["code"], -32001, "{tool}: {v}");
        assert_eq!(v["error"]["data"]["fallback"], true, "{tool}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("the enforcer's answer is over the 1 MiB limit"),
            "{tool}: {v}"
        );
    }
    let sent = written.load(Ordering::SeqCst);
    assert!(
        sent < 16 << 20,
        "{sent} bytes of the 64 MiB answer were taken"
    );
    let rss = peak_rss_kib(pid);
    eprintln!("peak RSS {rss} KiB after a 3 MiB and a 64 MiB answer ({sent} bytes sent)");
    assert!(rss < 48 * 1024, "peak RSS {rss} KiB");

    // A long reason and a 40 kB explanation: every text in the reply is bounded.
    p.send(&call(3, "long_texts", json!({})));
    let v = p.recv_json();
    assert_eq!(v["error"]["code"], -32001, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.len() <= 2048 + 64 && message.ends_with('…'),
        "{} bytes",
        message.len()
    );
    let data = &v["error"]["data"];
    assert!(data["reason"].as_str().unwrap().len() <= 2048);
    for key in ["what_happened", "what_to_do_next"] {
        let text = data["explanation"][key].as_str().unwrap();
        assert!(
            text.len() <= 2048 && text.ends_with('…'),
            "{key}: {} bytes",
            text.len()
        );
    }
    assert_eq!(data["explanation"]["why_it_was_blocked"], "w");
    // A 5 MiB explanation is not read: the denial stands without one.
    p.send(&call(4, "huge_explanation", json!({})));
    let v = p.recv_json();
    assert_eq!(v["error"]["code"], -32001, "{v}");
    assert!(v["error"]["data"].get("explanation").is_none(), "{v}");
    assert!(
        v.to_string().len() < 16 * 1024,
        "{} bytes",
        v.to_string().len()
    );
    p.close_stdin();
    p.wait(Duration::from_secs(6));
    assert_eq!(s.read("received.log"), "", "no oversized ALLOW was obeyed");
}

/// Item 7: a body fed one byte every 100 ms. Before: the read timeout restarted with
/// every byte and the call ended at read timeout + connect timeout (7 s by default,
/// 3 s here), and the ALLOW it spelled out was obeyed. Now the read timeout is a deadline
/// for the whole request, body included.
#[test]
fn a_slow_body_ends_at_the_deadline() {
    let s = Scratch::new("remote-slow");
    let (url, _) = raw_server(|request, stream| {
        if request.path != "/v1/enforce" {
            return respond_json(stream, 202, &json!({}));
        }
        let body = format!("{{\"decision\":\"ALLOW\",\"pad\":\"{}\"}}", " ".repeat(40));
        let _ = stream.write_all(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        for byte in body.bytes() {
            if stream.write_all(&[byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut p = remote_proxy(&s, &url, &[("THOTH_ENFORCER_TIMEOUT_MS", "1000")]);
    let started = Instant::now();
    p.send(&call(1, "read_file", json!({})));
    let v = p.recv_json();
    let took = started.elapsed();
    assert_eq!(v["error"]["code"], -32001, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{v}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1600),
        "ended after {took:?}, the deadline is 1 s"
    );
    p.close_stdin();
    p.wait(Duration::from_secs(6));
    assert_eq!(s.read("received.log"), "");
}

/// Item 8: CR/LF from the enforcer in an approval URL and a billing message. Before:
/// they reached stderr raw, and `ERROR forged …` appeared as a log line of its own.
/// Now every control character in a logged value is escaped.
#[test]
fn enforcer_texts_cannot_forge_log_lines() {
    let s = Scratch::new("remote-forge");
    let (url, _) = raw_server(|request, stream| {
        let tool = request.json()["tool_name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match (request.path.as_str(), tool.as_str()) {
            ("/v1/enforce", "held") => respond_json(
                stream,
                200,
                &json!({ "decision": "STEP_UP", "hold_token": "h1",
                         "approval_url": "https://approve.example/h1\r\nERROR forged: approvals are off\u{1b}[2K" }),
            ),
            ("/v1/enforce", _) => respond_json(
                stream,
                402,
                &json!({ "error": { "type": "billing_error", "message": "plan expired\nERROR forged: billing ok" } }),
            ),
            ("/v1/enforce/hold/h1", _) => respond_json(stream, 200, &json!({ "resolved": false })),
            _ => respond_json(stream, 404, &json!({})),
        }
    });
    let mut p = remote_proxy(
        &s,
        &url,
        &[
            ("THOTH_STEP_UP_HOLD_SECONDS", "1"),
            ("THOTH_STEP_UP_POLL_MS", "200"),
        ],
    );
    p.send(&call(1, "held", json!({})));
    assert_eq!(p.recv_json()["error"]["code"], -32002);
    p.send(&call(2, "billed", json!({})));
    let v = p.recv_json();
    assert_eq!(v["error"]["code"], -32001);
    // The client's reply keeps the enforcer's text (JSON-escaped).
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("plan expired\nERROR forged")
    );
    p.close_stdin();
    p.wait(Duration::from_secs(6));
    let stderr = p.stderr();
    assert!(
        stderr.contains(r"a tool call waits for approval: https://approve.example/h1\r\nERROR forged: approvals are off\u{1b}[2K"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains(r"the enforcer refused for billing: plan expired\nERROR forged: billing ok"),
        "{stderr}"
    );
    for line in stderr.lines() {
        assert!(
            !line.starts_with("ERROR forged") && !line.contains('\r') && !line.contains('\u{1b}'),
            "a forged line: {line:?}\n{stderr}"
        );
    }
    assert_eq!(stderr.matches("forged").count(), 2, "{stderr}");
}

/// `thoth enforcer serve` sets its limits before it trusts a peer: a wrong key is refused
/// on the headers (the body is never read), slow headers are cut at the deadline, one
/// agent cannot fill the hold table, tool names are bounded, and each key has a rate.
#[test]
fn enforcer_serve_limits_come_before_trust() {
    use std::io::{Read, Write};
    let s = Scratch::new("serve-limits");
    let enforcer = Enforcer::start_with(
        &s,
        HIPAA,
        KEY,
        "approver-9c1",
        &[
            "--request-timeout-ms",
            "500",
            "--max-requests-per-second",
            "5",
            "--max-holds-per-agent",
            "2",
        ],
    );
    let host = enforcer.url.trim_start_matches("http://").to_string();
    let rss_kib = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    let pid = enforcer.child.id();
    let before = rss_kib(pid);
    // 150 unauthenticated connections announcing 2 MB bodies and sending 1 MB each.
    let chunk = vec![b'a'; 64 * 1024];
    let mut refused = 0;
    let mut conns = Vec::new();
    for _ in 0..150 {
        let mut c = std::net::TcpStream::connect(&host).unwrap();
        c.set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let _ = write!(
            c,
            "POST /v1/enforce HTTP/1.1\r\nHost: x\r\nx-api-key: wrong\r\nContent-Length: 2000000\r\n\r\n"
        );
        for _ in 0..16 {
            if c.write_all(&chunk).is_err() {
                break;
            }
        }
        conns.push(c);
    }
    for mut c in conns {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = [0u8; 12];
        if c.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 401") {
            refused += 1;
        }
    }
    let after = rss_kib(pid);
    eprintln!("150 unauthenticated 1 MB bodies: RSS {before} -> {after} KiB, {refused} refused");
    assert_eq!(refused, 150);
    assert!(after < before + 64 * 1024, "RSS {before} -> {after} KiB");

    // Headers that never finish are cut at the deadline.
    let mut slow: Vec<_> = (0..20)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&host).unwrap();
            c.write_all(b"POST /v1/enforce HTTP/1.1\r\nHo").unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c
        })
        .collect();
    let started = Instant::now();
    for c in &mut slow {
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "slow headers held {:?}",
        started.elapsed()
    );

    // One agent gets at most two open holds; a STEP_UP past that comes without one.
    let enforce = |tool: &str| {
        let body = json!({ "agent_id": "a1", "tenant_id": "t", "user_id": "u", "tool_name": tool, "tool_args": { "mrn": "1" }, "session_id": "s1", "enforcement_mode": "block", "environment": "dev" }).to_string();
        http(
            &enforcer.url,
            &format!(
                "POST /v1/enforce HTTP/1.1\r\nx-api-key: {KEY}\r\nContent-Type: application/json"
            ),
            &body,
        )
    };
    let holds: Vec<bool> = (0..3)
        .map(|_| {
            let answer = enforce("patient_lookup");
            assert!(answer.contains("STEP_UP"), "{answer}");
            answer.contains("hold_token")
        })
        .collect();
    assert_eq!(holds, [true, true, false]);
    // Tool names are bounded as in local mode.
    assert!(enforce(&"x".repeat(300)).starts_with("HTTP/1.1 400"));
    // Five a second per key, bursts of ten: thirty at once cannot all pass.
    let statuses: Vec<String> = (0..30)
        .map(|_| enforce("read_file")[..12].to_string())
        .collect();
    assert!(statuses.iter().any(|s| s == "HTTP/1.1 429"), "{statuses:?}");
    assert!(statuses.iter().any(|s| s == "HTTP/1.1 200"), "{statuses:?}");
}

/// The connection cap: peers holding every slot (partial headers, nothing at all, one
/// byte, an HTTP/2 preface — HTTP/2 would have no header deadline) are cut at the
/// deadline, and the next client is served.
#[test]
fn enforcer_serve_caps_connections() {
    use std::io::{Read, Write};
    let s = Scratch::new("serve-cap");
    let enforcer = Enforcer::start_with(
        &s,
        HIPAA,
        KEY,
        "approver-9c1",
        &["--max-connections", "4", "--request-timeout-ms", "500"],
    );
    let host = enforcer.url.trim_start_matches("http://").to_string();
    let openings: [&[u8]; 4] = [
        b"GET /healthz HTTP/1.1\r\nHo",
        b"",
        b"P",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    ];
    let _slow: Vec<_> = openings
        .iter()
        .map(|opening| {
            let mut c = std::net::TcpStream::connect(&host).unwrap();
            c.write_all(opening).unwrap();
            c
        })
        .collect();
    let started = Instant::now();
    let mut c = std::net::TcpStream::connect(&host).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    let got = c.read_exact(&mut head);
    assert!(
        got.is_ok() && &head == b"HTTP/1.1 200",
        "idle peers hold every slot: {got:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn serve_says_where_it_created_the_approver_key() {
    use std::io::BufRead;
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new("approver-key");
    let mut child = s
        .thoth()
        .args([
            "enforcer",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--policy",
            HIPAA,
        ])
        .env_remove("THOTH_APPROVER_KEY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if line.contains("listening on") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let key = s.path(".thoth/approver_key");
    assert!(
        said.contains(&format!(
            "created a new approver key in {} (mode 0600)",
            key.display()
        )),
        "{said}"
    );
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !said.contains(s.read(".thoth/approver_key").trim()),
        "the key is never logged"
    );
}

/// With `THOTH_ENFORCER_GOVERN_METHODS`, resources and prompts are asked of the
/// enforcer (`tool_name` the method, `metadata.mcp_method`, `target`, `mcp_params`), and
/// `thoth enforcer serve` decides them with the policies that name their actions;
/// without it they pass, audited as not governed.
#[test]
fn resources_go_to_the_enforcer_when_set_to() {
    let s = Scratch::new("remote-methods");
    let policy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policies/file-roots.cedar"
    );
    let enforcer = Enforcer::start(&s, policy, KEY, "approver-9c1");
    let read = |id: u32, uri: &str| {
        json!({"jsonrpc":"2.0","id":id,"method":"resources/read","params":{"uri":uri}}).to_string()
    };
    let mut p = remote_proxy(&s, &enforcer.url, &[("THOTH_ENFORCER_GOVERN_METHODS", "1")]);
    p.send(&read(1, "file:///srv/shared/a.txt"));
    assert!(p.recv_json().get("result").is_some());
    p.send(&read(2, "file:///srv/shared/../../etc/passwd"));
    let v = p.recv_json();
    assert_eq!(v["error"]["code"], -32001, "{v}");
    p.send(
        &json!({"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"admin_reset"}})
            .to_string(),
    );
    let v = p.recv_json();
    assert_eq!(v["error"]["code"], -32001, "{v}");
    assert_eq!(
        v["error"]["data"]["matched_rule_ids"],
        json!(["no-admin-prompts"]),
        "{v}"
    );
    p.close_stdin();
    p.wait(Duration::from_secs(5));
    let log = std::fs::read_to_string(s.path("received.log")).unwrap_or_default();
    assert!(
        log.contains("/srv/shared/a.txt")
            && !log.contains("etc/passwd")
            && !log.contains("admin_reset"),
        "{log}"
    );

    // A STEP_UP is a BLOCK for these methods (no hold is polled for them), and an
    // unreachable enforcer takes the failure decision: blocked.
    let step = s.write(
        "step.cedar",
        "permit (principal, action == Thoth::Action::\"resources/read\", resource);\n\
         @id(\"ask\")\n@decision(\"step_up\")\nforbid (principal, action == Thoth::Action::\"resources/read\", resource) when { resource.host == \"ask\" };\n",
    );
    let stepping = Enforcer::start(&s, step.to_str().unwrap(), KEY, "approver-9c1");
    let mut p = remote_proxy(&s, &stepping.url, &[("THOTH_ENFORCER_GOVERN_METHODS", "1")]);
    p.send(&read(1, "res://ask/x"));
    let v = p.recv_json();
    assert_eq!(v["error"]["code"], -32001, "{v}");
    assert_eq!(
        v["error"]["data"]["matched_rule_ids"],
        json!(["ask"]),
        "{v}"
    );
    p.close_stdin();
    p.wait(Duration::from_secs(5));
    let mut p = remote_proxy(
        &s,
        "https://127.0.0.1:9",
        &[("THOTH_ENFORCER_GOVERN_METHODS", "1")],
    );
    p.send(&read(1, "res://any/x"));
    assert_eq!(p.recv_json()["error"]["code"], -32001);
    p.close_stdin();
    p.wait(Duration::from_secs(5));

    let s = Scratch::new("remote-methods-off");
    let mut p = remote_proxy(&s, &enforcer.url, &[]);
    p.send(&read(1, "file:///etc/passwd"));
    assert!(
        p.recv_json().get("result").is_some(),
        "not governed: passed"
    );
    p.close_stdin();
    p.wait(Duration::from_secs(5));
}

/// With `THOTH_ENFORCER_GOVERN_METHODS`, the server's requests to the client — and the
/// requests inside an `input_required` result — are asked of the enforcer before the
/// client sees them (`tool_name` the method, `mcp_params` what the target is read
/// from); `thoth enforcer serve` decides them with the policies that name their
/// actions. The relay holds the server's later lines meanwhile, so their order is
/// kept. Without the setting they pass, audited as not governed.
#[test]
fn server_requests_go_to_the_enforcer_when_set_to() {
    let s = Scratch::new("remote-asks");
    let policy = s.write(
        "asks.cedar",
        "permit (principal, action, resource);\n\
         permit (principal, action == Thoth::Action::\"sampling/createMessage\", resource);\n\
         @id(\"no-sampling-tools\")\nforbid (principal, action == Thoth::Action::\"sampling/createMessage\", resource) when { !resource.tools.isEmpty() };\n",
    );
    let enforcer = Enforcer::start(&s, policy.to_str().unwrap(), KEY, "approver-9c1");
    let sampling = json!({"messages": [], "maxTokens": 10});
    let with_tools = json!({"messages": [], "maxTokens": 10, "tools": [{"name": "rm", "inputSchema": {"type": "object"}}]});
    let ask = |id: u32, params: &Value| {
        json!({"jsonrpc":"2.0","id":id,"method":"fixture/ask","params":{"method":"sampling/createMessage","params":params}}).to_string()
    };
    for governed in [true, false] {
        let envs: &[(&str, &str)] = if governed {
            &[("THOTH_ENFORCER_GOVERN_METHODS", "1")]
        } else {
            &[]
        };
        let mut p = remote_proxy(&s, &enforcer.url, envs);
        // What the client sees, in order, until the answer to `id`.
        let until = |p: &mut Proxy, id: u32| {
            let mut seen = Vec::new();
            loop {
                let v = p.recv_json();
                if v.get("method").is_some() {
                    p.send(&json!({"jsonrpc":"2.0","id":v["id"],"result":{}}).to_string());
                }
                let done = v["id"] == id;
                seen.push(v);
                if done {
                    return seen;
                }
            }
        };
        p.send(&ask(1, &sampling));
        let seen = until(&mut p, 1);
        assert_eq!(
            seen.len(),
            2,
            "the request, then the answer after it: {seen:?}"
        );
        assert_eq!(seen[0]["id"], "srv-1");
        p.send(&ask(2, &with_tools));
        let seen = until(&mut p, 2);
        assert_eq!(seen.len(), if governed { 1 } else { 2 }, "{seen:?}");
        let requests = json!({"ok": {"method": "sampling/createMessage", "params": sampling}, "bad": {"method": "sampling/createMessage", "params": with_tools}});
        p.send(&json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"needs_input","arguments":{"requests": requests}}}).to_string());
        let v = p.recv_json();
        if governed {
            assert_eq!(v["error"]["code"], -32001, "{v}");
            assert_eq!(v["error"]["data"]["input_request"], "bad", "{v}");
            assert_eq!(
                v["error"]["data"]["matched_rule_ids"],
                json!(["no-sampling-tools"])
            );
        } else {
            assert_eq!(v["result"]["resultType"], "input_required", "{v}");
        }
        p.close_stdin();
        p.wait(Duration::from_secs(10));
        let log = s.read("received.log");
        let refused = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["id"] == "srv-2")
            .unwrap_or_else(|| panic!("srv-2 not answered: {log}"));
        if governed {
            assert_eq!(refused["error"]["code"], -32001, "{log}");
        } else {
            assert!(refused.get("result").is_some(), "{log}");
        }
        std::fs::remove_file(s.path("received.log")).unwrap();
    }
    // Each governed one is audited with the enforcer's decision and rule ids.
    let audit = s.audit();
    let blocked = audit
        .lines()
        .filter(|l| {
            l.contains(r#""method":"sampling/createMessage""#)
                && l.contains(r#""rule_ids":["no-sampling-tools"]"#)
        })
        .count();
    assert_eq!(blocked, 2, "the request and the input request: {audit}");
    assert!(audit.contains(r#""input_request":"bad""#), "{audit}");
}

/// The server writes a request the enforcer must judge, answers two calls after it and
/// exits while the enforcer is still deciding: the held line and the answers behind it
/// are relayed once the decision comes, in order, and no call is answered twice (the
/// relay's hold is waited for before calls are declared orphans).
#[test]
fn a_server_exiting_while_its_request_is_judged_loses_nothing() {
    let s = Scratch::new("remote-asks-exit");
    let enforcer = TestServer::start(|seen| {
        if seen.json()["tool_name"] == "sampling/createMessage" {
            std::thread::sleep(Duration::from_millis(1500));
        }
        Canned::json(200, json!({ "decision": "ALLOW" }))
    });
    let mut p = remote_proxy(
        &s,
        &enforcer.url,
        &[("THOTH_ENFORCER_GOVERN_METHODS", "1"), ("THOTH_ENV", "dev")],
    );
    let ask = json!({"jsonrpc":"2.0","id":"srv-9","method":"sampling/createMessage","params":{"messages":[],"maxTokens":1}}).to_string();
    p.send(
        &json!({"jsonrpc":"2.0","id":1,"method":"fixture/raw","params":{"line": ask}}).to_string(),
    );
    p.send(&call(2, "answer_and_exit", json!({})));
    let mut seen = Vec::new();
    while let Some(line) = p.try_recv(Duration::from_secs(10)) {
        seen.push(serde_json::from_str::<Value>(&line).unwrap());
        if seen.iter().filter(|v| v["id"] == 1 || v["id"] == 2).count() >= 2 {
            break;
        }
    }
    p.wait(Duration::from_secs(15));
    seen.extend(
        p.rest()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok()),
    );
    let ids: Vec<&Value> = seen.iter().map(|v| &v["id"]).collect();
    assert_eq!(ids, [&json!("srv-9"), &json!(1), &json!(2)], "{seen:?}");
    assert!(seen.iter().all(|v| v.get("error").is_none()), "{seen:?}");
}
