//! The embedded decision point: a Cedar policy evaluated in process (DESIGN §5).
//!
//! Request: principal `Thoth::Agent::"<agent>"` (tenant, user, environment), action
//! `Thoth::Action::"tools/call"`, resource `Thoth::Tool::"<name>"` (attribute `name`),
//! and a context where every field is always present. Outcome: no permit is a *soft*
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

use super::DecisionInput;
use super::cedar_value::to_cedar;
use crate::settings::SettingsError;

/// What the policy says, before the enforcement mode is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
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
    },
    /// A plain forbid applies (or evaluation failed).
    HardDeny {
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

/// Subjects cached at most (the cache is cleared when full).
const SUBJECT_CACHE: usize = 4096;

/// What a policy's annotations say, read once at load: Cedar parses the annotation
/// key on every `Policy::annotation` call, which cost more than the evaluation itself.
struct Notes {
    rule_id: String,
    reason: Option<String>,
    step_up: bool,
    forbid: bool,
}

/// A loaded policy set.
pub struct LocalEngine {
    notes: HashMap<cedar_policy::PolicyId, Notes>,
    subjects: std::sync::Mutex<HashMap<[String; 5], std::sync::Arc<Subjects>>>,
    path: PathBuf,
    policies: PolicySet,
    schema: Option<Schema>,
    authorizer: Authorizer,
    agent_type: EntityTypeName,
    tool_type: EntityTypeName,
    action: EntityUid,
}

impl LocalEngine {
    /// Parses the policy at `path` and, when `<path minus .cedar>.cedarschema` exists
    /// beside it, validates the policies against that schema.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            SettingsError::new(format!("{}: cannot read policy: {e}", path.display()))
        })?;
        let policies = PolicySet::from_str(&source).map_err(|e| {
            SettingsError::new(format!(
                "{}: invalid Cedar policy: {}",
                path.display(),
                one_line(&parse_errors(&e))
            ))
        })?;
        let schema_path = path.with_extension("cedarschema");
        let schema = if schema_path.exists() {
            let text = std::fs::read_to_string(&schema_path)
                .map_err(|e| SettingsError::new(format!("{}: {e}", schema_path.display())))?;
            let (schema, _warnings) = Schema::from_cedarschema_str(&text).map_err(|e| {
                SettingsError::new(format!(
                    "{}: invalid schema: {}",
                    schema_path.display(),
                    one_line(&e.to_string())
                ))
            })?;
            let result =
                Validator::new(schema.clone()).validate(&policies, ValidationMode::default());
            if !result.validation_passed() {
                let errors: Vec<String> =
                    result.validation_errors().map(|e| e.to_string()).collect();
                return Err(SettingsError::new(format!(
                    "{}: policy does not validate against {}: {}",
                    path.display(),
                    schema_path.display(),
                    one_line(&errors.join("; "))
                )));
            }
            Some(schema)
        } else {
            None
        };
        let type_name = |s: &str| {
            EntityTypeName::from_str(s)
                .map_err(|e| SettingsError::new(format!("internal: entity type {s}: {e}")))
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
                        forbid: p.effect() == Effect::Forbid,
                    },
                )
            })
            .collect();
        Ok(Self {
            notes,
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

    /// Number of policies loaded.
    pub fn policy_count(&self) -> usize {
        self.policies.policies().count()
    }

    /// Evaluates one call.
    pub fn evaluate(&self, input: &DecisionInput<'_>) -> Outcome {
        match self.authorize(input) {
            Ok(outcome) => outcome,
            Err(reason) => Outcome::HardDeny {
                reason: format!("policy evaluation failed: {reason}"),
                rule_ids: Vec::new(),
            },
        }
    }

    fn subjects(&self, input: &DecisionInput<'_>) -> Result<std::sync::Arc<Subjects>, String> {
        let key = [
            input.agent_id,
            input.tenant_id,
            input.user_id,
            input.environment.as_str(),
            input.tool_name,
        ]
        .map(str::to_string);
        if let Some(hit) = self
            .subjects
            .lock()
            .ok()
            .and_then(|cache| cache.get(&key).cloned())
        {
            return Ok(hit);
        }
        let principal = EntityUid::from_type_name_and_id(
            self.agent_type.clone(),
            EntityId::new(input.agent_id),
        );
        let resource = EntityUid::from_type_name_and_id(
            self.tool_type.clone(),
            EntityId::new(input.tool_name),
        );
        let string = |s: &str| RestrictedExpression::new_string(s.to_string());
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
        .map_err(|e| e.to_string())?;
        let tool = Entity::new(
            resource.clone(),
            HashMap::from([("name".to_string(), string(input.tool_name))]),
            HashSet::new(),
        )
        .map_err(|e| e.to_string())?;
        let entities = Entities::from_entities([agent, tool], self.schema.as_ref())
            .map_err(|e| e.to_string())?;
        let subjects = std::sync::Arc::new(Subjects {
            principal,
            resource,
            entities,
        });
        if let Ok(mut cache) = self.subjects.lock() {
            if cache.len() >= SUBJECT_CACHE {
                cache.clear();
            }
            cache.insert(key, subjects.clone());
        }
        Ok(subjects)
    }

    fn authorize(&self, input: &DecisionInput<'_>) -> Result<Outcome, String> {
        let subjects = self.subjects(input)?;
        let arguments = match input.arguments {
            Some(value @ serde_json::Value::Object(_)) => to_cedar(value),
            _ => RestrictedExpression::new_record([]).map_err(|e| e.to_string())?,
        };
        let history = input.session;
        let string = |s: &str| RestrictedExpression::new_string(s.to_string());
        let context = Context::from_pairs([
            ("tool_name".to_string(), string(input.tool_name)),
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
        ])
        .map_err(|e| e.to_string())?;
        let request = Request::new(
            subjects.principal.clone(),
            self.action.clone(),
            subjects.resource.clone(),
            context,
            self.schema.as_ref(),
        )
        .map_err(|e| e.to_string())?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &subjects.entities);

        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        if !errors.is_empty() {
            return Err(errors.join("; "));
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
            return Ok(Outcome::Allow {
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
            return Ok(Outcome::SoftDeny {
                reason: format!("no policy permits tool {:?}", input.tool_name),
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
            Outcome::StepUp { reason, rule_ids }
        } else {
            Outcome::HardDeny { reason, rule_ids }
        })
    }
}

/// Cedar's diagnostics, one per error.
fn parse_errors(e: &cedar_policy::ParseErrors) -> String {
    e.iter()
        .map(|err| format!("{err}"))
        .collect::<Vec<_>>()
        .join("; ")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
