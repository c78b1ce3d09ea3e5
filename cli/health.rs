//! `thoth health`: one verdict for MDM compliance.
//!
//! `--json` prints one line: flat PascalCase scalars an Intune custom-compliance rule
//! can address, plus a `checks` object for humans. `--jamf FIELD` prints
//! `<result>VALUE</result>` for one of those keys (dates as `YYYY-MM-DD hh:mm:ss`), the
//! shape of a Jamf extension attribute. Exit 0 on pass or warn, 1 on fail or on any
//! internal error. Local state only, unless `--probe` (a short network check). MDM runs
//! this as root/SYSTEM, so `--user NAME` and `--all-users` read other profiles; several
//! users give the worst status and summed counts.
//!
//! Status rules — fail: settings invalid, local policy invalid, a wrapped entry that
//! would not start as its client starts it (thoth missing, flags or settings refused,
//! its policy invalid: see `entry_check`), a stdio server not
//! wrapped (it runs ungoverned), a client file with a duplicated server key (the
//! client may run the copy thoth cannot see), audit chain broken, enforcer unreachable
//! (`--probe`);
//! warn: no client detected, a client file that does not parse, GovAPI configured but
//! not registered, heartbeat older than three intervals, GovAPI unreachable (`--probe`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::args::HealthArgs;
use crate::settings::{EngineChoice, RunSettings};
use crate::status::{PolicyState, Snapshot};
use crate::wrap::clients::{Os, Places};

/// Version of the `--json` shape.
pub const SCHEMA_VERSION: u64 = 1;
/// Timeout of each `--probe` request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A check's verdict, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Pass => "pass",
            Level::Warn => "warn",
            Level::Fail => "fail",
        }
    }
}

/// The checks of one user.
#[derive(Debug, Default)]
pub struct Checks(Vec<(String, Level, String)>);

impl Checks {
    fn add(&mut self, name: &str, level: Level, detail: impl Into<String>) {
        self.0.push((name.to_string(), level, detail.into()));
    }

    pub fn worst(&self) -> Level {
        self.0.iter().map(|c| c.1).max().unwrap_or(Level::Pass)
    }
}

/// Probe results (`--probe`).
#[derive(Debug, Default, Clone)]
pub struct Probe {
    pub enforcer: Option<Result<(), String>>,
    pub govapi: Option<Result<(), String>>,
}

/// The health of one user: flat fields plus checks.
pub fn assess(s: &Snapshot, probe: &Probe) -> (Map<String, Value>, Checks) {
    let mut checks = Checks::default();
    let mut f = Map::new();
    let servers = s.servers();
    let settings = s.settings.as_ref().ok();
    match &s.settings {
        Ok(_) => checks.add("settings", Level::Pass, "valid"),
        Err(e) => checks.add("settings", Level::Fail, e.clone()),
    }
    let (mode, url) = match settings.map(|s| &s.engine) {
        Some(EngineChoice::Local { .. }) => ("local", String::new()),
        Some(EngineChoice::Remote { url, .. }) => ("remote", url.clone()),
        None => ("unknown", String::new()),
    };
    match &s.policy {
        Some(PolicyState::Loads) => {
            checks.add("policy", Level::Pass, "the local Cedar policy loads")
        }
        Some(PolicyState::NotYetCreated) => checks.add(
            "policy",
            Level::Pass,
            "the starter policy (allows every tool) is written on the first thoth run",
        ),
        Some(PolicyState::Invalid { place, .. }) => {
            checks.add("policy", Level::Fail, place.clone())
        }
        None => {}
    }
    if s.entries_checked > 0 {
        if s.entry_failures.is_empty() {
            checks.add(
                "wrapped_entries",
                Level::Pass,
                format!(
                    "{} would start",
                    crate::wording::count_with(
                        s.entries_checked,
                        "wrapped entry",
                        "wrapped entries"
                    )
                ),
            );
        } else {
            checks.add("wrapped_entries", Level::Fail, s.entry_failures.join("; "));
        }
    }
    let reachable = match (mode, &probe.enforcer) {
        ("local", _) => "local",
        (_, None) => "not_probed",
        (_, Some(Ok(()))) => {
            checks.add("enforcer", Level::Pass, format!("{url} answered"));
            "yes"
        }
        (_, Some(Err(e))) => {
            checks.add("enforcer", Level::Fail, format!("{url}: {e}"));
            "no"
        }
    };
    if let Some(result) = &probe.govapi {
        match result {
            Ok(()) => checks.add("govapi_probe", Level::Pass, "GovAPI answered"),
            Err(e) => checks.add("govapi_probe", Level::Warn, e.clone()),
        }
    }
    if s.clients.is_empty() {
        checks.add("clients", Level::Warn, "no MCP client config file found");
    } else {
        checks.add(
            "clients",
            Level::Pass,
            crate::wording::count(s.clients.len(), "client file"),
        );
    }
    let broken: Vec<String> = s
        .clients
        .iter()
        .filter_map(|c| {
            c.error
                .as_ref()
                .map(|e| format!("{}: {e}", c.path.display()))
        })
        .collect();
    if !broken.is_empty() {
        // A duplicated key may hide a server the client runs ungoverned.
        let level = if s.clients.iter().any(|c| c.ambiguous) {
            Level::Fail
        } else {
            Level::Warn
        };
        checks.add("client_files", level, broken.join("; "));
    }
    if servers.unwrapped > 0 {
        checks.add(
            "servers",
            Level::Fail,
            format!(
                "{} {} ungoverned: run thoth wrap-config --all",
                crate::wording::count(servers.unwrapped, "stdio server"),
                if servers.unwrapped == 1 {
                    "runs"
                } else {
                    "run"
                }
            ),
        );
    } else {
        checks.add(
            "servers",
            Level::Pass,
            format!("{} wrapped, {} remote", servers.wrapped, servers.remote),
        );
    }
    let gov = settings.and_then(|s| s.govapi.as_ref());
    let registered = s.state.registration.is_some();
    let age = s.heartbeat_age();
    if let Some(g) = gov {
        if registered {
            checks.add("registration", Level::Pass, "registered");
        } else {
            checks.add(
                "registration",
                Level::Warn,
                "not registered with the GovAPI: run thoth register",
            );
        }
        let limit = i64::try_from(g.heartbeat_interval.as_secs().saturating_mul(3) / 60)
            .unwrap_or(i64::MAX)
            .max(5);
        match age {
            Some(a) if a <= limit => checks.add("heartbeat", Level::Pass, format!("{a} min ago")),
            Some(a) => checks.add(
                "heartbeat",
                Level::Warn,
                format!("last heartbeat {a} min ago (more than {limit} min)"),
            ),
            None => checks.add("heartbeat", Level::Warn, "no heartbeat yet"),
        }
    }
    let audit = match &s.state.audit_verification {
        Some(v) if v.ok => "ok",
        Some(v) => {
            checks.add(
                "audit",
                Level::Fail,
                format!(
                    "audit chain broken: {}",
                    v.error.clone().unwrap_or_default()
                ),
            );
            "broken"
        }
        None => "unknown",
    };
    let status = checks.worst();
    let key_configured = settings.is_some_and(|s| s.api_key.is_some());
    f.insert("SchemaVersion".into(), json!(SCHEMA_VERSION));
    f.insert("Status".into(), json!(status.as_str()));
    f.insert("Healthy".into(), json!(status != Level::Fail));
    f.insert("ThothVersion".into(), json!(env!("CARGO_PKG_VERSION")));
    f.insert("User".into(), json!(s.user));
    f.insert(
        "TenantId".into(),
        json!(settings.map(|s| s.tenant_id.clone()).unwrap_or_default()),
    );
    f.insert(
        "EndpointId".into(),
        json!(settings.map(|s| s.endpoint_id.clone()).unwrap_or_default()),
    );
    f.insert(
        "Environment".into(),
        json!(settings.map(|s| s.environment.as_str()).unwrap_or("")),
    );
    f.insert("SettingsValid".into(), json!(settings.is_some()));
    f.insert("ManagedSettings".into(), json!(s.managed.is_some()));
    f.insert("EnforcerMode".into(), json!(mode));
    f.insert("EnforcerUrl".into(), json!(url));
    f.insert("EnforcerReachable".into(), json!(reachable));
    f.insert(
        "EnforcementMode".into(),
        json!(settings.map(|s| s.mode.as_str()).unwrap_or("")),
    );
    f.insert("ApiKeyConfigured".into(), json!(key_configured));
    f.insert(
        "PolicyValid".into(),
        json!(!matches!(s.policy, Some(PolicyState::Invalid { .. }))),
    );
    f.insert("GovApiConfigured".into(), json!(gov.is_some()));
    f.insert("Registered".into(), json!(registered));
    f.insert(
        "LastHeartbeatUtc".into(),
        json!(s.state.last_heartbeat_utc.clone().unwrap_or_default()),
    );
    f.insert("HeartbeatAgeMinutes".into(), json!(age.unwrap_or(-1)));
    f.insert("ClientsDetected".into(), json!(s.clients.len()));
    f.insert("ClientFilesInvalid".into(), json!(broken.len()));
    f.insert("ServersTotal".into(), json!(servers.total()));
    f.insert("ServersWrapped".into(), json!(servers.wrapped));
    f.insert("ServersUnwrapped".into(), json!(servers.unwrapped));
    f.insert("ServersRemote".into(), json!(servers.remote));
    f.insert("ServersSkipped".into(), json!(servers.skipped));
    f.insert("EntriesFailing".into(), json!(s.entry_failures.len()));
    f.insert("AuditChain".into(), json!(audit));
    (f, checks)
}

/// Several users: worst status, summed counts, checks prefixed with the user.
fn combine(
    users: Vec<(Map<String, Value>, Checks)>,
) -> (Map<String, Value>, Level, Map<String, Value>) {
    let mut worst = Level::Pass;
    let mut merged: Option<Map<String, Value>> = None;
    let mut checks = Map::new();
    let many = users.len() > 1;
    for (fields, user_checks) in users {
        let level = user_checks.worst();
        let user = fields
            .get("User")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        for (name, l, detail) in user_checks.0 {
            let key = if many { format!("{user}/{name}") } else { name };
            checks.insert(key, json!({"status": l.as_str(), "detail": detail}));
        }
        merged = Some(match merged {
            None => fields,
            Some(mut m) => {
                for key in [
                    "ClientsDetected",
                    "ClientFilesInvalid",
                    "ServersTotal",
                    "ServersWrapped",
                    "ServersUnwrapped",
                    "ServersRemote",
                    "ServersSkipped",
                    "EntriesFailing",
                ] {
                    let sum = m.get(key).and_then(Value::as_u64).unwrap_or(0)
                        + fields.get(key).and_then(Value::as_u64).unwrap_or(0);
                    m.insert(key.into(), json!(sum));
                }
                for key in ["Registered", "SettingsValid", "PolicyValid", "Healthy"] {
                    let both = m.get(key).and_then(Value::as_bool).unwrap_or(false)
                        && fields.get(key).and_then(Value::as_bool).unwrap_or(false);
                    m.insert(key.into(), json!(both));
                }
                if level > worst {
                    for key in ["User", "EnforcerReachable", "AuditChain"] {
                        if let Some(v) = fields.get(key) {
                            m.insert(key.into(), v.clone());
                        }
                    }
                }
                m
            }
        });
        worst = worst.max(level);
    }
    let mut fields = merged.unwrap_or_default();
    fields.insert("Status".into(), json!(worst.as_str()));
    fields.insert("Healthy".into(), json!(worst != Level::Fail));
    (fields, worst, checks)
}

/// Runs `thoth health`.
pub fn run(args: &HealthArgs) -> ExitCode {
    if let Some(home) = &args.one_home {
        return one_home(home, args.probe);
    }
    let homes = match homes(args) {
        Ok(h) if !h.is_empty() => h,
        Ok(_) => {
            tracing::error!("no user profile found");
            return ExitCode::from(crate::exit::FAILURE);
        }
        Err(e) => {
            tracing::error!("{}", crate::logging::escaped(&e.to_string()));
            return ExitCode::from(crate::exit::FAILURE);
        }
    };
    let users: Vec<_> = homes
        .iter()
        .map(|(user, home, places)| {
            // Root reads another user's profile only through a thoth running as them.
            let (mut fields, checks) = match crate::as_owner::foreign_owner(&[home]) {
                Some(owner) => as_user(&owner, home, args.probe),
                None => assess_home(user.clone(), home, places, args.probe),
            };
            fields.insert("Users".into(), json!(1));
            (fields, checks)
        })
        .collect();
    let count = users.len();
    let (mut fields, worst, checks) = combine(users);
    fields.insert("Users".into(), json!(count));
    let code = if worst == Level::Fail {
        ExitCode::from(crate::exit::FAILURE)
    } else {
        ExitCode::SUCCESS
    };
    if let Some(field) = &args.jamf {
        let Some((_, value)) = fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(field)) else {
            tracing::error!(
                "--jamf {field}: not a field; use one of {}",
                fields.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            return ExitCode::from(crate::exit::FAILURE);
        };
        // Values may come from a user's files (as the user's part printed them).
        println!(
            "<result>{}</result>",
            crate::logging::escaped(&jamf_value(value))
        );
        return code;
    }
    if args.json {
        fields.insert("checks".into(), Value::Object(checks));
        println!("{}", Value::Object(fields));
    } else {
        println!("thoth health: {}", worst.as_str());
        for (name, check) in &checks {
            // Details may quote a user's files or entries (decoded from the user's
            // part's JSON): never raw to root's terminal.
            println!(
                "  {:<5} {}: {}",
                crate::logging::escaped(check["status"].as_str().unwrap_or("")),
                crate::logging::escaped(name),
                crate::logging::escaped(check["detail"].as_str().unwrap_or(""))
            );
        }
    }
    code
}

fn assess_home(
    user: String,
    home: &Path,
    places: &Places,
    with_probe: bool,
) -> (Map<String, Value>, Checks) {
    let snapshot = Snapshot::gather(user, home, places);
    let probe = if with_probe {
        probe(snapshot.settings.as_ref().ok())
    } else {
        Probe::default()
    };
    assess(&snapshot, &probe)
}

/// `--one-home`: one profile's fields and checks as one JSON line, for root.
fn one_home(home: &Path, with_probe: bool) -> ExitCode {
    let places = Places::for_home(Os::current(), home.to_path_buf());
    // This runs as the home's owner.
    let user = crate::settings::run::account_name().unwrap_or_default();
    let (fields, checks) = assess_home(user, home, &places, with_probe);
    let checks: Vec<Value> = checks
        .0
        .iter()
        .map(|(name, level, detail)| json!([name, level.as_str(), detail]))
        .collect();
    println!("{}", json!({ "fields": fields, "checks": checks }));
    ExitCode::SUCCESS
}

/// One user's health, assessed by thoth running as that user (`--one-home`).
fn as_user(
    owner: &crate::as_owner::Owner,
    home: &Path,
    with_probe: bool,
) -> (Map<String, Value>, Checks) {
    let mut args: Vec<std::ffi::OsString> = vec!["health".into(), "--one-home".into(), home.into()];
    if with_probe {
        args.push("--probe".into());
    }
    let env = crate::settings::EnvVars::from_process().ok();
    let limit = crate::as_owner::timeout(env.as_ref());
    let failed = |why: String| {
        let mut fields = Map::new();
        fields.insert("User".into(), json!(owner.name));
        let mut checks = Checks::default();
        checks.add("profile", Level::Fail, why);
        (fields, checks)
    };
    let who = crate::logging::escaped(&owner.name).to_string();
    match crate::as_owner::run_as(owner, home, &args, &[], true, limit) {
        Ok(crate::as_owner::UserWork::Done { stdout, .. }) => {
            let Ok(answer) = serde_json::from_slice::<Value>(&stdout) else {
                return failed(format!("the check as {who} gave no answer"));
            };
            let fields = answer["fields"].as_object().cloned().unwrap_or_default();
            let mut checks = Checks::default();
            for check in answer["checks"].as_array().into_iter().flatten() {
                let level = match check[1].as_str() {
                    Some("pass") => Level::Pass,
                    Some("warn") => Level::Warn,
                    _ => Level::Fail,
                };
                checks.add(
                    check[0].as_str().unwrap_or("check"),
                    level,
                    check[2].as_str().unwrap_or_default(),
                );
            }
            (fields, checks)
        }
        Ok(crate::as_owner::UserWork::TimedOut) => failed(format!(
            "the check as {who} did not end within {} ms (a FIFO, a held lock or a slow disk in that home?)",
            limit.as_millis()
        )),
        Err(e) => failed(format!("cannot run the check as {who}: {e}")),
    }
}

/// A field as a Jamf extension attribute shows it.
pub fn jamf_value(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    // RFC 3339 UTC → `YYYY-MM-DD hh:mm:ss` (Jamf's date attribute format).
    match crate::clock::parse_rfc3339(&text) {
        Some(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{} {:02}:{:02}:{:02}",
                crate::clock::date(t.date()),
                t.hour(),
                t.minute(),
                t.second()
            )
        }
        None => text.replace('<', "&lt;").replace('>', "&gt;"),
    }
}

/// Why the homes to report on could not be found.
#[derive(Debug, thiserror::Error)]
enum HomesError {
    #[error("--user {0}: not a user name")]
    NotAUserName(String),
    #[error("--user {0}: no such user")]
    NoSuchUser(String),
    #[error("--user {name}: {} belongs to root, not to {name}; not assessed", home.display())]
    RootOwned { name: String, home: PathBuf },
    #[error("{}: {source}", root.display())]
    ReadRoot {
        root: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find the home directory (set HOME)")]
    NoHome,
}

/// The homes to report on, each with its user's name: the one `--user` gives, the
/// folder's name under the homes root for `--all-users` (a foreign owner's own name
/// replaces it), or the account thoth runs as.
fn homes(args: &HealthArgs) -> Result<Vec<(String, PathBuf, Places)>, HomesError> {
    let os = Os::current();
    // A malformed environment is reported by each user's settings check; here it only
    // means no test override.
    let test_root = crate::settings::EnvVars::from_process()
        .ok()
        .and_then(|env| env.test_homes_dir);
    let root = test_root.clone().unwrap_or_else(homes_root);
    if let Some(name) = &args.user {
        if name.is_empty() || name.contains(['/', '\\']) || name == ".." {
            return Err(HomesError::NotAUserName(name.clone()));
        }
        let home = user_home(name, &root, test_root.is_some())
            .ok_or_else(|| HomesError::NoSuchUser(name.clone()))?;
        if test_root.is_none() && name != "root" && owned_by_root(&home) {
            return Err(HomesError::RootOwned {
                name: name.clone(),
                home,
            });
        }
        return Ok(vec![(
            name.clone(),
            home.clone(),
            Places::for_home(os, home),
        )]);
    }
    if args.all_users {
        let mut homes: Vec<PathBuf> = std::fs::read_dir(&root)
            .map_err(|source| HomesError::ReadRoot {
                root: root.clone(),
                source,
            })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            // A root-owned folder there (macOS's world-writable /Users/Shared) is no
            // one's home, and root would read what any user planted in it.
            .filter(|p| test_root.is_some() || !owned_by_root(p))
            .filter(|p| p.is_dir() && is_user_home(p))
            .collect();
        homes.sort();
        return Ok(homes
            .into_iter()
            .map(|h| {
                let name = h
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (name, h.clone(), Places::for_home(os, h))
            })
            .collect());
    }
    let home = dirs::home_dir().ok_or(HomesError::NoHome)?;
    let user = crate::settings::run::account_name().unwrap_or_default();
    Ok(vec![(user, home.clone(), Places::current(home))])
}

/// True when `dir` itself (not followed) belongs to root.
fn owned_by_root(dir: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(dir).is_ok_and(|m| m.uid() == 0)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        false
    }
}

/// Where users' homes are (debug builds' `THOTH_TEST_HOMES_DIR` replaces it in tests).
fn homes_root() -> PathBuf {
    PathBuf::from(match Os::current() {
        Os::Mac => "/Users",
        Os::Windows => r"C:\Users",
        Os::Linux => "/home",
    })
}

/// A user's home: from the account database, or `root/name` (always in tests).
fn user_home(name: &str, root: &Path, test_root: bool) -> Option<PathBuf> {
    #[cfg(not(unix))]
    let _ = test_root;
    #[cfg(unix)]
    if !test_root && let Ok(Some(user)) = nix::unistd::User::from_name(name) {
        return Some(user.dir);
    }
    let home = root.join(name);
    home.is_dir().then_some(home)
}

/// A directory is a user's home when it holds a thoth profile or a client file.
fn is_user_home(dir: &Path) -> bool {
    dir.join(".thoth").is_dir()
        || !crate::wrap::discover(&Places::for_home(Os::current(), dir.to_path_buf()), None)
            .is_empty()
}

/// `--probe`: any HTTP answer (even 404) means reachable; TLS or network failure not.
fn probe(settings: Option<&RunSettings>) -> Probe {
    let Some(s) = settings else {
        return Probe::default();
    };
    let Ok(rt) = crate::runtime::current_thread() else {
        return Probe::default();
    };
    let client = s.tls.client_config().ok().and_then(|tls| {
        // A redirect is an answer (reachable), never followed.
        crate::net::client_builder(tls)
            .timeout(PROBE_TIMEOUT)
            .connect_timeout(PROBE_TIMEOUT)
            .build()
            .ok()
    });
    let Some(client) = client else {
        return Probe::default();
    };
    let get = |url: String| {
        let client = client.clone();
        async move {
            client.get(&url).send().await.map(|_| ()).map_err(|e| {
                if e.is_timeout() {
                    "timed out".to_string()
                } else {
                    "unreachable".to_string()
                }
            })
        }
    };
    rt.block_on(async {
        let enforcer = match &s.engine {
            EngineChoice::Remote { url, .. } => {
                Some(get(format!("{}/", url.trim_end_matches('/'))).await)
            }
            EngineChoice::Local { .. } => None,
        };
        let govapi = match &s.govapi {
            Some(g) => Some(get(format!("{}/", g.url.trim_end_matches('/'))).await),
            None => None,
        };
        Probe { enforcer, govapi }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jamf_values() {
        assert_eq!(
            jamf_value(&json!("2026-11-26T14:05:09Z")),
            "2026-11-26 14:05:09"
        );
        assert_eq!(
            jamf_value(&json!("2026-11-26T15:05:09+01:00")),
            "2026-11-26 14:05:09"
        );
        assert_eq!(jamf_value(&json!(true)), "true");
        assert_eq!(jamf_value(&json!(3)), "3");
        assert_eq!(jamf_value(&json!("")), "");
        assert_eq!(jamf_value(&json!("a<b>")), "a&lt;b&gt;");
    }

    #[test]
    fn levels_order() {
        let mut c = Checks::default();
        assert_eq!(c.worst(), Level::Pass);
        c.add("a", Level::Warn, "");
        c.add("b", Level::Pass, "");
        assert_eq!(c.worst(), Level::Warn);
        c.add("c", Level::Fail, "");
        assert_eq!(c.worst(), Level::Fail);
    }
}
