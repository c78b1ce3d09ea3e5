//! `thoth enforcer serve` scaled out: several replicas on one database share every
//! hold and approval. A hold created on one replica is polled on a second and approved
//! on a third; a replica killed with SIGKILL mid-hold loses nothing it answered; the
//! proxy's retry is admitted through another replica. On a SQLite file here, and on
//! PostgreSQL by `.ci/run`, which starts one (`tests/postgres/start.sh`) and names it in
//! `THOTH_TEST_POSTGRES_URL`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{Enforcer, HIPAA, Proxy, Scratch, fixture, http, http_get};

const KEY: &str = "proxy-key-replicas";
const APPROVER: &str = "approver-replicas";

fn replica(s: &Scratch, database: &str) -> Enforcer {
    Enforcer::start_with(s, HIPAA, KEY, APPROVER, &["--database-url", database])
}

/// `POST /v1/enforce` as a proxy sends it; the decision.
fn enforce(url: &str, tool: &str, args: Value) -> Value {
    let body = json!({
        "agent_id": "fixture", "tenant_id": "acme", "user_id": "u", "tool_name": tool,
        "tool_args": args, "session_id": "replicas", "session_tool_calls": [],
        "enforcement_mode": "block", "environment": "dev",
    })
    .to_string();
    let answer = http(
        url,
        &format!("POST /v1/enforce HTTP/1.1\r\nx-api-key: {KEY}\r\ncontent-type: application/json"),
        &body,
    );
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

fn approve(s: &Scratch, url: &str, token: &str, name: &str) -> Value {
    let out = s
        .thoth()
        .args([
            "approve",
            token,
            "--enforcer-url",
            url,
            "--as",
            name,
            "--json",
        ])
        .env("THOTH_APPROVER_KEY", APPROVER)
        .output()
        .unwrap_or_else(|e| panic!("thoth approve: {e}"));
    crate::util::assert_ok(&out);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn three_replicas_share_holds_and_approvals(name: &str, database: &str) {
    let s = Scratch::new(name);
    let mut a = replica(&s, database);
    let b = replica(&s, database);
    let c = replica(&s, database);
    // Created on A.
    let decided = enforce(&a.url, "patient_lookup", json!({ "mrn": "7" }));
    assert_eq!(decided["decision"], "STEP_UP", "{decided}");
    let token = decided["hold_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!token.is_empty(), "{decided}");
    // Polled on B.
    let pending = http_get(&b.url, &format!("/v1/enforce/hold/{token}"), KEY);
    assert_eq!(pending["resolved"], false, "{pending}");
    assert_eq!(pending["tool_name"], "patient_lookup");
    // A dies mid-hold.
    let _ = a.child.kill();
    let _ = a.child.wait();
    // Approved on C, by a name.
    let approved = approve(&s, &c.url, &token, "alice");
    assert_eq!(approved["resolution"], "ALLOW", "{approved}");
    assert_eq!(approved["resolved_by"], "alice", "{approved}");
    // B sees it, and so does A once it is back.
    let seen = http_get(&b.url, &format!("/v1/enforce/hold/{token}"), KEY);
    assert_eq!(
        (seen["resolution"].clone(), seen["resolved_by"].clone()),
        (json!("ALLOW"), json!("alice")),
        "{seen}"
    );
    assert!(seen["resolved_at"].is_string(), "{seen}");
    let back = replica(&s, database);
    let seen = http_get(&back.url, &format!("/v1/enforce/hold/{token}"), KEY);
    assert_eq!(seen["resolution"], "ALLOW", "{seen}");
    // Once resolved, never again, whichever replica is asked.
    let again = s
        .thoth()
        .args(["deny", &token, "--enforcer-url", &b.url])
        .env("THOTH_APPROVER_KEY", APPROVER)
        .output()
        .unwrap_or_else(|e| panic!("thoth deny: {e}"));
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already resolved"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // End to end: a proxy held on B, the hold approved on C, the retry admitted.
    let mut cmd = s.thoth();
    cmd.args(["run", "--agent-id", "fixture", "--tenant-id", "acme", "--"])
        .arg(fixture())
        .env("THOTH_ENFORCER_URL", &b.url)
        .env("THOTH_API_KEY", KEY)
        .env("THOTH_STEP_UP_HOLD_SECONDS", "1")
        .env("THOTH_STEP_UP_POLL_MS", "50")
        .env("FIXTURE_LOG", s.path("received.log"));
    let mut p = Proxy::start(cmd);
    let call = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "patient_lookup", "arguments": { "mrn": "8" } } })
    .to_string();
    p.send(&call);
    let v = p.recv_json();
    assert_eq!(v["error"]["code"], -32002, "{v}");
    let token = v["error"]["data"]["hold_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    approve(&s, &c.url, &token, "bob");
    // The proxy's background poll (on B) sees it.
    let started = Instant::now();
    while !p.stderr().contains("the next identical call is admitted") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the approval on C never reached the proxy polling B: {}",
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p.send(&call.replace("\"id\":1", "\"id\":2"));
    let v = p.recv_json();
    assert_eq!(v["id"], 2, "{v}");
    assert!(v.get("result").is_some(), "the approved retry ran: {v}");
    p.close_stdin();
    p.wait(Duration::from_secs(10));
    assert_eq!(
        s.read("received.log")
            .lines()
            .filter(|l| l.contains("patient_lookup"))
            .count(),
        1
    );
}

#[test]
fn replicas_on_one_sqlite_file_share_holds_and_approvals() {
    let s = Scratch::new("replicas-db");
    let file = s.path("enforcer.db");
    three_replicas_share_holds_and_approvals(
        "replicas-sqlite",
        &format!("sqlite://{}?mode=rwc", file.display()),
    );
}

#[test]
#[ignore = "needs PostgreSQL: .ci/run starts one and sets THOTH_TEST_POSTGRES_URL"]
fn replicas_on_postgresql_share_holds_and_approvals() {
    let url = std::env::var("THOTH_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("THOTH_TEST_POSTGRES_URL is not set: tests/postgres/start.sh DIR PORT prints one")
    });
    three_replicas_share_holds_and_approvals("replicas-postgres", &url);
}
