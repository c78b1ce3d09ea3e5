//! OTLP export: audit records and telemetry-grade decision events to an OpenTelemetry
//! collector over OTLP/HTTP (protobuf, the protocol's own message types), as log
//! records, with one span per governed call carrying the decision as attributes.
//!
//! The same rules as telemetry: never arguments or results (the callers hand over
//! names, decisions, codes and counts only), never on the data path (a bounded queue
//! the proxy drops into without waiting; full, it counts what it drops), and asleep
//! while nothing is queued. A call whose `_meta` carries a W3C `traceparent` continues
//! the client's trace: its span is a child of the client's, and the enforcer request
//! carries the span's own `traceparent`. Where export goes is `settings::otlp` (the
//! managed settings can fix or forbid it). This module must never block the proxy.

use std::cell::Cell;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use prost::Message;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::settings::otlp::OtlpSettings;

/// Items queued at most.
pub const QUEUE: usize = 2048;
/// Items per export at most.
const BATCH: usize = 256;
/// How long the exporter gathers after the first item of a batch.
const GATHER: Duration = Duration::from_millis(200);
/// Attempts per export.
const ATTEMPTS: u32 = 3;
/// How long shutdown waits for the queue to drain.
pub const FLUSH: Duration = Duration::from_secs(2);

/// A W3C trace context: the trace, and the parent span in it (none: a new trace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub parent: Option<[u8; 8]>,
    pub sampled: bool,
}

impl TraceContext {
    /// Reads a `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); all-zero ids and other
    /// versions' extra fields are refused, as the W3C spec says.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id: [u8; 16] = hex(trace)?.try_into().ok()?;
        let span_id: [u8; 8] = hex(span)?.try_into().ok()?;
        let [flags]: [u8; 1] = hex(flags)?.try_into().ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent: Some(span_id),
            sampled: flags & 1 == 1,
        })
    }

    /// The `traceparent` of a tools/call's `params._meta`, when it has a valid one
    /// (found without parsing a frame that cannot hold one).
    pub fn of_call(frame: &[u8]) -> Option<Self> {
        static KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"traceparent"));
        KEY.find(frame)?;
        let Ok(thoth_core::Message::Request(call)) = thoth_core::scan(frame) else {
            return None;
        };
        // A member twice (two traceparents) is no trace: read one way only.
        let params = crate::enforce::arguments::parse(call.params()?.of(frame)).ok()?;
        Self::parse(params.get("_meta")?.get("traceparent")?.as_str()?)
    }

    /// A new trace (no client trace came with the call).
    pub fn fresh() -> Self {
        Self {
            trace_id: *uuid::Uuid::new_v4().as_bytes(),
            parent: None,
            sampled: true,
        }
    }

    /// The `traceparent` naming `span` in this trace (for the enforcer request).
    pub fn header(&self, span: [u8; 8]) -> String {
        format!(
            "00-{}-{}-{:02x}",
            to_hex(&self.trace_id),
            to_hex(&span),
            u8::from(self.sampled)
        )
    }
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2)
        || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh span id.
pub fn span_id() -> [u8; 8] {
    let id = uuid::Uuid::new_v4();
    let mut span = [0u8; 8];
    span.copy_from_slice(&id.as_bytes()[..8]);
    span
}

/// One governed call's span.
#[derive(Debug, Clone)]
pub struct CallSpan {
    pub trace: TraceContext,
    pub span_id: [u8; 8],
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    /// Names, decisions, codes: never arguments or results.
    pub attributes: Vec<(String, Value)>,
    pub denied: bool,
}

/// What is queued for export.
#[derive(Debug, Clone)]
pub enum Item {
    /// An audit record or event: its name and fields (never arguments or results).
    Log {
        time_unix_nano: u64,
        name: String,
        attributes: Vec<(String, Value)>,
        trace: Option<(TraceContext, [u8; 8])>,
    },
    Span(Box<CallSpan>),
}

/// Nanoseconds since the epoch, now.
pub fn now_unix_nano() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0)
}

/// The proxy's side of the export.
pub struct Otlp {
    tx: mpsc::Sender<Item>,
    dropped: Cell<u64>,
}

impl Otlp {
    /// Starts the exporter on the current `LocalSet`.
    pub fn start(
        settings: OtlpSettings,
        client: reqwest::Client,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::task::spawn_local(export(settings, client, rx));
        (
            Self {
                tx,
                dropped: Cell::new(0),
            },
            task,
        )
    }

    /// Queues an item; never waits.
    pub fn send(&self, item: Item) {
        if self.tx.try_send(item).is_err() {
            if self.dropped.get() == 0 {
                tracing::warn!("OTLP queue full: dropping records (the data path is not affected)");
            }
            self.dropped.set(self.dropped.get() + 1);
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

fn any(value: &Value) -> AnyValue {
    use any_value::Value as V;
    let inner = match value {
        Value::String(s) => V::StringValue(s.clone()),
        Value::Bool(b) => V::BoolValue(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => V::IntValue(i),
            None => V::DoubleValue(n.as_f64().unwrap_or_default()),
        },
        Value::Array(items) => V::ArrayValue(opentelemetry_proto::tonic::common::v1::ArrayValue {
            values: items.iter().map(any).collect(),
        }),
        Value::Null => V::StringValue(String::new()),
        Value::Object(_) => V::StringValue(value.to_string()),
    };
    AnyValue { value: Some(inner) }
}

fn attributes(pairs: &[(String, Value)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: Some(any(v)),
            ..Default::default()
        })
        .collect()
}

fn resource(settings: &OtlpSettings) -> Resource {
    let mut pairs = vec![
        (
            "service.name".to_string(),
            Value::String(settings.service_name.clone()),
        ),
        (
            "service.version".to_string(),
            Value::String(env!("CARGO_PKG_VERSION").into()),
        ),
    ];
    pairs.extend(
        settings
            .resource
            .iter()
            .filter(|(k, _)| k != "service.name")
            .map(|(k, v)| (k.clone(), Value::String(v.clone()))),
    );
    Resource {
        attributes: attributes(&pairs),
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "thoth".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// The two export requests for a batch (either may be empty).
fn requests(
    settings: &OtlpSettings,
    batch: Vec<Item>,
) -> (ExportLogsServiceRequest, ExportTraceServiceRequest) {
    let mut logs = Vec::new();
    let mut spans = Vec::new();
    for item in batch {
        match item {
            Item::Log {
                time_unix_nano,
                name,
                attributes: attrs,
                trace,
            } => logs.push(LogRecord {
                time_unix_nano,
                observed_time_unix_nano: time_unix_nano,
                severity_number: 9, // INFO
                severity_text: "INFO".into(),
                body: Some(any(&Value::String(name.clone()))),
                attributes: attributes(&attrs),
                trace_id: trace.map(|(t, _)| t.trace_id.to_vec()).unwrap_or_default(),
                span_id: trace.map(|(_, s)| s.to_vec()).unwrap_or_default(),
                event_name: name,
                ..Default::default()
            }),
            Item::Span(span) => spans.push(Span {
                trace_id: span.trace.trace_id.to_vec(),
                span_id: span.span_id.to_vec(),
                parent_span_id: span.trace.parent.map(|p| p.to_vec()).unwrap_or_default(),
                name: "tools/call".into(),
                kind: 2, // SERVER: the client's request, served
                start_time_unix_nano: span.start_unix_nano,
                end_time_unix_nano: span.end_unix_nano,
                attributes: attributes(&span.attributes),
                status: Some(Status {
                    code: if span.denied {
                        status::StatusCode::Error as i32
                    } else {
                        status::StatusCode::Ok as i32
                    },
                    message: String::new(),
                }),
                ..Default::default()
            }),
        }
    }
    let logs = if logs.is_empty() {
        Vec::new()
    } else {
        vec![ResourceLogs {
            resource: Some(resource(settings)),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope()),
                log_records: logs,
                ..Default::default()
            }],
            ..Default::default()
        }]
    };
    let spans = if spans.is_empty() {
        Vec::new()
    } else {
        vec![ResourceSpans {
            resource: Some(resource(settings)),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }]
    };
    (
        ExportLogsServiceRequest {
            resource_logs: logs,
        },
        ExportTraceServiceRequest {
            resource_spans: spans,
        },
    )
}

async fn post(settings: &OtlpSettings, client: &reqwest::Client, url: &str, body: Vec<u8>) -> bool {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=ATTEMPTS {
        let mut request = client
            .post(url)
            .header("content-type", "application/x-protobuf")
            .timeout(settings.timeout)
            .body(body.clone());
        for (name, value) in &settings.headers {
            request = request.header(name.as_str(), value.expose());
        }
        let retry = match request.send().await {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => matches!(r.status().as_u16(), 408 | 429 | 502..=504),
            Err(_) => true,
        };
        if !retry || attempt == ATTEMPTS {
            return false;
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    false
}

/// Exports batches until the queue closes; asleep while it is empty.
async fn export(settings: OtlpSettings, client: reqwest::Client, mut rx: mpsc::Receiver<Item>) {
    let mut failures_logged = false;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let deadline = tokio::time::Instant::now() + GATHER;
        while batch.len() < BATCH {
            let room = BATCH - batch.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let (logs, traces) = requests(&settings, std::mem::take(&mut batch));
        let mut delivered = true;
        if !logs.resource_logs.is_empty() && !settings.logs_url.is_empty() {
            delivered &= post(&settings, &client, &settings.logs_url, logs.encode_to_vec()).await;
        }
        if !traces.resource_spans.is_empty() && !settings.traces_url.is_empty() {
            delivered &= post(
                &settings,
                &client,
                &settings.traces_url,
                traces.encode_to_vec(),
            )
            .await;
        }
        if !delivered && !failures_logged {
            tracing::warn!("an OTLP export could not be delivered (later failures are not logged)");
            failures_logged = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_reads_as_the_w3c_spec_writes_it() {
        let t = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        assert_eq!(to_hex(&t.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent.map(|p| to_hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(t.sampled);
        assert_eq!(
            t.header([1, 2, 3, 4, 5, 6, 7, 8]),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0100",
            "",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        let frame = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}}}"#;
        let t = TraceContext::of_call(frame).expect("in _meta");
        assert!(!t.sampled);
        assert_eq!(TraceContext::of_call(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"traceparent"}}"#), None);
        let twice = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-00"}}}"#;
        assert_eq!(TraceContext::of_call(twice), None, "two readings: none");
    }

    #[test]
    fn a_batch_encodes_as_the_collector_decodes_it() {
        let settings = OtlpSettings {
            logs_url: "x".into(),
            traces_url: "y".into(),
            headers: Vec::new(),
            timeout: Duration::from_secs(1),
            service_name: "svc".into(),
            resource: vec![("team".into(), "sec".into())],
        };
        let trace = TraceContext::fresh();
        let (logs, traces) = requests(
            &settings,
            vec![
                Item::Log {
                    time_unix_nano: 5,
                    name: "decision".into(),
                    attributes: vec![("thoth.decision".into(), Value::from("BLOCK"))],
                    trace: Some((trace, [9; 8])),
                },
                Item::Span(Box::new(CallSpan {
                    trace,
                    span_id: [9; 8],
                    start_unix_nano: 1,
                    end_unix_nano: 2,
                    attributes: vec![("thoth.tool".into(), Value::from("rm"))],
                    denied: true,
                })),
            ],
        );
        let logs = ExportLogsServiceRequest::decode(logs.encode_to_vec().as_slice()).expect("logs");
        let record = &logs.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.event_name, "decision");
        assert_eq!(record.trace_id, trace.trace_id.to_vec());
        let traces =
            ExportTraceServiceRequest::decode(traces.encode_to_vec().as_slice()).expect("traces");
        let span = &traces.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.span_id, vec![9; 8]);
        assert!(
            span.parent_span_id.is_empty(),
            "a fresh trace has no parent"
        );
        let service = &traces.resource_spans[0]
            .resource
            .as_ref()
            .expect("resource")
            .attributes[0];
        assert_eq!(service.key, "service.name");
    }
}
