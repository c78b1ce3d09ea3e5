//! `thoth enforcer serve`: the local Cedar engine behind the enforcer wire protocol
//! (docs/architecture.md §4), so a team can self-host decisions and every test talks to a real
//! server.
//!
//! Endpoints: `POST /v1/enforce`, `GET /v1/enforce/hold/{token}`, `POST /v1/explain`,
//! `POST /v1/events/batch` (appended to a JSONL file), `GET /approve/{token}` (shows the
//! hold and a confirm form; a GET never changes anything) and
//! `POST /v1/holds/{token}/approve|deny`. STEP_UP decisions create holds (with an
//! expiry) whose approval URL ends with the token. Approving needs the approver key
//! (`THOTH_APPROVER_KEY`, or `~/.thoth/approver_key`, created 0600 on first start) and
//! never accepts the proxy API key: an agent that can run a shell must not approve its
//! own hold. Holds, approvals (with the approver's claimed name and the time), the
//! progressive-mode memory, the decision log and events live in [`store`]: a SQLite
//! file by default, PostgreSQL for several replicas, so a hold made on one replica is
//! polled on another and approved on a third.

mod approve;
pub mod limits;
pub mod store;

pub use approve::approve_or_deny;
use approve::approver_key;

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::args::ServeArgs;
use crate::domain::{Environment, Mode};
use crate::enforce::local::LocalEngine;
use crate::enforce::modes::{apply_mode, too_large};
use crate::enforce::{DecisionInput, SessionHistory, Verdict};
use crate::settings::profile::read_api_key;
use crate::settings::{EnvVars, Secret, SettingsError};

/// Bytes of an id or intent in an enforce call at most.
const MAX_ID_TEXT: usize = 1024;

/// Why `thoth enforcer serve` could not start (a configuration error: exit 78).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Policy(#[from] crate::enforce::local::PolicyError),
    #[error("{}: {source}", path.display())]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not PEM certificates: {source}", path.display())]
    NotPem {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no private key", path.display())]
    NoKey { path: std::path::PathBuf },
    #[error("{}: {source}", path.display())]
    Tls {
        path: std::path::PathBuf,
        source: rustls::Error,
    },
    #[error("{0}")]
    Protocols(rustls::Error),
    #[error("{}: the API key file is empty", path.display())]
    EmptyKeyFile { path: std::path::PathBuf },
    #[error("the approver key must differ from the proxy API key")]
    SameKeys,
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    LocalAddr(std::io::Error),
    #[error("the state database: {0}")]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Database(String),
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> ServeError + '_ {
    move |source| ServeError::File {
        path: path.to_path_buf(),
        source,
    }
}

/// The rustls server configuration for --tls-cert/--tls-key (ring provider).
fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, ServeError> {
    let read = |p: &Path| std::fs::read(p).map_err(file_error(p));
    let certs: Vec<_> = rustls_pemfile::certs(&mut read(cert)?.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| ServeError::NotPem {
            path: cert.to_path_buf(),
            source,
        })?;
    let key_der = rustls_pemfile::private_key(&mut read(key)?.as_slice())
        .map_err(file_error(key))?
        .ok_or_else(|| ServeError::NoKey {
            path: key.to_path_buf(),
        })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(ServeError::Protocols)?
    .with_no_client_auth()
    .with_single_cert(certs, key_der)
    .map_err(|source| ServeError::Tls {
        path: cert.to_path_buf(),
        source,
    })?;
    // HTTP/1.1 only (see `limits`: an idle HTTP/2 connection has no deadline).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

struct ServerState {
    engine: LocalEngine,
    api_key: Option<Secret>,
    approver_key: Secret,
    store: Arc<store::Store>,
    events: Option<Mutex<std::fs::File>>,
    public_url: String,
    hold_for: Duration,
    max_holds_per_agent: usize,
}

/// Runs the server until SIGTERM or Ctrl-C.
pub fn run(args: &ServeArgs) -> ExitCode {
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(ServeError::Policy(e)) => crate::exit::config_report(&e.report()),
        Err(e) => crate::exit::config_error(&e),
    }
}

fn serve(args: &ServeArgs) -> Result<(), ServeError> {
    let env = EnvVars::from_process()?;
    let engine = LocalEngine::load(&args.policy)?;
    let api_key = match &args.api_key_file {
        Some(path) => Some(
            read_api_key(path)?.ok_or_else(|| ServeError::EmptyKeyFile { path: path.clone() })?,
        ),
        None => None,
    };
    let approver_key = approver_key(&env)?;
    warn_if_agents_can_approve();
    if api_key
        .as_ref()
        .is_some_and(|k| k.expose() == approver_key.expose())
    {
        return Err(ServeError::SameKeys);
    }
    let events = match &args.events_file {
        Some(path) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(file_error(path))?,
        )),
        None => None,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let database = database_url(args, &env)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|source| ServeError::Listen {
                addr: args.listen,
                source,
            })?;
        let local = listener.local_addr().map_err(ServeError::LocalAddr)?;
        let (store, log_writer) = store::Store::open(
            database.expose(),
            Duration::from_millis(args.decision_log_flush_ms),
        )
        .await?;
        let store = Arc::new(store);
        let stopping = store.clone();
        store.purge_every_hour(Duration::from_secs(args.retention_days * 86_400));
        let state = Arc::new(ServerState {
            engine,
            api_key,
            approver_key,
            store,
            events,
            public_url: args
                .public_url
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{local}")),
            hold_for: Duration::from_secs(args.hold_seconds),
            max_holds_per_agent: usize::try_from(args.max_holds_per_agent).unwrap_or(64),
        });
        let admission = Arc::new(crate::enforcer_service::limits::Admission {
            authorized: {
                let state = state.clone();
                Box::new(move |headers| {
                    proxy_authorized(&state, headers).then(|| presented_key(headers))
                })
            },
            rate: crate::enforcer_service::limits::RateLimiter::new(args.max_requests_per_second),
            deadline: Duration::from_millis(args.request_timeout_ms),
        });
        let app = Router::new()
            .route("/v1/enforce", post(enforce))
            .route("/v1/enforce/hold/{token}", get(hold_status))
            .route("/v1/explain", post(explain))
            .route("/v1/events/batch", post(events_batch))
            .route("/approve/{token}", get(approval_page))
            .route("/v1/holds/{token}/approve", post(approve))
            .route("/v1/holds/{token}/deny", post(deny))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(state)
            .layer(axum::middleware::from_fn_with_state(
                admission,
                crate::enforcer_service::limits::admit,
            ));
        tracing::info!(
            "thoth enforcer listening on {scheme}://{local} (policy {})",
            args.policy.display()
        );
        let acceptor = tls.map(|config| tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        let max_connections = usize::try_from(args.max_connections).unwrap_or(256);
        let limits = crate::enforcer_service::limits::Limits {
            max_connections,
            deadline: Duration::from_millis(args.request_timeout_ms),
        };
        crate::enforcer_service::limits::accept_loop(listener, app, acceptor, limits, shutdown())
            .await;
        // The decision log's last rows are written before the process ends.
        stopping.close_log();
        let _ = tokio::time::timeout(Duration::from_secs(5), log_writer).await;
        Ok(())
    })
}

/// The state database: `--database-url`, else `THOTH_DATABASE_URL`, else a SQLite
/// file in the server's profile (created 0600: it holds held calls' arguments).
fn database_url(args: &ServeArgs, env: &EnvVars) -> Result<Secret, ServeError> {
    if let Some(url) = &args.database_url {
        // Another local user reads a process's argv: no password there.
        if has_password(url) {
            return Err(ServeError::Database(
                "--database-url must not carry a password (every local user can read a process's arguments): set THOTH_DATABASE_URL, or use ~/.pgpass".into(),
            ));
        }
        return checked_url(url.clone());
    }
    if let Some(url) = &env.database_url {
        return checked_url(url.expose().to_string());
    }
    let profile = crate::settings::profile::Profile::locate()?;
    profile.bootstrap()?;
    let path = profile.dir.join("enforcer.db");
    private_file(&path)?;
    Ok(Secret::new(format!(
        "sqlite://{}?mode=rwc",
        encode_path(&path.display().to_string())
    )))
}

fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'))
        || url.contains("password=")
}

/// A URL as it is used: a SQLite file is private (0600, a regular file of this user);
/// a PostgreSQL server not on this host is reached over verified TLS unless the URL
/// says otherwise (sqlx would otherwise accept a downgrade to plain text).
fn checked_url(url: String) -> Result<Secret, ServeError> {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = rest.split('?').next().unwrap_or_default();
        if !path.is_empty() && !path.starts_with(':') {
            let decoded: String =
                form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
                    .map(|(_, v)| v.into_owned())
                    .next()
                    .unwrap_or_default();
            private_file(Path::new(&decoded))?;
        }
        return Ok(Secret::new(url));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let rest = url.split_once("://").map_or("", |(_, r)| r);
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let local = matches!(host, "" | "localhost" | "127.0.0.1" | "[::1]")
            || host.starts_with("%2F")
            || host.starts_with('/');
        if !local && !url.contains("sslmode=") {
            let joiner = if url.contains('?') { '&' } else { '?' };
            return Ok(Secret::new(format!("{url}{joiner}sslmode=verify-full")));
        }
    }
    Ok(Secret::new(url))
}

/// `%`, `?` and `#` in a path would end or change a SQLite URL's path.
fn encode_path(path: &str) -> String {
    path.replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23")
}

/// The SQLite file at `path`, created 0600 when missing; an existing one must be a
/// regular file (not a link) of this user that nobody else can read.
fn private_file(path: &Path) -> Result<(), ServeError> {
    crate::settings::profile::create_if_missing(path, b"", 0o600).map_err(file_error(path))?;
    let meta = std::fs::symlink_metadata(path).map_err(file_error(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if !meta.file_type().is_file()
            || meta.uid() != nix::unistd::geteuid().as_raw()
            || meta.mode() & 0o077 != 0
        {
            return Err(ServeError::Database(format!(
                "{}: the database must be a regular file of this user that nobody else can read or write (chmod 600 it)",
                path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(())
}

/// The answer when the state database fails: 503 (the proxy's failure decision
/// applies), never a decision made without it.
fn unavailable(e: &store::StoreError) -> Response {
    tracing::warn!("{e}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({ "error": { "type": "unavailable", "message": "the state database is unavailable" } })),
    )
        .into_response()
}

async fn shutdown() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Warns when the user running the service also looks like one that runs MCP clients
/// (a client config in its home, or a login shell): the approver key is then readable by
/// that user's agents, and any agent with a shell can approve its own held call with
/// `thoth approve <token>` (the token is in the -32002 data the model reads).
fn warn_if_agents_can_approve() {
    let Some(home) = dirs::home_dir() else {
        return;
    };
    let places = crate::wrap::clients::Places::current(home.clone());
    let no_listing = |_: &Path| Vec::new();
    let config = crate::wrap::clients::ALL
        .iter()
        .flat_map(|c| c.user_files(&places, &no_listing))
        .find(|f| std::fs::symlink_metadata(f).is_ok());
    let shell = login_shell();
    let why = match (&config, &shell) {
        (Some(config), _) => format!("{} exists", config.display()),
        (None, Some(shell)) => format!("this user has the login shell {shell}"),
        (None, None) => return,
    };
    tracing::warn!(
        "enforcer serve runs as a user that may also run MCP clients ({why}): its agents can \
         read the approver key and approve their own held calls. Run it as a service user of \
         its own (see examples/enforcer/thoth-enforcer.service)"
    );
}

/// The current user's login shell, unless it is one that refuses logins.
fn login_shell() -> Option<String> {
    #[cfg(unix)]
    {
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::current()).ok()??;
        let shell = user.shell.to_string_lossy().into_owned();
        let refuses = shell.is_empty() || shell.ends_with("nologin") || shell.ends_with("/false");
        (!refuses).then_some(shell)
    }
    #[cfg(not(unix))]
    None
}

/// Constant-time comparison of secrets.
fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn unauthorized(why: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({ "error": { "type": "unauthorized", "message": why } })),
    )
        .into_response()
}

fn bad_request(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": { "type": "invalid_request", "message": why } })),
    )
        .into_response()
}

/// The request's JSON body, once the proxy's key is checked.
fn authorized_json(
    state: &ServerState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, Box<Response>> {
    if !proxy_authorized(state, headers) {
        return Err(Box::new(unauthorized("missing or wrong API key")));
    }
    serde_json::from_slice::<Value>(body).map_err(|_| Box::new(bad_request("body is not JSON")))
}

/// The key a request presents (empty when none), to count its rate.
fn presented_key(headers: &HeaderMap) -> String {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| bearer(headers))
        .unwrap_or_default()
        .to_string()
}

/// Proxies authenticate with `x-api-key` (enforce) or `Authorization: Bearer` (holds).
fn proxy_authorized(state: &ServerState, headers: &HeaderMap) -> bool {
    let Some(expected) = &state.api_key else {
        return true;
    };
    let given = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| bearer(headers));
    given.is_some_and(|g| same_secret(g, expected.expose()))
}

fn now_plus(d: Duration) -> String {
    crate::clock::rfc3339(time::OffsetDateTime::now_utc() + d)
}

async fn enforce(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = match authorized_json(&state, &headers, &body) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let tool = text("tool_name");
    if tool.is_empty() {
        return bad_request("tool_name is required");
    }
    if tool.len() > thoth_core::rpc::MAX_TOOL_NAME {
        return bad_request("tool_name is longer than 256 bytes");
    }
    // Unknown names get the strongest value.
    let mode = Mode::parse(&text("enforcement_mode")).unwrap_or(Mode::Block);
    let environment = Environment::parse(&text("environment")).unwrap_or(Environment::Prod);
    let mut history = SessionHistory::default();
    for call in body
        .get("session_tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(name) = call.as_str() {
            history.record(name);
        }
    }
    let args = body
        .get("tool_args")
        .filter(|a| a.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let session_id = text("session_id");
    let (agent, tenant, user, intent) = (
        text("agent_id"),
        text("tenant_id"),
        text("user_id"),
        text("session_intent"),
    );
    // What is kept per session and per hold stays small.
    for (name, value) in [
        ("session_id", &session_id),
        ("agent_id", &agent),
        ("tenant_id", &tenant),
        ("user_id", &user),
        ("session_intent", &intent),
    ] {
        if value.len() > MAX_ID_TEXT {
            return bad_request(&format!("{name} is longer than {MAX_ID_TEXT} bytes"));
        }
        if value.chars().any(char::is_control) {
            return bad_request(&format!("{name} holds a control character"));
        }
    }
    if tool.chars().any(char::is_control) {
        return bad_request("tool_name holds a control character");
    }
    let args_len = serde_json::to_string(&args).map_or(usize::MAX, |t| t.len());
    if args_len > crate::enforce::MAX_POLICY_ARGUMENTS {
        let refused = too_large(args_len);
        return axum::Json(json!({
            "decision": refused.verdict.as_str(),
            "reason": refused.reason,
            "decision_reason_code": refused.decision_reason_code,
            "violation_id": uuid::Uuid::new_v4().to_string(),
        }))
        .into_response();
    }
    let facts = match crate::enforce::remote::facts_from_metadata(body.get("metadata")) {
        Ok(facts) => facts,
        Err(why) => return bad_request(why),
    };
    let input = DecisionInput {
        agent_id: &agent,
        tenant_id: &tenant,
        user_id: &user,
        environment,
        mode,
        session_id: &session_id,
        session_intent: &intent,
        tool_name: &tool,
        tool: &facts,
        arguments: Some(&args),
        session: &history,
    };
    // A request besides tools/call (`metadata.mcp_method`): its target read from its
    // params as the proxy read them, decided by the policies that name its action
    // (none: allowed, not governed here).
    let method = match body.get("metadata").and_then(|m| m.get("mcp_method")) {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.as_str()),
        Some(_) => return bad_request("metadata.mcp_method must be a string"),
    };
    let target = body
        .get("metadata")
        .and_then(|m| m.get("target"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let outcome = match method {
        None => state.engine.evaluate(&input),
        Some(name) => {
            let Some(method) = crate::enforce::methods::GOVERNABLE
                .iter()
                .copied()
                .find(|m| *m == name)
            else {
                return bad_request("metadata.mcp_method is not a method thoth governs");
            };
            let params = body.get("metadata").and_then(|m| m.get("mcp_params"));
            let call = match crate::enforce::methods::parse(method, params) {
                Ok(call) => call,
                Err(why) => return bad_request(&format!("metadata.mcp_params: {why}")),
            };
            if state.engine.governs(method) {
                state.engine.evaluate_method(&input, &call)
            } else {
                crate::enforce::local::PolicyOutcome::Allow {
                    reason: crate::enforce::methods::not_governed(method),
                    rule_ids: Vec::new(),
                }
            }
        }
    };
    // Soft denials are remembered per tool, or per method and target (progressive
    // mode), in the store: a session's calls may reach any replica.
    let key = match method {
        Some(name) => format!("{name} {target}"),
        None => tool.clone(),
    };
    let mut soft_denied = HashSet::new();
    if mode == Mode::Progressive
        && matches!(
            outcome,
            crate::enforce::local::PolicyOutcome::SoftDeny { .. }
        )
    {
        match state.store.first_soft_denial(&session_id, &key).await {
            Ok(true) => {}
            Ok(false) => {
                soft_denied.insert(key.clone());
            }
            // Not known to be the first: the stricter answer (BLOCK), not an outage
            // the proxy's failure decision might turn into ALLOW.
            Err(e) => {
                tracing::warn!("{e}");
                soft_denied.insert(key.clone());
            }
        }
    }
    let decided = apply_mode(outcome, mode, &key, &mut soft_denied);
    // No hold for these methods: the proxy polls holds for tool calls only.
    let decision = if method.is_some() && decided.verdict == Verdict::StepUp {
        let mut block = crate::enforce::Decision::new(
            Verdict::Block,
            format!(
                "{} (step-up approval is not available for {})",
                decided.reason, tool
            ),
        );
        block.matched_rule_ids = decided.matched_rule_ids;
        block.decision_reason_code = decided.decision_reason_code;
        block
    } else {
        decided
    };
    let mut answer = json!({
        "decision": decision.verdict.as_str(),
        "reason": decision.reason,
        "matched_rule_ids": decision.matched_rule_ids,
        "decision_reason_code": decision.decision_reason_code,
        "violation_id": (decision.verdict != Verdict::Allow).then(|| uuid::Uuid::new_v4().to_string()),
    });
    if decision.verdict == Verdict::StepUp {
        if decision.user_may_approve
            && let Some(map) = answer.as_object_mut()
        {
            // The policy lets the user approve: the proxy may show the approval page in
            // the client (the page still asks for the approver key).
            map.insert("approver".into(), json!("user"));
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let expires_at = now_plus(state.hold_for);
        let created_ms = store::now_ms();
        let hold = store::Hold {
            token: token.clone(),
            agent: agent.clone(),
            tool: tool.clone(),
            arguments: shown_arguments(&args),
            reason: decision.reason.clone(),
            created_ms,
            expires_ms: created_ms
                .saturating_add(i64::try_from(state.hold_for.as_millis()).unwrap_or(i64::MAX)),
            expires_at: expires_at.clone(),
            resolution: None,
            approver: None,
            resolved_ms: None,
        };
        // Committed before the answer names it: any replica can then poll it.
        match state
            .store
            .create_hold(&hold, state.max_holds_per_agent)
            .await
        {
            Ok(true) => {
                if let Some(map) = answer.as_object_mut() {
                    let url = format!("{}/approve/{token}", state.public_url);
                    map.insert("hold_token".into(), json!(token));
                    map.insert("approval_url".into(), json!(url));
                    map.insert("expires_at".into(), json!(expires_at));
                    map.insert(
                        "step_up_timeout_seconds".into(),
                        json!(state.hold_for.as_secs()),
                    );
                }
            }
            Ok(false) => tracing::warn!(
                "agent {} has {} open holds (the quota), or the server is full: this STEP_UP gets no hold",
                crate::logging::escaped(&agent),
                state.max_holds_per_agent
            ),
            // The policy asked for an approval that cannot be held: BLOCK, never an
            // outage the proxy's failure decision might turn into ALLOW.
            Err(e) => {
                tracing::warn!("{e}");
                return axum::Json(json!({
                    "decision": "BLOCK",
                    "reason": format!("{} (no hold could be stored for the approval)", decision.reason),
                    "matched_rule_ids": decision.matched_rule_ids,
                    "decision_reason_code": "HOLD_UNAVAILABLE",
                    "violation_id": uuid::Uuid::new_v4().to_string(),
                }))
                .into_response();
            }
        }
    }
    state.store.log_decision(store::DecisionRow {
        at_ms: store::now_ms(),
        session_id,
        agent,
        tenant,
        tool,
        decision: decision.verdict.as_str(),
        reason: decision.reason.clone(),
        code: decision.decision_reason_code.clone(),
        rule_ids: json!(decision.matched_rule_ids).to_string(),
    });
    axum::Json(answer).into_response()
}

/// A hold as polls see it. Once resolved it never changes, and at its expiry it ends:
/// an approval admits the call only until then, so an expired hold answers BLOCK
/// whether or not it was approved.
fn hold_json(state: &ServerState, hold: &store::Hold) -> Value {
    let expired = store::now_ms() >= hold.expires_ms;
    let resolution = if expired {
        Some(Verdict::Block)
    } else {
        hold.resolution
    };
    let mut status = json!({
        "resolved": resolution.is_some(),
        "resolution": resolution.map(Verdict::as_str),
        "approval_url": format!("{}/approve/{}", state.public_url, hold.token),
        "expires_at": hold.expires_at,
        "tool_name": hold.tool,
        "reason": if expired { "the hold expired without approval" } else { hold.reason.as_str() },
    });
    if let (false, Some(map), Some(by), Some(at)) = (
        expired,
        status.as_object_mut(),
        &hold.approver,
        hold.resolved_ms,
    ) {
        map.insert("resolved_by".into(), json!(by));
        map.insert("resolved_at".into(), json!(rfc3339_ms(at)));
    }
    status
}

fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn no_such_hold() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({ "error": { "type": "not_found", "message": "no such hold" } })),
    )
        .into_response()
}

async fn hold_status(
    State(state): State<Arc<ServerState>>,
    UrlPath(token): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !proxy_authorized(&state, &headers) {
        return unauthorized("missing or wrong bearer key");
    }
    match state.store.hold(&token).await {
        Ok(Some(hold)) => axum::Json(hold_json(&state, &hold)).into_response(),
        Ok(None) => no_such_hold(),
        Err(e) => unavailable(&e),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Bytes of a held call's arguments shown on the approval page at most.
const SHOWN_ARGUMENTS: usize = 16 * 1024;

/// The arguments an approver is asked about: pretty JSON, cut (on a character
/// boundary) past [`SHOWN_ARGUMENTS`] with the full size said.
fn shown_arguments(args: &Value) -> String {
    let text = serde_json::to_string_pretty(args).unwrap_or_default();
    if text.len() <= SHOWN_ARGUMENTS {
        return text;
    }
    let mut cut = SHOWN_ARGUMENTS;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}\n… ({} bytes in all)", &text[..cut], text.len())
}

/// Headers of every page a browser shows: no script, no framing, no caching (the
/// page holds a call's arguments), no referrer (its URL holds the token).
fn page_headers() -> [(header::HeaderName, &'static str); 5] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ]
}

async fn approval_page(
    State(state): State<Arc<ServerState>>,
    UrlPath(token): UrlPath<String>,
) -> Response {
    let hold = match state.store.hold(&token).await {
        Ok(Some(hold)) => hold,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                page_headers(),
                Html("<h1>No such hold</h1>".to_string()),
            )
                .into_response();
        }
        Err(e) => return unavailable(&e),
    };
    let status = hold_json(&state, &hold);
    let token = html_escape(&token);
    let page = Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>thoth hold</title></head><body>\
         <h1>Approve a tool call?</h1><dl><dt>Agent</dt><dd>{}</dd><dt>Tool</dt><dd>{}</dd><dt>Reason</dt><dd>{}</dd>\
         <dt>Arguments</dt><dd><pre>{}</pre></dd>\
         <dt>Expires</dt><dd>{}</dd><dt>Status</dt><dd>{}</dd></dl>\
         <form method=\"post\" action=\"/v1/holds/{token}/approve\"><label>Your name <input name=\"approver_name\"></label> <label>Approver key <input type=\"password\" name=\"approver_key\"></label> <button>Approve</button></form>\
         <form method=\"post\" action=\"/v1/holds/{token}/deny\"><label>Your name <input name=\"approver_name\"></label> <label>Approver key <input type=\"password\" name=\"approver_key\"></label> <button>Deny</button></form>\
         </body></html>",
        html_escape(&hold.agent),
        html_escape(&hold.tool),
        html_escape(&hold.reason),
        html_escape(&hold.arguments),
        html_escape(&hold.expires_at),
        status["resolution"].as_str().unwrap_or("pending"),
    ));
    (page_headers(), page).into_response()
}

async fn approve(
    state: State<Arc<ServerState>>,
    token: UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    resolve(state, token, headers, body, Verdict::Allow).await
}

async fn deny(
    state: State<Arc<ServerState>>,
    token: UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    resolve(state, token, headers, body, Verdict::Block).await
}

/// One form field, decoded as browsers encode it; two of them are no answer.
fn form_field(body: &[u8], field: &str) -> Option<String> {
    let mut values = form_urlencoded::parse(body)
        .filter(|(name, _)| name == field)
        .map(|(_, value)| value.into_owned());
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value),
        _ => None,
    }
}

/// The approver's claimed name (`x-approver-name`, or the form's field), bounded to
/// printable characters; "approver" when none is given.
fn approver_name(headers: &HeaderMap, body: &[u8]) -> String {
    let given = headers
        .get("x-approver-name")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| form_field(body, "approver_name"))
        .unwrap_or_default();
    let name: String = given
        .chars()
        .filter(|c| !c.is_control() && !crate::enforce::DescriptionFlags::invisible(*c))
        .take(store::MAX_APPROVER_NAME)
        .collect();
    let name = name.trim();
    if name.is_empty() {
        "approver".into()
    } else {
        name.to_string()
    }
}

async fn resolve(
    State(state): State<Arc<ServerState>>,
    UrlPath(token): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
    verdict: Verdict,
) -> Response {
    let form_key = form_field(&body, "approver_key");
    let given = bearer(&headers)
        .map(str::to_string)
        .or_else(|| {
            headers
                .get("x-approver-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .or(form_key);
    let Some(given) = given else {
        return unauthorized("the approver key is required");
    };
    if state
        .api_key
        .as_ref()
        .is_some_and(|k| same_secret(&given, k.expose()))
    {
        return (StatusCode::FORBIDDEN, axum::Json(json!({ "error": { "type": "forbidden", "message": "the proxy API key cannot approve holds" } }))).into_response();
    }
    if !same_secret(&given, state.approver_key.expose()) {
        return unauthorized("wrong approver key");
    }
    let name = approver_name(&headers, &body);
    let conflict = |kind: &str, message: String| {
        (
            StatusCode::CONFLICT,
            axum::Json(json!({ "error": { "type": kind, "message": message } })),
        )
            .into_response()
    };
    match state
        .store
        .resolve(&token, verdict, &name, store::now_ms())
        .await
    {
        Ok(store::Resolved::Done(hold)) => {
            tracing::info!(
                "hold {token} for {} resolved: {} (by {})",
                crate::logging::escaped(&hold.tool),
                verdict.as_str(),
                crate::logging::escaped(&name)
            );
            axum::Json(hold_json(&state, &hold)).into_response()
        }
        Ok(store::Resolved::NotFound) => no_such_hold(),
        Ok(store::Resolved::Expired) => conflict("expired", "the hold expired".into()),
        Ok(store::Resolved::Already(resolved)) => conflict(
            "already_resolved",
            format!("the hold was already resolved: {}", resolved.as_str()),
        ),
        Err(e) => unavailable(&e),
    }
}

async fn explain(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = match authorized_json(&state, &headers, &body) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let tool = body["tool_name"].as_str().unwrap_or("the tool");
    let decision = body["decision"].as_str().unwrap_or("BLOCK");
    let reason = body["reason"]
        .as_str()
        .unwrap_or("the policy did not allow it");
    let next = if decision == "STEP_UP" {
        "Ask an approver to approve the hold, then retry the same call."
    } else {
        "Use another tool, or ask your administrator to change the policy."
    };
    axum::Json(json!({
        "violation_id": body["violation_id"],
        "what_happened": format!("The call to {tool} was not run ({decision})."),
        "why_it_was_blocked": reason,
        "what_to_do_next": next,
        "business_impact": "none: the call never reached the server",
        "severity": if decision == "STEP_UP" { "medium" } else { "high" },
    }))
    .into_response()
}

async fn events_batch(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let events = match authorized_json(&state, &headers, &body) {
        Ok(Value::Array(events)) if events.len() > store::MAX_EVENTS => {
            return bad_request(&format!("at most {} events per batch", store::MAX_EVENTS));
        }
        Ok(Value::Array(events)) if !events.iter().all(Value::is_object) => {
            return bad_request("every event must be a JSON object");
        }
        Ok(Value::Array(events)) => events,
        Ok(_) => return bad_request("body must be a JSON array of events"),
        Err(refused) => return *refused,
    };
    // Committed before the 202: a replica killed now loses none of them.
    if let Err(e) = state.store.ingest(&events).await {
        return unavailable(&e);
    }
    if let Some(file) = &state.events {
        use std::io::Write;
        let mut file = file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for event in &events {
            let _ = writeln!(file, "{event}");
        }
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "accepted": events.len() })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_keeps_its_password_out_of_argv_and_its_traffic_encrypted() {
        assert!(has_password("postgres://u:secret@db.corp/thoth"));
        assert!(has_password("postgres://db.corp/thoth?password=secret"));
        assert!(!has_password("postgres://u@db.corp/thoth"));
        assert!(!has_password(
            "postgres://u@db.corp/thoth?application_name=a:b"
        ));
        let url = |u: &str| checked_url(u.into()).map(|s| s.expose().to_string()).ok();
        assert_eq!(
            url("postgres://u@db.corp/thoth").as_deref(),
            Some("postgres://u@db.corp/thoth?sslmode=verify-full")
        );
        assert_eq!(
            url("postgres://u@db.corp:5433/thoth?application_name=x").as_deref(),
            Some("postgres://u@db.corp:5433/thoth?application_name=x&sslmode=verify-full")
        );
        for kept in [
            "postgres://u@127.0.0.1:5432/thoth",
            "postgres://u@localhost/thoth",
            "postgres://u@db.corp/thoth?sslmode=require",
        ] {
            assert_eq!(url(kept).as_deref(), Some(kept));
        }
        assert_eq!(encode_path("/home/a%b?c#d"), "/home/a%25b%3Fc%23d");
    }

    #[test]
    fn a_sqlite_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("thoth-db-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let fresh = dir.join("fresh.db");
        assert!(checked_url(format!("sqlite://{}?mode=rwc", fresh.display())).is_ok());
        let mode = std::fs::metadata(&fresh)
            .expect("created")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let open = dir.join("open.db");
        std::fs::write(&open, b"").expect("write");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(checked_url(format!("sqlite://{}", open.display())).is_err());
        let link = dir.join("link.db");
        std::os::unix::fs::symlink(&fresh, &link).expect("symlink");
        assert!(
            checked_url(format!("sqlite://{}", link.display())).is_err(),
            "a link is refused"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
