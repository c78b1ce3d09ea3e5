//! The GovAPI agent (docs/architecture.md §4): endpoint registration, heartbeats and the tool
//! inventory seen in `tools/list` responses.
//!
//! It runs on a thread of its own with its own runtime, so nothing it does — a lock
//! wait, a slow or dead GovAPI, parsing a large tools list — can touch the data path.
//! The proxy only bumps atomic counters and hands over the raw bytes of a tools/list
//! response with a non-blocking send (dropped when the queue is full). Failures are
//! logged once, then retried with backoff (1 s doubling up to the heartbeat interval);
//! recovery is logged once too. It never sends tool arguments or results, and never
//! logs a token or key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::clock::{now_rfc3339, today_utc};
use crate::domain::Environment;
use crate::settings::{GovApiSettings, RunSettings};
use crate::state_file::{Registration, StateFile};

/// Tools per inventory post at most.
pub const INVENTORY_CHUNK: usize = 100;
/// Characters of a tool description sent at most.
pub const DESCRIPTION_LIMIT: usize = 4096;
/// tools/list responses queued for the agent at most.
const QUEUE: usize = 16;
/// Tools waiting for a successful post at most.
const PENDING_TOOLS: usize = 1000;
/// How long exit waits for the last inventory and heartbeat.
pub const FLUSH: Duration = Duration::from_secs(2);
/// Timeout of one GovAPI request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What this endpoint tells the GovAPI about itself.
#[derive(Debug, Clone)]
pub struct Identity {
    pub tenant_id: String,
    pub endpoint_id: String,
    pub agent_id: String,
    pub user_id: String,
    pub environment: Environment,
    pub session_id: String,
}

impl Identity {
    pub fn from_settings(s: &RunSettings, session_id: &str) -> Self {
        Self {
            tenant_id: s.tenant_id.clone(),
            endpoint_id: s.endpoint_id.clone(),
            agent_id: s.agent_id.clone(),
            user_id: s.user_id.clone(),
            environment: s.environment,
            session_id: session_id.to_string(),
        }
    }
}

/// Decision counters of one proxy (bumped by the data path, read by heartbeats).
#[derive(Debug, Default)]
pub struct Counters {
    pub allowed: AtomicU64,
    pub blocked: AtomicU64,
    pub step_up: AtomicU64,
    pub modified: AtomicU64,
    pub deferred: AtomicU64,
}

impl Counters {
    /// Counts one decision by its verdict name (ALLOW, BLOCK, …).
    pub fn count(&self, verdict: &str) {
        let counter = match verdict {
            "ALLOW" => &self.allowed,
            "BLOCK" => &self.blocked,
            "STEP_UP" => &self.step_up,
            "MODIFY" => &self.modified,
            _ => &self.deferred,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "allowed": get(&self.allowed),
            "blocked": get(&self.blocked),
            "step_up": get(&self.step_up),
            "modified": get(&self.modified),
            "deferred": get(&self.deferred),
        })
    }
}

/// One tools/list response line and the pin state of its tools (`crate::pins`).
pub struct InventoryPage {
    pub line: Vec<u8>,
    pub pins: std::collections::HashMap<String, crate::domain::PinState>,
}

/// Hands tools/list response lines to the agent (any thread; never waits).
#[derive(Clone)]
pub struct InventorySender(mpsc::Sender<InventoryPage>);

impl InventorySender {
    /// Queues one response line; dropped when the queue is full.
    pub fn send(&self, page: InventoryPage) {
        if self.0.try_send(page).is_err() {
            tracing::debug!("GovAPI inventory queue full: a tools/list response was not sent");
        }
    }
}

/// The proxy's side of the agent.
pub struct Handle {
    pub counters: Arc<Counters>,
    tx: Option<mpsc::Sender<InventoryPage>>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Handle {
    /// Starts the agent thread. `state` is the profile's state file.
    pub fn start(settings: GovApiSettings, identity: Identity, state: StateFile) -> Option<Self> {
        let client = match http_client(&settings.tls) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(
                    "GovAPI disabled: {}",
                    crate::logging::escaped(&e.to_string())
                );
                return None;
            }
        };
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel(QUEUE);
        let (done_tx, done) = std::sync::mpsc::channel();
        let agent = Agent {
            api: GovApi { settings, client },
            identity,
            state,
            counters: counters.clone(),
            reported_violations: 0,
            pending_tools: Vec::new(),
            failing: false,
        };
        let spawned = crate::runtime::spawn_thread(
            "thoth-govapi",
            move || agent.run(rx),
            move || {
                let _ = done_tx.send(());
            },
        );
        if let Err(e) = spawned {
            tracing::warn!("GovAPI disabled: cannot start its thread: {e}");
            return None;
        }
        Some(Self {
            counters,
            tx: Some(tx),
            done,
        })
    }

    /// The sender the client side hands tools/list responses to, once read.
    pub fn inventory_sender(&self) -> Option<InventorySender> {
        self.tx.clone().map(InventorySender)
    }

    /// Stops the agent: flushes the inventory and a last heartbeat for at most [`FLUSH`].
    pub fn finish(mut self) {
        self.tx.take();
        let _ = self.done.recv_timeout(FLUSH + Duration::from_millis(500));
    }
}

/// Why a GovAPI call failed. Messages never carry a URL (it may hold a token) nor a
/// response body.
#[derive(Debug, thiserror::Error)]
pub enum GovApiError {
    #[error(transparent)]
    Tls(#[from] crate::net::TlsError),
    #[error("cannot build the GovAPI HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("POST {path}: HTTP {status}")]
    Status { path: String, status: u16 },
    #[error("POST {path}: {}", without_url(source))]
    Request {
        path: String,
        source: reqwest::Error,
    },
    #[error("state file: {0}")]
    State(std::io::Error),
}

/// The GovAPI client: no redirects (a 3xx is a failure, the tokens never reach another
/// origin); answers are judged by their status, their bodies never read.
fn http_client(tls: &crate::settings::TlsSettings) -> Result<reqwest::Client, GovApiError> {
    let tls = tls.client_config()?;
    crate::net::client_builder(tls)
        .connect_timeout(Duration::from_secs(2))
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(GovApiError::Client)
}

/// The GovAPI's HTTP surface.
pub struct GovApi {
    pub settings: GovApiSettings,
    pub client: reqwest::Client,
}

impl GovApi {
    pub fn new(settings: GovApiSettings) -> Result<Self, GovApiError> {
        let client = http_client(&settings.tls)?;
        Ok(Self { settings, client })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<(), GovApiError> {
        let url = format!("{}{path}", self.settings.url.trim_end_matches('/'));
        let mut request = self.client.post(&url).json(body);
        if let Some(b) = &self.settings.bearer {
            request = request.bearer_auth(b.expose());
        }
        if let Some(k) = &self.settings.api_key {
            request = request.header("x-api-key", k.expose());
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(GovApiError::Status {
                path: path.to_string(),
                status: r.status().as_u16(),
            }),
            Err(source) => Err(GovApiError::Request {
                path: path.to_string(),
                source,
            }),
        }
    }

    /// `POST /v1/endpoints/register` with the endpoint record's fields.
    pub async fn register(
        &self,
        id: &Identity,
        agent_ids: &[String],
        today: (u64, u64),
    ) -> Result<(), GovApiError> {
        let mut body = endpoint_record(id, &self.settings.enrollment);
        body.insert("agent_ids".into(), json!(agent_ids));
        body.insert("sessions_today".into(), json!(today.0));
        body.insert("violations_today".into(), json!(today.1));
        self.post("/v1/endpoints/register", &Value::Object(body))
            .await
    }

    /// Registers `id` and records it in `state`, under the state lock held across the
    /// request, so proxies started together register once. Unless `always`, nothing is
    /// sent when the state already holds this endpoint and agent. The agent ids sent are
    /// those recorded for this endpoint and URL, plus `id`'s (when not empty).
    pub async fn register_recorded(
        &self,
        id: &Identity,
        state: &StateFile,
        always: bool,
    ) -> Result<(), GovApiError> {
        let url = &self.settings.url;
        let locked = state.lock().map_err(GovApiError::State)?;
        let mut s = locked.state();
        if !always && is_registered(&s.registration, url, &id.endpoint_id, &id.agent_id) {
            return Ok(());
        }
        let mut agents = s
            .registration
            .as_ref()
            .filter(|r| r.govapi_url == *url && r.endpoint_id == id.endpoint_id)
            .map(|r| r.agent_ids.clone())
            .unwrap_or_default();
        if !id.agent_id.is_empty() {
            agents.push(id.agent_id.clone());
        }
        agents.sort();
        agents.dedup();
        let today = s
            .today
            .as_ref()
            .map_or((0, 0), |t| (t.sessions, t.violations));
        self.register(id, &agents, today).await?;
        s.registration = Some(Registration {
            govapi_url: url.clone(),
            endpoint_id: id.endpoint_id.clone(),
            registered_at: now_rfc3339(),
            agent_ids: agents,
        });
        locked.save(&s).map_err(GovApiError::State)
    }

    /// `POST /v1/endpoints/{id}/heartbeat`.
    pub async fn heartbeat(
        &self,
        id: &Identity,
        decisions: Value,
        today: (u64, u64),
    ) -> Result<(), GovApiError> {
        let body = json!({
            "endpoint_id": id.endpoint_id,
            "agent_id": id.agent_id,
            "session_id": id.session_id,
            "status": "active",
            "proxy_version": env!("CARGO_PKG_VERSION"),
            "environment": id.environment.as_str(),
            "sessions_today": today.0,
            "violations_today": today.1,
            "decisions": decisions,
            "timestamp": now_rfc3339(),
        });
        let path = format!("/v1/endpoints/{}/heartbeat", path_segment(&id.endpoint_id));
        self.post(&path, &body).await
    }

    /// `POST /{tenant}/thoth/tool-inventory`, at most [`INVENTORY_CHUNK`] tools per post.
    /// Returns how many tools were sent before a failure.
    pub async fn inventory(
        &self,
        id: &Identity,
        tools: &[Value],
    ) -> Result<usize, (usize, GovApiError)> {
        let path = format!("/{}/thoth/tool-inventory", path_segment(&id.tenant_id));
        let mut sent = 0;
        for chunk in tools.chunks(INVENTORY_CHUNK) {
            let body = json!({
                "endpoint_id": id.endpoint_id,
                "agent_id": id.agent_id,
                "session_id": id.session_id,
                "tools": chunk,
            });
            self.post(&path, &body).await.map_err(|e| (sent, e))?;
            sent += chunk.len();
        }
        Ok(sent)
    }
}

/// The endpoint record (docs/architecture.md §4) as far as this endpoint knows it.
fn endpoint_record(id: &Identity, enrollment: &str) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("endpoint_id".into(), json!(id.endpoint_id));
    body.insert("tenant_id".into(), json!(id.tenant_id));
    body.insert("hostname".into(), json!(crate::settings::run::hostname()));
    body.insert("enrollment".into(), json!(enrollment));
    body.insert("environment".into(), json!(id.environment.as_str()));
    body.insert("os".into(), json!(os_name()));
    body.insert("os_version".into(), json!(os_version()));
    body.insert("proxy_version".into(), json!(env!("CARGO_PKG_VERSION")));
    if id.user_id.contains('@') {
        body.insert("employee_email".into(), json!(id.user_id));
    }
    body.insert("status".into(), json!("active"));
    body
}

/// A reqwest error without its URL (which may carry a tenant or token in a query).
fn without_url(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}

/// Percent-encodes one URL path segment.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn os_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "macos"
    } else if cfg!(windows) {
        "windows"
    } else {
        "linux"
    }
}

/// The OS version, best effort (empty when unknown).
pub fn os_version() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    if cfg!(target_os = "macos") {
        let plist = read("/System/Library/CoreServices/SystemVersion.plist");
        plist
            .split("<key>ProductVersion</key>")
            .nth(1)
            .and_then(|rest| rest.split("<string>").nth(1))
            .and_then(|rest| rest.split("</string>").next())
            .unwrap_or_default()
            .to_string()
    } else if cfg!(target_os = "linux") {
        let release = read("/etc/os-release");
        release
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| read("/proc/sys/kernel/osrelease").trim().to_string())
    } else {
        String::new()
    }
}

/// The tools of a tools/list response (or of each response in a batch), sanitised:
/// name, title, description (≤ 4096 characters), input schema without `default`,
/// `example` or `examples` values, annotations, and the pin state (`pin`: `pinned`,
/// `new` or `changed`) when pinning judged it.
pub fn inventory_tools(
    line: &[u8],
    pins: &std::collections::HashMap<String, crate::domain::PinState>,
) -> Vec<Value> {
    let Ok(value) = serde_json::from_slice::<Value>(line) else {
        return Vec::new();
    };
    let responses = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut out = Vec::new();
    for response in responses {
        let Some(tools) = response.pointer("/result/tools").and_then(Value::as_array) else {
            continue;
        };
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                continue;
            };
            let mut entry = Map::new();
            entry.insert("name".into(), json!(name));
            if let Some(title) = tool.get("title").and_then(Value::as_str) {
                entry.insert("title".into(), json!(title));
            }
            if let Some(d) = tool.get("description").and_then(Value::as_str) {
                entry.insert(
                    "description".into(),
                    json!(d.chars().take(DESCRIPTION_LIMIT).collect::<String>()),
                );
            }
            if let Some(schema) = tool.get("inputSchema") {
                entry.insert("input_schema".into(), sanitise_schema(schema, 0));
            }
            if let Some(a) = tool.get("annotations").filter(|a| a.is_object()) {
                entry.insert("annotations".into(), a.clone());
            }
            if let Some(pin) = pins.get(name) {
                entry.insert("pin".into(), json!(pin.as_str()));
            }
            out.push(Value::Object(entry));
        }
    }
    out
}

/// A schema without example or default values (which may hold real data).
fn sanitise_schema(schema: &Value, depth: usize) -> Value {
    if depth > 32 {
        return Value::Null;
    }
    match schema {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "default" | "example" | "examples"))
                .map(|(k, v)| (k.clone(), sanitise_schema(v, depth + 1)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| sanitise_schema(v, depth + 1))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The agent's own loop.
struct Agent {
    api: GovApi,
    identity: Identity,
    state: StateFile,
    counters: Arc<Counters>,
    /// Blocked decisions already added to today's violations.
    reported_violations: u64,
    pending_tools: Vec<Value>,
    failing: bool,
}

impl Agent {
    async fn run(mut self, mut rx: mpsc::Receiver<InventoryPage>) {
        let date = today_utc();
        let _ = self.state.update(|s| s.today_mut(&date).sessions += 1);
        let interval = self.api.settings.heartbeat_interval;
        let mut registered = self.register().await;
        let mut backoff = Duration::from_secs(1).min(interval);
        let mut next = tokio::time::Instant::now() + if registered { interval } else { backoff };
        loop {
            tokio::select! {
                page = rx.recv() => match page {
                    Some(page) => {
                        let tools = inventory_tools(&page.line, &page.pins);
                        let room = PENDING_TOOLS.saturating_sub(self.pending_tools.len());
                        self.pending_tools.extend(tools.into_iter().take(room));
                        if registered {
                            self.flush_inventory().await;
                        }
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(next) => {
                    let ok = if registered {
                        self.heartbeat().await && { self.flush_inventory().await; true }
                    } else {
                        registered = self.register().await;
                        registered
                    };
                    backoff = if ok { interval } else { (backoff * 2).min(interval) };
                    let wait = if ok { interval } else { backoff };
                    next = tokio::time::Instant::now() + wait;
                }
            }
        }
        // Exit: the last inventory and a final heartbeat, bounded.
        let _ = tokio::time::timeout(FLUSH, async {
            if !registered {
                registered = self.register().await;
            }
            if registered {
                self.flush_inventory().await;
                self.heartbeat().await;
            }
        })
        .await;
    }

    /// Registers unless this endpoint and agent already are (under the state lock,
    /// so proxies started together register once).
    async fn register(&mut self) -> bool {
        let id = &self.identity;
        // A shared read first: once registered, a start never waits for the lock.
        let registration = self.state.read().registration;
        if is_registered(
            &registration,
            &self.api.settings.url,
            &id.endpoint_id,
            &id.agent_id,
        ) {
            return true;
        }
        // This thread is the agent's own: waiting for the lock blocks nobody else.
        let result = self.api.register_recorded(id, &self.state, false).await;
        self.outcome("registration", result)
    }

    async fn heartbeat(&mut self) -> bool {
        let blocked = self.counters.blocked.load(Ordering::Relaxed);
        let new_violations = blocked.saturating_sub(self.reported_violations);
        let date = today_utc();
        let today = self
            .state
            .update(|s| {
                let t = s.today_mut(&date);
                t.violations += new_violations;
                (t.sessions, t.violations)
            })
            .unwrap_or((0, 0));
        self.reported_violations = blocked;
        let result = self
            .api
            .heartbeat(&self.identity, self.counters.snapshot(), today)
            .await;
        let ok = self.outcome("heartbeat", result);
        if ok {
            let at = now_rfc3339();
            let _ = self.state.update(|s| s.last_heartbeat_utc = Some(at));
        }
        ok
    }

    async fn flush_inventory(&mut self) {
        if self.pending_tools.is_empty() {
            return;
        }
        let result = self
            .api
            .inventory(&self.identity, &self.pending_tools)
            .await;
        let sent = match &result {
            Ok(n) => *n,
            Err((n, _)) => *n,
        };
        self.pending_tools
            .drain(..sent.min(self.pending_tools.len()));
        self.outcome("tool inventory", result.map(|_| ()).map_err(|(_, e)| e));
    }

    /// Logs the first failure and the recovery, once each.
    fn outcome(&mut self, what: &str, result: Result<(), GovApiError>) -> bool {
        match result {
            Ok(()) => {
                if self.failing {
                    tracing::info!("GovAPI reachable again ({what} sent)");
                    self.failing = false;
                }
                true
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(
                        "GovAPI {what} failed ({}): retrying with backoff; the proxy is not affected",
                        crate::logging::escaped(&e.to_string())
                    );
                    self.failing = true;
                } else {
                    tracing::debug!(
                        "GovAPI {what} failed again: {}",
                        crate::logging::escaped(&e.to_string())
                    );
                }
                false
            }
        }
    }
}

fn is_registered(r: &Option<Registration>, url: &str, endpoint: &str, agent: &str) -> bool {
    r.as_ref().is_some_and(|r| {
        r.govapi_url == url && r.endpoint_id == endpoint && r.agent_ids.iter().any(|a| a == agent)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_is_sanitised() {
        let long = "d".repeat(5000);
        let line = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
            {"name": "query", "description": long, "inputSchema": {"type": "object",
              "properties": {"sql": {"type": "string", "default": "select * from patients", "examples": ["x"]}},
              "example": {"sql": "y"}}},
            {"description": "no name"},
            {"name": "plain"}
        ]}})
        .to_string();
        let tools = inventory_tools(line.as_bytes(), &Default::default());
        assert_eq!(tools.len(), 2);
        assert_eq!(tools[0]["description"].as_str().map(str::len), Some(4096));
        let schema = tools[0]["input_schema"].to_string();
        assert!(
            !schema.contains("patients") && !schema.contains("example"),
            "{schema}"
        );
        assert!(schema.contains("\"sql\""));
        assert_eq!(tools[1], json!({"name": "plain"}));
        assert!(inventory_tools(b"not json", &Default::default()).is_empty());
        let batch = format!("[{line},{{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{{}}}}]");
        assert_eq!(
            inventory_tools(batch.as_bytes(), &Default::default()).len(),
            2
        );
    }

    #[test]
    fn counters_and_segments() {
        let c = Counters::default();
        for v in ["ALLOW", "ALLOW", "BLOCK", "STEP_UP", "DEFER"] {
            c.count(v);
        }
        assert_eq!(
            c.snapshot(),
            json!({"allowed": 2, "blocked": 1, "step_up": 1, "modified": 0, "deferred": 1})
        );
        assert_eq!(path_segment("host.local"), "host.local");
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
    }
}
