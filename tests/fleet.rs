//! Fleet commands end to end: the GovAPI agent of `thoth run` against a real HTTP
//! server on 127.0.0.1, `thoth register`, `thoth status` and `thoth health`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::{Canned, Proxy, READ_ONLY, Scratch, TestServer, assert_ok, fixture};
use serde_json::{Value, json};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/clients");

fn governed(s: &Scratch, govapi: &str, envs: &[(&str, &str)]) -> Proxy {
    let mut cmd = s.thoth();
    cmd.args([
        "run",
        "--agent-id",
        "fixture",
        "--policy",
        READ_ONLY,
        "--endpoint-id",
        "host-7",
        "--user-id",
        "ann@example.com",
        "--",
    ])
    .arg(fixture())
    .env("THOTH_GOVAPI_URL", govapi)
    .env("THOTH_HEARTBEAT_INTERVAL_SECONDS", "1")
    .env("THOTH_ENROLLMENT_SOURCE", "jamf");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    Proxy::start(cmd)
}

fn request(id: u32, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

fn by_path<'a>(seen: &'a [crate::util::Seen], suffix: &str) -> Vec<&'a crate::util::Seen> {
    seen.iter().filter(|r| r.path.ends_with(suffix)).collect()
}

#[test]
fn registers_once_heartbeats_and_publishes_the_inventory_in_chunks() {
    let s = Scratch::new("gov-happy");
    let server = TestServer::start(|_| Canned::json(200, json!({"ok": true})));
    let secrets = [
        ("THOTH_GOVAPI_BEARER_TOKEN", "gb-secret-token"),
        ("THOTH_GOVAPI_API_KEY", "gk-secret-key"),
        ("FIXTURE_TOOLS", "150"),
    ];
    let mut p = governed(&s, &server.url, &secrets);
    p.send(&request(1, "initialize", json!({})));
    p.recv_json();
    p.send(&request(2, "tools/list", json!({})));
    let listed = p.recv_json();
    assert_eq!(
        listed["result"]["tools"].as_array().map(Vec::len),
        Some(159)
    );
    // A blocked call counts as a violation in the next heartbeat.
    p.send(&request(
        3,
        "tools/call",
        json!({"name": "write_file", "arguments": {"path": "/x"}}),
    ));
    assert_eq!(p.recv_json()["error"]["code"], -32001);
    std::thread::sleep(Duration::from_millis(2600));
    p.close_stdin();
    assert!(p.wait(Duration::from_secs(8)).success(), "{}", p.stderr());
    let seen = server.requests();

    let registers = by_path(&seen, "/v1/endpoints/register");
    assert_eq!(registers.len(), 1, "registered once");
    let r = registers[0].json();
    assert_eq!(r["endpoint_id"], "host-7");
    assert_eq!(r["agent_ids"], json!(["fixture"]));
    assert_eq!(r["enrollment"], "jamf");
    assert_eq!(r["environment"], "dev");
    assert_eq!(r["os"], "linux");
    assert_eq!(r["proxy_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["employee_email"], "ann@example.com");
    assert_eq!(
        registers[0].header("authorization"),
        Some("Bearer gb-secret-token")
    );
    assert_eq!(registers[0].header("x-api-key"), Some("gk-secret-key"));

    let beats = by_path(&seen, "/v1/endpoints/host-7/heartbeat");
    assert!(beats.len() >= 2, "{} heartbeats", beats.len());
    for pair in beats.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        // The last one is the exit heartbeat; the others follow the 1 s interval.
        if pair[1].at != beats[beats.len() - 1].at {
            assert!(
                gap >= Duration::from_millis(800),
                "heartbeats {gap:?} apart"
            );
        }
    }
    let last = beats[beats.len() - 1].json();
    assert_eq!(last["agent_id"], "fixture");
    assert!(last["session_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(last["decisions"]["blocked"], 1);
    assert_eq!(last["violations_today"], 1);
    assert_eq!(last["sessions_today"], 1);

    let posts = by_path(&seen, "/local/thoth/tool-inventory");
    let sizes: Vec<usize> = posts
        .iter()
        .map(|r| r.json()["tools"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(sizes, [100, 59]);
    for post in &posts {
        let body = String::from_utf8_lossy(&post.body);
        assert!(
            !body.contains("secret-default"),
            "schemas lose default values"
        );
        assert!(!body.contains("\"arguments\""));
    }
    let err = p.stderr();
    assert!(!err.contains("gb-secret-token") && !err.contains("gk-secret-key"));

    // The next session of the same agent does not register again.
    let mut p = governed(&s, &server.url, &[]);
    p.send(&request(1, "initialize", json!({})));
    p.recv_json();
    p.close_stdin();
    assert!(p.wait(Duration::from_secs(8)).success());
    assert_eq!(
        by_path(&server.requests(), "/v1/endpoints/register").len(),
        1
    );

    // status reports the registration and the heartbeat.
    let out = s
        .thoth()
        .env("THOTH_GOVAPI_URL", &server.url)
        .arg("status")
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("registration:     registered "), "{text}");
    assert!(text.contains("agents fixture"), "{text}");
    assert!(text.contains("min ago"), "{text}");
}

#[test]
fn proxies_started_together_register_once() {
    let s = Scratch::new("gov-together");
    let server = TestServer::start(|_| Canned {
        status: 200,
        body: "{}".into(),
        delay: Duration::from_millis(300),
    });
    let mut proxies: Vec<Proxy> = (0..3).map(|_| governed(&s, &server.url, &[])).collect();
    std::thread::sleep(Duration::from_millis(1500));
    for p in &mut proxies {
        p.close_stdin();
    }
    for p in &mut proxies {
        assert!(p.wait(Duration::from_secs(8)).success(), "{}", p.stderr());
    }
    assert_eq!(
        by_path(&server.requests(), "/v1/endpoints/register").len(),
        1
    );
}

#[test]
fn a_govapi_outage_does_not_disturb_the_session() {
    let s = Scratch::new("gov-outage");
    let server = TestServer::start(|_| Canned::json(503, json!({"error": "down"})));
    let mut p = governed(&s, &server.url, &[]);
    let started = Instant::now();
    p.send(&request(1, "initialize", json!({})));
    assert_eq!(p.recv_json()["id"], 1);
    p.send(&request(2, "tools/list", json!({})));
    assert_eq!(p.recv_json()["id"], 2);
    let call = request(
        3,
        "tools/call",
        json!({"name": "read_file", "arguments": {"path": "/etc/hosts"}}),
    );
    p.send(&call);
    let answer = p.recv_json();
    assert!(answer.get("result").is_some(), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the data path never waits for the GovAPI"
    );
    std::thread::sleep(Duration::from_millis(2500));
    p.close_stdin();
    let closing = Instant::now();
    assert!(p.wait(Duration::from_secs(8)).success());
    assert!(
        closing.elapsed() < Duration::from_secs(4),
        "exit waits at most the flush bound"
    );
    let attempts = by_path(&server.requests(), "/v1/endpoints/register").len();
    assert!(attempts >= 2, "retried with backoff ({attempts} attempts)");
    let err = p.stderr();
    assert_eq!(
        err.matches("GovAPI registration failed").count(),
        1,
        "logged once:\n{err}"
    );
    assert!(err.contains("HTTP 503"));
    // Nothing reached stdout but the three answers.
    assert!(p.rest().is_empty());
}

#[test]
fn register_command_sends_and_records() {
    let s = Scratch::new("register");
    let server = TestServer::start(|_| Canned::json(201, json!({})));
    let out = s
        .thoth()
        .args(["register", "--endpoint-id", "mdm-host"])
        .env("THOTH_GOVAPI_URL", &server.url)
        .env("THOTH_ENROLLMENT_SOURCE", "intune")
        .output()
        .expect("register");
    assert_ok(&out);
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/endpoints/register");
    assert_eq!(seen[0].json()["enrollment"], "intune");
    assert_eq!(seen[0].json()["endpoint_id"], "mdm-host");
    let state: Value = serde_json::from_str(&s.read(".thoth/state.json")).expect("state.json");
    assert_eq!(state["registration"]["endpoint_id"], "mdm-host");

    let down = TestServer::start(|_| Canned::json(500, json!({})));
    let out = s
        .thoth()
        .arg("register")
        .env("THOTH_GOVAPI_URL", &down.url)
        .output()
        .expect("register");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 500"));
    // No GovAPI configured in local mode: a configuration error.
    let out = s.thoth().arg("register").output().expect("register");
    assert_eq!(out.status.code(), Some(78));
}

fn place(home: &Path, corpus: &str, rel: &str) {
    let to = home.join(rel);
    std::fs::create_dir_all(to.parent().expect("dir")).expect("mkdir");
    std::fs::copy(Path::new(CORPUS).join(corpus), to).expect("copy");
}

fn health(s: &Scratch, args: &[&str]) -> (Option<i32>, String, String) {
    let out = s.thoth().arg("health").args(args).output().expect("health");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn health_json_shape_and_exit_codes() {
    let s = Scratch::new("health");
    // warn: no client at all.
    let (code, out, _) = health(&s, &["--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(out.lines().count(), 1, "one line");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["Status"], "warn");
    assert_eq!(v["Healthy"], true);
    for (key, value) in v.as_object().expect("object") {
        if key != "checks" {
            assert!(
                !value.is_object() && !value.is_array(),
                "{key} is not a scalar"
            );
            assert!(
                key.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
                "{key}"
            );
        }
    }
    for key in [
        "SchemaVersion",
        "Status",
        "Healthy",
        "ThothVersion",
        "Registered",
        "EnforcerMode",
        "EnforcerReachable",
        "LastHeartbeatUtc",
        "HeartbeatAgeMinutes",
        "ClientsDetected",
        "ServersTotal",
        "ServersWrapped",
        "ServersUnwrapped",
        "ServersRemote",
    ] {
        assert!(v.get(key).is_some(), "{key} missing");
    }
    assert_eq!(v["checks"]["clients"]["status"], "warn");
    assert_eq!(v["EnforcerMode"], "local");
    assert_eq!(v["EnforcerReachable"], "local");

    // fail: a stdio server that is not wrapped.
    place(&s.dir, "cursor.json", ".cursor/mcp.json");
    let (code, out, _) = health(&s, &["--json"]);
    assert_eq!(code, Some(1));
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        (v["Status"].as_str(), v["Healthy"].as_bool()),
        (Some("fail"), Some(false))
    );
    assert_eq!(
        (v["ServersUnwrapped"].as_u64(), v["ServersRemote"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(
        health(&s, &["--jamf", "ServersUnwrapped"]).1,
        "<result>3</result>\n"
    );

    // pass: every server wrapped.
    let out = s
        .thoth()
        .args(["wrap-config", "--all"])
        .output()
        .expect("wrap");
    assert_ok(&out);
    let (code, out, _) = health(&s, &["--json"]);
    assert_eq!(code, Some(0), "{out}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["Status"], "pass");
    assert_eq!(v["ServersWrapped"], 3);
    assert_eq!(
        health(&s, &["--jamf", "Status"]).1,
        "<result>pass</result>\n"
    );

    // Jamf dates, unknown fields.
    std::fs::create_dir_all(s.path(".thoth")).expect("profile");
    s.write(
        ".thoth/state.json",
        r#"{"last_heartbeat_utc": "2026-11-26T14:05:09Z"}"#,
    );
    assert_eq!(
        health(&s, &["--jamf", "LastHeartbeatUtc"]).1,
        "<result>2026-11-26 14:05:09</result>\n"
    );
    let (code, out, err) = health(&s, &["--jamf", "NoSuchField"]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(err.contains("ServersWrapped"), "{err}");

    // fail: a duplicated key could hide an ungoverned server; warn: a file that does
    // not parse at all (the client cannot load it either).
    let wrapped = s.read(".cursor/mcp.json");
    s.write(
        ".cursor/mcp.json",
        "{\"mcpServers\": {\"a\": {\"command\": \"x\"}, \"a\": {\"command\": \"y\"}}}",
    );
    let (code, out, _) = health(&s, &["--json"]);
    assert_eq!(code, Some(1), "{out}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["checks"]["client_files"]["status"], "fail");
    s.write(".cursor/mcp.json", "{\"mcpServers\": ");
    let (code, out, _) = health(&s, &["--json"]);
    assert_eq!(code, Some(0), "{out}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["checks"]["client_files"]["status"], "warn");
    assert_eq!(v["ClientFilesInvalid"], 1);
    s.write(".cursor/mcp.json", &wrapped);

    // fail: an invalid local policy.
    let bad = s.write(
        "bad.cedar",
        "permit (principal, action, resource) when { nonsense };",
    );
    let out = s
        .thoth()
        .args(["health", "--json"])
        .env("THOTH_POLICY_FILE", &bad)
        .output()
        .expect("health");
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["PolicyValid"], false);
    let detail = v["checks"]["policy"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("bad.cedar:1:") && !detail.contains("nonsense"),
        "{detail}"
    );
    // The text report never writes a control character from a user's file raw.
    let hostile = s.write(
        "hostile.cedar",
        "permit (principal, action, resource) when { principal.X == \"a\" \"zz\u{1b}[2J\" };",
    );
    let out = s
        .thoth()
        .arg("health")
        .env("THOTH_POLICY_FILE", &hostile)
        .output()
        .expect("health");
    assert!(
        !out.stdout.contains(&0x1b),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // fail: settings that do not validate.
    let out = s
        .thoth()
        .args(["health", "--json"])
        .env("THOTH_HEARTBEAT_INTERVAL_SECONDS", "0")
        .output()
        .expect("health");
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["SettingsValid"], false);
}

/// health checks what each wrapped entry would run, as its client would start it.
#[test]
fn health_fails_for_wrapped_entries_that_would_not_start() {
    let s = Scratch::new("health-entries");
    place(&s.dir, "cursor.json", ".cursor/mcp.json");
    let good = s.write("good.cedar", "permit (principal, action, resource);");
    let out = s
        .thoth()
        .args(["wrap-config", "--all", "--policy"])
        .arg(&good)
        .output()
        .expect("wrap");
    assert_ok(&out);
    let (code, out, _) = health(&s, &["--json"]);
    assert_eq!(code, Some(0), "{out}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["checks"]["wrapped_entries"]["status"], "pass", "{out}");
    assert_eq!(
        v["checks"]["wrapped_entries"]["detail"],
        "3 wrapped entries would start"
    );
    // The policy the entries name breaks (the default profile policy is untouched).
    std::fs::write(
        &good,
        "permit (principal, action, resource) when { true | false };",
    )
    .unwrap();
    let (code, out, _) = health(&s, &["--json"]);
    assert_eq!(code, Some(1), "{out}");
    let v: Value = serde_json::from_str(&out).expect("json");
    let detail = v["checks"]["wrapped_entries"]["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(v["checks"]["wrapped_entries"]["status"], "fail");
    assert!(
        detail.contains("cursor ")
            && detail
                .contains(".cursor/mcp.json: server \"stripe\": thoth run would refuse to start: "),
        "{detail}"
    );
    assert!(
        detail.contains("good.cedar:1:50: invalid Cedar policy"),
        "{detail}"
    );
    // Never the file's contents (health runs as root over user files).
    assert!(!detail.contains("true | false"), "{detail}");
    // Not even through Cedar's message, which quotes tokens.
    assert!(!detail.contains("invalid token"), "{detail}");
    assert_eq!(v["EntriesFailing"], 3);
    std::fs::write(&good, "permit (principal, action, resource);").unwrap();
    // In prod, as root, every entry would refuse to start (the tests run as root, or
    // the uid is injected).
    let out = s
        .thoth()
        .args(["health", "--json"])
        .env("THOTH_ENV", "prod")
        .env("THOTH_TEST_UID", "0")
        .output()
        .expect("health");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let detail = v["checks"]["wrapped_entries"]["detail"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(out.status.code(), Some(1), "{v}");
    assert!(
        detail.contains("thoth refuses to run as root in prod"),
        "{detail}"
    );
    // An entry whose thoth is gone.
    let text = s.read(".cursor/mcp.json");
    let thoth = env!("CARGO_BIN_EXE_thoth");
    s.write(
        ".cursor/mcp.json",
        &text.replacen(thoth, "/nonexistent/thoth", 1),
    );
    let (code, out, _) = health(&s, &["--json"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("its command /nonexistent/thoth cannot be used"),
        "{out}"
    );
}

#[test]
fn health_reads_other_users_and_reports_the_worst() {
    let s = Scratch::new("health-users");
    let homes = s.path("homes");
    place(&homes.join("ann"), "cursor.json", ".cursor/mcp.json");
    place(
        &homes.join("bob"),
        "windsurf.json",
        ".codeium/windsurf/mcp_config.json",
    );
    std::fs::create_dir_all(homes.join("not-a-user")).expect("mkdir");
    // Bob's servers are wrapped, Ann's are not.
    let out = s
        .thoth()
        .env("HOME", homes.join("bob"))
        .args(["wrap-config", "--all"])
        .output()
        .expect("wrap");
    assert_ok(&out);
    let run = |args: &[&str]| {
        s.thoth()
            .env("THOTH_TEST_HOMES_DIR", &homes)
            .arg("health")
            .args(args)
            .output()
            .expect("health")
    };
    let out = run(&["--json", "--user", "bob"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(&["--json", "--all-users"]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["Users"], 2);
    assert_eq!(v["Status"], "fail");
    assert_eq!(v["User"], "ann");
    assert_eq!(v["ServersWrapped"], 1);
    assert_eq!(v["ServersUnwrapped"], 3);
    assert_eq!(v["checks"]["ann/servers"]["status"], "fail");
    assert_eq!(v["checks"]["bob/servers"]["status"], "pass");
    let out = run(&["--user", "carol"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn status_never_shows_the_key() {
    let s = Scratch::new("status");
    let out = s
        .thoth()
        .arg("status")
        .env("THOTH_API_KEY", "tk_status_secret")
        .env("THOTH_ENFORCER_URL", "https://enforce.example.com")
        .env("THOTH_TENANT_ID", "acme")
        .output()
        .expect("status");
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    for key in [
        "thoth:",
        "profile:",
        "managed settings:",
        "tenant:",
        "user:",
        "endpoint:",
        "environment:",
        "decision point:",
        "enforcement mode:",
        "api key:",
        "tls:",
        "govapi:",
        "registration:",
        "last heartbeat:",
        "clients:",
        "audit log:",
        "audit verified:",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(key)),
            "{key} missing:\n{text}"
        );
    }
    assert!(text.contains("api key:          env THOTH_API_KEY"));
    assert!(text.contains("decision point:   remote https://enforce.example.com"));
    assert!(text.contains("govapi:           https://grid.acme.aten.security"));
    let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("tk_status_secret"));
    let out = s
        .thoth()
        .args(["status", "--json"])
        .env("THOTH_API_KEY", "tk_status_secret")
        .env("THOTH_TENANT_ID", "acme")
        .output()
        .expect("status");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["settings"]["api_key_source"], "env");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("tk_status_secret"));
}

#[test]
fn health_probe_checks_the_enforcer() {
    let s = Scratch::new("health-probe");
    place(&s.dir, "windsurf.json", ".codeium/windsurf/mcp_config.json");
    assert!(
        s.thoth()
            .args(["wrap-config", "--all"])
            .output()
            .expect("wrap")
            .status
            .success()
    );
    let enforcer = TestServer::start(|_| Canned::json(404, json!({})));
    let probe = |url: &str| {
        let out = s
            .thoth()
            .args(["health", "--json", "--probe"])
            .env("THOTH_ENFORCER_URL", url)
            .env("THOTH_API_KEY", "k")
            .env("THOTH_TENANT_ID", "acme")
            .env("THOTH_GOVAPI_URL", url)
            .output()
            .expect("health");
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        (out.status.code(), v)
    };
    let (code, v) = probe(&enforcer.url);
    assert_eq!(v["EnforcerReachable"], "yes", "{v}");
    assert_eq!(v["checks"]["govapi_probe"]["status"], "pass");
    // Registration and heartbeat are missing: warn, not fail.
    assert_eq!((code, v["Status"].as_str()), (Some(0), Some("warn")), "{v}");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let (code, v) = probe(&closed);
    assert_eq!(v["EnforcerReachable"], "no");
    assert_eq!((code, v["Status"].as_str()), (Some(1), Some("fail")));
    // Without --probe nothing is contacted.
    let out = s
        .thoth()
        .args(["health", "--json"])
        .env("THOTH_ENFORCER_URL", &enforcer.url)
        .env("THOTH_API_KEY", "k")
        .output()
        .expect("health");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["EnforcerReachable"], "not_probed");
    assert_eq!(enforcer.requests().len(), 2);
}
