//! `thoth run`: settings, engine, server resolution, then the proxy.

use std::process::ExitCode;

use crate::args::RunArgs;
use crate::audit::AuditLog;
use crate::child;
use crate::enforce::local::LocalEngine;
use crate::enforce::remote::RemoteEnforcer;
use crate::exit::config_error;
use crate::proxy::{
    self,
    decide::{Engine, Session},
};
use crate::settings::profile::Profile;
use crate::settings::{EngineChoice, EnvVars, Managed, RunSettings, SettingsError, managed};

/// Settings from every source, with the profile bootstrapped.
pub fn load_settings(
    flags: &crate::args::RunFlags,
    default_agent: Option<&str>,
) -> Result<RunSettings, SettingsError> {
    let env = EnvVars::from_process()?;
    let profile = Profile::locate()?;
    profile.bootstrap()?;
    let settings = resolve_settings(flags, &env, profile, default_agent)?;
    announce(&settings);
    for name in &env.unknown {
        let hint = match crate::settings::env::nearest_known(name) {
            Some(known) => format!("did you mean {known}?"),
            None => "check its spelling".into(),
        };
        tracing::warn!(
            "{} is not a thoth variable (ignored): {hint}",
            crate::logging::escaped(name)
        );
    }
    if flags.api_key.is_some() {
        tracing::warn!(
            "--api-key is visible in process listings: prefer THOTH_API_KEY or THOTH_API_KEY_FILE"
        );
    }
    Ok(settings)
}

/// The settings `thoth run` would use with these flags and this environment, and its
/// refusal to run as this user where it would refuse: reads, never writes (the profile
/// is not created, nothing is announced). `health` checks wrapped entries with it.
pub fn resolve_settings(
    flags: &crate::args::RunFlags,
    env: &EnvVars,
    profile: Profile,
    default_agent: Option<&str>,
) -> Result<RunSettings, SettingsError> {
    let managed = match &env.managed_file {
        Some(path) => Managed::load(path, false)?,
        None => Managed::load(&managed::default_path(), true)?,
    };
    let settings = RunSettings::resolve(flags, env, managed.as_ref(), profile, default_agent)?;
    crate::settings::run::check_identity(
        env,
        managed.as_ref().unwrap_or(&Managed::default()),
        settings.environment,
    )?;
    Ok(settings)
}

/// The first stderr line: which decision point, and why.
fn announce(settings: &RunSettings) {
    match &settings.engine {
        EngineChoice::Local { policy, why } if is_starter(policy) => {
            tracing::warn!(
                "local mode: policy allows every tool (starter policy at {}; see examples/policies for stricter ones) ({why}); enforcement mode {}",
                policy.display(),
                settings.mode.as_str()
            );
        }
        EngineChoice::Local { policy, why } => {
            tracing::info!(
                "local mode: Cedar policy {} ({why}); enforcement mode {}",
                policy.display(),
                settings.mode.as_str()
            );
        }
        EngineChoice::Remote { url, why } => {
            tracing::info!(
                "remote mode: Thoth enforcer {url} ({why}); enforcement mode {}",
                settings.mode.as_str()
            );
        }
    }
}

/// Whether `policy` is still the starter policy the first run wrote (it allows every
/// tool, which the first line must say: nothing else would).
fn is_starter(policy: &std::path::Path) -> bool {
    let starter = crate::settings::profile::STARTER_POLICY.as_bytes();
    // A file of another length is not the starter: never read a large file for this.
    std::fs::metadata(policy).is_ok_and(|m| m.len() == starter.len() as u64)
        && std::fs::read(policy).is_ok_and(|bytes| bytes == starter)
}

/// Why the decision point could not be set up (a configuration error: exit 78).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Policy(#[from] crate::enforce::local::PolicyError),
    #[error(transparent)]
    Client(#[from] crate::enforce::remote::ClientError),
    #[error(transparent)]
    Tls(#[from] crate::net::TlsError),
    #[error("no API key for the Thoth enforcer")]
    NoApiKey,
}

impl EngineError {
    /// The lines to show (a policy error names its place and quotes the line).
    pub fn report(&self) -> Vec<String> {
        match self {
            Self::Policy(e) => e.report(),
            other => vec![other.to_string()],
        }
    }

    /// One line that quotes no file (a policy error by its place only).
    pub fn unquoted(&self) -> String {
        match self {
            Self::Policy(e) => e.place(),
            other => other.to_string(),
        }
    }
}

/// The engine the settings chose.
pub fn load_engine(settings: &RunSettings) -> Result<Engine, EngineError> {
    match &settings.engine {
        EngineChoice::Local { policy, .. } => Ok(Engine::Local(std::sync::Arc::new(
            LocalEngine::load(policy)?,
        ))),
        EngineChoice::Remote { url, .. } => {
            let key = settings.api_key.clone().ok_or(EngineError::NoApiKey)?;
            let tls = settings.tls.client_config()?;
            let remote = RemoteEnforcer::new(
                url,
                key,
                settings.failure_decision,
                settings.enforcer_timeout,
                tls,
            )?;
            Ok(Engine::Remote(std::sync::Arc::new(
                remote.with_aws_certificate_arn(settings.tls.aws_certificate_arn.clone()),
            )))
        }
    }
}

/// Runs `thoth run`.
pub fn run(args: &RunArgs) -> ExitCode {
    let settings = match load_settings(&args.flags, None) {
        Ok(s) => s,
        Err(e) => return config_error(&e),
    };
    let engine = match load_engine(&settings) {
        Ok(e) => e,
        Err(e) => return crate::exit::config_report(&e.report()),
    };
    let Some((program, rest)) = args.command.split_first() else {
        return config_error(&SettingsError::new("no server command after --"));
    };
    let resolved = match child::resolve_command(program) {
        Ok(r) => r,
        Err(not_found) => {
            tracing::error!("{}", crate::logging::escaped(&not_found.to_string()));
            return ExitCode::from(crate::exit::NOT_FOUND);
        }
    };
    let session = Session::new();
    let audit = match AuditLog::start(&settings.profile.audit_dir(), &session.id) {
        Ok(log) => log,
        Err(e) => {
            tracing::error!(
                "cannot open the audit log under {}: {e}",
                settings.profile.audit_dir().display()
            );
            return ExitCode::from(crate::exit::CONFIG);
        }
    };
    let pins = crate::pins::PinSession::open(
        &crate::pins::dir_in(&settings.profile.dir),
        &settings.agent_id,
        &crate::pins::server_key(&args.command),
        &settings.tool_pins,
    );
    let catalog = crate::catalog::Catalog::with_pins(pins);
    proxy::run(settings, engine, session, &resolved, rest, audit, catalog)
}
