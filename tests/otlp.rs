//! OTLP export end to end: `thoth run` in front of the fixture server, an enforcer on
//! loopback, and a collector on loopback that decodes what it receives with the OTLP
//! crate's own message types. A call whose `_meta` carries a `traceparent` continues
//! that trace into the enforcer request and into its exported span; no argument ever
//! reaches the collector; the managed settings can send export elsewhere or forbid it.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use prost::Message;
use serde_json::json;

use crate::util::{Canned, Proxy, Scratch, TestServer, fixture};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const SECRET_ARGUMENT: &str = "argument-text-that-must-stay-home";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
}

/// One proxied session: a call carrying the client's trace, then EOF. Returns what the
/// collector and the enforcer received.
fn session(s: &Scratch, envs: &[(&str, String)]) -> (TestServer, TestServer) {
    let collector = TestServer::start(|_| Canned::json(200, json!({})));
    let enforcer = TestServer::start(|seen| {
        if seen.path == "/v1/enforce" {
            Canned::json(200, json!({ "decision": "ALLOW", "reason": "fine" }))
        } else {
            Canned::json(200, json!({}))
        }
    });
    let mut cmd = s.thoth();
    cmd.args(["run", "--agent-id", "traced", "--"])
        .arg(fixture())
        .env("THOTH_ENFORCER_URL", &enforcer.url)
        .env("THOTH_API_KEY", "otlp-key")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.url)
        .env("OTEL_SERVICE_NAME", "thoth-under-test");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut p = Proxy::start(cmd);
    // (Initialized: thoth then lists the tools itself, and checks calls against their
    // schemas.)
    p.send(
        &json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": { "name": "test", "version": "1" } } })
        .to_string(),
    );
    assert_eq!(p.recv_json()["id"], 0);
    p.send(
        &json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "read_file", "arguments": { "path": SECRET_ARGUMENT },
            "_meta": { "traceparent": format!("00-{TRACE}-{CLIENT_SPAN}-01") } } })
        .to_string(),
    );
    let v = p.recv_json();
    assert!(v.get("result").is_some(), "{v}");
    // A schema refusal quotes the value it refused, and a resource's URI is its own:
    // both stay in the local audit log.
    p.send(
        &json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "launch", "arguments": { "count": SECRET_ARGUMENT } } })
        .to_string(),
    );
    let v = p.recv_json();
    assert_eq!(v["id"], 2, "{v}");
    assert!(
        v.to_string().contains("integer"),
        "refused by the tool's schema: {v}"
    );
    p.send(
        &json!({ "jsonrpc": "2.0", "id": 3, "method": "resources/read",
            "params": { "uri": format!("file:///{SECRET_ARGUMENT}") } })
        .to_string(),
    );
    assert_eq!(p.recv_json()["id"], 3);
    p.close_stdin();
    assert!(p.wait(Duration::from_secs(15)).success(), "{}", p.stderr());
    (collector, enforcer)
}

#[test]
fn a_decision_is_exported_as_a_span_of_the_client_s_trace_and_a_log_record() {
    let s = Scratch::new("otlp");
    let (collector, enforcer) = session(&s, &[]);
    let seen = collector.requests();
    for request in &seen {
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.header("content-type"),
            Some("application/x-protobuf")
        );
        assert!(
            !request
                .body
                .windows(SECRET_ARGUMENT.len())
                .any(|w| w == SECRET_ARGUMENT.as_bytes()),
            "an argument reached the collector"
        );
    }
    let traces: Vec<ExportTraceServiceRequest> = seen
        .iter()
        .filter(|r| r.path == "/v1/traces")
        .map(|r| ExportTraceServiceRequest::decode(r.body.as_slice()).expect("protobuf traces"))
        .collect();
    let spans: Vec<_> = traces
        .iter()
        .flat_map(|t| &t.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let span = spans
        .iter()
        .copied()
        .find(|s| text(&s.attributes, "thoth.tool").as_deref() == Some("read_file"))
        .unwrap_or_else(|| panic!("no span for read_file: {traces:?}"));
    // What a collector receives, for the record (`-- --nocapture` shows it).
    eprintln!("OTLP span as received: {span:?}");
    assert_eq!(hex(&span.trace_id), TRACE, "the client's trace continues");
    assert_eq!(hex(&span.parent_span_id), CLIENT_SPAN);
    assert_eq!(span.name, "tools/call");
    assert_eq!(
        text(&span.attributes, "thoth.decision").as_deref(),
        Some("ALLOW")
    );
    assert_eq!(
        text(&span.attributes, "thoth.tool").as_deref(),
        Some("read_file")
    );
    assert_eq!(
        text(&span.attributes, "thoth.agent_id").as_deref(),
        Some("traced")
    );
    let service = traces[0].resource_spans[0]
        .resource
        .as_ref()
        .map(|r| text(&r.attributes, "service.name"));
    assert_eq!(service, Some(Some("thoth-under-test".into())));
    // The enforcer request carried the span's own traceparent.
    let asked = enforcer
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/enforce")
        .expect("the enforcer was asked");
    assert_eq!(
        asked.header("traceparent"),
        Some(format!("00-{TRACE}-{}-01", hex(&span.span_id)).as_str())
    );
    // And the decision as a log record in the same trace.
    let logs: Vec<ExportLogsServiceRequest> = seen
        .iter()
        .filter(|r| r.path == "/v1/logs")
        .map(|r| ExportLogsServiceRequest::decode(r.body.as_slice()).expect("protobuf logs"))
        .collect();
    let records: Vec<_> = logs
        .iter()
        .flat_map(|l| &l.resource_logs)
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .collect();
    let decision = records
        .iter()
        .find(|r| r.event_name == "thoth.decision")
        .unwrap_or_else(|| panic!("no decision record: {records:?}"));
    eprintln!("OTLP log record as received: {decision:?}");
    assert_eq!(hex(&decision.trace_id), TRACE);
    assert_eq!(decision.span_id, span.span_id);
    assert_eq!(
        text(&decision.attributes, "thoth.decision").as_deref(),
        Some("ALLOW")
    );
}

#[test]
fn the_managed_settings_fix_or_forbid_the_collector() {
    // Fixed: the user's endpoint is ignored; the fleet's collector gets the records.
    let s = Scratch::new("otlp-managed");
    let fleet = TestServer::start(|_| Canned::json(200, json!({})));
    let managed = s.write(
        "managed.json",
        &json!({ "otlp_endpoint": fleet.url, "require_non_root": false }).to_string(),
    );
    let managed = managed.to_string_lossy().into_owned();
    let (user, _) = session(&s, &[("THOTH_MANAGED_SETTINGS_FILE", managed)]);
    assert!(
        user.requests().is_empty(),
        "the user's collector got records"
    );
    assert!(
        fleet.requests().iter().any(|r| r.path == "/v1/traces"),
        "{:?}",
        fleet.requests()
    );
    // Off: nothing anywhere.
    let off = s.write(
        "off.json",
        r#"{"otlp_endpoint":"off","require_non_root":false}"#,
    );
    let off = off.to_string_lossy().into_owned();
    let (user, _) = session(&s, &[("THOTH_MANAGED_SETTINGS_FILE", off)]);
    assert!(user.requests().is_empty(), "{:?}", user.requests());
}
