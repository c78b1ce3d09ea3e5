//! Settings of one `thoth run` (and `thoth doctor`), merged and checked.

use std::path::PathBuf;
use std::time::Duration;

use super::profile::{Profile, read_api_key};
use super::tls::{TlsSettings, is_loopback_url};
use super::{EnvVars, Managed, Secret, SettingsError};
use crate::args::{DEFAULT_MAX_FRAME_BYTES, RunFlags};
use crate::domain::{DenyStyle, Environment, FailureDecision, Mode};

/// Default deadline of one enforce call, body included (`THOTH_ENFORCER_TIMEOUT_MS`).
pub const DEFAULT_ENFORCER_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to reach the GovAPI.
#[derive(Debug, Clone)]
pub struct GovApiSettings {
    pub url: String,
    pub bearer: Option<Secret>,
    pub api_key: Option<Secret>,
    pub heartbeat_interval: Duration,
    pub enrollment: String,
    /// Verification and CA bundle as for the enforcer; no pins (another host).
    pub tls: crate::settings::TlsSettings,
}

/// Which decision point is used, and why (the first stderr line says it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineChoice {
    /// Cedar in process.
    Local { policy: PathBuf, why: String },
    /// The Thoth enforcer over HTTPS.
    Remote { url: String, why: String },
}

/// Everything `thoth run` needs, validated.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub agent_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub endpoint_id: String,
    pub mode: Mode,
    pub session_intent: String,
    pub environment: Environment,
    pub engine: EngineChoice,
    pub api_key: Option<Secret>,
    /// Where the key came from (flag, env, file), never the key.
    pub api_key_source: &'static str,
    pub max_frame_bytes: usize,
    pub deny_style: DenyStyle,
    /// The action per detector class on the server's answers (none: not inspected).
    pub inspect_results: crate::inspect::actions::ResultActions,
    pub step_up_hold: Duration,
    pub child_term_delay: Duration,
    pub child_kill_delay: Duration,
    /// How long the server may read nothing of a pending write before thoth warns.
    pub server_stall_warn: Duration,
    pub profile: Profile,
    /// What an unreachable enforcer means (already adjusted for the environment).
    pub failure_decision: FailureDecision,
    /// Read timeout of one enforce call.
    pub enforcer_timeout: Duration,
    /// Interval between hold polls.
    pub step_up_poll: Duration,
    pub tls: TlsSettings,
    /// Where telemetry goes (`THOTH_API_URL`, else the enforcer URL in remote mode).
    pub telemetry_url: Option<String>,
    pub ingest_token: Option<Secret>,
    /// Registration, heartbeats and inventory; `None` in local mode unless
    /// `THOTH_GOVAPI_URL` (or managed `govapi_url`) is set.
    pub govapi: Option<GovApiSettings>,
    /// Fleet-approved tool pins from the managed settings file (`crate::pins`).
    pub tool_pins: Vec<crate::settings::managed::ManagedPin>,
    /// OTLP export (`OTEL_*`, or the managed `otlp_endpoint`), when on.
    pub otlp: Option<crate::settings::otlp::OtlpSettings>,
    /// Remote mode: resources/read, resources/subscribe, prompts/get and
    /// completion/complete are asked of the enforcer too (else passed, audited).
    pub enforcer_govern_methods: bool,
}

/// Default apex domain of the Thoth service.
const DEFAULT_APEX: &str = "aten.security";

impl RunSettings {
    /// `thoth run --agent-id local --policy <policy>` in a dev environment with no
    /// other flag, variable or managed file: for benches and tests that run the proxy
    /// in process ([`crate::proxy::run_pipes`]). Resolved like any run, so its defaults
    /// are the real ones.
    pub fn local(policy: PathBuf, profile: Profile) -> Result<Self, SettingsError> {
        let flags = RunFlags {
            agent_id: Some("local".into()),
            policy: Some(policy),
            ..RunFlags::default()
        };
        let env = EnvVars {
            environment: Some(Environment::Dev),
            ..EnvVars::default()
        };
        Self::resolve(&flags, &env, None, profile, None)
    }

    /// Merges flags, environment, managed settings and the profile. `default_agent`
    /// is used when `--agent-id` is absent (doctor uses the command's name).
    pub fn resolve(
        flags: &RunFlags,
        env: &EnvVars,
        managed: Option<&Managed>,
        profile: Profile,
        default_agent: Option<&str>,
    ) -> Result<Self, SettingsError> {
        let empty = Managed::default();
        let m = managed.unwrap_or(&empty);

        // Environment: managed wins; a weaker variable is refused.
        let environment = match (m.environment, env.environment) {
            (Some(floor), Some(asked)) if asked < floor => {
                return Err(m.refuse(
                    &format!("THOTH_ENV={}", asked.as_str()),
                    "environment",
                    floor.as_str(),
                ));
            }
            (Some(floor), _) => floor,
            (None, asked) => asked.unwrap_or(Environment::Prod),
        };

        let agent_id = flags
            .agent_id
            .clone()
            .or_else(|| default_agent.map(str::to_string))
            .filter(|a| !a.trim().is_empty())
            .ok_or_else(|| {
                SettingsError::new(
                    "--agent-id is required (the server's name in your MCP client config)",
                )
            })?;

        // Mode: the managed value is a floor.
        let asked_mode = flags.enforcement_mode;
        let mode = match (m.enforcement_mode, asked_mode) {
            (Some(floor), Some(asked)) if asked < floor => {
                return Err(m.refuse(
                    &format!("--enforcement-mode {}", asked.as_str()),
                    "enforcement_mode",
                    floor.as_str(),
                ));
            }
            (Some(floor), None) => floor,
            (_, asked) => asked.unwrap_or(Mode::Block),
        };

        // Policy and engine.
        let asked_policy = flags.policy.clone().or_else(|| env.policy_file.clone());
        if m.require_remote_enforcer && asked_policy.is_some() {
            let what = if flags.policy.is_some() {
                "--policy"
            } else {
                "THOTH_POLICY_FILE"
            };
            return Err(m.refuse(what, "require_remote_enforcer", "true"));
        }
        if let (Some(managed_policy), Some(asked)) = (&m.policy_file, &asked_policy)
            && managed_policy != asked
        {
            return Err(m.refuse(
                &format!("policy {}", asked.display()),
                "policy_file",
                &managed_policy.display().to_string(),
            ));
        }
        let policy = m.policy_file.clone().or(asked_policy);

        // API key: flag > env > key file.
        let key_file = m
            .api_key_file
            .clone()
            .or_else(|| env.api_key_file.clone())
            .unwrap_or_else(|| profile.api_key_file());
        let (api_key, api_key_source) =
            if let Some(k) = flags.api_key.as_ref().filter(|k| !k.trim().is_empty()) {
                (Some(Secret::new(k.trim().to_string())), "flag")
            } else if let Some(k) = &env.api_key {
                (Some(k.clone()), "env")
            } else {
                match read_api_key(&key_file)? {
                    Some(k) => (Some(k), "file"),
                    None => (None, "none"),
                }
            };

        let explicit_url = m.enforcer_url.clone().or_else(|| env.enforcer_url.clone());
        let tenant_asked = flags.tenant_id.clone().or_else(|| env.tenant_id.clone());
        if let (Some(managed_tenant), Some(asked)) = (&m.tenant_id, &tenant_asked)
            && managed_tenant != asked
        {
            return Err(m.refuse(&format!("tenant {asked}"), "tenant_id", managed_tenant));
        }
        let tenant = m.tenant_id.clone().or(tenant_asked);
        if let Some(t) = &tenant {
            super::env::check_tenant(t)
                .map_err(|e| SettingsError::new(format!("--tenant-id: {e}")))?;
        }

        let engine = if let Some(policy) = policy {
            let why = if m.policy_file.is_some() {
                format!("policy set by {}", m.path.display())
            } else if flags.policy.is_some() {
                "--policy given".to_string()
            } else {
                "THOTH_POLICY_FILE set".to_string()
            };
            EngineChoice::Local { policy, why }
        } else if api_key.is_some() || explicit_url.is_some() || m.require_remote_enforcer {
            if api_key.is_none() {
                return Err(SettingsError::new(format!(
                    "no API key for the Thoth enforcer: set THOTH_API_KEY or fill {} (the remote enforcer is required{})",
                    key_file.display(),
                    if m.require_remote_enforcer {
                        " by managed settings"
                    } else {
                        " because THOTH_ENFORCER_URL is set"
                    }
                )));
            }
            let url = match &explicit_url {
                Some(url) => url.clone(),
                None => {
                    let tenant = tenant.clone().ok_or_else(|| {
                        SettingsError::new("--tenant-id (or THOTH_TENANT_ID) is required to derive the enforcer URL (or set THOTH_ENFORCER_URL)")
                    })?;
                    let apex = env
                        .apex_domain
                        .clone()
                        .unwrap_or_else(|| DEFAULT_APEX.into());
                    format!("https://enforce.{tenant}.{apex}")
                }
            };
            let why = match (&explicit_url, api_key_source) {
                (Some(_), _) => "THOTH_ENFORCER_URL set".to_string(),
                (None, source) => format!("API key configured ({source})"),
            };
            EngineChoice::Remote { url, why }
        } else {
            EngineChoice::Local {
                policy: profile.policy_file(),
                why: "no API key and no THOTH_ENFORCER_URL configured".into(),
            }
        };

        if let EngineChoice::Remote { url, .. } = &engine
            && environment != Environment::Dev
            && url.starts_with("http://")
            && !is_loopback_url(url)
        {
            return Err(SettingsError::new(format!(
                "THOTH_ENFORCER_URL {url} must use https in {} (plain http is allowed only to a loopback address)",
                environment.as_str()
            )));
        }
        let failure_decision = match (m.failure_decision, env.failure_decision) {
            (Some(floor), Some(asked)) if asked < floor => {
                return Err(m.refuse(
                    "THOTH_ENFORCER_FAILURE_DECISION",
                    "failure_decision",
                    floor.as_str(),
                ));
            }
            (Some(floor), None) => Some(floor),
            (_, asked) => asked,
        };
        if m.enforcer_govern_methods == Some(true) && env.enforcer_govern_methods == Some(false) {
            return Err(m.refuse(
                "turning THOTH_ENFORCER_GOVERN_METHODS off",
                "enforcer_govern_methods",
                "true",
            ));
        }
        let enforcer_govern_methods = m
            .enforcer_govern_methods
            .or(env.enforcer_govern_methods)
            .unwrap_or(false);
        let allow_override = m
            .allow_fallback_override
            .or(env.allow_fallback_override)
            .unwrap_or(false);
        let failure_decision = if matches!(engine, EngineChoice::Remote { .. }) {
            effective_failure(failure_decision, environment, allow_override)
        } else {
            failure_decision.unwrap_or(FailureDecision::Block)
        };
        let tls = TlsSettings::from_env(env, environment, m.tls_verify)?;
        let engine_url = match &engine {
            EngineChoice::Remote { url, .. } => Some(url.clone()),
            EngineChoice::Local { .. } => None,
        };

        let govapi = govapi_settings(
            env,
            m,
            &engine,
            tenant.as_deref(),
            environment,
            &api_key,
            &tls,
        )?;
        let session_intent = match &flags.session_intent {
            Some(s) => s.clone(),
            None => profile.session_intent(&agent_id)?.unwrap_or_default(),
        };
        let otlp = crate::settings::otlp::OtlpSettings::resolve(
            &|name| std::env::var(name).ok(),
            m.otlp.as_ref(),
            environment,
            env.telemetry == Some(false),
        );
        Ok(Self {
            enforcer_govern_methods,
            otlp,
            tool_pins: m.tool_pins.clone(),
            agent_id,
            tenant_id: tenant.unwrap_or_else(|| "local".into()),
            user_id: flags
                .user_id
                .clone()
                .or_else(|| env.user_id.clone())
                .unwrap_or_default(),
            endpoint_id: flags
                .endpoint_id
                .clone()
                .or_else(|| env.endpoint_id.clone())
                .unwrap_or_else(hostname),
            mode,
            session_intent,
            environment,
            engine,
            api_key,
            api_key_source,
            max_frame_bytes: flags.max_frame_bytes.unwrap_or(DEFAULT_MAX_FRAME_BYTES),
            deny_style: m.deny_style.or(env.deny_style).unwrap_or_default(),
            // Per class: the variable, then the flag, then the managed file.
            inspect_results: env
                .inspect_results
                .unwrap_or_default()
                .overridden_by(&flags.inspect_results.unwrap_or_default())
                .overridden_by(&m.inspect_results.unwrap_or_default()),
            step_up_hold: m
                .step_up_hold_seconds
                .map(Duration::from_secs)
                .or(env.step_up_hold)
                .unwrap_or(Duration::from_secs(45)),
            child_term_delay: env.child_term_delay.unwrap_or(Duration::from_secs(1)),
            child_kill_delay: env.child_kill_delay.unwrap_or(Duration::from_secs(1)),
            server_stall_warn: env.server_stall_warn.unwrap_or(Duration::from_secs(10)),
            profile,
            failure_decision,
            enforcer_timeout: env.enforcer_timeout.unwrap_or(DEFAULT_ENFORCER_TIMEOUT),
            step_up_poll: env.step_up_poll.unwrap_or(Duration::from_secs(2)),
            telemetry_url: if env.telemetry == Some(false) {
                None
            } else {
                m.api_url
                    .clone()
                    .or_else(|| env.api_url.clone())
                    .or_else(|| engine_url.clone())
            },
            ingest_token: env.event_ingest_token.clone(),
            tls,
            govapi,
        })
    }
}

/// Where the GovAPI is: explicit (managed, then `THOTH_GOVAPI_URL`), else derived from
/// the tenant in remote mode; off in local mode unless explicit.
fn govapi_settings(
    env: &EnvVars,
    m: &Managed,
    engine: &EngineChoice,
    tenant: Option<&str>,
    environment: Environment,
    api_key: &Option<Secret>,
    tls: &TlsSettings,
) -> Result<Option<GovApiSettings>, SettingsError> {
    let explicit = m.govapi_url.clone().or_else(|| env.govapi_url.clone());
    let url = match (explicit, engine, tenant) {
        (Some(url), _, _) => url,
        (None, EngineChoice::Remote { .. }, Some(tenant)) => {
            let apex = env
                .apex_domain
                .clone()
                .unwrap_or_else(|| DEFAULT_APEX.into());
            format!("https://grid.{tenant}.{apex}")
        }
        _ => return Ok(None),
    };
    if environment != Environment::Dev && url.starts_with("http://") && !is_loopback_url(&url) {
        return Err(SettingsError::new(format!(
            "THOTH_GOVAPI_URL {url} must use https in {} (plain http is allowed only to a loopback address)",
            environment.as_str()
        )));
    }
    let bearer = env.govapi_bearer_token.clone();
    let mut key = env.govapi_api_key.clone();
    if bearer.is_none() && key.is_none() {
        // The proxy's own key identifies the tenant when no GovAPI credential is set.
        key = api_key.clone();
    }
    let mut tls = tls.clone();
    tls.pins.clear();
    Ok(Some(GovApiSettings {
        url,
        bearer,
        api_key: key,
        heartbeat_interval: env.heartbeat_interval.unwrap_or(Duration::from_secs(60)),
        enrollment: env
            .enrollment_source
            .clone()
            .unwrap_or_else(|| "unmanaged".into()),
        tls,
    }))
}

/// The non-root rule and the expected proxy identity (run and doctor only:
/// administration commands are meant to run as root under MDM).
pub fn check_identity(
    env: &EnvVars,
    m: &Managed,
    environment: Environment,
) -> Result<(), SettingsError> {
    if let (Some(true), Some(false)) = (m.require_non_root, env.require_non_root) {
        return Err(m.refuse("THOTH_REQUIRE_NON_ROOT=false", "require_non_root", "true"));
    }
    let require_non_root = m
        .require_non_root
        .or(env.require_non_root)
        .unwrap_or(environment != Environment::Dev);
    let uid = env.test_uid.unwrap_or_else(current_uid);
    if require_non_root && uid == 0 {
        return Err(SettingsError::new(format!(
            "thoth refuses to run as root in {} (a governed server would run with root's rights): run it as the user, or for a trial set THOTH_ENV=dev or THOTH_REQUIRE_NON_ROOT=false",
            environment.as_str()
        )));
    }
    if let Some(expected) = env.expected_proxy_uid
        && expected != uid
    {
        return Err(SettingsError::new(format!(
            "THOTH_EXPECTED_PROXY_UID={expected} but thoth runs as uid {uid}: start it as the expected user"
        )));
    }
    if let Some(expected) = &env.expected_proxy_user {
        let actual = current_user_name(uid);
        if actual.as_deref() != Some(expected.as_str()) {
            return Err(SettingsError::new(format!(
                "THOTH_EXPECTED_PROXY_USER={expected} but thoth runs as {}: start it as the expected user",
                actual.unwrap_or_else(|| format!("uid {uid}"))
            )));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn current_uid() -> u32 {
    nix::unistd::Uid::effective().as_raw()
}

#[cfg(not(unix))]
fn current_uid() -> u32 {
    1
}

/// The account name thoth runs as (`root` for an MDM), from the account database: a
/// home's folder name is not a user name (root's HOME may be `/` or `/var/root`).
pub fn account_name() -> Option<String> {
    current_user_name(current_uid())
}

#[cfg(unix)]
fn current_user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

#[cfg(not(unix))]
fn current_user_name(_uid: u32) -> Option<String> {
    std::env::var("USERNAME").ok()
}

/// The host name, for the default endpoint id.
pub fn hostname() -> String {
    #[cfg(unix)]
    if let Ok(name) = nix::unistd::gethostname() {
        return name.to_string_lossy().into_owned();
    }
    std::env::var("COMPUTERNAME").unwrap_or_else(|_| "unknown-host".into())
}

/// The failure decision in force: `allow` is ignored in staging/prod without the
/// override, with a warning either way.
pub fn effective_failure(
    asked: Option<FailureDecision>,
    environment: Environment,
    allow_override: bool,
) -> FailureDecision {
    match asked.unwrap_or(FailureDecision::Block) {
        FailureDecision::Allow if environment != Environment::Dev && !allow_override => {
            tracing::warn!(
                "THOTH_ENFORCER_FAILURE_DECISION=allow is ignored in {}: calls block when the enforcer is unreachable (set THOTH_ENFORCER_ALLOW_FALLBACK_OVERRIDE=true to accept the risk)",
                environment.as_str()
            );
            FailureDecision::Block
        }
        FailureDecision::Allow => {
            tracing::warn!(
                "THOTH_ENFORCER_FAILURE_DECISION=allow: calls are ALLOWED without a policy decision whenever the enforcer is unreachable"
            );
            FailureDecision::Allow
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_fallback_is_refused_outside_dev() {
        assert_eq!(
            effective_failure(Some(FailureDecision::Allow), Environment::Prod, false),
            FailureDecision::Block
        );
        assert_eq!(
            effective_failure(Some(FailureDecision::Allow), Environment::Staging, true),
            FailureDecision::Allow
        );
        assert_eq!(
            effective_failure(Some(FailureDecision::Allow), Environment::Dev, false),
            FailureDecision::Allow
        );
        assert_eq!(
            effective_failure(None, Environment::Dev, false),
            FailureDecision::Block
        );
        assert_eq!(
            effective_failure(Some(FailureDecision::StepUp), Environment::Prod, false),
            FailureDecision::StepUp
        );
    }
}
