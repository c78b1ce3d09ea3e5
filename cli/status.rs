//! `thoth status`: what thoth is configured to do for a user, read from local state
//! only (settings, `~/.thoth/state.json`, the client config files).
//!
//! [`Snapshot`] is shared with `health`, which judges it. Neither command changes
//! anything, creates the profile, or shows a secret: the API key appears as its
//! source only. The text format of [`render_text`] is a public surface (README):
//! one `key: value` line per fact, client files indented below `clients:`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::args::{RunFlags, StatusArgs};
use crate::settings::profile::Profile;
use crate::settings::{EngineChoice, EnvVars, Managed, RunSettings, managed};
use crate::state_file::{State, StateFile, age_minutes};
use crate::wrap::clients::Places;
use crate::wrap::{Detected, detect_all};

/// Everything local about one user's thoth.
pub struct Snapshot {
    /// The account whose profile this is.
    pub user: String,
    pub profile: Profile,
    /// The settings a `thoth run` would use, or why they are invalid.
    pub settings: Result<RunSettings, String>,
    /// The managed settings file, when present.
    pub managed: Option<PathBuf>,
    pub state: State,
    pub clients: Vec<Detected>,
    /// Local mode: whether the policy loads.
    pub policy: Option<PolicyState>,
    /// Wrapped entries checked (see `entry_check`), and why each failing one would not
    /// start: `<client> <file>: server "<name>": <why>`.
    pub entries_checked: usize,
    pub entry_failures: Vec<String>,
}

/// The local policy of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyState {
    /// The starter policy, not created yet: the first `thoth run` writes it, allowing
    /// every tool.
    NotYetCreated,
    /// The policy loads.
    Loads,
    /// It does not: where (what health shows: it runs as root over user files and
    /// quotes none of them, not even through Cedar's messages), the one-line summary
    /// and every line of the report with the quoted source (what status shows).
    Invalid {
        place: String,
        summary: String,
        report: Vec<String>,
    },
}

impl Snapshot {
    /// Gathers the snapshot of `user`, whose home is `home`.
    pub fn gather(user: String, home: &Path, places: &Places) -> Self {
        let profile = Profile {
            dir: home.join(".thoth"),
        };
        let (settings, managed) = admin_settings(&RunFlags::default(), profile.clone());
        let policy = match &settings {
            Ok(RunSettings {
                engine: EngineChoice::Local { policy, .. },
                ..
            }) if *policy == profile.policy_file() && !policy.exists() => {
                Some(PolicyState::NotYetCreated)
            }
            Ok(RunSettings {
                engine: EngineChoice::Local { policy, .. },
                ..
            }) => Some(match crate::enforce::local::LocalEngine::load(policy) {
                Ok(_) => PolicyState::Loads,
                Err(e) => PolicyState::Invalid {
                    place: e.place(),
                    summary: e.to_string(),
                    report: e.report(),
                },
            }),
            _ => None,
        };
        let clients = detect_all(places);
        let mut entries_checked = 0;
        let mut entry_failures = Vec::new();
        for client in &clients {
            for entry in &client.wrapped {
                entries_checked += 1;
                if let Err(why) = crate::entry_check::check(entry, &profile) {
                    // Names and paths come from the user's file.
                    entry_failures.push(
                        crate::logging::escaped(&format!(
                            "{} {}: server {:?}: {why}",
                            client.client,
                            client.path.display(),
                            entry.name
                        ))
                        .to_string(),
                    );
                }
            }
        }
        Self {
            user,
            state: StateFile::in_profile(&profile.dir).read(),
            profile,
            settings,
            managed,
            clients,
            policy,
            entries_checked,
            entry_failures,
        }
    }

    /// Servers per kind, over every detected client file.
    pub fn servers(&self) -> crate::wrap::edit::Survey {
        let mut total = crate::wrap::edit::Survey::default();
        for c in &self.clients {
            total.wrapped += c.survey.wrapped;
            total.unwrapped += c.survey.unwrapped;
            total.remote += c.survey.remote;
            total.skipped += c.survey.skipped;
        }
        total
    }

    /// Minutes since the last heartbeat.
    pub fn heartbeat_age(&self) -> Option<i64> {
        self.state
            .last_heartbeat_utc
            .as_deref()
            .and_then(age_minutes)
    }
}

/// Settings as `thoth run` would resolve them, without the non-root rule (these
/// commands run as root under MDM) and without creating the profile.
pub fn admin_settings(
    flags: &RunFlags,
    profile: Profile,
) -> (Result<RunSettings, String>, Option<PathBuf>) {
    let loaded = (|| {
        let env = EnvVars::from_process()?;
        let managed = match &env.managed_file {
            Some(path) => Managed::load(path, false)?,
            None => Managed::load(&managed::default_path(), true)?,
        };
        let path = managed.as_ref().map(|m| m.path.clone());
        let mut flags = flags.clone();
        flags.agent_id.get_or_insert_with(|| "thoth-admin".into());
        RunSettings::resolve(&flags, &env, managed.as_ref(), profile, None).map(|s| (s, path))
    })();
    match loaded {
        Ok((s, path)) => (Ok(s), path),
        Err(e) => (Err(e.to_string()), None),
    }
}

/// Runs `thoth status`.
pub fn run(args: &StatusArgs) -> ExitCode {
    // As root with another user's HOME, the user's profile is read as that user.
    if let Some(home) = dirs::home_dir()
        && let Some(owner) = crate::as_owner::foreign_owner(&[&home])
    {
        return crate::as_owner::rerun_as(&owner, &home, &[]);
    }
    let Some(home) = dirs::home_dir() else {
        tracing::error!("cannot find the home directory (set HOME)");
        return ExitCode::from(crate::exit::FAILURE);
    };
    let user = crate::settings::run::account_name().unwrap_or_default();
    let snapshot = Snapshot::gather(user, &home, &Places::current(home.clone()));
    if args.json {
        println!("{}", render_json(&snapshot));
    } else {
        print!("{}", render_text(&snapshot));
    }
    if snapshot.settings.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::FAILURE)
    }
}

fn engine_facts(
    s: &RunSettings,
    policy_state: Option<&PolicyState>,
) -> (&'static str, String, String) {
    match &s.engine {
        EngineChoice::Local { policy, why }
            if policy_state == Some(&PolicyState::NotYetCreated) =>
        {
            (
                "local",
                format!(
                    "starter policy, not created yet: the first thoth run writes {}, allowing every tool",
                    policy.display()
                ),
                why.clone(),
            )
        }
        EngineChoice::Local { policy, why } => ("local", policy.display().to_string(), why.clone()),
        EngineChoice::Remote { url, why } => ("remote", url.clone(), why.clone()),
    }
}

fn registration_text(state: &State) -> String {
    match &state.registration {
        Some(r) => format!(
            "registered {} at {} (endpoint {}, agents {})",
            r.registered_at,
            r.govapi_url,
            r.endpoint_id,
            r.agent_ids.join(", ")
        ),
        None => "not registered".into(),
    }
}

/// The stable text report.
pub fn render_text(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut line = |key: &str, value: String| {
        out.push_str(&format!("{:<18}{value}\n", format!("{key}:")));
    };
    line("thoth", env!("CARGO_PKG_VERSION").to_string());
    line("profile", s.profile.dir.display().to_string());
    line(
        "managed settings",
        s.managed
            .as_ref()
            .map_or("none".into(), |p| p.display().to_string()),
    );
    match &s.settings {
        Ok(set) => {
            let (mode, target, why) = engine_facts(set, s.policy.as_ref());
            line("tenant", set.tenant_id.clone());
            line("user", non_empty(&set.user_id));
            line("endpoint", set.endpoint_id.clone());
            line("environment", set.environment.as_str().into());
            line("decision point", format!("{mode} {target} ({why})"));
            if let Some(PolicyState::Invalid { report, .. }) = &s.policy {
                // The report's lines under the key, aligned with the values.
                let quoted: Vec<String> = report
                    .iter()
                    .map(|shown| format!("{:18}{}", "", crate::logging::escaped(shown)))
                    .collect();
                line("policy", format!("INVALID\n{}", quoted.join("\n")));
            }
            line("enforcement mode", set.mode.as_str().into());
            line("api key", api_key_source(set));
            line(
                "tls",
                format!(
                    "verify={} ca_bundle={} pins={} aws_attestation={}",
                    set.tls.verify,
                    set.tls
                        .ca_bundle
                        .as_ref()
                        .map_or("none".into(), |p| p.display().to_string()),
                    set.tls.pins.len(),
                    set.tls.aws_certificate_arn.as_ref().map_or("off", |_| "on"),
                ),
            );
            line(
                "govapi",
                set.govapi.as_ref().map_or("off".into(), |g| {
                    format!(
                        "{} (heartbeat every {} s, enrollment {})",
                        g.url,
                        g.heartbeat_interval.as_secs(),
                        g.enrollment
                    )
                }),
            );
        }
        Err(e) => line("settings", format!("ERROR: {e}")),
    }
    line("registration", registration_text(&s.state));
    line(
        "last heartbeat",
        match (&s.state.last_heartbeat_utc, s.heartbeat_age()) {
            (Some(at), Some(age)) => format!("{at} ({age} min ago)"),
            _ => "never".into(),
        },
    );
    let servers = s.servers();
    line(
        "clients",
        format!(
            "{}: {} wrapped, {} unwrapped, {} remote, {} skipped",
            crate::wording::count(s.clients.len(), "file"),
            servers.wrapped,
            servers.unwrapped,
            servers.remote,
            servers.skipped
        ),
    );
    for c in &s.clients {
        let detail = match &c.error {
            Some(e) => format!("error: {e}"),
            None => format!(
                "wrapped {}, unwrapped {}, remote {}, skipped {}",
                c.survey.wrapped, c.survey.unwrapped, c.survey.remote, c.survey.skipped
            ),
        };
        out.push_str(&format!(
            "  {:<16}{}  {detail}\n",
            c.client,
            c.path.display()
        ));
    }
    let mut line = |key: &str, value: String| {
        out.push_str(&format!("{:<18}{value}\n", format!("{key}:")));
    };
    line("audit log", s.profile.audit_dir().display().to_string());
    line(
        "audit verified",
        match &s.state.audit_verification {
            Some(v) if v.ok => format!(
                "{} ok ({}, {})",
                v.at,
                crate::wording::count(v.files, "file"),
                crate::wording::count(v.records, "record")
            ),
            Some(v) => format!("{} BROKEN: {}", v.at, v.error.clone().unwrap_or_default()),
            None => "never (run thoth audit verify)".into(),
        },
    );
    out
}

fn non_empty(s: &str) -> String {
    if s.is_empty() {
        "(not set)".into()
    } else {
        s.to_string()
    }
}

/// Where the key comes from, never the key.
fn api_key_source(s: &RunSettings) -> String {
    match s.api_key_source {
        "file" => format!("file {}", s.profile.api_key_file().display()),
        "env" => "env THOTH_API_KEY".into(),
        "flag" => "flag --api-key".into(),
        _ => "none".into(),
    }
}

/// The same facts as one JSON object.
pub fn render_json(s: &Snapshot) -> Value {
    let settings = match &s.settings {
        Ok(set) => {
            let (mode, target, why) = engine_facts(set, s.policy.as_ref());
            let policy_error = match &s.policy {
                Some(PolicyState::Invalid { summary, .. }) => Some(summary),
                _ => None,
            };
            json!({
                "tenant_id": set.tenant_id,
                "user_id": set.user_id,
                "endpoint_id": set.endpoint_id,
                "environment": set.environment.as_str(),
                "decision_point": {"kind": mode, "target": target, "why": why,
                    "policy_error": policy_error},
                "enforcement_mode": set.mode.as_str(),
                "api_key_source": set.api_key_source,
                "tls": {
                    "verify": set.tls.verify,
                    "ca_bundle": set.tls.ca_bundle,
                    "pins": set.tls.pins.len(),
                    "aws_attestation": set.tls.aws_certificate_arn.is_some(),
                },
                "govapi": set.govapi.as_ref().map(|g| json!({
                    "url": g.url,
                    "heartbeat_interval_seconds": g.heartbeat_interval.as_secs(),
                    "enrollment": g.enrollment,
                })),
            })
        }
        Err(e) => json!({"error": e}),
    };
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "profile": s.profile.dir,
        "managed_settings": s.managed,
        "settings": settings,
        "registration": s.state.registration,
        "last_heartbeat_utc": s.state.last_heartbeat_utc,
        "heartbeat_age_minutes": s.heartbeat_age(),
        "clients": s.clients,
        "servers": s.servers(),
        "audit_dir": s.profile.audit_dir(),
        "audit_verification": s.state.audit_verification,
    })
}
