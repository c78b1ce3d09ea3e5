//! Approvals in the client: a step-up the policy lets the user approve
//! (`@approver("user")`) is asked of the user through MCP elicitation, with the real
//! binary in front of the fixture server and this test as the client.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{Proxy, Scratch, fixture};

const POLICY: &str = r#"permit (principal, action, resource);
@id("mail-needs-the-user") @reason("this tool writes outside the workspace")
@decision("step_up") @approver("user")
forbid (principal, action, resource) when { resource.name == "write_file" };
@id("delete-needs-an-admin") @decision("step_up")
forbid (principal, action, resource) when { resource.name == "delete_file" };
@id("input-needs-the-user") @decision("step_up") @approver("user")
forbid (principal, action, resource) when { resource.name == "needs_input" };
"#;

fn proxy(s: &Scratch, hold_seconds: &str) -> Proxy {
    let policy = s.write("policy.cedar", POLICY);
    let mut cmd = s.thoth();
    cmd.args(["run", "--agent-id", "fixture", "--policy"])
        .arg(&policy)
        .arg("--")
        .arg(fixture())
        .env("FIXTURE_LOG", s.path("received.log"))
        .env("THOTH_STEP_UP_POLL_MS", "50")
        .env("THOTH_STEP_UP_HOLD_SECONDS", hold_seconds);
    Proxy::start(cmd)
}

/// Starts a session whose client declares `capabilities`, under `version`.
fn session(s: &Scratch, version: &str, capabilities: Value, hold_seconds: &str) -> Proxy {
    let mut p = proxy(s, hold_seconds);
    p.send(
        &json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": capabilities,
            "clientInfo": { "name": "test", "version": "1" } } })
        .to_string(),
    );
    assert_eq!(p.recv_json()["id"], 0);
    p.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    p
}

fn write_call(id: u32, text: &str) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "write_file", "arguments": { "path": "/tmp/x", "text": text },
        "_meta": { "progressToken": "tok" } } })
    .to_string()
}

/// The next line that is not a progress notification (counted in `progress`).
fn next_message(p: &Proxy, progress: &mut usize) -> Value {
    loop {
        let v = p.recv_json();
        if v["method"] == "notifications/progress" {
            assert_eq!(v["params"]["progressToken"], "tok", "{v}");
            *progress += 1;
            continue;
        }
        return v;
    }
}

fn received(s: &Scratch) -> String {
    s.read("received.log")
}

/// How many calls of `tool` reached the server.
fn calls_of(s: &Scratch, tool: &str) -> usize {
    received(s)
        .lines()
        .filter(|l| l.contains("tools/call") && l.contains(&format!("\"{tool}\"")))
        .count()
}

fn answer(p: &mut Proxy, question: &Value, result: Value) {
    p.send(&json!({ "jsonrpc": "2.0", "id": question["id"], "result": result }).to_string());
}

#[test]
fn the_user_approves_a_step_up_in_their_client_and_only_that_call_runs() {
    let s = Scratch::new("approve-in-client");
    let mut p = session(
        &s,
        "2025-11-25",
        json!({ "elicitation": { "form": {}, "url": {} } }),
        "10",
    );
    p.send(&write_call(1, "hello\u{202E}"));
    let mut progress = 0;
    let question = next_message(&p, &mut progress);
    assert_eq!(question["method"], "elicitation/create", "{question}");
    let id = question["id"].as_str().unwrap_or_default();
    assert!(id.starts_with("thoth:approval:"), "{question}");
    let params = &question["params"];
    assert_eq!(params["mode"], "form");
    let message = params["message"].as_str().unwrap_or_default();
    for shown in [
        "write_file",
        "the MCP server that calls itself \"fixture\"",
        "this tool writes outside the workspace",
        "/tmp/x",
        // The invisible character is shown, not rendered.
        "hello\\u{202E}",
    ] {
        assert!(message.contains(shown), "{shown:?} in {message}");
    }
    assert_eq!(
        params["requestedSchema"]["properties"]["decision"]["enum"],
        json!(["approve", "deny"])
    );
    assert_eq!(calls_of(&s, "write_file"), 0, "held while the user decides");
    answer(
        &mut p,
        &question,
        json!({ "action": "accept", "content": { "decision": "approve" } }),
    );
    let result = next_message(&p, &mut progress);
    assert_eq!(result["id"], 1, "{result}");
    assert!(result.get("result").is_some(), "{result}");
    assert!(progress >= 1, "the client's timer was kept alive");
    assert_eq!(calls_of(&s, "write_file"), 1);
    // The same call again is asked again: an approval is for one call.
    p.send(&write_call(2, "hello"));
    let again = next_message(&p, &mut progress);
    assert_eq!(again["method"], "elicitation/create", "{again}");
    assert_ne!(again["id"], question["id"]);
    answer(
        &mut p,
        &again,
        json!({ "action": "accept", "content": { "decision": "approve" } }),
    );
    assert_eq!(next_message(&p, &mut progress)["id"], 2);
    // The question and its answers never reached the server.
    p.close_stdin();
    p.wait(Duration::from_secs(10));
    assert!(!received(&s).contains("thoth:approval"), "{}", received(&s));
    assert!(!received(&s).contains("\"decision\""), "{}", received(&s));
    let audit = s.audit();
    assert_eq!(
        audit
            .matches("the user approved this call in their client")
            .count(),
        2,
        "{audit}"
    );
}

#[test]
fn a_declined_cancelled_denied_or_unanswered_question_never_runs_the_call() {
    let s = Scratch::new("decline-in-client");
    let mut p = session(&s, "2025-06-18", json!({ "elicitation": {} }), "1");
    let mut progress = 0;
    for (id, result, how) in [
        (1, json!({ "action": "decline" }), "decline"),
        (2, json!({ "action": "cancel" }), "cancel"),
        (
            3,
            json!({ "action": "accept", "content": { "decision": "deny" } }),
            "deny",
        ),
        (4, json!({ "action": "accept", "content": {} }), "deny"),
    ] {
        p.send(&write_call(id, "x"));
        let question = next_message(&p, &mut progress);
        assert_eq!(question["method"], "elicitation/create", "{question}");
        assert!(
            question["params"].get("mode").is_none(),
            "2025-06-18 has no modes: {question}"
        );
        answer(&mut p, &question, result);
        let v = next_message(&p, &mut progress);
        assert_eq!(v["id"], id, "{v}");
        assert_eq!(v["error"]["code"], -32001, "{how}: {v}");
        assert_eq!(v["error"]["data"]["decision_reason_code"], "USER_DECLINED");
        assert!(
            v["error"]["data"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains(how)),
            "{v}"
        );
    }
    // Not answered within the hold: -32002 as for any hold, and the question is
    // withdrawn from the client.
    p.send(&write_call(5, "x"));
    let question = next_message(&p, &mut progress);
    let mut saw_cancel = false;
    let late = loop {
        let v = next_message(&p, &mut progress);
        if v["method"] == "notifications/cancelled" {
            assert_eq!(v["params"]["requestId"], question["id"], "{v}");
            saw_cancel = true;
            continue;
        }
        break v;
    };
    assert_eq!(late["id"], 5, "{late}");
    assert_eq!(late["error"]["code"], -32002, "{late}");
    assert!(
        saw_cancel
            || p.try_recv(Duration::from_secs(2))
                .is_some_and(|l| l.contains("notifications/cancelled")),
        "the unanswered question is cancelled"
    );
    // An answer after that changes nothing and is not relayed.
    answer(
        &mut p,
        &question,
        json!({ "action": "accept", "content": { "decision": "approve" } }),
    );
    // A client's answer to a thoth id never opened is dropped too.
    p.send(r#"{"jsonrpc":"2.0","id":"thoth:approval:forged","result":{"action":"accept","content":{"decision":"approve"}}}"#);
    p.send(r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#);
    assert_eq!(next_message(&p, &mut progress)["id"], 9);
    p.close_stdin();
    p.wait(Duration::from_secs(10));
    assert_eq!(calls_of(&s, "write_file"), 0, "{}", received(&s));
    assert!(!received(&s).contains("thoth:approval"), "{}", received(&s));
    let audit = s.audit();
    assert_eq!(
        audit
            .matches("did not approve this call in their client")
            .count(),
        4,
        "{audit}"
    );
    assert!(
        audit.contains("did not answer in their client in time"),
        "{audit}"
    );
}

#[test]
fn the_client_is_never_asked_without_the_capability_or_the_policy_s_leave() {
    let s = Scratch::new("not-asked");
    let delete = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "delete_file", "arguments": {} } })
    .to_string();
    for (why, capabilities, call) in [
        ("no elicitation capability", json!({}), write_call(1, "x")),
        (
            "a step-up the policy gives to someone else",
            json!({ "elicitation": { "form": {} } }),
            delete,
        ),
        (
            "URL mode only: a form cannot be shown",
            json!({ "elicitation": { "url": {} } }),
            write_call(3, "x"),
        ),
    ] {
        let mut p = session(&s, "2025-11-25", capabilities, "10");
        p.send(&call);
        // Today's -32002, at once: no question first.
        let v = p.recv_json();
        assert_eq!(v["error"]["code"], -32002, "{why}: {v}");
        p.close_stdin();
        p.wait(Duration::from_secs(10));
    }
    assert_eq!(calls_of(&s, "write_file") + calls_of(&s, "delete_file"), 0);
}

#[test]
fn a_cancelled_call_withdraws_its_question() {
    let s = Scratch::new("cancel-held");
    let mut p = session(&s, "2025-11-25", json!({ "elicitation": {} }), "10");
    p.send(&write_call(1, "x"));
    let mut progress = 0;
    let question = next_message(&p, &mut progress);
    assert_eq!(question["method"], "elicitation/create");
    p.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#);
    let v = next_message(&p, &mut progress);
    assert_eq!(v["method"], "notifications/cancelled", "{v}");
    assert_eq!(v["params"]["requestId"], question["id"]);
    answer(
        &mut p,
        &question,
        json!({ "action": "accept", "content": { "decision": "approve" } }),
    );
    p.close_stdin();
    p.wait(Duration::from_secs(10));
    assert_eq!(calls_of(&s, "write_file"), 0, "{}", received(&s));
}

/// A 2026-07-28 request: the envelope in `_meta`, no initialize.
fn stateless_call(id: u32, text: &str, extra: Value) -> String {
    stateless(
        id,
        "write_file",
        json!({ "path": "/tmp/x", "text": text }),
        extra,
    )
}

fn stateless(id: u32, tool: &str, arguments: Value, extra: Value) -> String {
    let mut params = json!({
        "name": tool, "arguments": arguments,
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": { "name": "test", "version": "1" },
            "io.modelcontextprotocol/clientCapabilities": { "elicitation": { "form": {} } },
        },
    });
    if let (Some(map), Value::Object(extra)) = (params.as_object_mut(), extra) {
        map.extend(extra);
    }
    json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params }).to_string()
}

#[test]
fn a_stateless_session_gets_the_question_as_input_required_and_its_retry_brings_the_answer() {
    let s = Scratch::new("approve-stateless");
    let mut p = proxy(&s, "10");
    p.send(&stateless_call(1, "x", json!({})));
    let v = p.recv_json();
    assert_eq!(v["id"], 1, "{v}");
    let result = &v["result"];
    assert_eq!(result["resultType"], "input_required", "{v}");
    let asked = &result["inputRequests"]["thoth.approval"];
    assert_eq!(asked["method"], "elicitation/create", "{v}");
    assert_eq!(asked["params"]["mode"], "form");
    let token = result["requestState"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(token.starts_with("thoth:approval:"), "{v}");
    let approve = json!({ "action": "accept", "content": { "decision": "approve" } });
    // The retry of another call does not carry this approval.
    p.send(&stateless_call(
        2,
        "other text",
        json!({ "requestState": token, "inputResponses": { "thoth.approval": approve } }),
    ));
    let v = p.recv_json();
    assert_eq!(v["error"]["code"], -32001, "{v}");
    assert_eq!(
        v["error"]["data"]["decision_reason_code"],
        "APPROVAL_MISMATCH"
    );
    // The token was used up by that attempt: the real retry is asked again.
    p.send(&stateless_call(
        3,
        "x",
        json!({ "requestState": token, "inputResponses": { "thoth.approval": approve } }),
    ));
    let v = p.recv_json();
    assert_eq!(v["result"]["resultType"], "input_required", "{v}");
    let token = v["result"]["requestState"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    p.send(&stateless_call(
        4,
        "x",
        json!({ "requestState": token, "inputResponses": { "thoth.approval": approve } }),
    ));
    let v = p.recv_json();
    assert_eq!(v["id"], 4, "{v}");
    assert!(
        v.get("result")
            .is_some_and(|r| r.get("resultType").is_none()),
        "{v}"
    );
    assert_eq!(calls_of(&s, "write_file"), 1);
    // What reached the server is the call without thoth's token and answer.
    let sent = received(&s);
    let call = sent
        .lines()
        .find(|l| l.contains("write_file"))
        .unwrap_or_default();
    let call: Value = serde_json::from_str(call).unwrap_or_default();
    assert!(call["params"].get("requestState").is_none(), "{call}");
    assert!(call["params"].get("inputResponses").is_none(), "{call}");
    assert_eq!(call["params"]["arguments"]["text"], "x");
    // A declined answer blocks.
    p.send(&stateless_call(5, "y", json!({})));
    let token = p.recv_json()["result"]["requestState"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    p.send(&stateless_call(
        6,
        "y",
        json!({ "requestState": token, "inputResponses": { "thoth.approval": { "action": "decline" } } }),
    ));
    let v = p.recv_json();
    assert_eq!(v["error"]["code"], -32001, "{v}");
    assert_eq!(v["error"]["data"]["decision_reason_code"], "USER_DECLINED");
    p.close_stdin();
    p.wait(Duration::from_secs(10));
    assert_eq!(calls_of(&s, "write_file"), 1);
}

const KEY: &str = "proxy-key-5e1b";
const APPROVER: &str = "approver-77d0";

/// `enforcer serve` under [`POLICY`], and `thoth run` in remote mode in front of the
/// fixture, holding calls for 20 s and polling every 50 ms.
fn remote_session(s: &Scratch) -> (crate::util::Enforcer, Proxy) {
    let policy = s.write("policy.cedar", POLICY);
    let enforcer =
        crate::util::Enforcer::start(s, policy.to_str().unwrap_or_default(), KEY, APPROVER);
    let mut cmd = s.thoth();
    cmd.args(["run", "--agent-id", "fixture", "--"])
        .arg(fixture())
        .env("THOTH_ENFORCER_URL", &enforcer.url)
        .env("THOTH_API_KEY", KEY)
        .env("FIXTURE_LOG", s.path("received.log"))
        .env("THOTH_STEP_UP_POLL_MS", "50")
        .env("THOTH_STEP_UP_HOLD_SECONDS", "20");
    (enforcer, Proxy::start(cmd))
}

#[test]
fn a_remote_hold_shows_its_approval_page_in_the_client_and_waits_for_the_hold() {
    let s = Scratch::new("approve-page");
    let (enforcer, mut p) = remote_session(&s);
    p.send(
        &json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": { "elicitation": { "url": {} } },
            "clientInfo": { "name": "test", "version": "1" } } })
        .to_string(),
    );
    assert_eq!(p.recv_json()["id"], 0);
    let mut progress = 0;
    p.send(&write_call(1, "x"));
    let page = next_message(&p, &mut progress);
    assert_eq!(page["method"], "elicitation/create", "{page}");
    assert_eq!(page["params"]["mode"], "url");
    let url = page["params"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(url.starts_with(&enforcer.url), "{page}");
    let token = url.rsplit('/').next().unwrap_or_default().to_string();
    let elicitation = page["params"]["elicitationId"].clone();
    // Opening the page approves nothing: the call still waits for the hold.
    answer(&mut p, &page, json!({ "action": "accept" }));
    let watched = std::time::Instant::now();
    while watched.elapsed() < Duration::from_millis(500) {
        if let Some(line) = p.try_recv(Duration::from_millis(100)) {
            assert!(
                line.contains("notifications/progress"),
                "the call was not held: {line}"
            );
        }
    }
    assert_eq!(calls_of(&s, "write_file"), 0);
    let approved = s
        .thoth()
        .args(["approve", &token, "--enforcer-url", &enforcer.url])
        .env("THOTH_APPROVER_KEY", APPROVER)
        .output()
        .unwrap_or_else(|e| panic!("thoth approve: {e}"));
    crate::util::assert_ok(&approved);
    // (The notification and the server's answer reach the client in either order.)
    let mut two = [
        next_message(&p, &mut progress),
        next_message(&p, &mut progress),
    ];
    two.sort_by_key(|m| m.get("id").is_some());
    let [complete, result] = two;
    assert_eq!(
        complete["method"], "notifications/elicitation/complete",
        "{complete}"
    );
    assert_eq!(complete["params"]["elicitationId"], elicitation);
    assert_eq!(result["id"], 1, "{result}");
    assert!(result.get("result").is_some(), "{result}");
    // Declining the page ends the hold: the call never runs.
    p.send(&write_call(2, "y"));
    let page = next_message(&p, &mut progress);
    assert_eq!(page["params"]["mode"], "url", "{page}");
    answer(&mut p, &page, json!({ "action": "decline" }));
    let v = next_message(&p, &mut progress);
    assert_eq!(v["id"], 2, "{v}");
    assert_eq!(v["error"]["code"], -32001, "{v}");
    assert_eq!(v["error"]["data"]["decision_reason_code"], "USER_DECLINED");
    p.close_stdin();
    p.wait(Duration::from_secs(10));
    assert_eq!(calls_of(&s, "write_file"), 1, "{}", received(&s));
}

/// A server that asks for input itself (its own `requestState` rounds) on a call the
/// user approved: its rounds on that very call are admitted without asking the user
/// again, within bounds; the user was asked once.
#[test]
fn the_server_s_own_input_rounds_on_an_approved_stateless_call_are_not_asked_again() {
    let s = Scratch::new("approve-rounds");
    let mut p = proxy(&s, "10");
    let args = json!({ "requests": { "where": { "method": "roots/list" } } });
    p.send(&stateless(1, "needs_input", args.clone(), json!({})));
    let v = p.recv_json();
    let token = v["result"]["requestState"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(token.starts_with("thoth:approval:"), "{v}");
    let approve = json!({ "action": "accept", "content": { "decision": "approve" } });
    p.send(&stateless(
        2,
        "needs_input",
        args.clone(),
        json!({ "requestState": token, "inputResponses": { "thoth.approval": approve } }),
    ));
    // The server's own round, relayed as it sent it.
    let v = p.recv_json();
    assert_eq!(v["id"], 2, "{v}");
    assert_eq!(v["result"]["requestState"], "state-1", "{v}");
    assert_eq!(
        v["result"]["inputRequests"]["where"]["method"],
        "roots/list"
    );
    p.send(&stateless(
        3,
        "needs_input",
        args.clone(),
        json!({ "requestState": "state-1", "inputResponses": { "where": { "roots": [] } } }),
    ));
    let v = p.recv_json();
    assert_eq!(v["id"], 3, "{v}");
    let text = v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("roots"), "the server got its answer: {v}");
    // Another call carrying a server's state is asked as any other.
    p.send(&stateless(
        4,
        "needs_input",
        json!({ "requests": {} }),
        json!({ "requestState": "state-1" }),
    ));
    let v = p.recv_json();
    assert!(
        v["result"]["requestState"]
            .as_str()
            .is_some_and(|t| t.starts_with("thoth:approval:")),
        "{v}"
    );
    p.close_stdin();
    p.wait(Duration::from_secs(10));
    let sent = received(&s);
    assert!(!sent.contains("thoth:approval"), "{sent}");
    assert_eq!(calls_of(&s, "needs_input"), 2, "{sent}");
}

/// The server cannot use thoth's id namespace: a request of its with such an id is
/// refused to it and never reaches the client (whose answer thoth would take for an
/// answer to its own question), and a client's cancellation naming a thoth id never
/// reaches the server (a question's id must stay unknown to it).
#[test]
fn the_server_never_gets_near_thoth_s_own_ids() {
    let s = Scratch::new("own-ids");
    let mut p = session(&s, "2025-11-25", json!({ "elicitation": {} }), "10");
    p.send(
        &json!({ "jsonrpc": "2.0", "id": 5, "method": "fixture/raw", "params": {
            "line": r#"{"jsonrpc":"2.0","id":"thoth:approval:guess","method":"roots/list"}"# } })
        .to_string(),
    );
    let v = p.recv_json();
    assert_eq!(
        v["id"], 5,
        "the server's request never reaches the client: {v}"
    );
    p.send(&write_call(6, "x"));
    let mut progress = 0;
    let question = next_message(&p, &mut progress);
    assert_eq!(question["method"], "elicitation/create", "{question}");
    p.send(
        &json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": { "requestId": question["id"] } })
        .to_string(),
    );
    answer(&mut p, &question, json!({ "action": "decline" }));
    assert_eq!(next_message(&p, &mut progress)["error"]["code"], -32001);
    p.close_stdin();
    p.wait(Duration::from_secs(10));
    let sent = received(&s);
    assert!(sent.contains("reserved_id"), "the server was told: {sent}");
    let question_id = question["id"].as_str().unwrap_or_default();
    assert!(!sent.contains(question_id), "{sent}");
}

/// A stateless client of a remote enforcer is shown the hold's approval page through
/// `input_required` (a URL elicitation); its retry brings the answer: opened → the call
/// waits for the hold, and runs when an approver approves it; declined → -32001.
#[test]
fn a_stateless_client_is_shown_the_approval_page_and_its_retry_waits_for_the_hold() {
    let s = Scratch::new("approve-page-stateless");
    let (enforcer, mut p) = remote_session(&s);
    let url_mode = |id: u32, text: &str, extra: Value| {
        let mut call: Value =
            serde_json::from_str(&stateless_call(id, text, extra)).unwrap_or_default();
        call["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] =
            json!({ "elicitation": { "url": {} } });
        call.to_string()
    };
    p.send(&url_mode(1, "x", json!({})));
    let v = p.recv_json();
    assert_eq!(v["result"]["resultType"], "input_required", "{v}");
    let asked = &v["result"]["inputRequests"]["thoth.approval"]["params"];
    assert_eq!(asked["mode"], "url", "{v}");
    let page = asked["url"].as_str().unwrap_or_default().to_string();
    assert!(page.starts_with(&enforcer.url), "{v}");
    let hold = page.rsplit('/').next().unwrap_or_default().to_string();
    let token = v["result"]["requestState"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The page was opened: the retry waits for the hold.
    p.send(&url_mode(
        2,
        "x",
        json!({ "requestState": token, "inputResponses": { "thoth.approval": { "action": "accept" } } }),
    ));
    assert!(
        p.try_recv(Duration::from_millis(300))
            .is_none_or(|l| l.contains("notifications/progress")),
        "the retry was not held"
    );
    assert_eq!(calls_of(&s, "write_file"), 0);
    let approved = s
        .thoth()
        .args(["approve", &hold, "--enforcer-url", &enforcer.url])
        .env("THOTH_APPROVER_KEY", APPROVER)
        .output()
        .unwrap_or_else(|e| panic!("thoth approve: {e}"));
    crate::util::assert_ok(&approved);
    let mut progress = 0;
    let v = next_message(&p, &mut progress);
    assert_eq!(v["id"], 2, "{v}");
    assert!(
        v.get("result")
            .is_some_and(|r| r.get("resultType").is_none()),
        "{v}"
    );
    assert_eq!(calls_of(&s, "write_file"), 1);
    // Declined: blocked at once.
    p.send(&url_mode(3, "y", json!({})));
    let token = p.recv_json()["result"]["requestState"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    p.send(&url_mode(
        4,
        "y",
        json!({ "requestState": token, "inputResponses": { "thoth.approval": { "action": "decline" } } }),
    ));
    let v = p.recv_json();
    assert_eq!(v["error"]["code"], -32001, "{v}");
    assert_eq!(v["error"]["data"]["decision_reason_code"], "USER_DECLINED");
    p.close_stdin();
    p.wait(Duration::from_secs(10));
    assert_eq!(calls_of(&s, "write_file"), 1, "{}", received(&s));
    assert!(!received(&s).contains("thoth:approval"));
}
