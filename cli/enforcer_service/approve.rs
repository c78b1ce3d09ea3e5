//! `thoth approve TOKEN` / `thoth deny TOKEN`: the approver's side of a hold, a client
//! of the enforcer service. It sends the approver key to the configured enforcer only
//! (no redirects) and prints the enforcer's answer on stdout.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::args::ResolveArgs;
use crate::domain::Environment;
use crate::net::Failure;
use crate::settings::profile::{Profile, create_if_missing, read_api_key};
use crate::settings::{EnvVars, Secret, SettingsError};

/// Deadline of one approve/deny request, body included.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an approval or denial did not go through (it may quote the enforcer's message).
#[derive(Debug, thiserror::Error)]
enum ApproveError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Tls(#[from] crate::net::TlsError),
    #[error("no enforcer: pass --enforcer-url or set THOTH_ENFORCER_URL")]
    NoEnforcer,
    #[error("{0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Client(reqwest::Error),
    #[error("{}", unreachable(.0))]
    Exchange(Failure),
    #[error(
        "the enforcer answered a redirect ({status}) to {location}: thoth never follows redirects; use the enforcer's own URL"
    )]
    Redirect { status: u16, location: String },
    #[error("the enforcer refused ({status}): {message}")]
    Refused { status: String, message: String },
}

fn unreachable(f: &Failure) -> String {
    match f {
        Failure::Timeout => "cannot reach the enforcer: timed out".to_string(),
        Failure::Connect(e) | Failure::Request(e) => format!("cannot reach the enforcer: {e}"),
        Failure::CutOff { status } => format!("the enforcer's answer ({status}) was cut off"),
        Failure::TooLarge { status, limit } => {
            format!("the enforcer's answer ({status}) is over {limit} bytes")
        }
    }
}

/// Approves (`allow`) or denies a hold.
pub fn approve_or_deny(args: &ResolveArgs, allow: bool) -> ExitCode {
    match send(args, allow) {
        Ok(body) if args.json => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok(body) => {
            println!("{}", resolved_sentence(&body, allow));
            ExitCode::SUCCESS
        }
        Err(e) => {
            // It may carry the enforcer's message.
            tracing::error!("{}", crate::logging::escaped(&e.to_string()));
            ExitCode::from(crate::exit::FAILURE)
        }
    }
}

/// What the approver reads: which call, what now happens to it, and until when.
fn resolved_sentence(hold: &Value, allow: bool) -> String {
    // The tool name and the date come from the enforcer.
    let field = |name: &str| {
        hold[name]
            .as_str()
            .map(|s| crate::logging::escaped(s).to_string())
    };
    let tool = field("tool_name").map_or_else(
        || "the held call".into(),
        |t| format!("the held call to {t}"),
    );
    if allow {
        let until = field("expires_at").map_or_else(String::new, |at| {
            format!(" (the approval holds until {at})")
        });
        format!("approved: {tool} runs when its proxy next asks{until}")
    } else {
        format!("denied: {tool} will not run")
    }
}

fn send(args: &ResolveArgs, allow: bool) -> Result<Value, ApproveError> {
    let env = EnvVars::from_process()?;
    let url = args
        .enforcer_url
        .clone()
        .or_else(|| env.enforcer_url.clone())
        .ok_or(ApproveError::NoEnforcer)?;
    let key = approver_key(&env)?;
    let tls = crate::settings::TlsSettings::from_env(
        &env,
        env.environment.unwrap_or(Environment::Prod),
        None,
    )?
    .client_config()?;
    let action = if allow { "approve" } else { "deny" };
    let runtime = crate::runtime::current_thread().map_err(ApproveError::Runtime)?;
    runtime.block_on(async {
        // No redirects: the approver key goes to this enforcer only.
        let client = crate::net::client_builder(tls)
            .timeout(RESOLVE_TIMEOUT)
            .build()
            .map_err(ApproveError::Client)?;
        let request = client
            .post(format!(
                "{}/v1/holds/{}/{action}",
                url.trim_end_matches('/'),
                args.token
            ))
            .bearer_auth(key.expose())
            .header("x-approver-name", approver_name(args));
        let answer = crate::net::exchange(request, RESOLVE_TIMEOUT, crate::net::SMALL_BODY_LIMIT)
            .await
            .map_err(ApproveError::Exchange)?;
        let status = answer.status;
        if answer.is_redirect() {
            return Err(ApproveError::Redirect {
                status,
                location: answer
                    .location
                    .clone()
                    .unwrap_or_else(|| "(no location)".into()),
            });
        }
        let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(ApproveError::Refused {
                status: reqwest::StatusCode::from_u16(status)
                    .map_or_else(|_| status.to_string(), |s| s.to_string()),
                message: crate::net::bounded(
                    body["error"]["message"].as_str().unwrap_or("no detail"),
                    crate::net::TEXT_LIMIT,
                ),
            })
        }
    })
}

/// The name an approval is recorded under: `--as NAME`, else the account's name (a
/// claim: the approver key is what authorises).
fn approver_name(args: &ResolveArgs) -> String {
    let name = args
        .approver_name
        .clone()
        .or_else(crate::settings::run::account_name)
        .unwrap_or_else(|| "approver".into());
    // A header value: visible ASCII and spaces only.
    name.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(super::store::MAX_APPROVER_NAME)
        .collect()
}

/// The approver key: `THOTH_APPROVER_KEY`, else `~/.thoth/approver_key` (created).
pub(super) fn approver_key(env: &EnvVars) -> Result<Secret, SettingsError> {
    if let Some(key) = &env.approver_key {
        return Ok(key.clone());
    }
    let profile = Profile::locate()?;
    profile.bootstrap()?;
    let path = profile.dir.join("approver_key");
    let fresh = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let created = create_if_missing(&path, fresh.as_bytes(), 0o600)
        .map_err(|e| SettingsError::new(format!("{}: {e}", path.display())))?;
    if created {
        tracing::info!(
            "created a new approver key in {} (mode 0600): approvers give it to `thoth approve` as THOTH_APPROVER_KEY, or paste it into the approval page",
            path.display()
        );
    }
    read_api_key(&path)?.ok_or_else(|| SettingsError::new(format!("{} is empty", path.display())))
}
