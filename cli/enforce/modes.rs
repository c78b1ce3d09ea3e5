//! From what a policy says to what thoth does with the call: the enforcement mode.
//!
//! Modes change only soft denials (no permit): `block` keeps them BLOCK, `step_up`
//! makes them STEP_UP, `progressive` makes the first soft denial of a tool in the
//! session STEP_UP and later ones BLOCK. Hard forbids are BLOCK and step-up forbids
//! STEP_UP in every mode. `observe` never blocks: [`observe`] is the one place that
//! turns a denial into an ALLOW that records what would have been decided. The local
//! engine's outcomes go through [`apply_mode`] (in the proxy and in `enforcer serve`);
//! the remote enforcer applies modes itself, and only [`observe`] applies to it.
//! Pure functions: no I/O, no clock, nothing but their arguments.

use std::collections::HashSet;

use super::local::PolicyOutcome;
use super::{Decision, MAX_POLICY_ARGUMENTS, Verdict};
use crate::domain::Mode;

/// A decision with what observe mode would have done.
#[derive(Debug)]
pub struct Decided {
    /// What the proxy does.
    pub decision: Decision,
    /// In observe mode, the decision that was not enforced.
    pub would_be: Option<Decision>,
}

/// The BLOCK for arguments too large to evaluate.
pub fn too_large(arguments_len: usize) -> Decision {
    Decision::new(
        Verdict::Block,
        format!("arguments of {arguments_len} bytes exceed the {MAX_POLICY_ARGUMENTS}-byte limit for policy evaluation"),
    )
    .with_code("ARGUMENTS_TOO_LARGE")
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

/// The enforcer's answer about a request besides tools/call, as thoth applies it: a
/// MODIFY or DEFER is not applied to such a request, and a STEP_UP could never be
/// approved (holds are polled for tool calls only): each is the BLOCK it becomes, with
/// the enforcer's rule ids and codes.
pub fn for_method(mut decision: Decision, method: &str) -> Decision {
    if !matches!(
        decision.verdict,
        Verdict::Modify | Verdict::Defer | Verdict::StepUp
    ) {
        return decision;
    }
    let reason = format!(
        "the enforcer's {} is not applied to {method} ({})",
        decision.verdict.as_str(),
        decision.reason
    );
    let mut block = Decision::new(Verdict::Block, reason);
    block.matched_rule_ids = std::mem::take(&mut decision.matched_rule_ids);
    block.violation_id = decision.violation_id.take();
    block.decision_reason_code = decision.decision_reason_code.take();
    block
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
        PolicyOutcome::EvalFailed { reason, rule_ids } => with_rules(
            Decision::new(Verdict::Block, reason).with_code("POLICY_ERROR"),
            rule_ids,
        ),
        PolicyOutcome::StepUp {
            reason,
            rule_ids,
            user_may_approve,
        } => {
            let mut d = with_rules(
                Decision::new(Verdict::StepUp, reason).with_code("POLICY_STEP_UP"),
                rule_ids,
            );
            d.user_may_approve = user_may_approve;
            d
        }
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
