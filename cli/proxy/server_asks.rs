//! Requests the server sends the client — `sampling/createMessage` (with the tools the
//! model may call there, which the server then runs without any tools/call),
//! `elicitation/create`, `roots/list` — decided before the client sees them: by the
//! local policy on the relay's thread, or by the enforcer (remote mode, when set to),
//! asked from the client pump's thread while the relay holds the line.
//!
//! Why: sampling with tools is tool use the tools/call path never sees, and an
//! elicitation can send the user to any URL. The principal is the session's agent; a
//! refused request is answered to the server with an error and never relayed. A
//! method is governed only when a policy's scope names its action (as for resources).
//! This module decides and writes the server's answer; the relay does the relaying,
//! and the client pump the audit records.
//!
//! From 2026-07-28 a server no longer sends these as requests: it answers the client's
//! request with an `input_required` result whose `inputRequests` carry the same
//! requests, and the client retries with the answers. Those are judged the same way,
//! one by one; when one is refused the client gets an error for its request instead of
//! the result, so it never runs any of them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;

use crate::domain::{Environment, Mode};
use crate::enforce::local::LocalEngine;
use crate::enforce::methods::{self, SERVER_REQUESTS};
use crate::enforce::modes::{Decided, apply_mode, observe};
use crate::enforce::{Decision, DecisionInput, SessionHistory, ToolFacts, Verdict};

/// Ids echoed to the server at most (a longer one is answered with a null id: the
/// server wrote it, and it is not kept in memory a second time).
const MAX_ECHOED_ID: usize = 256;

/// Input requests judged in one result at most: a result carrying more is refused
/// whole (no client needs more; each one judged is an audit record).
pub const MAX_INPUT_REQUESTS: usize = 64;

/// Bytes of an input request's key kept for records and errors (the server chose it).
const MAX_KEY_BYTES: usize = 256;

fn bounded_key(key: &str) -> String {
    let mut end = key.len().min(MAX_KEY_BYTES);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    key.get(..end).unwrap_or_default().to_string()
}

fn bounded_id(raw_id: &[u8]) -> &[u8] {
    if raw_id.len() <= MAX_ECHOED_ID {
        raw_id
    } else {
        b"null"
    }
}

/// A server request refused before any policy: the error the server gets (code,
/// message, `data.reason`, with `why` as its detail) and the audit record's decision.
fn refused(
    method: &'static str,
    raw_id: &[u8],
    (code, message, reason): (i32, &str, &str),
    why: &str,
    decision_code: &str,
) -> Judged {
    Judged {
        method,
        target: String::new(),
        refusal: Some(super::answers::error(
            Some(bounded_id(raw_id)),
            code,
            message,
            Some(&json!({ "reason": reason, "detail": why })),
        )),
        decided: Decided {
            decision: Decision::new(Verdict::Block, why).with_code(decision_code),
            would_be: None,
        },
        started: Instant::now(),
        input_key: None,
    }
}

/// A request for the client carried inside an answer: its key there, its method and
/// its params.
struct Embedded<'a> {
    key: String,
    method: Option<&'a str>,
    params: Option<&'a serde_json::Value>,
}

/// Who decides, for whom.
pub struct ServerAsks {
    /// The local engine; `None` in remote mode.
    pub engine: Option<Arc<LocalEngine>>,
    /// Remote mode with methods governed there: the enforcer decides each request.
    /// (Remote mode without it decides nothing here, and audits all.)
    pub remote: bool,
    pub agent_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub environment: Environment,
    pub mode: Mode,
    pub session_intent: String,
    pub session_id: String,
    /// Soft denials so far (progressive mode), by method and target.
    soft_denied: Mutex<HashSet<String>>,
    /// Where questions for the enforcer go (the client pump's thread, which holds the
    /// session); `None`: none can be asked, and each is refused.
    questions: Option<tokio::sync::mpsc::Sender<Asked>>,
}

/// A question for the enforcer, and where its decision goes.
pub type Asked = (Question, tokio::sync::oneshot::Sender<Decision>);

/// What becomes of a server request: judged now, or a question for the enforcer.
#[derive(Debug)]
pub enum Judgement {
    Now(Box<Judged>),
    Ask(Box<Question>),
}

/// A server request the enforcer decides (remote mode, with methods governed there).
/// The client pump's thread asks it ([`Question::call`], [`Question::params`]); the
/// relay waits, then [`ServerAsks::conclude`]s it.
#[derive(Debug, Clone)]
pub struct Question {
    pub call: methods::MethodCall,
    /// The members of its params the enforcer is sent (`metadata.mcp_params`).
    pub params: serde_json::Value,
    raw_id: Vec<u8>,
    input_key: Option<String>,
    started: Instant,
}

/// One server request judged: what the audit log records, and the server's answer
/// when it is refused.
#[derive(Debug)]
pub struct Judged {
    pub method: &'static str,
    pub target: String,
    pub decided: Decided,
    /// The error for the server, when the client must not see the request.
    pub refusal: Option<Vec<u8>>,
    pub started: Instant,
    /// The key of the input request this was, inside an `input_required` result.
    pub input_key: Option<String>,
}

impl ServerAsks {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Option<Arc<LocalEngine>>,
        remote: bool,
        agent_id: &str,
        tenant_id: &str,
        user_id: &str,
        environment: Environment,
        mode: Mode,
        session_intent: &str,
        session_id: &str,
    ) -> Self {
        Self {
            engine,
            remote,
            agent_id: agent_id.to_string(),
            tenant_id: tenant_id.to_string(),
            user_id: user_id.to_string(),
            environment,
            mode,
            session_intent: session_intent.to_string(),
            session_id: session_id.to_string(),
            soft_denied: Mutex::new(HashSet::new()),
            questions: None,
        }
    }

    /// Questions for the enforcer go to `questions`.
    pub fn asking(mut self, questions: tokio::sync::mpsc::Sender<Asked>) -> Self {
        self.questions = Some(questions);
        self
    }

    /// The enforcer's decision about `question`, waited for; a BLOCK when it cannot
    /// be asked (fail closed).
    pub async fn ask(&self, question: &Question) -> Decision {
        let unasked = || {
            Decision::new(Verdict::Block, "the enforcer could not be asked")
                .with_code("ENFORCER_UNAVAILABLE")
        };
        let Some(questions) = &self.questions else {
            return unasked();
        };
        let (reply, decision) = tokio::sync::oneshot::channel();
        if questions.send((question.clone(), reply)).await.is_err() {
            return unasked();
        }
        decision.await.unwrap_or_else(|_| unasked())
    }

    /// Judges a server request of `method` (`None` when it is not one of
    /// [`SERVER_REQUESTS`]) with raw id `raw_id` and params `params` (their bytes).
    pub fn judge(&self, method: &str, raw_id: &[u8], params: Option<&[u8]>) -> Option<Judgement> {
        let method = SERVER_REQUESTS.iter().copied().find(|m| *m == method)?;
        let started = Instant::now();
        self.judge_known(method, raw_id, params, started)
    }

    /// Whether a request of the server can be refused at all: not in observe mode, and
    /// not in remote mode unless the enforcer decides these requests.
    pub fn blocks(&self) -> bool {
        (self.engine.is_some() || self.remote) && self.mode != Mode::Observe
    }

    /// Whether some server request can be refused: a line too long to read whole may
    /// then not be streamed to the client unread.
    pub fn governs_any(&self) -> bool {
        self.blocks()
            && (self.remote
                || self
                    .engine
                    .as_ref()
                    .is_some_and(|e| SERVER_REQUESTS.iter().any(|m| e.governs(m))))
    }

    /// A server line longer than the relay holds that may ask the client something (a
    /// request, or an answer carrying requests), while server requests are governed:
    /// not relayed; a request is answered to the server with this.
    pub fn refused_long(raw_id: &[u8]) -> Judged {
        refused(
            "request",
            raw_id,
            (-32600, "Invalid Request", "line_too_long_to_judge"),
            "a line of the server's too long to judge whole may be a request thoth governs: not relayed",
            "TOO_LONG_TO_JUDGE",
        )
    }

    /// A request inside a server batch that holds a governed one: refused with the
    /// batch (its elements cannot be relayed apart).
    pub fn refused_batch(method: &'static str, raw_id: &[u8]) -> Judged {
        refused(
            method,
            raw_id,
            (-32600, "Invalid Request", "batch_refused"),
            "a batch of the server's holding a request thoth governs is not relayed",
            "BATCH_REFUSED",
        )
    }

    /// Judges the input requests of an `input_required` result answering the client's
    /// request `raw_id` (the `inputRequests` map, as clients read it). Returns each
    /// judged, for the audit log, and, when one is refused, the error the client gets
    /// for its request instead of the result: none of them reaches the client then.
    pub fn judge_input_requests(
        &self,
        requests: &serde_json::Map<String, serde_json::Value>,
        raw_id: &[u8],
    ) -> Vec<Judgement> {
        let asked: Vec<Embedded<'_>> = requests
            .iter()
            .map(|(key, request)| Embedded {
                key: key.clone(),
                method: request.get("method").and_then(serde_json::Value::as_str),
                params: request.get("params"),
            })
            .collect();
        self.judge_embedded(&asked, raw_id)
    }

    /// Judges the URL elicitations of an error answering the client's request `raw_id`
    /// (`error.data.elicitations`, 2025-11-25's "URL elicitation required", -32042): a
    /// client shows each URL as it would an `elicitation/create` of URL mode. As for
    /// input requests, a refused one makes the client get thoth's error instead.
    pub fn judge_url_elicitations(
        &self,
        elicitations: &[serde_json::Value],
        raw_id: &[u8],
    ) -> Vec<Judgement> {
        let asked: Vec<Embedded<'_>> = elicitations
            .iter()
            .enumerate()
            .map(|(i, params)| Embedded {
                key: format!("elicitations/{i}"),
                method: Some("elicitation/create"),
                params: Some(params),
            })
            .collect();
        self.judge_embedded(&asked, raw_id)
    }

    /// Each request for the client inside an answer, judged; [`embedded_answer`] then
    /// says what the client gets.
    fn judge_embedded(&self, asked: &[Embedded<'_>], raw_id: &[u8]) -> Vec<Judgement> {
        if asked.len() > MAX_INPUT_REQUESTS && self.blocks() {
            let why = format!(
                "an answer carries {} requests for the client, more than the {MAX_INPUT_REQUESTS} thoth judges",
                asked.len()
            );
            let judged = refused(
                "request",
                raw_id,
                (-32600, "Invalid Request", "too_many_input_requests"),
                &why,
                "INPUT_REQUESTS_LIMIT",
            );
            let answer = super::answers::error(
                Some(raw_id),
                super::answers::BLOCKED,
                &format!("Blocked by Thoth: {why}"),
                Some(&json!({ "reason": "too_many_input_requests" })),
            );
            // Without an input key, the refusal is the client's answer as it is.
            return vec![Judgement::Now(Box::new(Judged {
                refusal: Some(answer),
                ..judged
            }))];
        }
        let mut judged_all = Vec::new();
        for one in asked {
            let params = one.params.map(|p| p.to_string().into_bytes());
            let Some(method) = one.method else {
                // No method: an SDK that gives each request type its method as a default
                // reads it as whichever it fits. Not guessed: refused.
                if self.blocks() {
                    let mut judged = refused(
                        "request",
                        raw_id,
                        (-32600, "Invalid Request", "input_request_without_method"),
                        "an input request without a method (a client could read it as any request)",
                        "PARAMS_INVALID",
                    );
                    judged.input_key = Some(bounded_key(&one.key));
                    judged_all.push(Judgement::Now(Box::new(judged)));
                }
                continue;
            };
            let Some(mut judgement) = self.judge(method, raw_id, params.as_deref()) else {
                continue;
            };
            match &mut judgement {
                Judgement::Now(judged) => judged.input_key = Some(bounded_key(&one.key)),
                Judgement::Ask(question) => question.input_key = Some(bounded_key(&one.key)),
            }
            judged_all.push(judgement);
        }
        judged_all
    }

    /// The enforcer's decision about `question`, applied: what the audit log records,
    /// and the server's error when it is refused.
    pub fn conclude(&self, question: Question, decision: Decision) -> Judged {
        let method = question.call.method;
        let decided = observe(
            self.mode,
            crate::enforce::modes::for_method(decision, method),
        );
        let refusal = (decided.decision.verdict != Verdict::Allow)
            .then(|| refused_to_server(&question.raw_id, decided.decision.verdict));
        Judged {
            method,
            target: question.call.target.label().to_string(),
            decided,
            refusal,
            started: question.started,
            input_key: question.input_key,
        }
    }

    /// A request the client could not be sent: too many of the server's requests wait
    /// for the client's answer already.
    pub fn too_many(method: &'static str, raw_id: &[u8], limit: usize) -> Judged {
        refused(
            method,
            raw_id,
            (
                super::answers::INTERNAL,
                "thoth: too many requests pending",
                "too_many_pending",
            ),
            &format!("more than {limit} requests of the server wait for the client's answer"),
            "PENDING_LIMIT",
        )
    }

    /// A server request whose id is in thoth's own namespace: refused, never relayed.
    pub fn reserved_id(method: &'static str, raw_id: &[u8]) -> Judged {
        refused(
            method,
            raw_id,
            (-32600, "Invalid Request", "reserved_id"),
            "ids starting with \"thoth:\" are thoth's own",
            "RESERVED_ID",
        )
    }

    fn judge_known(
        &self,
        method: &'static str,
        raw_id: &[u8],
        params: Option<&[u8]>,
        started: Instant,
    ) -> Option<Judgement> {
        let passed = |why: String| Judged {
            method,
            target: String::new(),
            decided: Decided {
                decision: Decision::new(Verdict::Allow, why).with_code("NOT_GOVERNED"),
                would_be: None,
            },
            refusal: None,
            started,
            input_key: None,
        };
        let local = match &self.engine {
            _ if self.remote => None,
            Some(engine) if engine.governs(method) => Some(engine),
            Some(_) => {
                return Some(Judgement::Now(Box::new(passed(methods::not_governed(
                    method,
                )))));
            }
            None => {
                return Some(Judgement::Now(Box::new(passed(format!(
                    "{method} is not sent to the enforcer"
                )))));
            }
        };
        // Read as every client reads it: a member named twice is refused, never guessed.
        let call = match methods::read(method, params) {
            Ok(call) => call,
            Err(why) => {
                let decided = observe(
                    self.mode,
                    Decision::new(Verdict::Block, format!("{method} refused: {why}"))
                        .with_code("PARAMS_INVALID"),
                );
                let refusal = (decided.decision.verdict != Verdict::Allow)
                    .then(|| super::answers::params_refused(bounded_id(raw_id), &why));
                return Some(Judgement::Now(Box::new(Judged {
                    method,
                    target: String::new(),
                    decided,
                    refusal,
                    started,
                    input_key: None,
                })));
            }
        };
        let Some(engine) = local else {
            let read = params.and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok());
            return Some(Judgement::Ask(Box::new(Question {
                params: methods::enforcer_params(method, read.as_ref()),
                call,
                raw_id: bounded_id(raw_id).to_vec(),
                input_key: None,
                started,
            })));
        };
        let label = call.target.label().to_string();
        let facts = ToolFacts::default();
        let history = SessionHistory::default();
        let outcome = engine.evaluate_method(
            &DecisionInput {
                agent_id: &self.agent_id,
                tenant_id: &self.tenant_id,
                user_id: &self.user_id,
                environment: self.environment,
                mode: self.mode,
                session_id: &self.session_id,
                session_intent: &self.session_intent,
                tool_name: &label,
                tool: &facts,
                arguments: Some(&call.arguments),
                session: &history,
            },
            &call,
        );
        let decision = match self.soft_denied.lock() {
            Ok(mut denied) => apply_mode(
                outcome,
                self.mode,
                &format!("{method} {label}"),
                &mut denied,
            ),
            Err(_) => Decision::new(
                Verdict::Block,
                "internal: the soft-denial record is unusable",
            ),
        };
        let decided = observe(self.mode, decision);
        let refusal = (decided.decision.verdict != Verdict::Allow)
            .then(|| refused_to_server(raw_id, decided.decision.verdict));
        Some(Judgement::Now(Box::new(Judged {
            method,
            target: label,
            decided,
            refusal,
            started,
            input_key: None,
        })))
    }
}

/// The server's error for a refused request of its own. The server is the party the
/// policy guards against: it learns that it was refused, not why (rule ids and
/// reasons stay in the audit log).
fn refused_to_server(raw_id: &[u8], verdict: Verdict) -> Vec<u8> {
    super::answers::error(
        Some(bounded_id(raw_id)),
        match verdict {
            Verdict::StepUp => super::answers::STEP_UP_REQUIRED,
            _ => super::answers::BLOCKED,
        },
        "Refused by Thoth policy",
        Some(&json!({ "reason": "refused_by_policy" })),
    )
}

/// What the client gets for its request `raw_id` when requests for it inside the
/// answer were judged: `None` (the answer as it is) when none was refused, else an
/// error naming the first refused one. The refusals are taken: none goes to the server.
pub fn embedded_answer(raw_id: &[u8], judged: &mut [Judged]) -> Option<Vec<u8>> {
    let mut answer = None;
    for one in judged.iter_mut() {
        let Some(refusal) = one.refusal.take() else {
            continue;
        };
        if answer.is_none() {
            answer = Some(match &one.input_key {
                Some(key) => input_request_refused(raw_id, one, key),
                None => refusal,
            });
        }
    }
    answer
}

/// The client's error for a request whose result carried a refused input request: the
/// client is the party the policy protects, so it is told why, as for a tools/call.
fn input_request_refused(raw_id: &[u8], judged: &Judged, key: &str) -> Vec<u8> {
    let decision = &judged.decided.decision;
    let mut data = super::answers::decision_data(decision, judged.method, "", "");
    if let Some(map) = data.as_object_mut() {
        map.insert("input_request".into(), json!(key));
        map.insert("mcp_method".into(), json!(judged.method));
        map.remove("enforcement_trace_id");
        map.remove("action_attestation_id");
    }
    super::answers::denied(raw_id, decision, &data, crate::domain::DenyStyle::Error)
}
