//! The machine-wide managed settings file, placed by MDM and writable only by root.
//!
//! Every key it sets wins over flags, variables and the profile, and a flag or variable
//! that would weaken it is refused at startup (not silently overridden), so an
//! administrator sees exactly why a launch failed. Unknown keys are errors: a typo in a
//! security control must not go unnoticed.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::SettingsError;
use super::env::{check_tenant, check_url};
use crate::domain::{DenyStyle, Environment, FailureDecision, Mode};

/// The managed file's path on this OS.
pub fn default_path() -> PathBuf {
    if cfg!(target_os = "macos") {
        PathBuf::from("/Library/Application Support/Thoth/managed.json")
    } else if cfg!(windows) {
        let base = std::env::var_os("ProgramData").unwrap_or_else(|| "C:\\ProgramData".into());
        PathBuf::from(base).join("Thoth").join("managed.json")
    } else {
        PathBuf::from("/etc/thoth/managed.json")
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManagedFile {
    tenant_id: Option<String>,
    environment: Option<String>,
    enforcement_mode: Option<String>,
    enforcer_url: Option<String>,
    require_remote_enforcer: Option<bool>,
    policy_file: Option<PathBuf>,
    failure_decision: Option<String>,
    allow_fallback_override: Option<bool>,
    /// Resources, prompts and completions go to the enforcer too (`true` cannot be
    /// turned off by a variable).
    enforcer_govern_methods: Option<bool>,
    require_non_root: Option<bool>,
    tls_verify: Option<bool>,
    deny_style: Option<String>,
    /// The action per detector class on the server's answers (`secret=redact,…`):
    /// each class it names wins over a flag or variable.
    inspect_results: Option<String>,
    api_key_file: Option<PathBuf>,
    govapi_url: Option<String>,
    api_url: Option<String>,
    step_up_hold_seconds: Option<u64>,
    /// The OTLP collector audit events go to (`https://…`), or `"off"`: either way the
    /// user's `OTEL_*` endpoints are ignored.
    otlp_endpoint: Option<String>,
    /// The oldest thoth that understands this file (`"0.2.0"`): an older one refuses it,
    /// and names that version when the file holds a key it does not know.
    min_thoth_version: Option<String>,
    /// Fleet-approved tool-definition pins (`crate::pins`).
    tool_pins: Option<Vec<ManagedPin>>,
}

/// Tool digests an administrator approved for one agent (and, when `server` is set,
/// one server command as `crate::pins::server_key` writes it): they win over the
/// user's pins for the tools they name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedPin {
    pub agent_id: String,
    #[serde(default)]
    pub server: Option<String>,
    /// Tool name → `sha256:<64 lowercase hex digits>` (what `thoth pins list` shows).
    pub tools: std::collections::BTreeMap<String, String>,
}

/// Whether `text` is a pin digest: `sha256:` and 64 lowercase hex digits.
pub fn is_pin_digest(text: &str) -> bool {
    text.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// `major.minor.patch` of a version string (a pre-release or build suffix after `-` or
/// `+` is not compared), or `None` when it is not one.
fn version_of(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.split(['-', '+']).next().unwrap_or(text);
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let version = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(version)
}

/// What the error about a file this release cannot read adds about versions.
fn version_hint(bytes: &[u8]) -> String {
    let declared = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("min_thoth_version")?.as_str().map(str::to_string));
    let running = env!("CARGO_PKG_VERSION");
    let newer = |needed: &str| match (version_of(needed), version_of(running)) {
        (Some(wanted), Some(have)) => wanted > have,
        _ => false,
    };
    match declared {
        Some(needed) if newer(&needed) => format!(
            "the file needs thoth {} or later and this is thoth {running}: upgrade thoth",
            crate::logging::escaped(&needed)
        ),
        Some(needed) => format!(
            "the file says it needs thoth {} and this is thoth {running}, which does not know the key: check its spelling",
            crate::logging::escaped(&needed)
        ),
        None => format!(
            "this is thoth {running}; a newer release may know the key (a file can name the release it needs with \"min_thoth_version\")"
        ),
    }
}

/// Validated managed settings.
#[derive(Debug, Default, Clone)]
pub struct Managed {
    pub path: PathBuf,
    pub tenant_id: Option<String>,
    pub environment: Option<Environment>,
    /// The weakest enforcement mode allowed (a floor).
    pub enforcement_mode: Option<Mode>,
    pub enforcer_url: Option<String>,
    pub require_remote_enforcer: bool,
    pub policy_file: Option<PathBuf>,
    pub failure_decision: Option<FailureDecision>,
    pub allow_fallback_override: Option<bool>,
    pub enforcer_govern_methods: Option<bool>,
    pub require_non_root: Option<bool>,
    pub tls_verify: Option<bool>,
    pub deny_style: Option<DenyStyle>,
    pub inspect_results: Option<crate::inspect::actions::ResultActions>,
    pub api_key_file: Option<PathBuf>,
    pub govapi_url: Option<String>,
    pub api_url: Option<String>,
    pub step_up_hold_seconds: Option<u64>,
    pub tool_pins: Vec<ManagedPin>,
    pub otlp: Option<super::otlp::ManagedOtlp>,
}

impl Managed {
    /// Loads the file at `path` if it exists. `trusted_owner` checks that root owns it
    /// and nobody else can write it (skipped for the debug-build test override).
    pub fn load(path: &Path, trusted_owner: bool) -> Result<Option<Self>, SettingsError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(SettingsError::new(format!(
                    "{}: cannot read managed settings: {e}",
                    path.display()
                )));
            }
        };
        if trusted_owner {
            check_owner(path)?;
        }
        let file: ManagedFile = serde_json::from_slice(&bytes).map_err(|e| {
            // Unknown keys stay refused (fail closed), with the release that knows them.
            let hint = if e.to_string().starts_with("unknown field") {
                format!("; {}", version_hint(&bytes))
            } else {
                String::new()
            };
            SettingsError::new(format!(
                "{}: invalid managed settings at line {} column {}: {e}{hint}",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        if let Some(needed) = &file.min_thoth_version {
            let running = env!("CARGO_PKG_VERSION");
            let Some(wanted) = version_of(needed) else {
                return Err(SettingsError::new(format!(
                    "{}: min_thoth_version {needed:?} is not valid: use major.minor.patch, e.g. \"0.2.0\"",
                    path.display()
                )));
            };
            // This release's own version always parses; were it not to, refuse.
            if version_of(running).is_none_or(|have| have < wanted) {
                return Err(SettingsError::new(format!(
                    "{}: the file needs thoth {needed} or later and this is thoth {running}: upgrade thoth",
                    path.display()
                )));
            }
        }
        let bad = |key: &str, value: &str, fix: &str| {
            SettingsError::new(format!(
                "{}: {key} {value:?} is not valid: {fix}",
                path.display()
            ))
        };
        // One string table per setting (crate::domain): a name is never spelled twice.
        macro_rules! choice {
            ($key:literal, $value:expr, $ty:ty) => {
                match &$value {
                    Some(v) => {
                        Some(<$ty>::parse(v).ok_or_else(|| {
                            bad($key, v, &format!("use one of {}", <$ty>::names()))
                        })?)
                    }
                    None => None,
                }
            };
        }
        if let Some(t) = &file.tenant_id {
            check_tenant(t).map_err(|e| SettingsError::new(format!("{}: {e}", path.display())))?;
        }
        for (key, url) in [
            ("enforcer_url", &file.enforcer_url),
            ("govapi_url", &file.govapi_url),
            ("api_url", &file.api_url),
        ] {
            if let Some(u) = url {
                check_url(u).map_err(|why| bad(key, &super::env::without_credentials(u), why))?;
            }
        }
        if let Some(h) = file.step_up_hold_seconds
            && !(1..=600).contains(&h)
        {
            return Err(bad("step_up_hold_seconds", &h.to_string(), "use 1 to 600"));
        }
        let otlp = match file.otlp_endpoint.as_deref() {
            None => None,
            Some("off") => Some(super::otlp::ManagedOtlp::Off),
            Some(u) => {
                check_url(u).map_err(|why| {
                    bad("otlp_endpoint", &super::env::without_credentials(u), why)
                })?;
                Some(super::otlp::ManagedOtlp::Fixed(u.to_string()))
            }
        };
        let tool_pins = file.tool_pins.unwrap_or_default();
        for (i, pin) in tool_pins.iter().enumerate() {
            if let Some((tool, digest)) = pin.tools.iter().find(|(_, d)| !is_pin_digest(d)) {
                return Err(bad(
                    &format!("tool_pins[{i}].tools.{}", crate::logging::escaped(tool)),
                    digest,
                    "use the digest `thoth pins list` shows: sha256: and 64 lowercase hex digits",
                ));
            }
        }
        Ok(Some(Self {
            path: path.to_path_buf(),
            tenant_id: file.tenant_id,
            environment: choice!("environment", file.environment, Environment),
            enforcement_mode: choice!("enforcement_mode", file.enforcement_mode, Mode),
            enforcer_url: file.enforcer_url,
            require_remote_enforcer: file.require_remote_enforcer.unwrap_or(false),
            policy_file: file.policy_file,
            failure_decision: choice!("failure_decision", file.failure_decision, FailureDecision),
            allow_fallback_override: file.allow_fallback_override,
            enforcer_govern_methods: file.enforcer_govern_methods,
            require_non_root: file.require_non_root,
            tls_verify: file.tls_verify,
            deny_style: choice!("deny_style", file.deny_style, DenyStyle),
            inspect_results: match &file.inspect_results {
                Some(spec) => Some(
                    crate::inspect::actions::ResultActions::parse(spec)
                        .map_err(|why| bad("inspect_results", spec, &why))?,
                ),
                None => None,
            },
            api_key_file: file.api_key_file,
            govapi_url: file.govapi_url,
            api_url: file.api_url,
            step_up_hold_seconds: file.step_up_hold_seconds,
            tool_pins,
            otlp,
        }))
    }

    /// Refusal message for a setting that would weaken `key`.
    pub fn refuse(&self, what: &str, key: &str, managed_value: &str) -> SettingsError {
        SettingsError::new(format!(
            "{what} is refused: the managed settings file {} sets {key} = {managed_value}, which it would weaken; remove the flag or variable",
            self.path.display()
        ))
    }
}

#[cfg(unix)]
fn check_owner(path: &Path) -> Result<(), SettingsError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| SettingsError::new(format!("{}: {e}", path.display())))?;
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(SettingsError::new(format!(
            "{}: managed settings must be owned by root and writable only by root (chown root {0}; chmod 644 {0})",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner(_path: &Path) -> Result<(), SettingsError> {
    // %ProgramData%\Thoth is created by the MDM installer with an ACL that only
    // Administrators can write; thoth does not re-check ACLs here.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::version_of;

    #[test]
    fn versions_are_three_numbers() {
        assert_eq!(version_of("0.2.10"), Some((0, 2, 10)));
        assert_eq!(version_of("0.2.0-rc.1"), Some((0, 2, 0)));
        assert_eq!(version_of("1.0.0+build.5"), Some((1, 0, 0)));
        assert!(version_of("0.10.0") > version_of("0.9.9"));
        for bad in ["", "1", "1.2", "1.2.3.4", "1.x.3", "v1.2.3", "-1.2.3"] {
            assert_eq!(version_of(bad), None, "{bad}");
        }
    }
}
