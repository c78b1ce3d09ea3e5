//! Policy decisions: what a decision point answers for one tools/call, and the engines
//! that answer. `local` evaluates Cedar in process; the remote Thoth enforcer arrives
//! with its own module. Engines only decide: holding, forwarding and answering the
//! client belong to the proxy.

pub mod arguments;
pub mod cedar_value;
pub mod local;
pub mod modes;
pub mod policy_place;
pub mod reads;
pub mod remote;

use serde_json::Value;

use crate::domain::{Environment, Mode};

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Block,
    StepUp,
    Modify,
    Defer,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "ALLOW",
            Self::Block => "BLOCK",
            Self::StepUp => "STEP_UP",
            Self::Modify => "MODIFY",
            Self::Defer => "DEFER",
        }
    }
}

/// A decision and what the client and the audit log are told about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: String,
    pub matched_rule_ids: Vec<String>,
    pub decision_reason_code: Option<String>,
    pub violation_id: Option<String>,
    pub hold_token: Option<String>,
    pub approval_url: Option<String>,
    pub expires_at: Option<String>,
    /// MODIFY: the arguments to forward instead.
    pub modified_arguments: Option<Value>,
    /// Further members for the reply's `data` (fallback, http_status, enforcer fields).
    pub extra: serde_json::Map<String, Value>,
}

impl Decision {
    pub fn new(verdict: Verdict, reason: impl Into<String>) -> Self {
        Self {
            verdict,
            reason: reason.into(),
            matched_rule_ids: Vec::new(),
            decision_reason_code: None,
            violation_id: None,
            hold_token: None,
            approval_url: None,
            expires_at: None,
            modified_arguments: None,
            extra: serde_json::Map::new(),
        }
    }

    pub fn with_code(mut self, code: &str) -> Self {
        self.decision_reason_code = Some(code.to_string());
        self
    }
}

/// What the server's own tool catalog says about a tool (its `tools/list` entry), for
/// the policy. These are the server's claims (the spec calls annotations untrusted):
/// a policy may rely on them only as far as it trusts that server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ToolFacts {
    /// The server listed the tool in this session.
    pub in_catalog: bool,
    /// `title` (or `annotations.title`), empty when none.
    pub title: String,
    /// The server gave the tool an `annotations` object (else the hints below are the
    /// spec's defaults, which say nothing about this tool).
    pub annotated: bool,
    /// `annotations.readOnlyHint` (default false).
    pub read_only: bool,
    /// `annotations.destructiveHint` (default true).
    pub destructive: bool,
    /// `annotations.idempotentHint` (default false).
    pub idempotent: bool,
    /// `annotations.openWorldHint` (default true).
    pub open_world: bool,
}

impl Default for ToolFacts {
    /// A tool not listed: the spec's defaults for absent annotations.
    fn default() -> Self {
        Self {
            in_catalog: false,
            title: String::new(),
            annotated: false,
            read_only: false,
            destructive: true,
            idempotent: false,
            open_world: true,
        }
    }
}

impl ToolFacts {
    /// The annotations a tool claims, in words (`read-only`, `destructive`,
    /// `idempotent`, `open-world`), for reports. As the spec reads them, destructive
    /// and idempotent say something only about a tool that is not read-only.
    pub fn claims(&self) -> Vec<&'static str> {
        let writes = !self.read_only;
        [
            (self.read_only, "read-only"),
            (writes && self.destructive, "destructive"),
            (writes && self.idempotent, "idempotent"),
            (self.open_world, "open-world"),
        ]
        .into_iter()
        .filter_map(|(on, word)| on.then_some(word))
        .collect()
    }
}

/// Everything a decision point is told about one call.
#[derive(Debug, Clone)]
pub struct DecisionInput<'a> {
    pub agent_id: &'a str,
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    pub environment: Environment,
    pub mode: Mode,
    pub session_id: &'a str,
    pub session_intent: &'a str,
    pub tool_name: &'a str,
    /// What the session's catalog says about the tool.
    pub tool: &'a ToolFacts,
    /// `None` when the arguments exceed the size a policy engine is given.
    pub arguments: Option<&'a Value>,
    pub session: &'a SessionHistory,
}

/// What a session has called so far, bounded however long it runs.
#[derive(Debug, Clone, Default)]
pub struct SessionHistory {
    /// The most recent tool names, oldest first (at most [`SessionHistory::RECENT`]).
    pub recent: std::collections::VecDeque<String>,
    /// Distinct tool names called (at most [`SessionHistory::DISTINCT`]).
    pub distinct: std::collections::BTreeSet<String>,
    /// Calls so far.
    pub count: u64,
}

impl SessionHistory {
    pub const RECENT: usize = 256;
    pub const DISTINCT: usize = 1024;

    pub fn record(&mut self, tool: &str) {
        if self.recent.len() == Self::RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(tool.to_string());
        if self.distinct.len() < Self::DISTINCT {
            self.distinct.insert(tool.to_string());
        }
        self.count += 1;
    }

    pub fn previous(&self) -> &str {
        self.recent.back().map_or("", String::as_str)
    }
}

/// Arguments larger than this are not mapped into Cedar (docs/architecture.md §3).
pub const MAX_POLICY_ARGUMENTS: usize = 1024 * 1024;
