//! The Thoth enforcer over HTTP(S) (DESIGN §4): `POST /v1/enforce` and the failure
//! policy around it.
//!
//! One client per process (connection reuse, HTTP/2 when offered). What the enforcer
//! answers is mapped to a [`Decision`]: every alias and camelCase spelling of a field
//! is accepted, and anything unrecognised blocks. When the enforcer cannot answer
//! (network error, timeout, 429, 5xx, a body that is not JSON) the failure decision
//! applies (`THOTH_ENFORCER_FAILURE_DECISION`, block by default); 401/403 and other 4xx
//! always block, with a hint. The reply's `data` says which path decided
//! (`fallback`, `http_status`). The API key travels only in the `x-api-key` header.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{Decision, DecisionInput, Verdict};
use crate::settings::{Environment, FailureDecision, Secret, SettingsError};

/// Connection timeout to the enforcer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on the best-effort explanation call.
pub const EXPLAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Default read timeout of one enforce call.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The remote decision point.
pub struct RemoteEnforcer {
    client: reqwest::Client,
    /// Sent in the enforce `metadata` for the service to attest.
    aws_certificate_arn: Option<String>,
    base: String,
    api_key: Secret,
    failure: FailureDecision,
    /// Reasons already logged (billing and auth problems are logged once each).
    logged: Mutex<HashSet<String>>,
}

/// The failure decision in force: `allow` is ignored in staging/prod without the
/// override, with a warning either way.
pub fn effective_failure(
    asked: Option<FailureDecision>,
    environment: Environment,
    allow_override: bool,
) -> FailureDecision {
    match asked.unwrap_or(FailureDecision::Block) {
        FailureDecision::Allow if environment != Environment::Dev && !allow_override => {
            tracing::warn!(
                "THOTH_ENFORCER_FAILURE_DECISION=allow is ignored in {}: calls block when the enforcer is unreachable (set THOTH_ENFORCER_ALLOW_FALLBACK_OVERRIDE=true to accept the risk)",
                environment.as_str()
            );
            FailureDecision::Block
        }
        FailureDecision::Allow => {
            tracing::warn!(
                "THOTH_ENFORCER_FAILURE_DECISION=allow: calls are ALLOWED without a policy decision whenever the enforcer is unreachable"
            );
            FailureDecision::Allow
        }
        other => other,
    }
}

impl RemoteEnforcer {
    /// A client for `base` (no trailing slash) with thoth's TLS settings.
    pub fn new(
        base: &str,
        api_key: Secret,
        failure: FailureDecision,
        read_timeout: Duration,
        tls: rustls::ClientConfig,
    ) -> Result<Self, SettingsError> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(read_timeout)
            .timeout(read_timeout + CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(90))
            // A decision request is never replayed behind thoth's back: failures go
            // through the failure policy instead.
            .retry(reqwest::retry::never())
            .user_agent(concat!("thoth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                SettingsError::new(format!("cannot build the enforcer HTTP client: {e}"))
            })?;
        Ok(Self {
            client,
            aws_certificate_arn: None,
            base: base.trim_end_matches('/').to_string(),
            api_key,
            failure,
            logged: Mutex::new(HashSet::new()),
        })
    }

    /// Asks the service to attest this certificate ARN (sent in `metadata`).
    pub fn with_aws_certificate_arn(mut self, arn: Option<String>) -> Self {
        self.aws_certificate_arn = arn;
        self
    }

    /// The request body of DESIGN §4.
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
        if !input.session_intent.is_empty()
            && let Some(map) = body.as_object_mut()
        {
            map.insert("session_intent".into(), json!(input.session_intent));
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
        if let (Some(arn), Some(map)) = (&self.aws_certificate_arn, body.as_object_mut()) {
            map.insert(
                "metadata".into(),
                json!({ "aws_certificate_arn": arn, "require_aws_backed_certs": true }),
            );
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
        let url = format!("{}/v1/enforce", self.base);
        let sent = self
            .client
            .post(&url)
            .header("x-api-key", self.api_key.expose())
            .json(&self.enforce_body(input, trace_id, attestation_id))
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                let why = if e.is_timeout() {
                    "the enforcer timed out"
                } else if e.is_connect() {
                    "the enforcer is unreachable"
                } else {
                    "the enforcer request failed"
                };
                self.log_once(why, &format!("{why}: {}", without_url(&e)));
                return self.fallback(why, None);
            }
        };
        let status = response.status().as_u16();
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => {
                let why = if e.is_timeout() {
                    "the enforcer timed out"
                } else {
                    "the enforcer's answer was cut off"
                };
                return self.fallback(why, Some(status));
            }
        };
        let body: Option<Value> = serde_json::from_str(&text).ok();
        match status {
            200..=299 => match body {
                Some(body) => {
                    let mut decision = with_status(parse_decision(&body), status);
                    if matches!(decision.verdict, Verdict::Block | Verdict::StepUp)
                        && let Some(explanation) = self
                            .explain(Self::body(input, trace_id, attestation_id), &decision)
                            .await
                    {
                        if let Some(next) =
                            explanation.get("what_to_do_next").and_then(Value::as_str)
                        {
                            decision.reason = format!("{} ({next})", decision.reason);
                        }
                        decision.extra.insert("explanation".into(), explanation);
                    }
                    decision
                }
                None => self.fallback("the enforcer answered with invalid JSON", Some(status)),
            },
            429 => self.fallback("the enforcer is rate limiting (429)", Some(status)),
            500..=599 => self.fallback(&format!("the enforcer failed ({status})"), Some(status)),
            402 if body.as_ref().and_then(|b| b["error"]["type"].as_str())
                == Some("billing_error") =>
            {
                let message = body
                    .as_ref()
                    .and_then(|b| b["error"]["message"].as_str())
                    .unwrap_or("billing problem")
                    .to_string();
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
    /// to 1 s. `None` on any problem (the denial stands without an explanation).
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
        let response = self
            .client
            .post(format!("{}/v1/explain", self.base))
            .header("x-api-key", self.api_key.expose())
            .timeout(EXPLAIN_TIMEOUT)
            .json(&body)
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let answer: Value = response.json().await.ok()?;
        let mut explanation = serde_json::Map::new();
        for key in ["what_happened", "why_it_was_blocked", "what_to_do_next"] {
            if let Some(text) = field(&answer, key).and_then(Value::as_str) {
                explanation.insert(key.into(), json!(text));
            }
        }
        (!explanation.is_empty()).then_some(Value::Object(explanation))
    }

    /// Polls a hold: `Some(verdict)` once resolved (an expired hold is BLOCK), `None`
    /// while pending; errors are for the caller to retry.
    pub async fn poll_hold(&self, token: &str) -> Result<Option<Verdict>, String> {
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
        {
            return Ok(Some(Verdict::Block));
        }
        let response = self
            .client
            .get(format!("{}/v1/enforce/hold/{token}", self.base))
            .bearer_auth(self.api_key.expose())
            .send()
            .await
            .map_err(|e| without_url(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("hold poll answered {status}"));
        }
        let body: Value = response.json().await.map_err(|e| without_url(&e))?;
        Ok(hold_state(&body))
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

    fn log_once(&self, key: &str, message: &str) {
        if self
            .logged
            .lock()
            .map(|mut seen| seen.insert(key.to_string()))
            .unwrap_or(true)
        {
            tracing::warn!("{message}");
        }
    }
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

/// reqwest errors name the URL; the URL is not secret, but keep messages short.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "");
    }
    text
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
    let text = |name: &str| {
        field(body, name).and_then(|v| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| Some(v.to_string()))
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
        (Some(word), _) => format!("the enforcer answered an unknown decision {word:?}; blocked"),
        (None, Some(reason)) => reason,
        (None, None) => format!("enforcer decision {}", verdict.as_str()),
    };
    let mut d = Decision::new(verdict, reason);
    d.violation_id = text("violation_id");
    d.decision_reason_code = text("decision_reason_code");
    d.hold_token = text("hold_token");
    d.approval_url = text("approval_url");
    d.expires_at = text("expires_at");
    d.matched_rule_ids = field(body, "matched_rule_ids")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
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
            d.extra.insert(name.into(), v.clone());
        }
    }
    for name in [
        "regulatory_regimes",
        "matched_control_ids",
        "policy_references",
    ] {
        if let Some(v @ Value::Array(_)) = field(body, name) {
            d.extra.insert(name.into(), v.clone());
        }
    }
    d
}

/// Extra `data` members, kept in insertion order.
pub type Extra = Map<String, Value>;

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(
            parse_decision(&json!({ "decision": "MAYBE" }))
                .reason
                .contains("unknown decision")
        );
    }

    #[test]
    fn allow_fallback_is_refused_outside_dev() {
        assert_eq!(
            effective_failure(Some(FailureDecision::Allow), Environment::Prod, false),
            FailureDecision::Block
        );
        assert_eq!(
            effective_failure(Some(FailureDecision::Allow), Environment::Staging, true),
            FailureDecision::Allow
        );
        assert_eq!(
            effective_failure(Some(FailureDecision::Allow), Environment::Dev, false),
            FailureDecision::Allow
        );
        assert_eq!(
            effective_failure(None, Environment::Dev, false),
            FailureDecision::Block
        );
        assert_eq!(
            effective_failure(Some(FailureDecision::StepUp), Environment::Prod, false),
            FailureDecision::StepUp
        );
    }
}
