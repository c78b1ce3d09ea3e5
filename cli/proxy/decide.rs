//! Where a tools/call is decided, and what then becomes of it.
//!
//! One path for every call, alone or in a batch: [`decide`] asks the local engine
//! (with the enforcement mode, `crate::enforce::modes`), the remote enforcer is asked
//! by the pump, [`crate::enforce::modes::observe`] then applies observe mode in one
//! place, and [`action`] turns the decision into what the proxy does: forward the
//! call (as it came, or MODIFYed) or answer the client. `action` is pure, so the
//! batch path and the single-call path cannot drift apart.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::Value;

use super::answers;
use super::modify::splice_arguments;
use crate::domain::DenyStyle;
use crate::enforce::local::LocalEngine;
use crate::enforce::modes::{Decided, apply_mode, too_large};
use crate::enforce::remote::RemoteEnforcer;
use crate::enforce::{Decision, DecisionInput, SessionHistory, ToolFacts, Verdict};
use crate::settings::RunSettings;

/// The session: one per `thoth run`.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    /// Tool names called so far.
    pub history: SessionHistory,
    /// Tools that already had a soft denial (progressive mode).
    pub soft_denied: HashSet<String>,
}

impl Session {
    pub fn new() -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            history: SessionHistory::default(),
            soft_denied: HashSet::new(),
        }
    }
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

/// The decision point of this proxy.
pub enum Engine {
    Local(std::sync::Arc<LocalEngine>),
    /// Shared with the holds it polls in the background.
    Remote(std::sync::Arc<RemoteEnforcer>),
}

/// The input for one call of this proxy's session.
pub fn input<'a>(
    settings: &'a RunSettings,
    session_id: &'a str,
    history: &'a SessionHistory,
    tool: &'a str,
    facts: &'a ToolFacts,
    arguments: Option<&'a Value>,
) -> DecisionInput<'a> {
    DecisionInput {
        agent_id: &settings.agent_id,
        tenant_id: &settings.tenant_id,
        user_id: &settings.user_id,
        environment: settings.environment,
        mode: settings.mode,
        session_id,
        session_intent: &settings.session_intent,
        tool_name: tool,
        tool: facts,
        arguments,
        session: history,
    }
}

/// Decides one call with the local engine (the enforcement mode applied, observe mode
/// not: the caller applies it to every engine alike) and records it in the session.
/// `arguments` is `None` when they exceeded `MAX_POLICY_ARGUMENTS`.
pub fn decide(
    engine: &LocalEngine,
    settings: &RunSettings,
    session: &mut Session,
    tool: &str,
    facts: &ToolFacts,
    arguments: Option<&Value>,
    arguments_len: usize,
) -> Decision {
    let decision = if arguments.is_none() {
        too_large(arguments_len)
    } else {
        let outcome = engine.evaluate(&input(
            settings,
            &session.id,
            &session.history,
            tool,
            facts,
            arguments,
        ));
        apply_mode(outcome, settings.mode, tool, &mut session.soft_denied)
    };
    session.history.record(tool);
    decision
}

/// What the proxy does with a decided call.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<'f> {
    /// Send these bytes to the server: the call as it came (borrowed when it came
    /// borrowed: nothing is copied), or MODIFYed (owned).
    Forward(Cow<'f, [u8]>),
    /// Send this frame to the client; the server never sees the call.
    Answer(Vec<u8>),
}

/// One tools/call as the decision path sees it.
pub struct CallFrame<'f, 'c> {
    /// The call's canonical line (its bytes when nothing needed rewriting).
    pub frame: Cow<'f, [u8]>,
    pub raw_id: &'c [u8],
    pub tool: &'c str,
}

/// What an answer to the client needs besides the decision.
#[derive(Clone, Copy)]
pub struct Answering<'a> {
    pub session_id: &'a str,
    pub deny_style: DenyStyle,
    /// A MODIFYed call is refused when it would outgrow this.
    pub max_frame_bytes: usize,
}

/// The one rule from a decision to an action, for single calls and batch elements
/// alike: ALLOW forwards the very bytes that came in (no copy), MODIFY forwards them
/// with the enforcer's arguments spliced in (or is refused when that fails), and every
/// other verdict answers the client.
pub fn action<'f>(
    decided: &Decided,
    call: CallFrame<'f, '_>,
    answering: Answering<'_>,
) -> Action<'f> {
    let d = &decided.decision;
    let refused;
    let decision = match d.verdict {
        Verdict::Allow => return Action::Forward(call.frame),
        Verdict::Modify => {
            let args = d
                .modified_arguments
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_default();
            match splice_arguments(&call.frame, args.as_bytes(), answering.max_frame_bytes) {
                Ok(bytes) => return Action::Forward(Cow::Owned(bytes)),
                Err(e) => {
                    refused = Decision::new(
                        Verdict::Block,
                        format!("MODIFY could not be applied: {}", e.0),
                    );
                    &refused
                }
            }
        }
        Verdict::Defer | Verdict::Block | Verdict::StepUp => d,
    };
    // Only answers need a fresh attestation id.
    let attestation = uuid::Uuid::new_v4().to_string();
    let data = answers::decision_data(decision, call.tool, answering.session_id, &attestation);
    Action::Answer(answers::denied(
        call.raw_id,
        decision,
        &data,
        answering.deny_style,
    ))
}
