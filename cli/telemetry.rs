//! Telemetry: TOOL_CALL_PRE / TOOL_CALL_POST / TOOL_CALL_BLOCK events to
//! `POST {api}/v1/events/batch` (docs/architecture.md §4), where `{api}` is `THOTH_API_URL` or the
//! enforcer URL.
//!
//! Events are a minimal projection of a call — ids, tenant, agent, session, user, tool
//! name and decision metadata — and never carry arguments or results. They never touch
//! the data path: the proxy drops them into a bounded queue (1000) and a background
//! task sends batches of at most 10, with up to 3 attempts on network errors, 408, 429
//! and 5xx. Events that do not fit are counted and reported on stderr. At shutdown the
//! queue is flushed for at most 2 s. The client (`crate::net::client_builder`) follows
//! no redirect: a 3xx is an undelivered batch, so the key and the ingest token reach
//! the configured origin only; answers are judged by their status, their bodies unread.

use std::cell::Cell;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::enforce::Decision;
use crate::settings::{RunSettings, Secret};

/// Events queued at most.
pub const QUEUE: usize = 1000;
/// Events per batch at most.
pub const BATCH: usize = 10;
/// Attempts per batch.
const ATTEMPTS: u32 = 3;
/// How long shutdown waits for the queue to drain.
pub const FLUSH: Duration = Duration::from_secs(2);

/// The proxy's side of telemetry.
pub struct Telemetry {
    tx: mpsc::Sender<Value>,
    dropped: Cell<u64>,
}

/// The sender's configuration.
pub struct Sink {
    pub url: String,
    pub api_key: Secret,
    pub ingest_token: Option<Secret>,
    pub client: reqwest::Client,
}

impl Telemetry {
    /// Starts the background sender on the current `LocalSet`.
    pub fn start(sink: Sink) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::task::spawn_local(send_batches(sink, rx));
        (
            Self {
                tx,
                dropped: Cell::new(0),
            },
            task,
        )
    }

    /// Queues an event; never waits.
    pub fn emit(&self, event: Value) {
        if self.tx.try_send(event).is_err() {
            if self.dropped.get() == 0 {
                tracing::warn!(
                    "telemetry queue full: dropping events (the data path is not affected)"
                );
            }
            self.dropped.set(self.dropped.get() + 1);
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

/// One event: the minimal projection (no arguments, no results).
pub fn event(
    kind: &str,
    settings: &RunSettings,
    session_id: &str,
    tool: &str,
    decision: Option<&Decision>,
) -> Value {
    let mut e = json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "event_type": kind,
        "timestamp": crate::clock::now_rfc3339(),
        "tenant_id": settings.tenant_id,
        "agent_id": settings.agent_id,
        "session_id": session_id,
        "user_id": settings.user_id,
        "endpoint_id": settings.endpoint_id,
        "tool_name": tool,
        "enforcement_mode": settings.mode.as_str(),
        "enforcement_trace_id": session_id,
    });
    if let (Some(d), Some(map)) = (decision, e.as_object_mut()) {
        map.insert("decision".into(), json!(d.verdict.as_str()));
        map.insert("reason".into(), json!(d.reason));
        map.insert("decision_reason_code".into(), json!(d.decision_reason_code));
        map.insert("violation_id".into(), json!(d.violation_id));
        map.insert("matched_rule_ids".into(), json!(d.matched_rule_ids));
    }
    e
}

async fn send_batches(sink: Sink, mut rx: mpsc::Receiver<Value>) {
    let url = format!("{}/v1/events/batch", sink.url.trim_end_matches('/'));
    let mut failures_logged = false;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=ATTEMPTS {
            let mut request = sink
                .client
                .post(&url)
                .bearer_auth(sink.api_key.expose())
                .header("x-api-key", sink.api_key.expose())
                .json(&batch);
            if let Some(token) = &sink.ingest_token {
                request = request.header("x-thoth-event-ingest-token", token.expose());
            }
            let retry = match request.send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => matches!(r.status().as_u16(), 408 | 429 | 500..=599),
                Err(_) => true,
            };
            if !retry || attempt == ATTEMPTS {
                if !failures_logged {
                    tracing::warn!(
                        "telemetry batch could not be delivered (later failures are not logged)"
                    );
                    failures_logged = true;
                }
                break;
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
}
