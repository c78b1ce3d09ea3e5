//! Policy decisions: what a decision point answers for one tools/call, and the engines
//! that answer. `local` evaluates Cedar in process; the remote Thoth enforcer arrives
//! with its own module. Engines only decide: holding, forwarding and answering the
//! client belong to the proxy.

pub mod arguments;
pub mod cedar_value;
pub mod local;
pub mod methods;
pub mod modes;
pub mod policy_place;
pub mod reads;
pub mod remote;

use serde_json::Value;

use crate::domain::{Environment, Mode, PinState};

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
    /// STEP_UP: the policy lets the user approve the call themself, in their client
    /// (`@approver("user")`; the enforcer's `approver: "user"`), where the client can
    /// ask them (`crate::proxy` and its `user_approval` module).
    pub user_may_approve: bool,
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
            user_may_approve: false,
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
    /// The definition against its pin (`new` for a tool not listed).
    pub pin: PinState,
    /// Invisible or format characters in the tool's descriptions.
    pub description_flags: DescriptionFlags,
}

/// A description flag's name and the characters that raise it.
type Flag = (&'static str, fn(char) -> bool);

/// Characters a reviewer cannot see, found in a tool's title or descriptions (its own
/// and its parameters'): text the model reads that a person reviewing it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DescriptionFlags(u8);

impl DescriptionFlags {
    /// Each flag's name (`resource.description_flags`) and the characters that raise it:
    /// together, Unicode's format characters (general category Cf) and the variation
    /// selectors, which render as nothing.
    const TABLE: [Flag; 5] = [
        // Unicode tag characters: ASCII spelled invisibly.
        ("tag_characters", |c| matches!(c, '\u{E0000}'..='\u{E007F}')),
        ("zero_width", |c| {
            matches!(
                c,
                '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{180E}'
            )
        }),
        (
            "bidi_controls",
            |c| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'),
        ),
        (
            "variation_selectors",
            |c| matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}' | '\u{180B}'..='\u{180D}' | '\u{180F}'),
        ),
        ("other_format", |c| {
            matches!(
                c,
                '\u{00AD}'
                    | '\u{034F}'
                    | '\u{0600}'..='\u{0605}'
                    | '\u{06DD}'
                    | '\u{070F}'
                    | '\u{0890}'..='\u{0891}'
                    | '\u{08E2}'
                    | '\u{115F}'..='\u{1160}'
                    | '\u{17B4}'..='\u{17B5}'
                    | '\u{2061}'..='\u{2064}'
                    | '\u{206A}'..='\u{206F}'
                    | '\u{3164}'
                    | '\u{FFA0}'
                    | '\u{FFF9}'..='\u{FFFB}'
                    | '\u{110BD}'
                    | '\u{110CD}'
                    | '\u{13430}'..='\u{1343F}'
                    | '\u{1BCA0}'..='\u{1BCA3}'
                    | '\u{1D173}'..='\u{1D17A}'
            )
        }),
    ];

    /// Whether `c` raises any flag: a character a reader of the text does not see.
    pub fn invisible(c: char) -> bool {
        Self::TABLE.iter().any(|(_, raises)| raises(c))
    }

    /// Adds what `text` holds.
    pub fn scan(&mut self, text: &str) {
        if text.is_ascii() {
            return;
        }
        for c in text.chars() {
            for (bit, (_, raises)) in Self::TABLE.iter().enumerate() {
                if raises(c) {
                    self.0 |= 1 << bit;
                }
            }
        }
    }

    /// The names raised, in table order.
    pub fn names(self) -> Vec<&'static str> {
        Self::TABLE
            .iter()
            .enumerate()
            .filter(|(bit, _)| self.0 & (1 << bit) != 0)
            .map(|(_, (name, _))| *name)
            .collect()
    }

    /// The flags named (unknown names are ignored).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut flags = Self::default();
        for name in names {
            if let Some(bit) = Self::TABLE.iter().position(|(n, _)| *n == name) {
                flags.0 |= 1 << bit;
            }
        }
        flags
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
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
            pin: PinState::New,
            description_flags: DescriptionFlags::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_flags_name_what_a_reviewer_cannot_see() {
        let cases: [(&str, &[&str]); 8] = [
            ("Reads\u{FE0F} a file", &["variation_selectors"]),
            (
                "Reads\u{E0101}\u{1D173}",
                &["variation_selectors", "other_format"],
            ),
            ("Reads a file.", &[]),
            ("Lit un fichier \u{e9}.", &[]),
            (
                "Reads\u{E0049}\u{E0067}\u{E006E} a file",
                &["tag_characters"],
            ),
            ("Reads\u{200B} a file", &["zero_width"]),
            ("Reads \u{202E}elif a", &["bidi_controls"]),
            (
                "Re\u{00AD}ads\u{FEFF}\u{2067}",
                &["zero_width", "bidi_controls", "other_format"],
            ),
        ];
        for (text, names) in cases {
            let mut flags = DescriptionFlags::default();
            flags.scan(text);
            assert_eq!(flags.names(), names, "{text:?}");
            assert_eq!(DescriptionFlags::from_names(names.iter().copied()), flags);
        }
    }
}
