//! The embedded decision point: a Cedar policy evaluated in process (docs/architecture.md §5).
//!
//! Request: principal `Thoth::Agent::"<agent>"` (tenant, user, environment), action
//! `Thoth::Action::"tools/call"`, resource `Thoth::Tool::"<name>"` (attribute `name`),
//! and a context where every field is always present. PolicyOutcome: no permit is a *soft*
//! denial; a forbid annotated `@decision("step_up")` asks for step-up; any other forbid
//! is a *hard* denial and wins. Any evaluation error blocks (Cedar skips an erroring
//! policy, which would fail open). The proxy applies the enforcement mode to soft
//! denials; this module never sees modes except as context.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Effect, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, PolicySet, Request, RestrictedExpression, Schema, ValidationMode,
    Validator,
};

use super::cedar_value::to_cedar;
use super::policy_place::{Placed, place, place_all};
use super::{DecisionInput, ToolFacts};
use crate::domain::PinState;

impl PolicyError {
    /// Every line to show the user: each error's `file:line:column: message`, then the
    /// line it points into and a caret. `Display` gives the summaries alone, on one
    /// line, for reports that must not quote a file (health runs as root).
    pub fn report(&self) -> Vec<String> {
        match self {
            Self::Parse { placed } | Self::Schema { placed } | Self::Invalid { placed } => placed
                .iter()
                .flat_map(|p| std::iter::once(p.summary.clone()).chain(p.excerpt.iter().cloned()))
                .collect(),
            other => vec![other.to_string()],
        }
    }
}

impl PolicyError {
    /// Where the first error is, and its kind, without any of the file's text (Cedar's
    /// messages quote tokens): what a report that must not quote a file shows.
    pub fn place(&self) -> String {
        match self {
            Self::Parse { placed } | Self::Schema { placed } | Self::Invalid { placed } => {
                let first = placed.first().map_or_else(String::new, |p| p.place.clone());
                let more = placed.len().saturating_sub(1);
                if more > 0 {
                    format!(
                        "{first} (and {} more; thoth status as the user shows them)",
                        crate::wording::count(more, "error")
                    )
                } else {
                    format!("{first} (thoth status as the user shows it)")
                }
            }
            Self::Read { path, source } => {
                format!("{}: cannot read policy: {source}", path.display())
            }
            Self::ReadSchema { path, source } => format!("{}: {source}", path.display()),
            Self::EntityType { .. } => self.to_string(),
            // The rule id is the file's text: not quoted here.
            Self::Hide { path, why, .. } => {
                format!("{}: a policy has @hide but {why}", path.display())
            }
            Self::Approver { path, why, .. } => {
                format!("{}: a policy has @approver but {why}", path.display())
            }
        }
    }
}

fn summaries(placed: &[Placed]) -> String {
    placed
        .iter()
        .map(|p| p.summary.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a policy file cannot be used (each message names the file and the fix).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{}: cannot read policy: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// Each error placed at its file, line and column (see [`PolicyError::report`]).
    #[error("{}", summaries(placed))]
    Parse { placed: Vec<Placed> },
    #[error("{}: {source}", path.display())]
    ReadSchema {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}", summaries(placed))]
    Schema { placed: Vec<Placed> },
    #[error("{}", summaries(placed))]
    Invalid { placed: Vec<Placed> },
    #[error("internal: entity type {name}: {detail}")]
    EntityType { name: String, detail: String },
    /// An `@hide` policy that could not prove every call of a tool is denied.
    #[error(
        "{}: policy {rule_id} has @hide but {why}: a tool is hidden only when every call of it is blocked, whatever its arguments; remove @hide or the condition",
        path.display()
    )]
    Hide {
        path: std::path::PathBuf,
        rule_id: String,
        why: &'static str,
    },
    /// An `@approver` annotation thoth cannot honour.
    #[error(
        "{}: policy {rule_id} has @approver but {why}: write @approver(\"user\") beside @decision(\"step_up\") on a forbid, or remove it",
        path.display()
    )]
    Approver {
        path: std::path::PathBuf,
        rule_id: String,
        why: &'static str,
    },
}

/// Why one evaluation failed (the call is then denied, with this as the reason).
#[derive(Debug, thiserror::Error)]
enum EvalError {
    /// Building the request, its entities or its context.
    #[error(transparent)]
    Build(Box<dyn std::error::Error + Send + Sync>),
    /// Policies that could not be evaluated: each named by its rule id (`@id`, else
    /// Cedar's `policy<N>`) with its error.
    #[error("{reason}")]
    Policies {
        reason: String,
        rule_ids: Vec<String>,
    },
}

impl EvalError {
    fn build(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Build(Box::new(e))
    }
}

/// What the policy says, before the enforcement mode is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyOutcome {
    /// A permit applies and no forbid does.
    Allow {
        reason: String,
        rule_ids: Vec<String>,
    },
    /// No permit applies.
    SoftDeny { reason: String },
    /// Only forbids annotated `@decision("step_up")` apply.
    StepUp {
        reason: String,
        rule_ids: Vec<String>,
        /// Every one of them says `@approver("user")`: the user may approve the call.
        user_may_approve: bool,
    },
    /// A plain forbid applies.
    HardDeny {
        reason: String,
        rule_ids: Vec<String>,
    },
    /// A policy could not be evaluated (or the request could not be built): denied,
    /// since Cedar skips an erroring policy, which could let a call through.
    EvalFailed {
        reason: String,
        rule_ids: Vec<String>,
    },
}

/// Principal, resource and their entities for one (agent identity, tool): built once.
struct Subjects {
    principal: EntityUid,
    resource: EntityUid,
    entities: Entities,
}

/// Bytes of a policy file (and of its schema) read at most.
const MAX_POLICY_BYTES: u64 = 4 * 1024 * 1024;

/// Subjects cached at most (the cache is cleared when full).
const SUBJECT_CACHE: usize = 4096;

/// What a policy's annotations say, read once at load: Cedar parses the annotation
/// key on every `Policy::annotation` call, which cost more than the evaluation itself.
struct Notes {
    rule_id: String,
    reason: Option<String>,
    step_up: bool,
    /// `@approver("user")`: the user may approve this step-up themself.
    user_approves: bool,
    forbid: bool,
}

/// agent, tenant, user, environment, tool, and what the catalog says about the tool.
type SubjectKey = ([String; 5], ToolFacts);

/// The subjects, session intent and mode.
type OutcomeKey = (SubjectKey, String, crate::domain::Mode);

/// Outcomes cached at most (the cache is cleared when full).
const OUTCOME_CACHE: usize = 4096;

/// A loaded policy set.
pub struct LocalEngine {
    last_subjects: std::sync::Mutex<Option<(SubjectKey, std::sync::Arc<Subjects>)>>,
    notes: HashMap<cedar_policy::PolicyId, Notes>,
    /// Whether any policy can read `context.arguments`: when none can, the arguments
    /// are not converted (an empty record stands in, which no policy can tell apart).
    reads_arguments: bool,
    /// Whether any policy can read `context.detections` / `context.detection_count`:
    /// only then are the arguments inspected (and the context carries them, which a
    /// schema declaring them expects).
    reads_detections: bool,
    /// Outcomes by (principal, tool, intent, mode), kept only when no policy reads a
    /// context field that changes from call to call (arguments, session history): the
    /// outcome is then a function of the key, since Cedar evaluation is deterministic.
    outcomes: Option<std::sync::Mutex<HashMap<OutcomeKey, PolicyOutcome>>>,
    subjects: std::sync::Mutex<HashMap<SubjectKey, std::sync::Arc<Subjects>>>,
    path: PathBuf,
    policies: PolicySet,
    /// The `@hide` forbids alone: a tool one of them forbids is left out of listings.
    hide: PolicySet,
    /// For each governable method besides tools/call, the policies whose scope names
    /// its action (`enforce::methods`): a method no policy names is not governed.
    methods: HashMap<&'static str, PolicySet>,
    resource_type: EntityTypeName,
    prompt_type: EntityTypeName,
    sampling_type: EntityTypeName,
    elicitation_type: EntityTypeName,
    roots_type: EntityTypeName,
    schema: Option<Schema>,
    authorizer: Authorizer,
    agent_type: EntityTypeName,
    tool_type: EntityTypeName,
    action: EntityUid,
}

impl LocalEngine {
    /// Parses the policy at `path` and, when `<path minus .cedar>.cedarschema` exists
    /// beside it, validates the policies against that schema.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let source = crate::user_file::read_text(path, MAX_POLICY_BYTES).map_err(|source| {
            PolicyError::Read {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let policies = PolicySet::from_str(&source).map_err(|e| PolicyError::Parse {
            placed: place_all(path, &source, &e, "invalid Cedar policy"),
        })?;
        let schema_path = path.with_extension("cedarschema");
        let schema = if schema_path.exists() {
            let text =
                crate::user_file::read_text(&schema_path, MAX_POLICY_BYTES).map_err(|source| {
                    PolicyError::ReadSchema {
                        path: schema_path.clone(),
                        source,
                    }
                })?;
            let (schema, _warnings) =
                Schema::from_cedarschema_str(&text).map_err(|e| PolicyError::Schema {
                    placed: place_all(&schema_path, &text, &e, "invalid schema"),
                })?;
            let result =
                Validator::new(schema.clone()).validate(&policies, ValidationMode::default());
            if !result.validation_passed() {
                let what = format!("does not validate against {}", schema_path.display());
                return Err(PolicyError::Invalid {
                    placed: result
                        .validation_errors()
                        .take(super::policy_place::MAX_PLACED)
                        .map(|e| place(path, &source, e, &what))
                        .collect(),
                });
            }
            Some(schema)
        } else {
            None
        };
        let type_name = |s: &str| {
            EntityTypeName::from_str(s).map_err(|e| PolicyError::EntityType {
                name: s.to_string(),
                detail: e.to_string(),
            })
        };
        let action_type = type_name("Thoth::Action")?;
        let notes = policies
            .policies()
            .map(|p| {
                (
                    p.id().clone(),
                    Notes {
                        rule_id: p
                            .annotation("id")
                            .map_or_else(|| p.id().to_string(), str::to_string),
                        reason: p.annotation("reason").map(str::to_string),
                        step_up: p.annotation("decision") == Some("step_up"),
                        user_approves: p.annotation("approver") == Some("user"),
                        forbid: p.effect() == Effect::Forbid,
                    },
                )
            })
            .collect();
        check_approvers(path, &policies)?;
        let hide = hide_policies(path, &policies)?;
        let methods = method_policies(&policies);
        let reads = super::reads::ContextReads::of(&policies);
        Ok(Self {
            hide,
            methods,
            resource_type: type_name("Thoth::Resource")?,
            prompt_type: type_name("Thoth::Prompt")?,
            sampling_type: type_name("Thoth::Sampling")?,
            elicitation_type: type_name("Thoth::Elicitation")?,
            roots_type: type_name("Thoth::Roots")?,
            last_subjects: std::sync::Mutex::new(None),
            notes,
            reads_arguments: reads.reads("arguments"),
            reads_detections: reads.reads("detections") || reads.reads("detection_count"),
            outcomes: reads
                .only(&["tool_name", "session_intent", "enforcement_mode"])
                .then(|| std::sync::Mutex::new(HashMap::new())),
            subjects: std::sync::Mutex::new(HashMap::new()),
            path: path.to_path_buf(),
            policies,
            schema,
            authorizer: Authorizer::new(),
            agent_type: type_name("Thoth::Agent")?,
            tool_type: type_name("Thoth::Tool")?,
            action: EntityUid::from_type_name_and_id(action_type, EntityId::new("tools/call")),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether some policy reads what the detectors find in arguments.
    pub fn reads_detections(&self) -> bool {
        self.reads_detections
    }

    /// Number of policies loaded.
    pub fn policy_count(&self) -> usize {
        self.policies.policies().count()
    }

    /// Evaluates one call.
    pub fn evaluate(&self, input: &DecisionInput<'_>) -> PolicyOutcome {
        let key = self.outcomes.as_ref().map(|_| {
            (
                (
                    [
                        input.agent_id,
                        input.tenant_id,
                        input.user_id,
                        input.environment.as_str(),
                        input.tool_name,
                    ]
                    .map(str::to_string),
                    input.tool.clone(),
                ),
                input.session_intent.to_string(),
                input.mode,
            )
        });
        if let (Some(cache), Some(key)) = (&self.outcomes, &key)
            && let Some(hit) = cache.lock().ok().and_then(|c| c.get(key).cloned())
        {
            return hit;
        }
        let outcome = match self.authorize(input) {
            Ok(outcome) => outcome,
            Err(EvalError::Policies { reason, rule_ids }) => PolicyOutcome::EvalFailed {
                reason: format!("policy evaluation failed: {reason}"),
                rule_ids,
            },
            Err(e @ EvalError::Build(_)) => PolicyOutcome::EvalFailed {
                reason: format!("policy evaluation failed: {e}"),
                rule_ids: Vec::new(),
            },
        };
        if let (Some(cache), Some(key)) = (&self.outcomes, key)
            && let Ok(mut cache) = cache.lock()
        {
            if cache.len() >= OUTCOME_CACHE {
                cache.clear();
            }
            cache.insert(key, outcome.clone());
        }
        outcome
    }

    /// Whether `method` (besides tools/call) is governed: some policy's scope names
    /// its action.
    pub fn governs(&self, method: &str) -> bool {
        self.methods.contains_key(method)
    }

    /// Decides one governed request (`governs` its method) with the policies whose
    /// scope names its action, and only those: a policy written for tools/call is
    /// never asked about a resource. The context has the fields tools/call has
    /// (`tool_name` is the URI or prompt name; `arguments` the prompt's or the
    /// completion's) and `method`.
    pub fn evaluate_method(
        &self,
        input: &DecisionInput<'_>,
        call: &super::methods::MethodCall,
    ) -> PolicyOutcome {
        let Some(policies) = self.methods.get(call.method) else {
            return PolicyOutcome::EvalFailed {
                reason: format!("internal: {} is not governed", call.method),
                rule_ids: Vec::new(),
            };
        };
        let outcome = self.authorize_method(input, call, policies);
        match outcome {
            Ok(outcome) => outcome,
            Err(EvalError::Policies { reason, rule_ids }) => PolicyOutcome::EvalFailed {
                reason: format!("policy evaluation failed: {reason}"),
                rule_ids,
            },
            Err(e @ EvalError::Build(_)) => PolicyOutcome::EvalFailed {
                reason: format!("policy evaluation failed: {e}"),
                rule_ids: Vec::new(),
            },
        }
    }

    fn authorize_method(
        &self,
        input: &DecisionInput<'_>,
        call: &super::methods::MethodCall,
        policies: &PolicySet,
    ) -> Result<PolicyOutcome, EvalError> {
        use super::methods::Target;
        let string = |s: &str| RestrictedExpression::new_string(s.to_string());
        let (principal, agent) = self.agent(input)?;
        let (kind, attrs) = match &call.target {
            Target::Resource {
                uri,
                scheme,
                host,
                path,
                query,
            } => (
                self.resource_type.clone(),
                HashMap::from([
                    ("name".to_string(), string(uri)),
                    ("uri".to_string(), string(uri)),
                    ("scheme".to_string(), string(scheme)),
                    ("host".to_string(), string(host)),
                    ("path".to_string(), string(path)),
                    ("query".to_string(), string(query)),
                ]),
            ),
            Target::Prompt { name } => (
                self.prompt_type.clone(),
                HashMap::from([("name".to_string(), string(name))]),
            ),
            Target::Sampling {
                tools,
                tool_choice,
                max_tokens,
                include_context,
            } => (
                self.sampling_type.clone(),
                HashMap::from([
                    (
                        "tools".to_string(),
                        RestrictedExpression::new_set(tools.iter().map(|t| string(t))),
                    ),
                    ("tool_choice".to_string(), string(tool_choice)),
                    (
                        "max_tokens".to_string(),
                        RestrictedExpression::new_long(*max_tokens),
                    ),
                    ("include_context".to_string(), string(include_context)),
                ]),
            ),
            Target::Elicitation {
                mode,
                url,
                scheme,
                host,
            } => (
                self.elicitation_type.clone(),
                HashMap::from([
                    ("mode".to_string(), string(mode)),
                    ("url".to_string(), string(url)),
                    ("scheme".to_string(), string(scheme)),
                    ("host".to_string(), string(host)),
                ]),
            ),
            Target::Roots => (self.roots_type.clone(), HashMap::new()),
        };
        let resource = EntityUid::from_type_name_and_id(kind, EntityId::new(call.target.label()));
        let target =
            Entity::new(resource.clone(), attrs, HashSet::new()).map_err(EvalError::build)?;
        // No schema: a schema written for tools/call does not declare these actions.
        let entities = Entities::from_entities([agent, target], None).map_err(EvalError::build)?;
        let arguments = match &call.arguments {
            value @ serde_json::Value::Object(_) => to_cedar(value),
            _ => RestrictedExpression::new_record([]).map_err(EvalError::build)?,
        };
        // What the detectors find in a prompt's arguments and a resource's URI.
        let detections = self.reads_detections.then(|| {
            let mut found = crate::inspect::in_value(&call.arguments);
            found.merge(&crate::inspect::in_value(&serde_json::Value::String(
                call.target.label().to_string(),
            )));
            found
        });
        let context = context(
            input,
            call.target.label(),
            arguments,
            Some(("method", call.method)),
            detections.as_ref(),
        )?;
        let action_type = self.action.type_name().clone();
        let action = EntityUid::from_type_name_and_id(action_type, EntityId::new(call.method));
        let request =
            Request::new(principal, action, resource, context, None).map_err(EvalError::build)?;
        let response = self.authorizer.is_authorized(&request, policies, &entities);
        self.outcome_of(
            &response,
            &format!("{} of {:?}", call.method, call.target.label()),
        )
    }

    /// The principal of a request: the agent, with its tenant, user and environment.
    fn agent(&self, input: &DecisionInput<'_>) -> Result<(EntityUid, Entity), EvalError> {
        let string = |s: &str| RestrictedExpression::new_string(s.to_string());
        let principal = EntityUid::from_type_name_and_id(
            self.agent_type.clone(),
            EntityId::new(input.agent_id),
        );
        let agent = Entity::new(
            principal.clone(),
            HashMap::from([
                ("tenant".to_string(), string(input.tenant_id)),
                ("user".to_string(), string(input.user_id)),
                (
                    "environment".to_string(),
                    string(input.environment.as_str()),
                ),
            ]),
            HashSet::new(),
        )
        .map_err(EvalError::build)?;
        Ok((principal, agent))
    }

    /// Whether some policy hides tools (`@hide`).
    pub fn hides_tools(&self) -> bool {
        !self.hide.is_empty()
    }

    /// The rule id of an `@hide` policy forbidding every call of `input`'s tool (its
    /// arguments and session history are not read: such a policy cannot read them),
    /// or `None`. Observe mode hides nothing, since it blocks nothing. The tool's pin
    /// state is the one fact that changes while a listing stands (`thoth pins accept`),
    /// and the relay does not know it: a tool is hidden only when it is forbidden in
    /// every pin state.
    pub fn hides(&self, input: &DecisionInput<'_>) -> Option<String> {
        if self.hide.is_empty() || input.mode == crate::domain::Mode::Observe {
            return None;
        }
        let mut facts = input.tool.clone();
        let mut rule = None;
        for pin in [PinState::Pinned, PinState::New, PinState::Changed] {
            facts.pin = pin;
            let mut one = input.clone();
            one.tool = &facts;
            rule = Some(self.hides_in(&one)?);
        }
        rule
    }

    fn hides_in(&self, input: &DecisionInput<'_>) -> Option<String> {
        let subjects = self.subjects(input).ok()?;
        let string = |s: &str| RestrictedExpression::new_string(s.to_string());
        let context = Context::from_pairs([
            ("tool_name".to_string(), string(input.tool_name)),
            ("session_intent".to_string(), string(input.session_intent)),
            ("enforcement_mode".to_string(), string(input.mode.as_str())),
        ])
        .ok()?;
        // No schema here: a schema requires every context field, and these policies
        // read only the three above.
        let request = Request::new(
            subjects.principal.clone(),
            self.action.clone(),
            subjects.resource.clone(),
            context,
            None,
        )
        .ok()?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.hide, &subjects.entities);
        response.diagnostics().reason().next().map(|id| {
            self.notes
                .get(id)
                .map_or_else(|| id.to_string(), |n| n.rule_id.clone())
        })
    }

    /// Whether outcomes are reused (no policy reads per-call context).
    pub fn caches_outcomes(&self) -> bool {
        self.outcomes.is_some()
    }

    /// The same engine evaluating every call (benches measure both).
    pub fn without_outcome_cache(mut self) -> Self {
        self.outcomes = None;
        self
    }

    fn subjects(&self, input: &DecisionInput<'_>) -> Result<std::sync::Arc<Subjects>, EvalError> {
        let wanted = [
            input.agent_id,
            input.tenant_id,
            input.user_id,
            input.environment.as_str(),
            input.tool_name,
        ];
        // One proxy asks for the same few tools again and again: compare the last hit
        // in place before building a key.
        if let Ok(last) = self.last_subjects.lock()
            && let Some(((key, facts), hit)) = last.as_ref()
            && key.iter().zip(wanted).all(|(k, w)| k == w)
            && facts == input.tool
        {
            return Ok(hit.clone());
        }
        let key = (wanted.map(str::to_string), input.tool.clone());
        if let Some(hit) = self
            .subjects
            .lock()
            .ok()
            .and_then(|cache| cache.get(&key).cloned())
        {
            self.remember_last(key, &hit);
            return Ok(hit);
        }
        let (principal, agent) = self.agent(input)?;
        let resource = EntityUid::from_type_name_and_id(
            self.tool_type.clone(),
            EntityId::new(input.tool_name),
        );
        let string = |s: &str| RestrictedExpression::new_string(s.to_string());
        let facts = input.tool;
        let annotations = RestrictedExpression::new_record([
            (
                "readOnlyHint".to_string(),
                RestrictedExpression::new_bool(facts.read_only),
            ),
            (
                "destructiveHint".to_string(),
                RestrictedExpression::new_bool(facts.destructive),
            ),
            (
                "idempotentHint".to_string(),
                RestrictedExpression::new_bool(facts.idempotent),
            ),
            (
                "openWorldHint".to_string(),
                RestrictedExpression::new_bool(facts.open_world),
            ),
        ])
        .map_err(EvalError::build)?;
        let tool = Entity::new(
            resource.clone(),
            HashMap::from([
                ("name".to_string(), string(input.tool_name)),
                (
                    "in_catalog".to_string(),
                    RestrictedExpression::new_bool(facts.in_catalog),
                ),
                ("title".to_string(), string(&facts.title)),
                (
                    "annotated".to_string(),
                    RestrictedExpression::new_bool(facts.annotated),
                ),
                ("annotations".to_string(), annotations),
                ("pin".to_string(), string(facts.pin.as_str())),
                (
                    "description_flags".to_string(),
                    RestrictedExpression::new_set(
                        facts.description_flags.names().into_iter().map(string),
                    ),
                ),
            ]),
            HashSet::new(),
        )
        .map_err(EvalError::build)?;
        let entities = match Entities::from_entities([agent.clone(), tool], self.schema.as_ref()) {
            Ok(entities) => entities,
            // A schema written before the catalog attributes existed declares `name`
            // only: it keeps working, without them.
            Err(_) if self.schema.is_some() => {
                let bare = Entity::new(
                    resource.clone(),
                    HashMap::from([("name".to_string(), string(input.tool_name))]),
                    HashSet::new(),
                )
                .map_err(EvalError::build)?;
                Entities::from_entities([agent, bare], self.schema.as_ref())
                    .map_err(EvalError::build)?
            }
            Err(e) => return Err(EvalError::build(e)),
        };
        let subjects = std::sync::Arc::new(Subjects {
            principal,
            resource,
            entities,
        });
        if let Ok(mut cache) = self.subjects.lock() {
            if cache.len() >= SUBJECT_CACHE {
                cache.clear();
            }
            cache.insert(key.clone(), subjects.clone());
        }
        self.remember_last(key, &subjects);
        Ok(subjects)
    }

    fn remember_last(&self, key: SubjectKey, subjects: &std::sync::Arc<Subjects>) {
        if let Ok(mut last) = self.last_subjects.lock() {
            *last = Some((key, subjects.clone()));
        }
    }

    fn authorize(&self, input: &DecisionInput<'_>) -> Result<PolicyOutcome, EvalError> {
        let subjects = self.subjects(input)?;
        let arguments = match input.arguments {
            Some(value @ serde_json::Value::Object(_)) if self.reads_arguments => to_cedar(value),
            _ => RestrictedExpression::new_record([]).map_err(EvalError::build)?,
        };
        let detections = self.reads_detections.then(|| {
            input
                .arguments
                .map(crate::inspect::in_value)
                .unwrap_or_default()
        });
        let context = context(input, input.tool_name, arguments, None, detections.as_ref())?;
        let request = Request::new(
            subjects.principal.clone(),
            self.action.clone(),
            subjects.resource.clone(),
            context,
            self.schema.as_ref(),
        )
        .map_err(EvalError::build)?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &subjects.entities);
        self.outcome_of(&response, &format!("tool {:?}", input.tool_name))
    }

    /// What Cedar's answer means: errors, then permits, hard forbids and step-ups
    /// (`denied` names what no policy permits, for the soft denial's reason).
    fn outcome_of(
        &self,
        response: &cedar_policy::Response,
        denied: &str,
    ) -> Result<PolicyOutcome, EvalError> {
        let (mut failures, mut failed) = (Vec::new(), Vec::new());
        for error in response.diagnostics().errors() {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(error) = error;
            let id = self
                .notes
                .get(error.policy_id())
                .map_or_else(|| error.policy_id().to_string(), |n| n.rule_id.clone());
            failures.push(format!("policy {id}: {}", error.inner()));
            failed.push(id);
        }
        if !failures.is_empty() {
            return Err(EvalError::Policies {
                reason: failures.join("; "),
                rule_ids: failed,
            });
        }
        let determining: Vec<&Notes> = response
            .diagnostics()
            .reason()
            .filter_map(|id| self.notes.get(id))
            .collect();
        let reasons = |ps: &[&Notes]| {
            ps.iter()
                .filter_map(|p| p.reason.as_deref())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let rule_ids = |ps: &[&Notes]| ps.iter().map(|p| p.rule_id.clone()).collect::<Vec<_>>();
        if response.decision() == CedarDecision::Allow {
            let reason = reasons(&determining);
            return Ok(PolicyOutcome::Allow {
                reason: if reason.is_empty() {
                    "allowed by policy".into()
                } else {
                    reason
                },
                rule_ids: rule_ids(&determining),
            });
        }
        let forbids: Vec<&Notes> = determining.into_iter().filter(|p| p.forbid).collect();
        if forbids.is_empty() {
            return Ok(PolicyOutcome::SoftDeny {
                reason: format!("no policy permits {denied}"),
            });
        }
        let (step_up, hard): (Vec<&Notes>, Vec<&Notes>) =
            forbids.into_iter().partition(|p| p.step_up);
        let chosen = if hard.is_empty() { &step_up } else { &hard };
        let mut reason = reasons(chosen);
        if reason.is_empty() {
            reason = format!("forbidden by policy {}", rule_ids(chosen).join(", "));
        }
        let rule_ids = rule_ids(chosen);
        Ok(if hard.is_empty() {
            PolicyOutcome::StepUp {
                reason,
                rule_ids,
                user_may_approve: step_up.iter().all(|p| p.user_approves),
            }
        } else {
            PolicyOutcome::HardDeny { reason, rule_ids }
        })
    }
}

/// A request's context: every field tools/call has (`tool_name` the tool, URI or
/// prompt name; `arguments` already converted), `extra` (a method's name), and, when a
/// policy reads them, what the detectors found (`detections`, the set of their names,
/// and `detection_count`).
fn context(
    input: &DecisionInput<'_>,
    tool_name: &str,
    arguments: RestrictedExpression,
    extra: Option<(&str, &str)>,
    detections: Option<&crate::inspect::Detections>,
) -> Result<Context, EvalError> {
    let history = input.session;
    let string = |s: &str| RestrictedExpression::new_string(s.to_string());
    let fields = [
        ("tool_name".to_string(), string(tool_name)),
        ("arguments".to_string(), arguments),
        ("session_intent".to_string(), string(input.session_intent)),
        ("enforcement_mode".to_string(), string(input.mode.as_str())),
        (
            "session_tool_calls".to_string(),
            RestrictedExpression::new_set(history.distinct.iter().map(|c| string(c))),
        ),
        (
            "session_call_count".to_string(),
            RestrictedExpression::new_long(i64::try_from(history.count).unwrap_or(i64::MAX)),
        ),
        ("previous_tool".to_string(), string(history.previous())),
    ];
    let extra = extra.map(|(name, value)| (name.to_string(), string(value)));
    let found = detections.into_iter().flat_map(|d| {
        [
            (
                "detections".to_string(),
                RestrictedExpression::new_set(d.names().map(string)),
            ),
            (
                "detection_count".to_string(),
                RestrictedExpression::new_long(i64::try_from(d.count()).unwrap_or(i64::MAX)),
            ),
        ]
    });
    Context::from_pairs(fields.into_iter().chain(extra).chain(found)).map_err(EvalError::build)
}

/// For each governable method, the policies whose action scope names it
/// (`action == Thoth::Action::"resources/read"` or `action in [...]` with it).
fn method_policies(policies: &PolicySet) -> HashMap<&'static str, PolicySet> {
    let mut methods: HashMap<&'static str, PolicySet> = HashMap::new();
    for policy in policies.policies() {
        let named = match policy.action_constraint() {
            cedar_policy::ActionConstraint::Any => Vec::new(),
            cedar_policy::ActionConstraint::Eq(uid) => vec![uid],
            cedar_policy::ActionConstraint::In(uids) => uids,
        };
        for uid in named {
            let id = uid.id().unescaped();
            let known = id == "tools/call" || super::methods::governable(id).is_some();
            if uid.type_name().to_string() != "Thoth::Action" || !known {
                // A misspelt action (or an action group: there are no action entities)
                // would silently govern nothing.
                tracing::warn!(
                    "policy {} names the action {}, which thoth never asks about: it applies to no request (actions: Thoth::Action::\"tools/call\", {})",
                    policy
                        .annotation("id")
                        .map_or_else(|| policy.id().to_string(), str::to_string),
                    crate::logging::escaped(&uid.to_string()),
                    super::methods::GOVERNABLE
                        .iter()
                        .map(|m| format!("\"{m}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                continue;
            }
            if let Some(method) = super::methods::governable(id) {
                // A policy id is unique in its set: adding it again cannot fail.
                let _ = methods.entry(method).or_default().add(policy.clone());
            }
        }
    }
    methods
}

/// `@approver("user")` lets the user approve a step-up in their client: it means
/// something only on a forbid that asks for one, and "user" is the one approver thoth
/// can ask (anything else would silently keep today's meaning).
fn check_approvers(path: &Path, policies: &PolicySet) -> Result<(), PolicyError> {
    for policy in policies.policies() {
        let Some(approver) = policy.annotation("approver") else {
            continue;
        };
        let refuse = |why| PolicyError::Approver {
            path: path.to_path_buf(),
            rule_id: policy
                .annotation("id")
                .map_or_else(|| policy.id().to_string(), str::to_string),
            why,
        };
        if approver != "user" {
            return Err(refuse("names an approver other than \"user\""));
        }
        if policy.effect() != Effect::Forbid || policy.annotation("decision") != Some("step_up") {
            return Err(refuse("is not on a forbid with @decision(\"step_up\")"));
        }
    }
    Ok(())
}

/// The context fields an `@hide` policy may read: fixed for a whole session.
const SESSION_FIXED: [&str; 3] = ["tool_name", "session_intent", "enforcement_mode"];

/// The `@hide` policies, each checked to forbid a tool whatever its calls carry: a
/// hard forbid (not `@decision("step_up")`) reading no context but [`SESSION_FIXED`].
fn hide_policies(path: &Path, policies: &PolicySet) -> Result<PolicySet, PolicyError> {
    let mut hide = PolicySet::new();
    for policy in policies
        .policies()
        .filter(|p| p.annotation("hide").is_some())
    {
        let refuse = |why| PolicyError::Hide {
            path: path.to_path_buf(),
            rule_id: policy
                .annotation("id")
                .map_or_else(|| policy.id().to_string(), str::to_string),
            why,
        };
        if policy.effect() != Effect::Forbid {
            return Err(refuse("is a permit (only a forbid can hide a tool)"));
        }
        if policy.annotation("decision") == Some("step_up") {
            return Err(refuse(
                "asks for a step-up (an approved call is allowed, so the tool must stay listed)",
            ));
        }
        let mut one = PolicySet::new();
        one.add(policy.clone())
            .map_err(|_| refuse("cannot be analysed"))?;
        if !super::reads::ContextReads::of(&one).only(&SESSION_FIXED) {
            return Err(refuse(
                "reads the call's context (its arguments or the session's history)",
            ));
        }
        hide.add(policy.clone())
            .map_err(|_| refuse("cannot be analysed"))?;
    }
    Ok(hide)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Environment, Mode};
    use crate::enforce::SessionHistory;
    use serde_json::json;

    fn engine(name: &str, policy: &str) -> LocalEngine {
        let path =
            std::env::temp_dir().join(format!("thoth-local-{name}-{}.cedar", std::process::id()));
        std::fs::write(&path, policy).expect("write policy");
        let engine = LocalEngine::load(&path).expect("loads");
        let _ = std::fs::remove_file(&path);
        engine
    }

    fn input<'a>(
        tool: &'a str,
        args: &'a serde_json::Value,
        history: &'a SessionHistory,
    ) -> DecisionInput<'a> {
        DecisionInput {
            agent_id: "a",
            tenant_id: "t",
            user_id: "u",
            environment: Environment::Dev,
            mode: Mode::Block,
            session_id: "s",
            session_intent: "general",
            tool_name: tool,
            tool: &NOT_LISTED,
            arguments: Some(args),
            session: history,
        }
    }

    static NOT_LISTED: std::sync::LazyLock<ToolFacts> =
        std::sync::LazyLock::new(ToolFacts::default);

    fn allowed(o: &PolicyOutcome) -> bool {
        matches!(o, PolicyOutcome::Allow { .. })
    }

    #[test]
    fn the_user_may_approve_only_where_every_step_up_forbid_says_so() {
        let history = SessionHistory::default();
        let args = json!({});
        let e = engine(
            "approver",
            r#"permit (principal, action, resource);
               @id("mine") @decision("step_up") @approver("user") forbid (principal, action, resource) when { resource.name like "send*" };
               @id("admins") @decision("step_up") forbid (principal, action, resource) when { resource.name == "send_all" };
               @id("never") forbid (principal, action, resource) when { resource.name == "send_secret" };"#,
        );
        let user_may = |tool| match e.evaluate(&input(tool, &args, &history)) {
            PolicyOutcome::StepUp {
                user_may_approve, ..
            } => Some(user_may_approve),
            _ => None,
        };
        assert_eq!(user_may("send_mail"), Some(true));
        assert_eq!(user_may("send_all"), Some(false), "another approver too");
        assert_eq!(user_may("send_secret"), None, "a hard forbid wins");
        assert_eq!(user_may("read"), None);
        for (policy, why) in [
            (
                r#"@approver("admin") @decision("step_up") forbid (principal, action, resource);"#,
                "names an approver other than",
            ),
            (
                r#"@approver("user") forbid (principal, action, resource);"#,
                "is not on a forbid with",
            ),
            (
                r#"@approver("user") permit (principal, action, resource);"#,
                "is not on a forbid with",
            ),
        ] {
            let path =
                std::env::temp_dir().join(format!("thoth-approver-{}.cedar", uuid::Uuid::new_v4()));
            std::fs::write(&path, policy).expect("write");
            let err = LocalEngine::load(&path).err().expect("refused");
            let _ = std::fs::remove_file(&path);
            assert!(err.to_string().contains(why), "{policy}: {err}");
            assert!(!err.place().contains("admin"), "the file is not quoted");
        }
    }

    #[test]
    fn the_catalog_facts_are_resource_attributes() {
        let history = SessionHistory::default();
        let args = json!({});
        let e = engine(
            "facts",
            r#"permit (principal, action, resource) when { resource.in_catalog && resource.annotations.readOnlyHint && resource.title == "Read" };"#,
        );
        let listed = ToolFacts {
            in_catalog: true,
            title: "Read".into(),
            annotated: true,
            read_only: true,
            destructive: false,
            idempotent: true,
            open_world: false,
            pin: crate::domain::PinState::Pinned,
            description_flags: Default::default(),
        };
        let mut call = input("read", &args, &history);
        assert!(
            !allowed(&e.evaluate(&call)),
            "not listed: the spec's defaults"
        );
        call.tool = &listed;
        assert!(allowed(&e.evaluate(&call)));
        // The outcome cache keys on the facts too.
        assert!(e.caches_outcomes());
        call.tool = &NOT_LISTED;
        assert!(!allowed(&e.evaluate(&call)));
        // A policy reading an annotation of an unlisted tool gets the spec's default.
        let d = engine(
            "destructive",
            r#"permit (principal, action, resource) unless { resource.annotations.destructiveHint };"#,
        );
        assert!(!allowed(&d.evaluate(&input("x", &args, &history))));
    }

    #[test]
    fn outcomes_are_reused_only_when_no_policy_reads_per_call_context() {
        let history = SessionHistory::default();
        let tmp = json!({"path": "/tmp/x"});
        let etc = json!({"path": "/etc/passwd"});
        let by_args = engine(
            "args",
            r#"permit (principal, action, resource) when { context.arguments.path like "/tmp/*" };"#,
        );
        assert!(!by_args.caches_outcomes());
        assert!(allowed(&by_args.evaluate(&input("read", &tmp, &history))));
        assert!(!allowed(&by_args.evaluate(&input("read", &etc, &history))));

        let whole = engine(
            "whole",
            r#"permit (principal, action, resource) when { context != {} };"#,
        );
        assert!(!whole.caches_outcomes());

        let by_name = engine(
            "name",
            r#"permit (principal, action, resource) when { !(resource.name like "*write*") };"#,
        );
        assert!(by_name.caches_outcomes());
        for _ in 0..3 {
            assert!(allowed(&by_name.evaluate(&input("read", &tmp, &history))));
            assert!(!allowed(&by_name.evaluate(&input("write", &tmp, &history))));
        }
        let mut other = input("read", &tmp, &history);
        other.session_intent = "clinical";
        assert!(allowed(&by_name.evaluate(&other)));
    }

    #[test]
    fn pins_and_description_flags_are_resource_attributes() {
        let history = SessionHistory::default();
        let args = json!({});
        let e = engine(
            "pins",
            r#"permit (principal, action, resource);
               @id("changed") forbid (principal, action, resource) when { resource.pin == "changed" };
               @id("hidden-text") forbid (principal, action, resource) when { resource.description_flags.contains("tag_characters") };"#,
        );
        let mut facts = ToolFacts {
            in_catalog: true,
            pin: crate::domain::PinState::Pinned,
            ..ToolFacts::default()
        };
        let mut call = input("read", &args, &history);
        call.tool = &facts;
        assert!(allowed(&e.evaluate(&call)));
        facts.pin = crate::domain::PinState::Changed;
        let mut call = input("read", &args, &history);
        call.tool = &facts;
        assert!(!allowed(&e.evaluate(&call)));
        facts.pin = crate::domain::PinState::Pinned;
        facts.description_flags.scan("read\u{E0041}");
        let mut call = input("read", &args, &history);
        call.tool = &facts;
        assert!(!allowed(&e.evaluate(&call)));
    }

    #[test]
    fn hide_policies_hide_only_what_every_call_is_denied() {
        let history = SessionHistory::default();
        let args = json!({});
        let e = engine(
            "hide",
            r#"permit (principal, action, resource);
               @id("no-export") @hide("") forbid (principal, action, resource) when { resource.name like "*export*" && context.session_intent != "clinical" };
               @id("not-hidden") forbid (principal, action, resource) when { resource.name == "rm" };"#,
        );
        assert!(e.hides_tools());
        assert_eq!(
            e.hides(&input("export_all", &args, &history)),
            Some("no-export".into())
        );
        assert_eq!(e.hides(&input("rm", &args, &history)), None, "no @hide");
        assert_eq!(e.hides(&input("read", &args, &history)), None);
        // A condition on the pin state hides nothing: `thoth pins accept` changes it
        // while the listing stands.
        let on_pin = engine(
            "hide-pin",
            r#"permit (principal, action, resource);
               @hide("") forbid (principal, action, resource) when { resource.pin == "pinned" };"#,
        );
        assert_eq!(on_pin.hides(&input("read", &args, &history)), None);
        let mut observe = input("export_all", &args, &history);
        observe.mode = Mode::Observe;
        assert_eq!(e.hides(&observe), None, "observe mode blocks nothing");
        for (policy, why) in [
            (
                r#"@hide("") permit (principal, action, resource);"#,
                "is a permit",
            ),
            (
                r#"@hide("") @decision("step_up") forbid (principal, action, resource);"#,
                "asks for a step-up",
            ),
            (
                r#"@hide("") forbid (principal, action, resource) when { context.arguments has x };"#,
                "reads the call's context",
            ),
            (
                r#"@hide("") forbid (principal, action, resource) when { context.previous_tool == "a" };"#,
                "reads the call's context",
            ),
        ] {
            let path =
                std::env::temp_dir().join(format!("thoth-hide-{}.cedar", uuid::Uuid::new_v4()));
            std::fs::write(&path, policy).expect("write");
            let err = LocalEngine::load(&path).err().expect("refused").to_string();
            let _ = std::fs::remove_file(&path);
            assert!(err.contains(why), "{policy}: {err}");
        }
    }
}
