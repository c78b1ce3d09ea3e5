//! Step-up holds (docs/architecture.md §3 "Decisions"): a STEP_UP with a hold token keeps the call
//! while the enforcer's hold is polled.
//!
//! The call is held for at most `THOTH_STEP_UP_HOLD_SECONDS` (45: clients time out
//! requests at 60 s), polling every 2 s (`THOTH_STEP_UP_POLL_MS` in tests). When the
//! client sent `_meta.progressToken`, one `notifications/progress` goes out as the hold
//! starts and one after each poll that leaves it pending. Resolved in time: ALLOW
//! forwards, anything else answers -32001. Not in time: -32002 with the approval data,
//! and polling continues in the background until the hold expires; an approval then
//! admits the first retry of the same call — bound to (agent, tool, SHA-256 of the
//! canonical arguments) — until the hold's expiry. Poll errors are retried, never fatal.
//! A held call is pending: `notifications/cancelled` ends the hold.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::outbox::Outbox;
use super::user_approval::{self, Answer, Question, Questions};
use crate::enforce::remote::RemoteEnforcer;
use crate::enforce::{Decision, Verdict};
use crate::logging::escaped;

/// Longest background wait for a hold, whatever the enforcer says (clamped).
const MAX_HOLD_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Default lifetime of a hold the enforcer gives no expiry for.
const DEFAULT_HOLD_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Approvals remembered at most.
const MAX_APPROVALS: usize = 1024;

/// Approved holds waiting for their retry: call key → expiry.
#[derive(Default)]
pub struct Approvals {
    by_call: HashMap<[u8; 32], Instant>,
}

impl Approvals {
    /// True when no approval waits for its retry.
    pub fn is_empty(&self) -> bool {
        self.by_call.is_empty()
    }

    /// Consumes an approval for this call, if one is still valid.
    pub fn take(&mut self, key: &[u8; 32]) -> bool {
        match self.by_call.remove(key) {
            Some(expiry) => Instant::now() < expiry,
            None => false,
        }
    }

    fn grant(&mut self, key: [u8; 32], expiry: Instant) {
        if self.by_call.len() >= MAX_APPROVALS {
            let now = Instant::now();
            self.by_call.retain(|_, e| *e > now);
        }
        if self.by_call.len() < MAX_APPROVALS {
            self.by_call.insert(key, expiry);
        }
    }
}

/// What binds an approval to one call: agent, tool and the canonical arguments.
pub fn call_key(agent: &str, tool: &str, arguments: Option<&Value>) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in [agent, tool] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.update(canonical(arguments.unwrap_or(&Value::Object(serde_json::Map::new()))).as_bytes());
    hash.finalize().into()
}

/// JSON with object keys sorted, recursively (one text per value).
pub fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// What holds need and keep: their timing, the approvals that wait for a retry, the
/// approval URLs already announced, the enforcer to poll and the client to notify.
pub struct Holds {
    /// Time between polls (`THOTH_STEP_UP_POLL_MS`).
    pub poll: Duration,
    /// How long a call is held (`THOTH_STEP_UP_HOLD_SECONDS`).
    pub hold: Duration,
    pub remote: std::sync::Arc<RemoteEnforcer>,
    pub out: Rc<Outbox>,
    /// The session's questions to the user (an approval page shown in the client).
    pub questions: Rc<Questions>,
    approvals: std::cell::RefCell<Approvals>,
    announced: std::cell::RefCell<std::collections::HashSet<String>>,
}

impl Holds {
    pub fn new(
        poll: Duration,
        hold: Duration,
        remote: std::sync::Arc<RemoteEnforcer>,
        out: Rc<Outbox>,
        questions: Rc<Questions>,
    ) -> Self {
        Self {
            poll,
            hold,
            remote,
            out,
            questions,
            approvals: Default::default(),
            announced: Default::default(),
        }
    }

    /// Consumes an approval for the call whose key `key` computes; the key is
    /// computed only when some approval waits (not on the common path).
    pub fn take_approval(&self, key: impl FnOnce() -> [u8; 32]) -> bool {
        !self.approvals.borrow().is_empty() && self.approvals.borrow_mut().take(&key())
    }
}

/// How a hold ended while the call was held.
pub enum Held {
    Resolved(Verdict),
    TimedOut,
    /// The user declined (or cancelled) the approval page shown in their client.
    Declined(&'static str),
}

/// The approval page shown in the client during a hold: its question and its
/// `elicitationId`.
struct Page {
    question: Question,
    elicitation_id: String,
}

/// Shows the hold's approval page in the client, when the enforcer lets the user
/// approve, the client can show a URL (`url_mode`) and a question slot is free.
async fn show_page(holds: &Holds, decision: &Decision, tool: &str, url_mode: bool) -> Option<Page> {
    let url = decision.approval_url.as_deref()?;
    if !(url_mode && decision.user_may_approve) {
        return None;
    }
    let question = holds.questions.open()?;
    let elicitation_id = uuid::Uuid::new_v4().to_string();
    let params = user_approval::url_params(tool, url, &elicitation_id);
    holds
        .out
        .answer_client(user_approval::request(&question.raw_id, &params))
        .await;
    Some(Page {
        question,
        elicitation_id,
    })
}

/// Waits until `until`; an answer to the page meanwhile is read. `Some` when the user
/// declined it.
async fn wait_for_poll(page: &mut Option<Page>, until: Instant) -> Option<&'static str> {
    if let Some(p) = page.as_mut().filter(|p| p.question.waiting()) {
        tokio::select! {
            reply = p.question.answer() => {
                if let Some(Answer::Refused(why)) =
                    reply.map(|r| Answer::of(&r, false))
                {
                    return Some(why);
                }
            }
            () = tokio::time::sleep_until(until) => return None,
        }
    }
    tokio::time::sleep_until(until).await;
    None
}

/// Holds a call while its hold is polled (`url_mode`: the client can show the
/// approval page, see [`show_page`]).
pub async fn hold(
    holds: &Rc<Holds>,
    decision: &Decision,
    tool: &str,
    progress_token: Option<&[u8]>,
    key: [u8; 32],
    url_mode: bool,
) -> Held {
    let Some(token) = decision.hold_token.clone() else {
        return Held::TimedOut;
    };
    announce(holds, decision);
    let poll = holds.poll;
    let deadline = Instant::now() + holds.hold;
    let mut step = 0u64;
    let mut page = show_page(holds, decision, tool, url_mode).await;
    progress(&holds.out, progress_token, step, decision).await;
    while Instant::now() + poll <= deadline {
        if let Some(why) = wait_for_poll(&mut page, Instant::now() + poll).await {
            return Held::Declined(why);
        }
        match holds.remote.poll_hold(&token).await {
            Ok(Some(verdict)) => {
                if let Some(p) = &page {
                    holds
                        .out
                        .answer_client(user_approval::completed(&p.elicitation_id))
                        .await;
                }
                return Held::Resolved(verdict);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(
                "hold {}: poll failed ({}); retrying",
                escaped(&token),
                escaped(&e.to_string())
            ),
        }
        step += 1;
        progress(&holds.out, progress_token, step, decision).await;
    }
    // (A page not answered yet is cancelled in the client as it is dropped.)
    drop(page);
    // Not in time: keep polling in the background, and remember an approval.
    let lifetime = hold_lifetime(decision);
    let background = holds.clone();
    tokio::task::spawn_local(async move {
        let ends = Instant::now() + lifetime;
        while Instant::now() < ends {
            tokio::time::sleep(poll).await;
            match background.remote.poll_hold(&token).await {
                Ok(Some(Verdict::Allow)) => {
                    tracing::info!(
                        "hold {} approved: the next identical call is admitted until the hold expires",
                        escaped(&token)
                    );
                    background.approvals.borrow_mut().grant(key, ends);
                    return;
                }
                Ok(Some(_)) => return,
                Ok(None) | Err(_) => {}
            }
        }
    });
    Held::TimedOut
}

/// The hold's lifetime from `expires_at` or `step_up_timeout_seconds`, clamped.
fn hold_lifetime(decision: &Decision) -> Duration {
    let from_expiry = decision.expires_at.as_deref().and_then(|at| {
        let at = crate::clock::parse_rfc3339(at)?;
        let left = at - time::OffsetDateTime::now_utc();
        Duration::try_from(left).ok()
    });
    let from_timeout = decision
        .extra
        .get("step_up_timeout_seconds")
        .and_then(Value::as_u64)
        .map(Duration::from_secs);
    from_expiry
        .or(from_timeout)
        .unwrap_or(DEFAULT_HOLD_LIFETIME)
        .clamp(Duration::from_secs(1), MAX_HOLD_LIFETIME)
}

/// The approval URL goes to stderr once per hold, escaped (it comes from the enforcer:
/// a CR/LF in it must not forge a log line).
fn announce(holds: &Holds, decision: &Decision) {
    if let Some(url) = &decision.approval_url {
        let first = holds.announced.borrow_mut().insert(url.clone());
        if first {
            tracing::warn!("a tool call waits for approval: {}", escaped(url));
        }
    }
}

async fn progress(out: &Outbox, token: Option<&[u8]>, step: u64, decision: &Decision) {
    let Some(token) = token else { return };
    let message = match &decision.approval_url {
        Some(url) => format!("waiting for approval: {url}"),
        None => "waiting for approval".to_string(),
    };
    out.answer_client(super::answers::progress(token, step, &message))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_arguments_ignore_key_order_only() {
        let a = json!({ "b": [1, { "y": 1, "x": 2 }], "a": "s" });
        let b = json!({ "a": "s", "b": [1, { "x": 2, "y": 1 }] });
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(call_key("ag", "t", Some(&a)), call_key("ag", "t", Some(&b)));
        assert_ne!(
            call_key("ag", "t", Some(&a)),
            call_key("ag", "t", Some(&json!({ "a": "s" })))
        );
        assert_ne!(
            call_key("ag", "t", None),
            call_key("a", "gt", None),
            "parts are length-prefixed"
        );
    }
}
