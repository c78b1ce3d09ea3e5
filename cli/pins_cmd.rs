//! `thoth pins list | accept | forget`: reviewing tool-definition pins (`crate::pins`).
//!
//! `list` reads every pin file of the user's profile and shows, per (agent, server),
//! each tool's state and the definitions waiting for review; `accept` pins what was
//! seen; `forget` removes an agent's pins so its next session pins afresh. Each accept
//! and forget is an audit record. Pins the managed settings file holds are shown and
//! cannot be accepted over. This command never prints a tool's description: only
//! names, states and digests.

use std::path::{Path, PathBuf};

use std::process::ExitCode;

use serde_json::json;

use crate::args::{PinsArgs, PinsCommand};
use crate::logging::escaped;
use crate::pins::{self, PinFile};
use crate::settings::managed::{self, Managed, ManagedPin};
use crate::settings::profile::Profile;
use crate::wording::count;

/// Pin files read at most.
const MAX_FILES: usize = 4096;

/// Runs `thoth pins …`.
pub fn run(args: &PinsArgs) -> ExitCode {
    let profile = match Profile::locate() {
        Ok(p) => p,
        Err(e) => return crate::exit::config_error(&e),
    };
    let managed = managed_pins();
    let dir = pins::dir_in(&profile.dir);
    let files = match pin_files(&dir) {
        Ok(files) => files,
        Err(e) => {
            tracing::error!("{}: cannot read the pins directory: {e}", dir.display());
            return ExitCode::from(crate::exit::IO_ERROR);
        }
    };
    match &args.command {
        PinsCommand::List { json } => list(&files, &managed, *json),
        PinsCommand::Accept {
            agent,
            tool,
            digest,
        } => accept(
            &profile,
            &files,
            &managed,
            agent,
            tool.as_deref(),
            digest.as_deref(),
        ),
        PinsCommand::Forget { agent } => forget(&profile, &files, agent),
    }
}

/// The managed pins, or none when the managed file is absent or unreadable (a run
/// would refuse such a file and say why; listing pins still works).
fn managed_pins() -> Vec<ManagedPin> {
    let loaded =
        crate::settings::env::EnvVars::from_process().and_then(|env| match &env.managed_file {
            Some(path) => Managed::load(path, false),
            None => Managed::load(&managed::default_path(), true),
        });
    match loaded {
        Ok(m) => m.map(|m| m.tool_pins).unwrap_or_default(),
        Err(e) => {
            tracing::warn!("managed pins are not shown: {}", escaped(&e.to_string()));
            Vec::new()
        }
    }
}

/// Every pin file, read (a damaged one is reported and skipped).
fn pin_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, PinFile)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries.take(MAX_FILES) {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        match pins::read_file(&path) {
            Ok(Some(file)) => files.push((path, file)),
            Ok(None) => {}
            // Its server's tools are all `changed` until it is deleted.
            Err(e) => tracing::warn!("{}", escaped(&e.to_string())),
        }
    }
    files.sort_by(|(_, a), (_, b)| (&a.agent_id, &a.server).cmp(&(&b.agent_id, &b.server)));
    Ok(files)
}

/// The managed digest of (agent, server, tool), if any, as a session judges it.
fn managed_digest(managed: &[ManagedPin], file: &PinFile, tool: &str) -> Option<String> {
    pins::managed_for(managed, &file.agent_id, &file.server).remove(tool)
}

fn list(files: &[(PathBuf, PinFile)], managed: &[ManagedPin], as_json: bool) -> ExitCode {
    if as_json {
        let servers: Vec<_> = files
            .iter()
            .map(|(path, file)| {
                let tools: Vec<_> = rows(file, managed)
                    .into_iter()
                    .map(|r| {
                        json!({
                            "tool": r.tool, "state": r.state, "digest": r.digest,
                            "pending": r.pending, "managed": r.managed, "seen": r.seen,
                            "definition": r.definition,
                        })
                    })
                    .collect();
                json!({
                    "agent_id": file.agent_id, "server": file.server, "created": file.created,
                    "file": path.display().to_string(), "tools": tools,
                })
            })
            .collect();
        println!("{}", json!({ "servers": servers }));
        return ExitCode::SUCCESS;
    }
    if files.is_empty() {
        println!("no pins yet: a server's first session through `thoth run` pins its tools");
        return ExitCode::SUCCESS;
    }
    let mut waiting: usize = 0;
    for (_, file) in files {
        println!(
            "agent {}  server {}  (pinned {})",
            escaped(&file.agent_id),
            escaped(&file.server),
            escaped(&file.created)
        );
        for row in rows(file, managed) {
            let managed = if row.managed { "  (managed)" } else { "" };
            match &row.pending {
                Some(pending) => {
                    waiting += 1;
                    println!(
                        "  {:<32} {:<8} {} seen {}, pinned {}{managed}",
                        escaped(&row.tool),
                        row.state,
                        pending,
                        escaped(&row.seen),
                        row.digest.as_deref().map_or("nothing", short),
                    );
                }
                None => println!(
                    "  {:<32} {:<8} {}{managed}",
                    escaped(&row.tool),
                    row.state,
                    row.digest.as_deref().map_or("", short),
                ),
            }
        }
    }
    if waiting > 0 {
        println!(
            "{} waiting for review: `thoth pins accept AGENT [TOOL]` pins what was seen",
            count(waiting, "definition")
        );
    }
    ExitCode::SUCCESS
}

/// One tool of a pin file, as listed.
struct Row {
    tool: String,
    state: &'static str,
    /// The digest pinned (managed first).
    digest: Option<String>,
    /// The digest seen and not pinned.
    pending: Option<String>,
    managed: bool,
    seen: String,
    /// The pending definition, for review (JSON output only).
    definition: Option<serde_json::Value>,
}

fn rows(file: &PinFile, managed: &[ManagedPin]) -> Vec<Row> {
    let mut names: Vec<&String> = file.tools.keys().chain(file.pending.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let fleet = managed_digest(managed, file, name);
            let managed = fleet.is_some();
            let pinned = fleet.or_else(|| file.tools.get(name).cloned());
            let pending = file
                .pending
                .get(name)
                .filter(|p| Some(&p.digest) != pinned.as_ref());
            let state = match (pending, &pinned) {
                (None, _) => "pinned",
                (Some(_), Some(_)) => "changed",
                (Some(_), None) => "new",
            };
            Row {
                tool: name.clone(),
                state,
                digest: pinned,
                pending: pending.map(|p| p.digest.clone()),
                managed,
                seen: pending.map(|p| p.seen.clone()).unwrap_or_default(),
                definition: pending.and_then(|p| p.definition.clone()),
            }
        })
        .collect()
}

fn short(digest: &str) -> &str {
    digest.get(..("sha256:".len() + 16)).unwrap_or(digest)
}

fn accept(
    profile: &Profile,
    files: &[(PathBuf, PinFile)],
    managed: &[ManagedPin],
    agent: &str,
    tool: Option<&str>,
    digest: Option<&str>,
) -> ExitCode {
    let mut accepted = 0;
    let mut refused = Vec::new();
    if let Some(tool) = tool
        && files
            .iter()
            .filter(|(_, f)| f.agent_id == agent)
            .any(|(_, f)| managed_digest(managed, f, tool).is_some())
    {
        refused.push(tool.to_string());
    }
    let mut audit = Vec::new();
    for (path, file) in files.iter().filter(|(_, f)| f.agent_id == agent) {
        let mut file = file.clone();
        // A managed pin is the fleet's: a user's accept does not replace it.
        let fleet: Vec<String> = file
            .pending
            .keys()
            .filter(|n| tool.is_none_or(|t| t == n.as_str()))
            .filter(|n| managed_digest(managed, &file, n).is_some())
            .cloned()
            .collect();
        for name in &fleet {
            file.pending.remove(name);
        }
        for name in fleet {
            if !refused.contains(&name) {
                refused.push(name);
            }
        }
        let names = file.accept(tool, digest);
        if names.is_empty() && refused.is_empty() {
            continue;
        }
        if let Err(e) = pins::write_file(path, &file) {
            tracing::error!("{}", escaped(&e.to_string()));
            return ExitCode::from(crate::exit::IO_ERROR);
        }
        for name in &names {
            println!(
                "pinned {} of agent {} (server {})",
                escaped(name),
                escaped(agent),
                escaped(&file.server)
            );
            audit.push(json!({ "tool": name, "server": file.server }));
        }
        accepted += names.len();
    }
    for name in &refused {
        tracing::error!(
            "{} of agent {} is pinned by the managed settings file: only its administrator can change that pin",
            escaped(name),
            escaped(agent)
        );
    }
    if !audit.is_empty() {
        record(profile, "pins_accept", agent, audit);
    }
    if accepted == 0 {
        if refused.is_empty() {
            let mut what = tool.map_or_else(String::new, |t| format!(" for {}", escaped(t)));
            if let Some(d) = digest {
                what.push_str(&format!(" with digest {}", escaped(d)));
            }
            tracing::error!(
                "nothing of agent {} waits for review{what}: `thoth pins list` shows what does",
                escaped(agent)
            );
        }
        return ExitCode::from(crate::exit::FAILURE);
    }
    ExitCode::SUCCESS
}

fn forget(profile: &Profile, files: &[(PathBuf, PinFile)], agent: &str) -> ExitCode {
    let mut forgotten = Vec::new();
    for (path, file) in files.iter().filter(|(_, f)| f.agent_id == agent) {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::error!("{}: cannot remove the pin file: {e}", path.display());
            return ExitCode::from(crate::exit::IO_ERROR);
        }
        println!(
            "forgot the pins of agent {} (server {})",
            escaped(agent),
            escaped(&file.server)
        );
        forgotten.push(json!({ "server": file.server, "tools": file.tools.len() }));
    }
    if forgotten.is_empty() {
        tracing::error!(
            "agent {} has no pins: `thoth pins list` shows the agents that do",
            escaped(agent)
        );
        return ExitCode::from(crate::exit::FAILURE);
    }
    record(profile, "pins_forget", agent, forgotten);
    ExitCode::SUCCESS
}

/// One audit record of a review, in its own session file of the profile's log.
fn record(profile: &Profile, event: &'static str, agent: &str, what: Vec<serde_json::Value>) {
    let session = format!("pins-{}", uuid::Uuid::new_v4());
    match crate::audit::AuditLog::start(&profile.audit_dir(), &session) {
        Ok(log) => {
            let mut fields = serde_json::Map::new();
            fields.insert("agent".into(), json!(agent));
            fields.insert("tools".into(), json!(what));
            log.event(event, fields);
            log.finish();
        }
        Err(e) => tracing::warn!(
            "cannot record this review in the audit log under {}: {e}",
            profile.audit_dir().display()
        ),
    }
}
