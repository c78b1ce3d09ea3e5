//! Every `THOTH_*` variable, read once at startup and validated.
//!
//! A malformed or out-of-range value is a startup error that names the variable and
//! the accepted values; nothing falls back silently to a default. Unknown `THOTH_*`
//! names get a warning naming the nearest known one (a typo should not go unnoticed), and
//! one whose nearest name decides the policy, the enforcer or a key stops thoth. Reading goes through a lookup
//! function so the rules are unit-tested without touching the process environment.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use super::{Secret, SettingsError};
use crate::domain::{DenyStyle, Environment, FailureDecision};

/// Variables a debug build honours for tests only.
#[cfg(debug_assertions)]
const DEBUG_ONLY: &[&str] = &[
    "THOTH_MANAGED_SETTINGS_FILE",
    "THOTH_TEST_UID",
    "THOTH_TEST_WRAP_INTERFERE",
    "THOTH_TEST_HOMES_DIR",
    "THOTH_TEST_PROGRESS_MS",
];
#[cfg(not(debug_assertions))]
const DEBUG_ONLY: &[&str] = &[];

/// Every variable thoth reads.
pub const KNOWN: &[&str] = &[
    "THOTH_TENANT_ID",
    "THOTH_API_KEY",
    "THOTH_API_KEY_FILE",
    "THOTH_ENFORCER_URL",
    "THOTH_ENFORCER_FAILURE_DECISION",
    "THOTH_ENFORCER_ALLOW_FALLBACK_OVERRIDE",
    "THOTH_ENFORCER_GOVERN_METHODS",
    "THOTH_USER_ID",
    "THOTH_GOVAPI_URL",
    "THOTH_GOV_API_URL",
    "THOTH_APEX_DOMAIN",
    "THOTH_GOVAPI_BEARER_TOKEN",
    "THOTH_GOVAPI_API_KEY",
    "THOTH_ENDPOINT_ID",
    "THOTH_ENROLLMENT_SOURCE",
    "THOTH_ENV",
    "THOTH_HEARTBEAT_INTERVAL_SECONDS",
    "THOTH_TLS_VERIFY",
    "THOTH_TLS_CA_BUNDLE",
    "THOTH_TLS_PINNED_CERT_SHA256",
    "THOTH_TLS_PIN_CACHE_SECONDS",
    "THOTH_TLS_REQUIRE_AWS_BACKED_CERTS",
    "THOTH_TLS_AWS_ACM_CERT_ARN",
    "THOTH_TLS_AWS_PRIVATE_CA_ARN",
    "THOTH_REQUIRE_NON_ROOT",
    "THOTH_EXPECTED_PROXY_USER",
    "THOTH_EXPECTED_PROXY_UID",
    "THOTH_POLICY_FILE",
    "THOTH_API_URL",
    "THOTH_EVENT_INGEST_TOKEN",
    "THOTH_STEP_UP_HOLD_SECONDS",
    "THOTH_DENY_STYLE",
    "THOTH_INSPECT_RESULTS",
    "THOTH_APPROVER_KEY",
    "THOTH_DATABASE_URL",
    "THOTH_LOG",
    "THOTH_CHILD_TERM_DELAY_MS",
    "THOTH_ENFORCER_TIMEOUT_MS",
    "THOTH_STEP_UP_POLL_MS",
    "THOTH_TELEMETRY",
    "THOTH_CHILD_KILL_DELAY_MS",
    "THOTH_SERVER_STALL_WARN_MS",
    "THOTH_USER_WORK_TIMEOUT_MS",
];

/// The known name an unknown `THOTH_…` variable most likely meant: the closest within
/// two edits (Damerau-Levenshtein: a swap counts once), else the shortest known name it
/// is a prefix of (`THOTH_POLICY` → `THOTH_POLICY_FILE`).
pub fn nearest_known(name: &str) -> Option<&'static str> {
    let close = KNOWN
        .iter()
        .map(|known| (strsim::damerau_levenshtein(name, known), *known))
        .filter(|(distance, _)| *distance <= 2)
        .min();
    close.map(|(_, known)| known).or_else(|| {
        KNOWN
            .iter()
            .filter(|known| name.len() > "THOTH_".len() && known.starts_with(name))
            .min_by_key(|known| known.len())
            .copied()
    })
}

/// Whether a misspelling of `known` changes what is decided: the policy, the enforcer
/// or a key. thoth then refuses to start rather than run the starter policy, or local
/// mode, in its place.
pub fn decides(known: &str) -> bool {
    known.contains("POLICY")
        || known.contains("ENFORCER")
        || known.ends_with("_KEY")
        || known.ends_with("_KEY_FILE")
}

/// The validated environment.
#[derive(Debug, Default, Clone)]
pub struct EnvVars {
    pub tenant_id: Option<String>,
    pub api_key: Option<Secret>,
    pub api_key_file: Option<PathBuf>,
    pub enforcer_url: Option<String>,
    pub failure_decision: Option<FailureDecision>,
    pub allow_fallback_override: Option<bool>,
    /// `THOTH_ENFORCER_GOVERN_METHODS`: resources, prompts and completions go to the
    /// enforcer too.
    pub enforcer_govern_methods: Option<bool>,
    pub user_id: Option<String>,
    pub govapi_url: Option<String>,
    pub apex_domain: Option<String>,
    pub govapi_bearer_token: Option<Secret>,
    pub govapi_api_key: Option<Secret>,
    pub endpoint_id: Option<String>,
    pub enrollment_source: Option<String>,
    pub environment: Option<Environment>,
    pub heartbeat_interval: Option<Duration>,
    pub tls_verify: Option<bool>,
    pub tls_ca_bundle: Option<PathBuf>,
    pub tls_pins: Vec<[u8; 32]>,
    pub tls_pin_cache: Option<Duration>,
    pub tls_require_aws: Option<bool>,
    pub tls_acm_cert_arn: Option<String>,
    pub tls_private_ca_arn: Option<String>,
    pub require_non_root: Option<bool>,
    pub expected_proxy_user: Option<String>,
    pub expected_proxy_uid: Option<u32>,
    pub policy_file: Option<PathBuf>,
    pub api_url: Option<String>,
    pub event_ingest_token: Option<Secret>,
    pub step_up_hold: Option<Duration>,
    pub deny_style: Option<DenyStyle>,
    /// `THOTH_INSPECT_RESULTS`: the action per detector class on the server's answers.
    pub inspect_results: Option<crate::inspect::actions::ResultActions>,
    pub approver_key: Option<Secret>,
    /// `thoth enforcer serve`'s state database (it may hold a password: a secret).
    pub database_url: Option<Secret>,
    pub child_term_delay: Option<Duration>,
    pub child_kill_delay: Option<Duration>,
    pub server_stall_warn: Option<Duration>,
    pub user_work_timeout: Option<Duration>,
    pub enforcer_timeout: Option<Duration>,
    pub step_up_poll: Option<Duration>,
    pub telemetry: Option<bool>,
    pub managed_file: Option<PathBuf>,
    pub test_uid: Option<u32>,
    /// wrap-config plays a client writing the file on its first N attempts (tests).
    pub test_wrap_interfere: usize,
    /// `health --user/--all-users` look for homes here (tests).
    pub test_homes_dir: Option<PathBuf>,
    /// How often doctor says it is still waiting, off a terminal (tests only).
    pub test_progress: Option<Duration>,
    /// Unknown `THOTH_*` names seen (reported as warnings).
    pub unknown: Vec<String>,
}

struct VarReader<'a> {
    get: &'a dyn Fn(&str) -> Option<OsString>,
}

impl VarReader<'_> {
    /// The variable as UTF-8 text; unset and empty are the same.
    fn text(&self, name: &str) -> Result<Option<String>, SettingsError> {
        match (self.get)(name) {
            None => Ok(None),
            Some(value) => match value.into_string() {
                Ok(s) if s.is_empty() => Ok(None),
                Ok(s) => Ok(Some(s)),
                Err(_) => Err(SettingsError::new(format!("{name} is not valid UTF-8"))),
            },
        }
    }

    fn choice<T: Copy>(
        &self,
        name: &str,
        options: &[(&str, T)],
    ) -> Result<Option<T>, SettingsError> {
        let Some(value) = self.text(name)? else {
            return Ok(None);
        };
        options
            .iter()
            .find(|(text, _)| *text == value)
            .map(|(_, v)| Some(*v))
            .ok_or_else(|| {
                let accepted: Vec<&str> = options.iter().map(|(t, _)| *t).collect();
                invalid(name, &value, &format!("use one of {}", accepted.join(", ")))
            })
    }

    fn flag(&self, name: &str) -> Result<Option<bool>, SettingsError> {
        let Some(value) = self.text(name)? else {
            return Ok(None);
        };
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(invalid(name, &value, "use true or false")),
        }
    }

    fn number(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, SettingsError> {
        let Some(value) = self.text(name)? else {
            return Ok(None);
        };
        match value.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(invalid(
                name,
                &value,
                &format!("use a whole number from {min} to {max}"),
            )),
        }
    }

    fn seconds(&self, name: &str, min: u64, max: u64) -> Result<Option<Duration>, SettingsError> {
        Ok(self.number(name, min, max)?.map(Duration::from_secs))
    }

    fn millis(&self, name: &str, min: u64, max: u64) -> Result<Option<Duration>, SettingsError> {
        Ok(self.number(name, min, max)?.map(Duration::from_millis))
    }

    fn url(&self, name: &str) -> Result<Option<String>, SettingsError> {
        let Some(value) = self.text(name)? else {
            return Ok(None);
        };
        check_url(&value).map_err(|why| invalid(name, &without_credentials(&value), why))?;
        Ok(Some(value.trim_end_matches('/').to_string()))
    }

    fn path(&self, name: &str) -> Result<Option<PathBuf>, SettingsError> {
        Ok(self.text(name)?.map(PathBuf::from))
    }

    fn secret(&self, name: &str) -> Result<Option<Secret>, SettingsError> {
        // Never echo a secret's value, even when it is malformed.
        match (self.get)(name) {
            None => Ok(None),
            Some(value) => match value.into_string() {
                Ok(s) if s.trim().is_empty() => Ok(None),
                Ok(s) => Ok(Some(Secret::new(s.trim().to_string()))),
                Err(_) => Err(SettingsError::new(format!("{name} is not valid UTF-8"))),
            },
        }
    }

    fn arn(&self, name: &str) -> Result<Option<String>, SettingsError> {
        let Some(value) = self.text(name)? else {
            return Ok(None);
        };
        if is_arn(&value) {
            Ok(Some(value))
        } else {
            Err(invalid(
                name,
                &value,
                "use an ARN such as arn:aws:acm:us-east-1:123456789012:certificate/<id>",
            ))
        }
    }
}

fn invalid(name: &str, value: &str, fix: &str) -> SettingsError {
    SettingsError::new(format!("{name}={value:?} is not valid: {fix}"))
}

/// A URL as a message may quote it: credentials before an `@` in its authority are
/// replaced by `…` (a refused URL is refused precisely for carrying them).
pub fn without_credentials(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest.get(..authority_end).and_then(|a| a.rfind('@')) {
        Some(at) => {
            let prefix = if scheme.is_empty() {
                String::new()
            } else {
                format!("{scheme}://")
            };
            format!("{prefix}…@{}", &rest[at + 1..])
        }
        None => url.to_string(),
    }
}

/// http(s) URL with a host, no whitespace.
pub fn check_url(value: &str) -> Result<(), &'static str> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or("use an http:// or https:// URL")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || value.chars().any(char::is_whitespace) || host.contains('@') {
        return Err("use an http:// or https:// URL with a host (no credentials, no spaces)");
    }
    Ok(())
}

/// A tenant id goes into a host name: `[a-z0-9-]`, 1 to 63 characters.
pub fn check_tenant(value: &str) -> Result<(), String> {
    if !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-')
    {
        Ok(())
    } else {
        Err(format!(
            "tenant id {value:?} is not valid: use 1 to 63 characters of a-z, 0-9 and '-' (not at either end)"
        ))
    }
}

/// `arn:<partition>:<service>:<region>:<account>:<resource>`.
fn is_arn(value: &str) -> bool {
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, service, _region, account, resource]
        if partition.starts_with("aws")
            && !service.is_empty()
            && (account.is_empty() || (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())))
            && !resource.is_empty())
}

/// `sha256:<64 hex>` or 64 hex digits, any case.
fn parse_pins(name: &str, value: &str) -> Result<Vec<[u8; 32]>, SettingsError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pin| {
            let hex_part = pin
                .strip_prefix("sha256:")
                .or_else(|| pin.strip_prefix("SHA256:"))
                .unwrap_or(pin)
                .replace(':', "");
            let mut out = [0u8; 32];
            hex::decode_to_slice(&hex_part, &mut out)
                .map(|()| out)
                .map_err(|_| {
                    invalid(
                        name,
                        pin,
                        "use comma-separated sha256:<64 hex digits> fingerprints",
                    )
                })
        })
        .collect()
}

impl EnvVars {
    /// Reads and validates every variable through `get`; `names` lists the
    /// environment's variable names (for the unknown-name warning).
    pub fn read(
        get: &dyn Fn(&str) -> Option<OsString>,
        names: impl IntoIterator<Item = String>,
    ) -> Result<Self, SettingsError> {
        let r = VarReader { get };
        let tenant_id = r.text("THOTH_TENANT_ID")?;
        if let Some(t) = &tenant_id {
            check_tenant(t).map_err(|e| SettingsError::new(format!("THOTH_TENANT_ID: {e}")))?;
        }
        let apex_domain = r.text("THOTH_APEX_DOMAIN")?;
        if let Some(apex) = &apex_domain
            && !apex
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            return Err(invalid(
                "THOTH_APEX_DOMAIN",
                apex,
                "use a domain name such as aten.security",
            ));
        }
        if let Some(filter) = r.text("THOTH_LOG")? {
            tracing_subscriber::EnvFilter::try_new(&filter).map_err(|_| {
                invalid(
                    "THOTH_LOG",
                    &filter,
                    "use a level (error, warn, info, debug, trace) or a tracing filter",
                )
            })?;
        }
        let tls_pins = match r.text("THOTH_TLS_PINNED_CERT_SHA256")? {
            Some(v) => parse_pins("THOTH_TLS_PINNED_CERT_SHA256", &v)?,
            None => Vec::new(),
        };
        let govapi_url = match r.url("THOTH_GOVAPI_URL")? {
            Some(url) => Some(url),
            None => r.url("THOTH_GOV_API_URL")?,
        };
        let enrollment_source = r.choice(
            "THOTH_ENROLLMENT_SOURCE",
            &[
                ("jamf", "jamf"),
                ("intune", "intune"),
                ("manual", "manual"),
                ("unmanaged", "unmanaged"),
            ],
        )?;
        let debug_only = |name: &str| cfg!(debug_assertions) && DEBUG_ONLY.contains(&name);
        let managed_file = if debug_only("THOTH_MANAGED_SETTINGS_FILE") {
            r.path("THOTH_MANAGED_SETTINGS_FILE")?
        } else {
            None
        };
        let test_uid = if debug_only("THOTH_TEST_UID") {
            r.number("THOTH_TEST_UID", 0, u64::from(u32::MAX))?
                .and_then(|n| u32::try_from(n).ok())
        } else {
            None
        };
        let test_wrap_interfere = if debug_only("THOTH_TEST_WRAP_INTERFERE") {
            r.number("THOTH_TEST_WRAP_INTERFERE", 0, 100)?
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0)
        } else {
            0
        };
        let test_homes_dir = if debug_only("THOTH_TEST_HOMES_DIR") {
            r.path("THOTH_TEST_HOMES_DIR")?
        } else {
            None
        };
        let test_progress = if debug_only("THOTH_TEST_PROGRESS_MS") {
            r.millis("THOTH_TEST_PROGRESS_MS", 10, 60_000)?
        } else {
            None
        };
        let mut unknown: Vec<String> = names
            .into_iter()
            .filter(|n| {
                n.starts_with("THOTH_")
                    && !KNOWN.contains(&n.as_str())
                    && !DEBUG_ONLY.contains(&n.as_str())
            })
            .collect();
        unknown.sort();
        if let Some((name, meant)) = unknown
            .iter()
            .find_map(|n| nearest_known(n).filter(|k| decides(k)).map(|k| (n, k)))
        {
            return Err(SettingsError::new(format!(
                "{name} is not a thoth variable: did you mean {meant}? (thoth does not start: a misspelled policy, enforcer or key variable would silently decide with other settings)"
            )));
        }
        Ok(Self {
            tenant_id,
            api_key: r.secret("THOTH_API_KEY")?,
            api_key_file: r.path("THOTH_API_KEY_FILE")?,
            enforcer_url: r.url("THOTH_ENFORCER_URL")?,
            failure_decision: r
                .choice("THOTH_ENFORCER_FAILURE_DECISION", FailureDecision::TABLE)?,
            allow_fallback_override: r.flag("THOTH_ENFORCER_ALLOW_FALLBACK_OVERRIDE")?,
            enforcer_govern_methods: r.flag("THOTH_ENFORCER_GOVERN_METHODS")?,
            user_id: r.text("THOTH_USER_ID")?,
            govapi_url,
            apex_domain,
            govapi_bearer_token: r.secret("THOTH_GOVAPI_BEARER_TOKEN")?,
            govapi_api_key: r.secret("THOTH_GOVAPI_API_KEY")?,
            endpoint_id: r.text("THOTH_ENDPOINT_ID")?,
            enrollment_source: enrollment_source.map(str::to_string),
            environment: r.choice("THOTH_ENV", Environment::TABLE)?,
            heartbeat_interval: r.seconds("THOTH_HEARTBEAT_INTERVAL_SECONDS", 1, 86_400)?,
            tls_verify: r.flag("THOTH_TLS_VERIFY")?,
            tls_ca_bundle: r.path("THOTH_TLS_CA_BUNDLE")?,
            tls_pins,
            tls_pin_cache: r.seconds("THOTH_TLS_PIN_CACHE_SECONDS", 1, 86_400)?,
            tls_require_aws: r.flag("THOTH_TLS_REQUIRE_AWS_BACKED_CERTS")?,
            tls_acm_cert_arn: r.arn("THOTH_TLS_AWS_ACM_CERT_ARN")?,
            tls_private_ca_arn: r.arn("THOTH_TLS_AWS_PRIVATE_CA_ARN")?,
            require_non_root: r.flag("THOTH_REQUIRE_NON_ROOT")?,
            expected_proxy_user: r.text("THOTH_EXPECTED_PROXY_USER")?,
            expected_proxy_uid: r
                .number("THOTH_EXPECTED_PROXY_UID", 0, u64::from(u32::MAX))?
                .and_then(|n| u32::try_from(n).ok()),
            policy_file: r.path("THOTH_POLICY_FILE")?,
            api_url: r.url("THOTH_API_URL")?,
            event_ingest_token: r.secret("THOTH_EVENT_INGEST_TOKEN")?,
            step_up_hold: r.seconds("THOTH_STEP_UP_HOLD_SECONDS", 1, 600)?,
            deny_style: r.choice("THOTH_DENY_STYLE", DenyStyle::TABLE)?,
            inspect_results: match r.text("THOTH_INSPECT_RESULTS")? {
                Some(spec) => Some(
                    crate::inspect::actions::ResultActions::parse(&spec)
                        .map_err(|why| invalid("THOTH_INSPECT_RESULTS", &spec, &why))?,
                ),
                None => None,
            },
            approver_key: r.secret("THOTH_APPROVER_KEY")?,
            database_url: r.secret("THOTH_DATABASE_URL")?,
            child_term_delay: r.millis("THOTH_CHILD_TERM_DELAY_MS", 10, 60_000)?,
            child_kill_delay: r.millis("THOTH_CHILD_KILL_DELAY_MS", 10, 60_000)?,
            server_stall_warn: r.millis("THOTH_SERVER_STALL_WARN_MS", 10, 600_000)?,
            user_work_timeout: r.millis("THOTH_USER_WORK_TIMEOUT_MS", 100, 600_000)?,
            enforcer_timeout: r.millis("THOTH_ENFORCER_TIMEOUT_MS", 100, 60_000)?,
            step_up_poll: r.millis("THOTH_STEP_UP_POLL_MS", 50, 10_000)?,
            telemetry: r.choice("THOTH_TELEMETRY", &[("on", true), ("off", false)])?,
            managed_file,
            test_uid,
            test_wrap_interfere,
            test_homes_dir,
            test_progress,
            unknown,
        })
    }

    /// Reads the process environment.
    pub fn from_process() -> Result<Self, SettingsError> {
        let names = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
        Self::read(
            &|name| {
                if crate::harden::SECRETS.contains(&name) {
                    crate::harden::secret(name)
                } else {
                    std::env::var_os(name)
                }
            },
            names,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<EnvVars, SettingsError> {
        let owned: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |name: &str| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        };
        EnvVars::read(&lookup, owned.iter().map(|(k, _)| k.clone()))
    }

    #[test]
    fn malformed_values_name_the_variable_and_the_fix() {
        let cases: &[(&str, &str, &str)] = &[
            ("THOTH_ENV", "production", "use one of dev, staging, prod"),
            ("THOTH_HEARTBEAT_INTERVAL_SECONDS", "0", "from 1 to 86400"),
            ("THOTH_HEARTBEAT_INTERVAL_SECONDS", "abc", "from 1 to 86400"),
            (
                "THOTH_HEARTBEAT_INTERVAL_SECONDS",
                "86401",
                "from 1 to 86400",
            ),
            (
                "THOTH_STEP_UP_HOLD_SECONDS",
                "99999999999999999999",
                "from 1 to 600",
            ),
            ("THOTH_TLS_VERIFY", "maybe", "true or false"),
            (
                "THOTH_ENFORCER_FAILURE_DECISION",
                "open",
                "block, step_up, allow",
            ),
            ("THOTH_DENY_STYLE", "silent", "error, tool_result"),
            (
                "THOTH_ENROLLMENT_SOURCE",
                "sccm",
                "jamf, intune, manual, unmanaged",
            ),
            ("THOTH_ENFORCER_URL", "ftp://x", "http:// or https://"),
            ("THOTH_ENFORCER_URL", "https://", "with a host"),
            ("THOTH_TENANT_ID", "Acme_Corp", "a-z, 0-9"),
            ("THOTH_TLS_PINNED_CERT_SHA256", "sha256:abc", "fingerprints"),
            ("THOTH_TLS_AWS_ACM_CERT_ARN", "arn:aws", "ARN"),
            ("THOTH_EXPECTED_PROXY_UID", "-1", "whole number"),
            ("THOTH_CHILD_TERM_DELAY_MS", "0", "from 10 to 60000"),
            ("THOTH_LOG", "info,[", "tracing filter"),
        ];
        for (name, value, fix) in cases {
            let err = read(&[(name, value)]).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{name}=")) || err.starts_with(name),
                "{err}"
            );
            assert!(err.contains(fix), "{name}={value}: {err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn good_values_parse_and_unknown_names_are_collected() {
        let pin = "AB".repeat(32);
        let env = read(&[
            ("THOTH_ENV", "dev"),
            ("THOTH_HEARTBEAT_INTERVAL_SECONDS", "1"),
            (
                "THOTH_TLS_PINNED_CERT_SHA256",
                &format!("sha256:{pin}, {}", "cd".repeat(32)),
            ),
            ("THOTH_GOV_API_URL", "https://grid.acme.example/"),
            ("THOTH_API_KEY", "  k-123  "),
            ("THOTH_ENVV", "prod"),
            (
                "THOTH_TLS_AWS_ACM_CERT_ARN",
                "arn:aws:acm:us-east-1:123456789012:certificate/abc",
            ),
        ])
        .unwrap();
        assert_eq!(env.environment, Some(Environment::Dev));
        assert_eq!(env.heartbeat_interval, Some(Duration::from_secs(1)));
        assert_eq!(env.tls_pins.len(), 2);
        assert_eq!(env.tls_pins[0], [0xAB; 32]);
        assert_eq!(env.govapi_url.as_deref(), Some("https://grid.acme.example"));
        assert_eq!(env.api_key.as_ref().map(Secret::expose), Some("k-123"));
        assert_eq!(env.unknown, ["THOTH_ENVV"]);
    }

    #[test]
    fn a_refused_url_never_shows_its_credentials() {
        let err = read(&[("THOTH_ENFORCER_URL", "https://bob:hunter2@evil.example/x")])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2") && !err.contains("bob"), "{err}");
        assert!(err.contains("https://…@evil.example/x"), "{err}");
        assert_eq!(
            without_credentials("https://a.example/p@q"),
            "https://a.example/p@q"
        );
        assert_eq!(without_credentials("u:p@h"), "…@h");
    }

    #[test]
    fn misspelled_names_get_the_nearest_known_one() {
        for (typed, meant) in [
            ("THOTH_ENVV", Some("THOTH_ENV")),
            ("THOTH_POLICY", Some("THOTH_POLICY_FILE")),
            ("THOTH_POLICY_FIEL", Some("THOTH_POLICY_FILE")),
            ("THOTH_ENFORCER_ULR", Some("THOTH_ENFORCER_URL")),
            ("THOTH_APIKEY", Some("THOTH_API_KEY")),
            ("THOTH_TELEMETRI", Some("THOTH_TELEMETRY")),
            ("THOTH_", None),
            ("THOTH_SOMETHING_ELSE_ENTIRELY", None),
        ] {
            assert_eq!(nearest_known(typed), meant, "{typed}");
        }
    }

    #[test]
    fn a_misspelled_policy_enforcer_or_key_variable_is_refused() {
        for typed in [
            "THOTH_POLICY",
            "THOTH_ENFORCER_ULR",
            "THOTH_API_KYE",
            "THOTH_APIKEY_FILE",
        ] {
            let err = read(&[(typed, "x")]).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{typed} is not a thoth variable: did you mean ")),
                "{err}"
            );
        }
        // Other misspellings are warned about, not refused.
        assert_eq!(
            read(&[("THOTH_TELEMETRI", "off")]).unwrap().unknown,
            ["THOTH_TELEMETRI"]
        );
    }

    #[test]
    fn secrets_are_never_echoed() {
        let env = read(&[("THOTH_API_KEY", "super-secret")]).unwrap();
        assert!(!format!("{env:?}").contains("super-secret"));
    }
}
