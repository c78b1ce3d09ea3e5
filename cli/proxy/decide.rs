//! From a policy outcome to a decision: the enforcement mode and the session.
//!
//! Modes change only soft denials (no permit): `block` keeps them BLOCK, `step_up`
//! makes them STEP_UP, `progressive` makes the first soft denial of a tool in the
//! session STEP_UP and later ones BLOCK. Hard forbids are BLOCK and step-up forbids
//! STEP_UP in every mode. `observe` never blocks: the caller forwards at once and
//! records what would have been decided. The remote enforcer applies modes itself.

use std::collections::HashSet;

use serde_json::Value;

use crate::domain::Mode;
use crate::enforce::local::{LocalEngine, PolicyOutcome};
use crate::enforce::remote::RemoteEnforcer;
use crate::enforce::{Decision, DecisionInput, MAX_POLICY_ARGUMENTS, SessionHistory, Verdict};
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
    Local(Box<LocalEngine>),
    Remote(RemoteEnforcer),
}

/// A decision with what observe mode would have done.
pub struct Decided {
    /// What the proxy does.
    pub decision: Decision,
    /// In observe mode, the decision that was not enforced.
    pub would_be: Option<Decision>,
}

/// The input for one call of this proxy's session.
pub fn input<'a>(
    settings: &'a RunSettings,
    session_id: &'a str,
    history: &'a SessionHistory,
    tool: &'a str,
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
        arguments,
        session: history,
    }
}

/// The BLOCK for arguments too large to evaluate.
pub fn too_large(arguments_len: usize) -> Decision {
    Decision::new(
        Verdict::Block,
        format!("arguments of {arguments_len} bytes exceed the {MAX_POLICY_ARGUMENTS}-byte limit for policy evaluation"),
    )
    .with_code("ARGUMENTS_TOO_LARGE")
}

/// Decides one call with the local engine and records it in the session. `arguments`
/// is `None` when they exceeded [`MAX_POLICY_ARGUMENTS`].
pub fn decide(
    engine: &LocalEngine,
    settings: &RunSettings,
    session: &mut Session,
    tool: &str,
    arguments: Option<&Value>,
    arguments_len: usize,
) -> Decided {
    let decision = if arguments.is_none() {
        too_large(arguments_len)
    } else {
        let outcome = engine.evaluate(&input(
            settings,
            &session.id,
            &session.history,
            tool,
            arguments,
        ));
        apply_mode(outcome, settings.mode, tool, &mut session.soft_denied)
    };
    session.history.record(tool);
    observe(settings.mode, decision)
}

/// In observe mode a denial is recorded as what would have happened, and the call is
/// allowed.
pub fn observe(mode: Mode, decision: Decision) -> Decided {
    if mode == Mode::Observe && decision.verdict != Verdict::Allow {
        let mut allow = Decision::new(
            Verdict::Allow,
            format!(
                "observe mode (would be {}: {})",
                decision.verdict.as_str(),
                decision.reason
            ),
        );
        allow.matched_rule_ids = decision.matched_rule_ids.clone();
        return Decided {
            decision: allow,
            would_be: Some(decision),
        };
    }
    Decided {
        decision,
        would_be: None,
    }
}

/// Applies the enforcement mode to a policy outcome; `soft_denied` remembers the tools
/// that already had a soft denial in this session (progressive mode).
pub fn apply_mode(
    outcome: PolicyOutcome,
    mode: Mode,
    tool: &str,
    soft_denied: &mut HashSet<String>,
) -> Decision {
    let with_rules = |mut d: Decision, ids: Vec<String>| {
        d.matched_rule_ids = ids;
        d
    };
    match outcome {
        PolicyOutcome::Allow { reason, rule_ids } => {
            with_rules(Decision::new(Verdict::Allow, reason), rule_ids)
        }
        PolicyOutcome::HardDeny { reason, rule_ids } => with_rules(
            Decision::new(Verdict::Block, reason).with_code("POLICY_FORBID"),
            rule_ids,
        ),
        PolicyOutcome::StepUp { reason, rule_ids } => with_rules(
            Decision::new(Verdict::StepUp, reason).with_code("POLICY_STEP_UP"),
            rule_ids,
        ),
        PolicyOutcome::SoftDeny { reason } => {
            let verdict = match mode {
                Mode::Block | Mode::Observe => Verdict::Block,
                Mode::StepUp => Verdict::StepUp,
                Mode::Progressive => {
                    if soft_denied.insert(tool.to_string()) {
                        Verdict::StepUp
                    } else {
                        Verdict::Block
                    }
                }
            };
            Decision::new(verdict, reason).with_code("NO_PERMIT")
        }
    }
}
