//! `thoth wrap-config`: put every stdio MCP server of a client under `thoth run`, and
//! take it out again (`--restore`).
//!
//! - [`clients`]: the seven clients, their files per OS and their dialects;
//! - [`edit`]: the text edit (only `command`/`args` values change);
//! - [`store`]: backups, the wrap record and the atomic replacement.
//!
//! A file is never rewritten when it does not parse, when the edit's result does not
//! re-parse, or when it changed between read and rename three times in a row. The API
//! key reaches a file only with `--embed-api-key`, and then only the entry's `env`.

pub mod clients;
pub mod edit;
pub mod store;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use crate::args::WrapConfigArgs;
use crate::settings::profile::Profile;
use crate::settings::{EnvVars, SettingsError};
use clients::{Client, Places};
use edit::{EntryOutcome, EntryReport, WrapSpec};
use store::{ReplaceError, Store};

/// Bytes of a client config file read at most.
const MAX_CLIENT_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Attempts when the file keeps changing under us.
const ATTEMPTS: usize = 3;

/// What happened to one file.
#[derive(Debug, Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    pub client: &'static str,
    /// Whether the file was (or, with `--dry-run`, would be) rewritten.
    pub changed: bool,
    pub entries: Vec<EntryReport>,
    /// The backup taken before writing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `--dry-run`: the summary says what would happen.
    #[serde(skip)]
    pub dry_run: bool,
}

impl FileReport {
    fn new(path: &Path, client: Client) -> Self {
        Self {
            path: path.to_path_buf(),
            client: client.name(),
            changed: false,
            entries: Vec::new(),
            backup: None,
            error: None,
            note: None,
            dry_run: false,
        }
    }

    fn count(&self, pick: fn(&EntryOutcome) -> bool) -> usize {
        self.entries.iter().filter(|e| pick(&e.outcome)).count()
    }

    /// The one-line summary printed on stderr.
    pub fn summary(&self) -> String {
        if let Some(e) = &self.error {
            return format!("{}: not changed: {e}", self.path.display());
        }
        let skipped: Vec<String> = self
            .entries
            .iter()
            .filter_map(|e| match &e.outcome {
                EntryOutcome::Skipped { reason } => Some(format!("{} ({reason})", e.name())),
                _ => None,
            })
            .collect();
        let (wrap, rewrap) = if self.dry_run {
            ("would wrap", "would re-wrap")
        } else {
            ("wrapped", "re-wrapped")
        };
        let rewrapped = self.count(|o| matches!(o, EntryOutcome::Rewrapped));
        let rewrapped = if rewrapped > 0 {
            format!(", {rewrap} {rewrapped} (flags changed)")
        } else {
            String::new()
        };
        let mut line = format!(
            "{} [{}]: {wrap} {}{rewrapped}, already wrapped {}, remote {}, skipped {}",
            self.path.display(),
            self.client,
            self.count(|o| matches!(o, EntryOutcome::Wrapped)),
            self.count(|o| matches!(o, EntryOutcome::AlreadyWrapped)),
            self.count(|o| matches!(o, EntryOutcome::Remote)),
            skipped.len(),
        );
        let restored = self.count(|o| matches!(o, EntryOutcome::Restored));
        if restored > 0 {
            line = format!(
                "{}: restored {restored} entr{}",
                self.path.display(),
                if restored == 1 { "y" } else { "ies" }
            );
        }
        if !skipped.is_empty() {
            line.push_str(&format!(": {}", skipped.join(", ")));
        }
        if let Some(note) = &self.note {
            line.push_str(&format!(" — {note}"));
        }
        line
    }
}

/// Runs `thoth wrap-config`.
pub fn run(args: &WrapConfigArgs) -> ExitCode {
    // As root over another user's files, the whole edit runs as that user.
    let home = dirs::home_dir();
    let mut touched: Vec<&Path> = Vec::new();
    touched.extend(args.config.as_deref());
    touched.extend(args.output.as_deref());
    if args.all {
        touched.extend(home.as_deref());
    }
    if let Some(owner) = crate::as_owner::foreign_owner(&touched) {
        let home = if owner.home.is_dir() {
            owner.home.clone()
        } else {
            home.unwrap_or_else(|| owner.home.clone())
        };
        let key: Vec<(&str, std::ffi::OsString)> = crate::harden::secret("THOTH_API_KEY")
            .filter(|_| args.embed_api_key)
            .map(|k| ("THOTH_API_KEY", k))
            .into_iter()
            .collect();
        return crate::as_owner::rerun_as(&owner, &home, &key);
    }
    if let Some(refused) = refuse_broken_policy(args) {
        return refused;
    }
    match plan(args) {
        Ok(WrapJob {
            targets,
            spec,
            backups,
            interference,
        }) => {
            let mut failed = false;
            let mut reports = Vec::new();
            for (path, client) in targets {
                let store = Store::for_file(&backups, &path);
                let report = if args.restore {
                    restore_file(&path, client, &store, args.dry_run, interference)
                } else {
                    wrap_file(&path, client, &spec, &store, args, &backups, interference)
                };
                failed |= report.error.is_some();
                // Server names and errors come from the client's file.
                tracing::info!("{}", crate::logging::escaped(&report.summary()));
                reports.push(report);
            }
            if args.json {
                println!("{}", serde_json::json!({ "files": reports, "ok": !failed }));
            }
            if failed {
                ExitCode::from(crate::exit::FAILURE)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            tracing::error!("{}", crate::logging::escaped(&e.to_string()));
            ExitCode::from(crate::exit::CONFIG)
        }
    }
}

/// `--policy` that is missing or does not parse would make every wrapped server refuse
/// to start: refused (exit 78, the policy's own diagnostics) unless `--force`.
fn refuse_broken_policy(args: &WrapConfigArgs) -> Option<ExitCode> {
    let policy = args.flags.policy.as_ref().filter(|_| !args.restore)?;
    let Err(e) = crate::enforce::local::LocalEngine::load(policy) else {
        return None;
    };
    let mut report = e.report();
    if args.force {
        for line in &report {
            tracing::warn!("{}", crate::logging::escaped(line));
        }
        tracing::warn!(
            "--force: writing the config anyway; every wrapped server refuses to start until the policy loads"
        );
        return None;
    }
    report.push(
        "not written: every wrapped server would refuse to start; fix the policy, or pass --force to write the config anyway".into(),
    );
    Some(crate::exit::config_report(&report))
}

/// What to do, validated from the flags and the environment.
struct WrapJob {
    targets: Vec<(PathBuf, Client)>,
    spec: WrapSpec,
    /// `~/.thoth/backups`.
    backups: PathBuf,
    /// Attempts on which a test plays an interfering client (0 outside tests).
    interference: usize,
}

/// Files, the wrap spec and the backup folder, from the flags.
fn plan(args: &WrapConfigArgs) -> Result<WrapJob, SettingsError> {
    let env = EnvVars::from_process()?;
    let profile = Profile::locate()?;
    let forced = match &args.client {
        Some(name) => Some(Client::from_name(name).ok_or_else(|| {
            SettingsError::new(format!(
                "--client {name}: unknown client; use one of {}",
                clients::names()
            ))
        })?),
        None => None,
    };
    if args.flags.agent_id.is_some() {
        return Err(SettingsError::new(
            "--agent-id is not for wrap-config: each server's name in the file becomes its agent id",
        ));
    }
    if args.flags.api_key.is_some() && !args.embed_api_key {
        return Err(SettingsError::new(
            "--api-key is only used with --embed-api-key (thoth never writes a key into args)",
        ));
    }
    let targets = match (&args.config, args.all) {
        (Some(_), true) => {
            return Err(SettingsError::new("give a CONFIG file or --all, not both"));
        }
        (Some(config), false) => {
            let client = forced.or_else(|| Client::detect(config)).ok_or_else(|| {
                SettingsError::new(format!(
                    "{}: cannot tell which client this file belongs to; add --client with one of {}",
                    config.display(),
                    clients::names()
                ))
            })?;
            vec![(config.clone(), client)]
        }
        (None, true) => {
            if args.output.is_some() {
                return Err(SettingsError::new(
                    "--output takes one CONFIG file, not --all",
                ));
            }
            let home = dirs::home_dir()
                .ok_or_else(|| SettingsError::new("cannot find the home directory (set HOME)"))?;
            discover(&Places::current(home), forced)
        }
        (None, false) => {
            return Err(SettingsError::new(
                "name a client config file (CONFIG) or pass --all for every client of this user",
            ));
        }
    };
    let mut flags = Vec::new();
    let f = &args.flags;
    let tenant = f.tenant_id.as_ref();
    if let Some(t) = tenant {
        crate::settings::env::check_tenant(t)
            .map_err(|e| SettingsError::new(format!("--tenant-id: {e}")))?;
    }
    let mut push = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            flags.push(name.to_string());
            flags.push(v);
        }
    };
    push("--tenant-id", tenant.cloned());
    push(
        "--enforcement-mode",
        f.enforcement_mode.map(|m| m.as_str().to_string()),
    );
    push("--user-id", f.user_id.clone());
    push("--endpoint-id", f.endpoint_id.clone());
    push("--session-intent", f.session_intent.clone());
    push(
        "--policy",
        f.policy
            .as_ref()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .map(|p| p.display().to_string()),
    );
    push(
        "--max-frame-bytes",
        f.max_frame_bytes.map(|n| n.to_string()),
    );
    let embed_api_key = if args.embed_api_key {
        let key = match (&f.api_key, &env.api_key) {
            (Some(k), _) => Some(k.trim().to_string()),
            (None, Some(k)) => Some(k.expose().to_string()),
            (None, None) => crate::settings::profile::read_api_key(
                &env.api_key_file
                    .clone()
                    .unwrap_or_else(|| profile.api_key_file()),
            )?
            .map(|k| k.expose().to_string()),
        };
        let key = key.filter(|k| !k.is_empty()).ok_or_else(|| {
            SettingsError::new(
                "--embed-api-key: no API key (give --api-key, THOTH_API_KEY or fill the key file)",
            )
        })?;
        tracing::warn!(
            "--embed-api-key: the API key is written in clear into each wrapped entry's env (THOTH_API_KEY); anyone who can read the config file can read it"
        );
        Some(key)
    } else {
        None
    };
    Ok(WrapJob {
        targets,
        spec: WrapSpec {
            thoth: thoth_path().display().to_string(),
            flags,
            embed_api_key,
        },
        backups: profile.dir.join("backups"),
        interference: env.test_wrap_interfere,
    })
}

/// Every existing user-level file (of one client, or of all).
pub fn discover(places: &Places, only: Option<Client>) -> Vec<(PathBuf, Client)> {
    let list = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    clients::ALL
        .into_iter()
        .filter(|c| only.is_none_or(|o| o == *c))
        .flat_map(|c| {
            c.user_files(places, &list)
                .into_iter()
                .filter(|p| p.is_file())
                .map(move |p| (p, c))
        })
        .collect()
}

/// thoth's stable path: the `thoth` found on PATH (a symlink stays a symlink, so a
/// package manager's versioned directory is not written), else this binary.
pub fn thoth_path() -> PathBuf {
    let name = if cfg!(windows) { "thoth.exe" } else { "thoth" };
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if dir.is_absolute() && candidate.is_file() {
                return candidate;
            }
        }
    }
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from(name))
}

/// Whether group or others may read `path` (always false where modes do not exist).
fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Why one file was not wrapped or restored (the file's report names the file).
#[derive(Debug, thiserror::Error)]
enum WrapError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Edit(#[from] edit::EditError),
    #[error("{0}")]
    Read(std::io::Error),
    #[error("not UTF-8 text (byte {0})")]
    NotUtf8(usize),
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} changed while written", path.display())]
    ChangedWhileWritten { path: PathBuf },
}

/// Reads a config file as UTF-8 text.
fn read_text(path: &Path) -> Result<(Vec<u8>, String), WrapError> {
    let bytes = crate::user_file::read(path, MAX_CLIENT_FILE_BYTES).map_err(WrapError::Read)?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|e| WrapError::NotUtf8(e.utf8_error().valid_up_to()))?;
    Ok((bytes, text))
}

/// Debug builds' `THOTH_TEST_WRAP_INTERFERE=N`: a client that appends a space to the
/// file just before thoth's last check, on the first N attempts.
fn interfere(path: &Path, attempt: usize, interference: usize) -> impl FnMut() + '_ {
    let on = attempt < interference;
    move || {
        if on && let Ok(mut bytes) = std::fs::read(path) {
            bytes.push(b' ');
            let _ = std::fs::write(path, bytes);
        }
    }
}

/// What one attempt read: the file's bytes and text, their SHA-256, and the record.
struct Current<'a> {
    bytes: &'a [u8],
    text: &'a str,
    sha256: &'a str,
    record: &'a store::WrapRecord,
}

/// What an attempt decided to write, and the record to keep once it is written.
struct Rewrite {
    bytes: Vec<u8>,
    record: store::WrapRecord,
    /// The backup taken now holds the pristine original: record it as such.
    pristine: bool,
}

/// Reads `path` and its record, lets `plan` decide (`Ok(None)`: nothing to write),
/// then backs up and replaces the file, reading it again when it changed meanwhile
/// (at most [`ATTEMPTS`] times). Shared by wrapping and restoring.
fn rewrite(
    path: &Path,
    store: &Store,
    verb: &str,
    mut report: FileReport,
    mut plan: impl FnMut(Current<'_>, &mut FileReport) -> Result<Option<Rewrite>, WrapError>,
    record_not_saved: impl Fn(store::StoreError, &mut FileReport),
    interference: usize,
) -> FileReport {
    for attempt in 0..ATTEMPTS {
        let attempted = (|| {
            let (bytes, text) = read_text(path)?;
            let record = store.load()?;
            let sha256 = store::sha256_hex(&bytes);
            let current = Current {
                bytes: &bytes,
                text: &text,
                sha256: &sha256,
                record: &record,
            };
            let Some(mut next) = plan(current, &mut report)? else {
                return Ok(true);
            };
            let backup = store.backup(&bytes)?;
            if next.pristine {
                next.record.pristine_backup = Some(backup.clone());
                next.record.pristine_sha256 = Some(sha256.clone());
            }
            match store::replace(
                path,
                &sha256,
                &next.bytes,
                &mut interfere(path, attempt, interference),
            ) {
                Ok(()) => {
                    report.backup = Some(store.dir().join(backup));
                    if let Err(e) = store.save(&next.record) {
                        record_not_saved(e, &mut report);
                    }
                    Ok(true)
                }
                Err(ReplaceError::Changed) => {
                    tracing::warn!(
                        "{} changed while thoth was {verb} it: reading it again",
                        path.display()
                    );
                    Ok(false)
                }
                Err(ReplaceError::Io(e)) => Err(WrapError::Store(e)),
            }
        })();
        match attempted {
            Ok(true) => return report,
            Ok(false) => {}
            Err(e) => {
                report.error = Some(e.to_string());
                return report;
            }
        }
    }
    report.changed = false;
    report.error = Some(format!(
        "the file changed {ATTEMPTS} times while thoth was {verb} it; try again when the client is idle"
    ));
    report
}

fn wrap_file(
    path: &Path,
    client: Client,
    spec: &WrapSpec,
    store: &Store,
    args: &WrapConfigArgs,
    backups: &Path,
    interference: usize,
) -> FileReport {
    let mut report = FileReport::new(path, client);
    report.dry_run = args.dry_run;
    if spec.embed_api_key.is_some() && readable_by_others(args.output.as_deref().unwrap_or(path)) {
        tracing::warn!(
            "{}: group or others can read this file, and it will hold the API key: chmod 600 it",
            args.output.as_deref().unwrap_or(path).display()
        );
    }
    let plan = |now: Current<'_>, report: &mut FileReport| {
        if now.text.trim().is_empty() {
            report.note = Some("empty file: no servers".into());
            return Ok(None);
        }
        let wrapped = edit::wrap(now.text, client, spec, &now.record.entries)?;
        report.entries = wrapped.entries.clone();
        report.changed = wrapped.text != now.text;
        if args.dry_run {
            print_diff(path, now.text, &wrapped.text);
            return Ok(None);
        }
        if let Some(output) = &args.output {
            report.note = Some(format!("written to {}", output.display()));
            write_output(output, wrapped.text.as_bytes(), backups)?;
            return Ok(None);
        }
        if !report.changed {
            return Ok(None);
        }
        let mut record = now.record.clone();
        record.path = path.to_path_buf();
        record.client = client.name().into();
        let keeps_pristine = now.record.last_written_sha256.as_deref() == Some(now.sha256)
            && now.record.pristine_backup.is_some();
        // The bytes are the original when no wrap of ours came before them (a file may
        // hold entries wrapped by hand), or when they hold no wrapped entry.
        let untouched = now.record.last_written_sha256.is_none()
            || edit::survey(now.text, client).is_ok_and(|s| s.wrapped == 0);
        if !keeps_pristine && !untouched {
            record.pristine_backup = None;
            record.pristine_sha256 = None;
        }
        record.entries = wrapped.originals;
        record.last_written_sha256 = Some(store::sha256_hex(wrapped.text.as_bytes()));
        Ok(Some(Rewrite {
            bytes: wrapped.text.into_bytes(),
            record,
            pristine: !keeps_pristine && untouched,
        }))
    };
    let record_not_saved = |e: store::StoreError, report: &mut FileReport| {
        report.error = Some(format!(
            "wrapped, but the record could not be saved ({e}): --restore will unwrap from the command after `--`"
        ));
    };
    rewrite(
        path,
        store,
        "wrapping",
        report,
        plan,
        record_not_saved,
        interference,
    )
}

fn restore_file(
    path: &Path,
    client: Client,
    store: &Store,
    dry_run: bool,
    interference: usize,
) -> FileReport {
    let report = FileReport::new(path, client);
    let plan = |now: Current<'_>, report: &mut FileReport| {
        let record = now.record;
        let exact = match (
            &record.last_written_sha256,
            &record.pristine_backup,
            &record.pristine_sha256,
        ) {
            (Some(last), Some(name), Some(sha)) if last == now.sha256 => {
                match store.read_backup(name, sha) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        tracing::warn!(
                            "{}: unwrapping in place instead",
                            crate::logging::escaped(&e.to_string())
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        let restored = match exact {
            Some(original) => {
                report.note = Some("byte-exact original restored".into());
                report.entries = record
                    .entries
                    .keys()
                    .filter_map(|k| serde_json::from_str::<Vec<String>>(k).ok())
                    .map(|path| EntryReport {
                        path,
                        outcome: EntryOutcome::Restored,
                    })
                    .collect();
                original
            }
            None => {
                let (restored, entries) = edit::unwrap(now.text, client, &record.entries)?;
                report.note = Some("unwrapped in place; other changes kept".into());
                report.entries = entries;
                restored.into_bytes()
            }
        };
        report.changed = restored != now.bytes;
        if dry_run {
            print_diff(path, now.text, &String::from_utf8_lossy(&restored));
            return Ok(None);
        }
        if !report.changed {
            report.note = Some("nothing to restore".into());
            return Ok(None);
        }
        Ok(Some(Rewrite {
            bytes: restored,
            record: store::WrapRecord {
                path: path.to_path_buf(),
                client: client.name().into(),
                ..Default::default()
            },
            pristine: false,
        }))
    };
    let record_not_saved = |e: store::StoreError, _: &mut FileReport| {
        tracing::warn!(
            "restored, but the record could not be cleared: {}",
            crate::logging::escaped(&e.to_string())
        );
    };
    rewrite(
        path,
        store,
        "restoring",
        report,
        plan,
        record_not_saved,
        interference,
    )
}

/// `--output`: a new file, or a replaced one (backed up first, then atomically), never
/// the CONFIG itself.
fn write_output(output: &Path, bytes: &[u8], backups: &Path) -> Result<(), WrapError> {
    let written = |source| WrapError::Write {
        path: output.to_path_buf(),
        source,
    };
    if output.exists() {
        let current = std::fs::read(output).map_err(written)?;
        Store::for_file(backups, output).backup(&current)?;
        return match store::replace(output, &store::sha256_hex(&current), bytes, &mut || {}) {
            Ok(()) => Ok(()),
            Err(ReplaceError::Changed) => Err(WrapError::ChangedWhileWritten {
                path: output.to_path_buf(),
            }),
            Err(ReplaceError::Io(e)) => Err(WrapError::Store(e)),
        };
    }
    std::fs::write(output, bytes).map_err(written)
}

fn print_diff(path: &Path, old: &str, new: &str) {
    let name = path.display().to_string();
    let diff = similar::TextDiff::from_lines(old, new);
    print!(
        "{}",
        diff.unified_diff()
            .context_radius(3)
            .header(&name, &format!("{name} (wrapped)"))
    );
}

/// Counts of one client file for `status` and `health`.
#[derive(Debug, Clone, Serialize)]
pub struct Detected {
    pub client: &'static str,
    pub path: PathBuf,
    #[serde(flatten)]
    pub survey: edit::Survey,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error is a duplicated key: a server may run ungoverned.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ambiguous: bool,
    /// The wrapped entries, as their client would start them.
    #[serde(skip)]
    pub wrapped: Vec<edit::WrappedEntry>,
}

/// Surveys every existing user-level file under `places`.
pub fn detect_all(places: &Places) -> Vec<Detected> {
    discover(places, None)
        .into_iter()
        .map(|(path, client)| {
            let (survey, error, ambiguous, wrapped) = match read_text(&path) {
                Ok((_, text)) if text.trim().is_empty() => {
                    (edit::Survey::default(), None, false, Vec::new())
                }
                Ok((_, text)) => match edit::survey(&text, client) {
                    Ok(s) => (
                        s,
                        None,
                        false,
                        edit::wrapped_entries(&text, client).unwrap_or_default(),
                    ),
                    Err(e) => (
                        edit::Survey::default(),
                        Some(e.0.clone()),
                        e.is_duplicate_key(),
                        Vec::new(),
                    ),
                },
                Err(e) => (
                    edit::Survey::default(),
                    Some(e.to_string()),
                    false,
                    Vec::new(),
                ),
            };
            Detected {
                client: client.name(),
                path,
                survey,
                error,
                ambiguous,
                wrapped,
            }
        })
        .collect()
}
