//! The Thoth enforcer over HTTP(S) (docs/architecture.md §4): `POST /v1/enforce` and the failure
//! policy around it.
//!
//! One client per process (connection reuse, HTTP/2 when offered). What the enforcer
//! answers is mapped to a [`Decision`]: every alias and camelCase spelling of a field
//! is accepted, and anything unrecognised blocks. When the enforcer cannot answer
//! (network error, timeout, 429, 5xx, a redirect, a body that is not JSON or over
//! [`ENFORCE_BODY_LIMIT`]) the failure decision applies
//! (`THOTH_ENFORCER_FAILURE_DECISION`, block by default); 401/403 and other 4xx always
//! block, with a hint. The reply's `data` says which path decided (`fallback`,
//! `http_status`). The API key travels only in the `x-api-key` header, and only to the
//! configured origin: redirects are never followed. Each call, body included, ends
//! within the read timeout; each text copied from an answer into a reply is bounded
//! ([`TEXT_LIMIT`]); values logged are escaped.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Decision, DecisionInput, ToolFacts, Verdict};
use crate::domain::FailureDecision;
use crate::logging::escaped;
use crate::net::{ENFORCE_BODY_LIMIT, Failure, SMALL_BODY_LIMIT, TEXT_LIMIT, bounded, exchange};
use crate::settings::Secret;

/// Connection timeout to the enforcer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on the best-effort explanation call.
pub const EXPLAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Distinct reasons known before new billing messages are no longer logged.
const LOGGED_REASONS: usize = 64;
/// Matched rule ids copied from an answer at most, and bytes of each.
const RULE_IDS: usize = 64;
const RULE_ID_LIMIT: usize = 256;

/// The remote decision point.
pub struct RemoteEnforcer {
    client: reqwest::Client,
    /// Sent in the enforce `metadata` for the service to attest.
    aws_certificate_arn: Option<String>,
    base: String,
    api_key: Secret,
    failure: FailureDecision,
    /// The deadline of one enforce call or hold poll, body included.
    read_timeout: Duration,
    /// Reasons already logged (billing and auth problems are logged once each).
    logged: Mutex<HashSet<String>>,
}

impl RemoteEnforcer {
    /// A client for `base` (no trailing slash) with thoth's TLS settings.
    pub fn new(
        base: &str,
        api_key: Secret,
        failure: FailureDecision,
        read_timeout: Duration,
        tls: rustls::ClientConfig,
    ) -> Result<Self, ClientError> {
        // Never a redirect (crate::net::client_builder): the key and the tool arguments
        // go to this origin only, and only its answer decides.
        let client = crate::net::client_builder(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            // A total deadline, body included (each call is also bounded by `exchange`).
            .timeout(read_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            // A decision request is never replayed behind thoth's back: failures go
            // through the failure policy instead.
            .retry(reqwest::retry::never())
            .build()
            .map_err(ClientError)?;
        Ok(Self {
            client,
            aws_certificate_arn: None,
            base: base.trim_end_matches('/').to_string(),
            api_key,
            failure,
            read_timeout,
            logged: Mutex::new(HashSet::new()),
        })
    }

    /// Asks the service to attest this certificate ARN (sent in `metadata`).
    pub fn with_aws_certificate_arn(mut self, arn: Option<String>) -> Self {
        self.aws_certificate_arn = arn;
        self
    }

    /// The request body of docs/architecture.md §4.
    ///
    /// (The tool's facts travel in `metadata`: see [`facts_from_metadata`] for how the
    /// enforcer service reads them back.)
    pub fn body(input: &DecisionInput<'_>, trace_id: &str, attestation_id: &str) -> Value {
        let mut body = json!({
            "agent_id": input.agent_id,
            "tenant_id": input.tenant_id,
            "user_id": input.user_id,
            "identity_binding": { "agent_id": input.agent_id, "tenant_id": input.tenant_id, "user_id": input.user_id },
            "tool_name": input.tool_name,
            "tool_args": input.arguments.cloned().unwrap_or_else(|| json!({})),
            "session_id": input.session_id,
            "session_tool_calls": input.session.recent,
            "approved_scope": [],
            "enforcement_mode": input.mode.as_str(),
            "environment": input.environment.as_str(),
            "enforcement_trace_id": trace_id,
            "action_attestation_id": attestation_id,
        });
        if let Some(map) = body.as_object_mut() {
            if !input.session_intent.is_empty() {
                map.insert("session_intent".into(), json!(input.session_intent));
            }
            let facts = input.tool;
            // What the detectors found in the arguments: names and counts, never text.
            let found = input
                .arguments
                .map(crate::inspect::in_value)
                .unwrap_or_default();
            // The server's own claims about the tool (docs/architecture.md §4).
            map.insert(
                "metadata".into(),
                json!({
                    "detections": found.names().collect::<Vec<_>>(),
                    "detection_count": found.count(),
                    "tool_in_catalog": facts.in_catalog,
                    "tool_annotated": facts.annotated,
                    "tool_pin": facts.pin.as_str(),
                    "tool_description_flags": facts.description_flags.names(),
                    "tool_annotations": {
                        "title": facts.title,
                        "readOnlyHint": facts.read_only,
                        "destructiveHint": facts.destructive,
                        "idempotentHint": facts.idempotent,
                        "openWorldHint": facts.open_world,
                    },
                }),
            );
        }
        body
    }

    fn enforce_body(
        &self,
        input: &DecisionInput<'_>,
        trace_id: &str,
        attestation_id: &str,
    ) -> Value {
        let mut body = Self::body(input, trace_id, attestation_id);
        if let (Some(arn), Some(metadata)) = (
            &self.aws_certificate_arn,
            body.get_mut("metadata").and_then(Value::as_object_mut),
        ) {
            metadata.insert("aws_certificate_arn".into(), json!(arn));
            metadata.insert("require_aws_backed_certs".into(), json!(true));
        }
        body
    }

    /// Asks the enforcer; never fails: errors become the failure decision or BLOCK.
    pub async fn enforce(
        &self,
        input: &DecisionInput<'_>,
        trace_id: &str,
        attestation_id: &str,
    ) -> Decision {
        self.enforce_traced(input, trace_id, attestation_id, None)
            .await
    }

    /// [`Self::enforce`], continuing a W3C trace: the request carries `traceparent`.
    pub async fn enforce_traced(
        &self,
        input: &DecisionInput<'_>,
        trace_id: &str,
        attestation_id: &str,
        traceparent: Option<&str>,
    ) -> Decision {
        let body = self.enforce_body(input, trace_id, attestation_id);
        self.ask(
            body,
            Self::body(input, trace_id, attestation_id),
            traceparent,
        )
        .await
    }

    /// Asks the enforcer about a request besides tools/call (docs/architecture.md §4):
    /// `tool_name` is the method, `tool_args` its arguments, and `metadata` carries
    /// `mcp_method`, `target` (the URI or prompt name) and `mcp_params` (the request's
    /// params, for the enforcer to read the target as thoth did).
    pub async fn enforce_method(
        &self,
        input: &DecisionInput<'_>,
        call: &super::methods::MethodCall,
        params: &Value,
        trace_id: &str,
        attestation_id: &str,
    ) -> Decision {
        let with_method = |mut body: Value| {
            if let Some(map) = body.as_object_mut() {
                map.insert("tool_name".into(), json!(call.method));
                map.insert("tool_args".into(), call.arguments.clone());
                if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
                    metadata.insert("mcp_method".into(), json!(call.method));
                    metadata.insert("target".into(), json!(call.target.label()));
                    metadata.insert("mcp_params".into(), params.clone());
                }
            }
            body
        };
        let body = with_method(self.enforce_body(input, trace_id, attestation_id));
        let explain = with_method(Self::body(input, trace_id, attestation_id));
        self.ask(body, explain, None).await
    }

    async fn ask(&self, body: Value, explain_body: Value, traceparent: Option<&str>) -> Decision {
        let url = format!("{}/v1/enforce", self.base);
        let mut request = self
            .client
            .post(&url)
            .header("x-api-key", self.api_key.expose())
            .json(&body);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let answer = match exchange(request, self.read_timeout, ENFORCE_BODY_LIMIT).await {
            Ok(answer) => answer,
            Err(failure) => return self.failed(failure),
        };
        let status = answer.status;
        if answer.is_redirect() {
            // Never followed: the key and the arguments stay with this origin, and
            // another origin's answer never decides. Logged once, not per call.
            self.log_once(
                "redirect",
                &format!(
                    "the enforcer answered a redirect ({status}) to {}: thoth never follows redirects, so the failure decision applies; fix THOTH_ENFORCER_URL",
                    answer.location.as_deref().unwrap_or("(no location)")
                ),
            );
            return self.fallback(
                &format!("the enforcer answered a redirect ({status})"),
                Some(status),
            );
        }
        let parsed = answer_json(&answer.body);
        let body = parsed.as_ref().ok();
        match status {
            200..=299 => match parsed {
                Ok(body) => {
                    let mut decision = with_status(parse_decision(&body), status);
                    if matches!(decision.verdict, Verdict::Block | Verdict::StepUp)
                        && let Some(explanation) = self.explain(explain_body, &decision).await
                    {
                        if let Some(next) =
                            explanation.get("what_to_do_next").and_then(Value::as_str)
                        {
                            decision.reason =
                                bounded(&format!("{} ({next})", decision.reason), TEXT_LIMIT);
                        }
                        decision.extra.insert("explanation".into(), explanation);
                    }
                    decision
                }
                Err(AnswerError::Duplicate(e)) => self.fallback(
                    &format!(
                        "the enforcer answered ambiguous JSON: {}",
                        bounded(&e.to_string(), 200)
                    ),
                    Some(status),
                ),
                Err(_) => self.fallback("the enforcer answered with invalid JSON", Some(status)),
            },
            429 => self.fallback("the enforcer is rate limiting (429)", Some(status)),
            500..=599 => self.fallback(&format!("the enforcer failed ({status})"), Some(status)),
            402 if body.as_ref().and_then(|b| b["error"]["type"].as_str())
                == Some("billing_error") =>
            {
                let message = bounded(
                    body.as_ref()
                        .and_then(|b| b["error"]["message"].as_str())
                        .unwrap_or("billing problem"),
                    TEXT_LIMIT,
                );
                self.log_once(
                    &format!("billing:{message}"),
                    &format!("the enforcer refused for billing: {message}"),
                );
                with_status(
                    Decision::new(Verdict::Block, format!("Thoth billing: {message}"))
                        .with_code("BILLING_ERROR"),
                    status,
                )
            }
            401 | 403 => {
                let hint = "the API key was rejected: rotate THOTH_API_KEY (or the key file) and check its scope for this tenant";
                self.log_once("auth", &format!("enforcer answered {status}: {hint}"));
                with_status(
                    Decision::new(
                        Verdict::Block,
                        format!("enforcer refused the request ({status}): {hint}"),
                    )
                    .with_code("ENFORCER_AUTH"),
                    status,
                )
            }
            _ => with_status(
                Decision::new(
                    Verdict::Block,
                    format!("enforcer rejected the request ({status})"),
                )
                .with_code("ENFORCER_REJECTED"),
                status,
            ),
        }
    }

    /// Best effort: `POST /v1/explain` with the enforce body and the decision, bounded
    /// to 1 s, body included, and to [`SMALL_BODY_LIMIT`] bytes; each text is cut to
    /// [`TEXT_LIMIT`]. `None` on any problem (the denial stands without an explanation).
    pub async fn explain(&self, mut body: Value, decision: &Decision) -> Option<Value> {
        if let Some(map) = body.as_object_mut() {
            map.insert("decision".into(), json!(decision.verdict.as_str()));
            map.insert("reason".into(), json!(decision.reason));
            map.insert("violation_id".into(), json!(decision.violation_id));
            map.insert(
                "decision_reason_code".into(),
                json!(decision.decision_reason_code),
            );
            map.insert("matched_rule_ids".into(), json!(decision.matched_rule_ids));
        }
        let request = self
            .client
            .post(format!("{}/v1/explain", self.base))
            .header("x-api-key", self.api_key.expose())
            .timeout(EXPLAIN_TIMEOUT)
            .json(&body);
        let answer = exchange(request, EXPLAIN_TIMEOUT, SMALL_BODY_LIMIT)
            .await
            .ok()?;
        if !(200..300).contains(&answer.status) {
            return None;
        }
        let answer: Value = serde_json::from_slice(&answer.body).ok()?;
        let mut explanation = serde_json::Map::new();
        for key in ["what_happened", "why_it_was_blocked", "what_to_do_next"] {
            if let Some(text) = field(&answer, key).and_then(Value::as_str) {
                explanation.insert(key.into(), json!(bounded(text, TEXT_LIMIT)));
            }
        }
        (!explanation.is_empty()).then_some(Value::Object(explanation))
    }

    /// Polls a hold: `Some(verdict)` once resolved (an expired hold is BLOCK), `None`
    /// while pending; errors are for the caller to retry.
    pub async fn poll_hold(&self, token: &str) -> Result<Option<Verdict>, PollError> {
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
        {
            return Ok(Some(Verdict::Block));
        }
        let request = self
            .client
            .get(format!("{}/v1/enforce/hold/{token}", self.base))
            .bearer_auth(self.api_key.expose());
        let answer = exchange(request, self.read_timeout, SMALL_BODY_LIMIT)
            .await
            .map_err(PollError::Exchange)?;
        let status = answer.status;
        if answer.is_redirect() {
            // Another origin never resolves a hold.
            return Err(PollError::Redirect(status));
        }
        if !(200..300).contains(&status) {
            return Err(PollError::Status(status));
        }
        let body = answer_json(&answer.body).map_err(PollError::Answer)?;
        if body.get("resolved").is_some_and(|r| !r.is_boolean()) {
            return Err(PollError::ResolvedNotBoolean);
        }
        Ok(hold_state(&body))
    }

    /// The failure decision for an exchange that gave no answer (logged once per kind).
    fn failed(&self, failure: Failure) -> Decision {
        match failure {
            Failure::Timeout => {
                let why = "the enforcer timed out";
                self.log_once(
                    why,
                    &format!(
                        "{why}: no complete answer within {} ms",
                        self.read_timeout.as_millis()
                    ),
                );
                self.fallback(why, None)
            }
            Failure::Connect(e) => {
                let why = "the enforcer is unreachable";
                self.log_once(why, &format!("{why}: {e}"));
                self.fallback(why, None)
            }
            Failure::Request(e) => {
                let why = "the enforcer request failed";
                self.log_once(why, &format!("{why}: {e}"));
                self.fallback(why, None)
            }
            Failure::CutOff { status } => {
                self.fallback("the enforcer's answer was cut off", Some(status))
            }
            Failure::TooLarge { status, limit } => {
                let why = format!(
                    "the enforcer's answer is over the {} limit",
                    if limit >= 1 << 20 {
                        format!("{} MiB", limit >> 20)
                    } else {
                        format!("{} KiB", limit >> 10)
                    }
                );
                self.log_once("too large", &format!("{why} (HTTP {status}): not read"));
                self.fallback(&why, Some(status))
            }
        }
    }

    fn fallback(&self, why: &str, status: Option<u16>) -> Decision {
        let verdict = match self.failure {
            FailureDecision::Block => Verdict::Block,
            FailureDecision::StepUp => Verdict::StepUp,
            FailureDecision::Allow => Verdict::Allow,
        };
        let mut d = Decision::new(
            verdict,
            format!("{why}; failure decision {}", verdict.as_str()),
        )
        .with_code("ENFORCER_UNAVAILABLE");
        d.extra.insert("fallback".into(), json!(true));
        if let Some(status) = status {
            d.extra.insert("http_status".into(), json!(status));
        }
        d
    }

    /// Logs `message` the first time `key` is seen, escaped: it may carry the
    /// enforcer's text. Billing keys (which hold the enforcer's message) stop being
    /// logged once [`LOGGED_REASONS`] keys are known, so an enforcer varying its message
    /// can neither flood the log nor grow the set.
    fn log_once(&self, key: &str, message: &str) {
        let first = self
            .logged
            .lock()
            .map(|mut seen| {
                (seen.len() < LOGGED_REASONS || !key.starts_with("billing:"))
                    && seen.insert(key.to_string())
            })
            .unwrap_or(true);
        if first {
            tracing::warn!("{}", escaped(message));
        }
    }
}

/// The enforcer's HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the enforcer HTTP client: {0}")]
pub struct ClientError(reqwest::Error);

/// Why one poll of a hold gave no state (the caller retries).
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("{}", exchange_failure(.0))]
    Exchange(Failure),
    #[error("hold poll answered a redirect ({0}), not followed")]
    Redirect(u16),
    #[error("hold poll answered {0}")]
    Status(u16),
    #[error("hold poll: {0}")]
    Answer(AnswerError),
    #[error("hold poll: `resolved` is not a boolean")]
    ResolvedNotBoolean,
}

fn exchange_failure(f: &Failure) -> String {
    match f {
        Failure::Timeout => "timed out".to_string(),
        Failure::Connect(e) | Failure::Request(e) => e.clone(),
        Failure::CutOff { .. } => "the answer was cut off".to_string(),
        Failure::TooLarge { limit, .. } => format!("the answer is over {limit} bytes"),
    }
}

/// Why an answer of the enforcer is not a usable JSON object.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// A member of the top-level object appears twice (the answer is ambiguous).
    #[error(transparent)]
    Duplicate(serde_json::Error),
    /// Not JSON, not an object, or more than one value.
    #[error(transparent)]
    Invalid(serde_json::Error),
}

/// An answer of the enforcer as JSON, refused when a member of the top-level object
/// appears twice: `{"decision":"BLOCK","decision":"ALLOW"}` would otherwise mean
/// whatever the last (or, for another reader, the first) says.
pub fn answer_json(body: &[u8]) -> Result<Value, AnswerError> {
    use serde::de::{Deserializer, MapAccess, Visitor};
    struct Unique<'a>(&'a std::cell::Cell<bool>);
    impl<'de> Visitor<'de> for Unique<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut members = serde_json::Map::new();
            while let Some(key) = map.next_key::<String>()? {
                let value: Value = map.next_value()?;
                if members.contains_key(&key) {
                    self.0.set(true);
                    return Err(serde::de::Error::custom(format!(
                        "the member {key:?} appears twice"
                    )));
                }
                members.insert(key, value);
            }
            Ok(Value::Object(members))
        }
    }
    let duplicate = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = de.deserialize_map(Unique(&duplicate)).map_err(|e| {
        if duplicate.get() {
            AnswerError::Duplicate(e)
        } else {
            AnswerError::Invalid(e)
        }
    })?;
    de.end().map_err(AnswerError::Invalid)?;
    Ok(value)
}

/// A hold poll answer: `{resolved, resolution}` or a decision-shaped body.
pub fn hold_state(body: &Value) -> Option<Verdict> {
    if let Some(resolved) = body.get("resolved").and_then(Value::as_bool) {
        if !resolved {
            return None;
        }
        let word = body
            .get("resolution")
            .and_then(Value::as_str)
            .unwrap_or("BLOCK");
        return Some(match verdict(word) {
            Some(Verdict::Allow) => Verdict::Allow,
            _ => Verdict::Block,
        });
    }
    match field(body, "decision").and_then(Value::as_str).map(verdict) {
        Some(Some(Verdict::StepUp)) | None => None,
        Some(Some(Verdict::Allow)) => Some(Verdict::Allow),
        Some(_) => Some(Verdict::Block),
    }
}

fn with_status(mut d: Decision, status: u16) -> Decision {
    d.extra.insert("http_status".into(), json!(status));
    d
}

/// A field by its snake_case name or its camelCase spelling.
fn field<'a>(body: &'a Value, snake: &str) -> Option<&'a Value> {
    body.get(snake)
        .or_else(|| body.get(camel(snake)))
        .filter(|v| !v.is_null())
}

fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The decision words and their aliases; anything else is BLOCK.
pub fn verdict(word: &str) -> Option<Verdict> {
    Some(match word.trim().to_ascii_uppercase().as_str() {
        "ALLOW" => Verdict::Allow,
        "BLOCK" | "DENY" => Verdict::Block,
        "STEP_UP" | "CHALLENGE" | "ESCALATE" | "REVIEW" => Verdict::StepUp,
        "MODIFY" | "MODIFIED" | "TRANSFORM" => Verdict::Modify,
        "DEFER" | "DEFERRED" | "HOLD" => Verdict::Defer,
        _ => return None,
    })
}

/// Maps an enforcer answer to a decision (unknown or missing decision ⇒ BLOCK).
pub fn parse_decision(body: &Value) -> Decision {
    // Every text is bounded: it is copied into the client's reply and the logs.
    let text = |name: &str| {
        field(body, name).map(|v| match v.as_str() {
            Some(s) => bounded(s, TEXT_LIMIT),
            None => bounded(&v.to_string(), TEXT_LIMIT),
        })
    };
    let word = field(body, "decision")
        .or_else(|| field(body, "authorization_decision"))
        .and_then(Value::as_str);
    let (verdict, unknown) = match word.and_then(verdict) {
        Some(v) => (v, None),
        None => (Verdict::Block, Some(word.unwrap_or("(none)").to_string())),
    };
    let reason = match (&unknown, text("reason")) {
        (Some(word), _) => format!(
            "the enforcer answered an unknown decision {:?}; blocked",
            bounded(word, 64)
        ),
        (None, Some(reason)) => reason,
        (None, None) => format!("enforcer decision {}", verdict.as_str()),
    };
    let mut d = Decision::new(verdict, reason);
    d.violation_id = text("violation_id");
    d.decision_reason_code = text("decision_reason_code");
    d.hold_token = text("hold_token");
    d.approval_url = text("approval_url");
    d.expires_at = text("expires_at");
    d.user_may_approve = verdict == Verdict::StepUp && text("approver").as_deref() == Some("user");
    d.matched_rule_ids = field(body, "matched_rule_ids")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|v| v.as_str().map(|id| bounded(id, RULE_ID_LIMIT)))
                .take(RULE_IDS)
                .collect()
        })
        .unwrap_or_default();
    if verdict == Verdict::Modify {
        match field(body, "modified_tool_args") {
            Some(args @ Value::Object(_)) => d.modified_arguments = Some(args.clone()),
            _ => {
                d.verdict = Verdict::Block;
                d.reason = "MODIFY without object modified_tool_args; blocked".into();
            }
        }
    }
    for name in [
        "modification_reason",
        "defer_reason",
        "action_classification",
        "risk_score",
        "pack_id",
        "pack_version",
        "step_up_timeout_seconds",
        "defer_timeout_seconds",
    ] {
        if let Some(v) = field(body, name) {
            d.extra.insert(name.into(), bounded_value(v));
        }
    }
    for name in [
        "regulatory_regimes",
        "matched_control_ids",
        "policy_references",
    ] {
        if let Some(v @ Value::Array(_)) = field(body, name) {
            d.extra.insert(name.into(), bounded_value(v));
        }
    }
    d
}

/// A value from an answer as it may be copied into a reply: at most about
/// [`TEXT_LIMIT`] bytes of JSON. A long string is cut with an ellipsis, a long array
/// keeps its first elements (then `"…"`), anything else long becomes its cut JSON text.
fn bounded_value(v: &Value) -> Value {
    let text = v.to_string();
    if text.len() <= TEXT_LIMIT {
        return v.clone();
    }
    match v {
        Value::String(s) => json!(bounded(s, TEXT_LIMIT)),
        Value::Array(items) => {
            let mut kept = Vec::new();
            let mut size = 2;
            for item in items {
                let item = bounded_value(item);
                size += item.to_string().len() + 1;
                if size > TEXT_LIMIT {
                    break;
                }
                kept.push(item);
            }
            kept.push(json!("…"));
            Value::Array(kept)
        }
        _ => json!(bounded(&text, TEXT_LIMIT)),
    }
}

/// The tool's facts an enforce request carries in `metadata` (`tool_in_catalog`,
/// `tool_annotations`, `tool_pin`, `tool_description_flags`), as `thoth enforcer serve` gives them to its policy: absent
/// members take the spec's defaults; a title longer than 1 KiB is refused.
pub fn facts_from_metadata(metadata: Option<&Value>) -> Result<ToolFacts, &'static str> {
    let mut facts = ToolFacts::default();
    let Some(metadata) = metadata else {
        return Ok(facts);
    };
    let flag = |name: &str| metadata.get(name).and_then(Value::as_bool).unwrap_or(false);
    facts.in_catalog = flag("tool_in_catalog");
    facts.annotated = flag("tool_annotated");
    let annotations = metadata.get("tool_annotations");
    let hint = |name: &str, default: bool| {
        annotations
            .and_then(|a| a.get(name))
            .and_then(Value::as_bool)
            .unwrap_or(default)
    };
    facts.read_only = hint("readOnlyHint", facts.read_only);
    facts.destructive = hint("destructiveHint", facts.destructive);
    facts.idempotent = hint("idempotentHint", facts.idempotent);
    facts.open_world = hint("openWorldHint", facts.open_world);
    let title = annotations
        .and_then(|a| a.get("title"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if title.len() > 1024 {
        return Err("metadata.tool_annotations.title is longer than 1024 bytes");
    }
    facts.title = title.to_string();
    if let Some(pin) = metadata.get("tool_pin") {
        facts.pin = pin
            .as_str()
            .and_then(crate::domain::PinState::parse)
            .ok_or("metadata.tool_pin is not one of pinned, new, changed")?;
    }
    if let Some(flags) = metadata.get("tool_description_flags") {
        let names = flags
            .as_array()
            .filter(|names| names.len() <= 16)
            .ok_or("metadata.tool_description_flags is not an array of at most 16 names")?;
        facts.description_flags =
            super::DescriptionFlags::from_names(names.iter().filter_map(Value::as_str));
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicated_member_is_no_decision() {
        for body in [
            &br#"{"decision":"BLOCK","decision":"ALLOW"}"#[..],
            br#"{"resolved":true,"resolution":"BLOCK","resolution":"ALLOW"}"#,
        ] {
            let err = answer_json(body).unwrap_err();
            assert!(matches!(err, AnswerError::Duplicate(_)), "{err}");
            assert!(err.to_string().contains("appears twice"));
        }
        assert!(answer_json(br#"{"decision":"ALLOW"} {}"#).is_err());
        assert!(answer_json(b"[1]").is_err());
        let nested = answer_json(br#"{"decision":"ALLOW","extra":{"a":1}}"#).unwrap();
        assert_eq!(parse_decision(&nested).verdict, Verdict::Allow);
    }

    #[test]
    fn aliases_camel_case_and_unknown_decisions() {
        let cases: &[(Value, Verdict)] = &[
            (json!({ "decision": "ALLOW" }), Verdict::Allow),
            (json!({ "decision": "deny" }), Verdict::Block),
            (json!({ "decision": "CHALLENGE" }), Verdict::StepUp),
            (json!({ "decision": "ESCALATE" }), Verdict::StepUp),
            (json!({ "decision": "REVIEW" }), Verdict::StepUp),
            (
                json!({ "decision": "TRANSFORM", "modifiedToolArgs": { "a": 1 } }),
                Verdict::Modify,
            ),
            (json!({ "decision": "MODIFIED" }), Verdict::Block),
            (json!({ "decision": "HOLD" }), Verdict::Defer),
            (json!({ "decision": "DEFERRED" }), Verdict::Defer),
            (json!({ "authorization_decision": "ALLOW" }), Verdict::Allow),
            (
                json!({ "authorizationDecision": "STEP_UP" }),
                Verdict::StepUp,
            ),
            (json!({ "decision": "MAYBE" }), Verdict::Block),
            (json!({ "decision": 7 }), Verdict::Block),
            (json!({}), Verdict::Block),
        ];
        for (body, want) in cases {
            assert_eq!(parse_decision(body).verdict, *want, "{body}");
        }
        let d = parse_decision(
            &json!({ "decision": "STEP_UP", "holdToken": "h1", "approvalUrl": "https://a/h1", "expiresAt": "2026-01-01T00:00:00Z", "violationId": "v", "matchedRuleIds": ["r1"], "riskScore": 0.9 }),
        );
        assert_eq!(d.hold_token.as_deref(), Some("h1"));
        assert_eq!(d.approval_url.as_deref(), Some("https://a/h1"));
        assert_eq!(d.expires_at.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(d.violation_id.as_deref(), Some("v"));
        assert_eq!(d.matched_rule_ids, ["r1"]);
        assert_eq!(d.extra["risk_score"], json!(0.9));
        assert!(!d.user_may_approve, "only when the enforcer says so");
        assert!(
            parse_decision(&json!({ "decision": "STEP_UP", "approver": "user" })).user_may_approve
        );
        assert!(
            !parse_decision(&json!({ "decision": "BLOCK", "approver": "user" })).user_may_approve
        );
        assert!(
            !parse_decision(&json!({ "decision": "STEP_UP", "approver": "admin" }))
                .user_may_approve
        );
        assert!(
            parse_decision(&json!({ "decision": "MAYBE" }))
                .reason
                .contains("unknown decision")
        );
    }

    #[test]
    fn texts_copied_from_an_answer_are_bounded() {
        let huge = "r".repeat(100_000);
        let id = "i".repeat(300);
        let d = parse_decision(&json!({
            "decision": "STEP_UP", "reason": huge, "approval_url": huge, "hold_token": huge,
            "violation_id": huge, "matched_rule_ids": vec![id.as_str(); 1000],
            "modification_reason": huge, "risk_score": 0.5,
            "regulatory_regimes": vec!["HIPAA"; 100_000], "pack_id": { "deep": huge },
        }));
        assert!(d.reason.len() <= TEXT_LIMIT && d.reason.ends_with('…'));
        for text in [&d.approval_url, &d.hold_token, &d.violation_id] {
            assert!(text.as_ref().unwrap().len() <= TEXT_LIMIT);
        }
        assert_eq!(d.matched_rule_ids.len(), RULE_IDS);
        assert!(
            d.matched_rule_ids
                .iter()
                .all(|id| id.len() <= RULE_ID_LIMIT)
        );
        for (key, value) in &d.extra {
            assert!(value.to_string().len() <= TEXT_LIMIT + 16, "{key}");
        }
        assert_eq!(d.extra["risk_score"], json!(0.5));
        let regimes = d.extra["regulatory_regimes"].as_array().unwrap();
        assert_eq!(
            (regimes[0].clone(), regimes.last().cloned()),
            (json!("HIPAA"), Some(json!("…")))
        );
        // Short values are untouched.
        let d = parse_decision(
            &json!({ "decision": "BLOCK", "reason": "no writes", "regulatory_regimes": ["HIPAA"] }),
        );
        assert_eq!(d.reason, "no writes");
        assert_eq!(d.extra["regulatory_regimes"], json!(["HIPAA"]));
    }

    #[test]
    fn the_tools_facts_travel_in_metadata_and_come_back_the_same() {
        let facts = ToolFacts {
            in_catalog: true,
            title: "Read".into(),
            annotated: true,
            read_only: true,
            destructive: false,
            idempotent: true,
            open_world: false,
            pin: crate::domain::PinState::Changed,
            description_flags: crate::enforce::DescriptionFlags::from_names(["zero_width"]),
        };
        let history = crate::enforce::SessionHistory::default();
        let input = DecisionInput {
            agent_id: "a",
            tenant_id: "t",
            user_id: "u",
            environment: crate::domain::Environment::Dev,
            mode: crate::domain::Mode::Block,
            session_id: "s",
            session_intent: "",
            tool_name: "read",
            tool: &facts,
            arguments: None,
            session: &history,
        };
        let body = RemoteEnforcer::body(&input, "trace", "att");
        assert_eq!(body["metadata"]["tool_annotations"]["readOnlyHint"], true);
        assert_eq!(facts_from_metadata(body.get("metadata")), Ok(facts));
        // Absent: the spec's defaults; hostile: refused.
        assert_eq!(facts_from_metadata(None), Ok(ToolFacts::default()));
        assert_eq!(
            facts_from_metadata(Some(&json!({"tool_annotations": 7}))),
            Ok(ToolFacts::default())
        );
        let long = json!({"tool_annotations": {"title": "x".repeat(1025)}});
        assert!(facts_from_metadata(Some(&long)).is_err());
    }
}
