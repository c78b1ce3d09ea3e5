//! Which parts of the request context a policy set can read, found in Cedar's own JSON
//! form of each policy (so `context["x"]` and `context.x` are the same read).
//!
//! The local engine uses it twice: it skips converting the arguments when no policy
//! reads `context.arguments`, and it reuses a decision when no policy reads anything
//! that changes from call to call. Both are exact, never heuristics: a policy that uses
//! `context` as a whole value (`context == {…}`), one that cannot be rendered, or one
//! nested deeper than we walk counts as reading everything.

use std::collections::HashSet;

use cedar_policy::PolicySet;
use serde_json::Value;

/// Nesting walked at most; deeper policies count as reading everything.
const MAX_DEPTH: usize = 512;

/// The context reads of a policy set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextReads {
    /// `context` used as a value (or not analysable): every attribute counts as read.
    pub whole: bool,
    /// Attributes read as `context.<attr>` or tested with `context has <attr>`.
    pub attrs: HashSet<String>,
}

impl ContextReads {
    /// What `policies` read.
    pub fn of(policies: &PolicySet) -> Self {
        let mut reads = Self::default();
        for policy in policies.policies() {
            match policy.to_json() {
                Ok(json) => visit(&json, 0, &mut reads),
                Err(_) => reads.whole = true,
            }
        }
        reads
    }

    /// Whether `attr` may be read.
    pub fn reads(&self, attr: &str) -> bool {
        self.whole || self.attrs.contains(attr)
    }

    /// Whether every read is within `fixed`.
    pub fn only(&self, fixed: &[&str]) -> bool {
        !self.whole && self.attrs.iter().all(|a| fixed.contains(&a.as_str()))
    }
}

fn is_context(v: &Value) -> bool {
    v.get("Var").and_then(Value::as_str) == Some("context")
}

fn visit(v: &Value, depth: usize, reads: &mut ContextReads) {
    if depth > MAX_DEPTH {
        reads.whole = true;
        return;
    }
    match v {
        Value::Object(map) => {
            if is_context(v) {
                reads.whole = true;
                return;
            }
            for (key, child) in map {
                if matches!(key.as_str(), "." | "has")
                    && let Some(left) = child.get("left")
                    && is_context(left)
                {
                    match child.get("attr").and_then(Value::as_str) {
                        Some(attr) => {
                            reads.attrs.insert(attr.to_string());
                        }
                        None => reads.whole = true,
                    }
                    continue;
                }
                visit(child, depth + 1, reads);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| visit(i, depth + 1, reads)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn reads(src: &str) -> ContextReads {
        ContextReads::of(&PolicySet::from_str(src).expect("policy"))
    }

    #[test]
    fn finds_every_form_of_read() {
        let r = reads(
            r#"permit (principal, action, resource) when { context.session_intent == "x" && context has arguments && context["previous_tool"] like "a*" && resource.name like "*w*" };"#,
        );
        assert!(!r.whole);
        let mut attrs: Vec<_> = r.attrs.iter().cloned().collect();
        attrs.sort();
        assert_eq!(attrs, ["arguments", "previous_tool", "session_intent"]);
        assert!(r.reads("arguments") && !r.reads("session_call_count"));
        assert!(!r.only(&["session_intent", "tool_name"]));
    }

    #[test]
    fn whole_context_and_nothing() {
        assert!(reads(r#"forbid (principal, action, resource) when { context == {} };"#).whole);
        assert!(
            reads(r#"permit (principal, action, resource) when { [context].contains(context) };"#)
                .whole
        );
        let none = reads("permit (principal, action, resource);");
        assert!(!none.whole && none.attrs.is_empty());
        assert!(none.only(&[]));
        // A nested attribute read is a read of the top attribute.
        let nested = reads(
            r#"permit (principal, action, resource) when { context.arguments.path like "/tmp/*" };"#,
        );
        assert!(nested.only(&["arguments"]) && nested.reads("arguments"));
    }
}
