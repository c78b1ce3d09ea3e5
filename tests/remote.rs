//! The remote enforcer path end to end: `thoth run` against a real `thoth enforcer
//! serve`, and against a fault-injecting HTTP server on 127.0.0.1.

mod util;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use util::{Canned, Enforcer, HIPAA, Proxy, READ_ONLY, Scratch, TestServer, fixture};

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

fn call(id: u32, tool: &str, args: Value) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": tool, "arguments": args } }).to_string()
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
    let mut p = remote_proxy(
        &s,
        &enforcer.url,
        &[
            ("THOTH_STEP_UP_HOLD_SECONDS", "1"),
            ("THOTH_STEP_UP_POLL_MS", "100"),
        ],
    );
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
            .args([action, &token, "--enforcer-url", &enforcer.url])
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
            matches!(name, "refused" | "timeout" | "500" | "429" | "invalid"),
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
    // What the enforcer was sent: DESIGN §4's body, the key in x-api-key only.
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

#[test]
fn an_approval_after_the_hold_admits_only_the_same_retry() {
    let s = Scratch::new("remote-retry");
    let enforcer = Enforcer::start(&s, HIPAA, KEY, "approver-9c1");
    let mut p = remote_proxy(
        &s,
        &enforcer.url,
        &[
            ("THOTH_STEP_UP_HOLD_SECONDS", "1"),
            ("THOTH_STEP_UP_POLL_MS", "100"),
        ],
    );
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
