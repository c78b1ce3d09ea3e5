//! `thoth doctor`: what an administrator runs before rolling a server out.
//!
//! It reports how the command resolves (every path tried, the winner, the child's
//! PATH), then starts the server through `thoth run` itself — the same binary, flags
//! and proxy code path a client would use — performs `initialize` and `tools/list` as a
//! client would, and shows the decision the active policy gives each tool with empty
//! arguments. A server that fails to start or answer in time is a failure, reported
//! with the tail of its stderr.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::args::{DoctorArgs, RunFlags};
use crate::child;
use crate::enforce::{Decision, ToolFacts};
use crate::exit::config_error;
use crate::proxy::decide::{Engine, Session, decide, input};
use crate::run_cmd::{load_engine, load_settings};
use crate::settings::RunSettings;

/// Why the server gave no usable answer to one of doctor's requests.
#[derive(Debug, thiserror::Error)]
enum Unanswered {
    #[error("the server closed its input: {0}")]
    InputClosed(std::io::Error),
    #[error(
        "no answer to {method} within {seconds}s (a server that builds or downloads itself on its first start may need a longer --timeout)"
    )]
    Timeout { method: String, seconds: u64 },
    #[error("the server exited before answering {0}")]
    Exited(String),
    #[error("{method} failed: {error}")]
    Failed { method: String, error: String },
}

/// How long doctor waits for the rest of an ended server's stderr.
const STDERR_DRAIN: Duration = Duration::from_millis(500);
/// Lines of the server's stderr shown on failure.
const STDERR_TAIL: usize = 20;

/// Runs `thoth doctor`.
pub fn run(args: &DoctorArgs) -> ExitCode {
    let Some((program, rest)) = args.command.split_first() else {
        return config_error(&crate::settings::SettingsError::new(
            "no server command after --",
        ));
    };
    let base = std::path::Path::new(program)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned());
    let settings = match load_settings(&args.flags, base.as_deref()) {
        Ok(s) => s,
        Err(e) => return config_error(&e),
    };
    let engine = match load_engine(&settings) {
        Ok(e) => e,
        Err(e) => return crate::exit::config_report(&e.report()),
    };
    let resolved = match child::resolve_command(program) {
        Ok(r) => r,
        Err(not_found) => {
            if args.json {
                println!(
                    "{}",
                    json!({ "ok": false, "error": not_found.to_string(), "tried": not_found.tried })
                );
            }
            tracing::error!("{}", crate::logging::escaped(&not_found.to_string()));
            return ExitCode::from(crate::exit::NOT_FOUND);
        }
    };
    let child_path = child::child_env(&resolved)
        .into_iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    let resolution = json!({ "command": program.to_string_lossy(), "resolved": resolved.path, "tried": resolved.tried, "child_path": child_path });
    // Pins as they were before the session below (its `thoth run` pins what it lists
    // when nothing was pinned): each row shows what that session judged.
    let (pins, pinned_before) = crate::pins::PinSession::open_read_only(
        &crate::pins::dir_in(&settings.profile.dir),
        &settings.agent_id,
        &crate::pins::server_key(&args.command),
        &settings.tool_pins,
    );
    let exchange = talk_to_server(
        &settings,
        &args.flags,
        &args.command,
        Duration::from_secs(args.timeout),
        crate::settings::EnvVars::from_process()
            .ok()
            .and_then(|env| env.test_progress),
    );
    let (server_info, listed) = match exchange {
        Ok(found) => found,
        Err(failure) => {
            if args.json {
                println!(
                    "{}",
                    json!({ "ok": false, "resolution": resolution, "error": failure.why, "exit_status": failure.exit_status, "thoth_stderr": failure.thoth_lines, "stderr_tail": failure.stderr_tail })
                );
            } else {
                print_resolution(&resolution);
                println!("\nFAILED: {}", failure.why);
                if let Some(status) = &failure.exit_status {
                    println!("server {status}");
                }
                if !failure.thoth_lines.is_empty() {
                    println!("thoth run said:");
                    for line in &failure.thoth_lines {
                        println!("  {}", crate::logging::escaped(line));
                    }
                }
                println!("server stderr (last {STDERR_TAIL} lines):");
                for line in &failure.stderr_tail {
                    println!("  {}", crate::logging::escaped(line));
                }
            }
            return ExitCode::from(crate::exit::FAILURE);
        }
    };
    // The server's own definitions, as the proxy's catalog reads them: each row is
    // decided with the tool's title and annotations.
    let mut catalog = crate::catalog::Catalog::with_pins(pins);
    catalog.absorb_tools(&listed);
    let tools: Vec<String> = listed
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect();
    let hidden = |name: &str, facts: &ToolFacts| match &engine {
        Engine::Local(local) => {
            let history = crate::enforce::SessionHistory::default();
            local.hides(&input(&settings, "", &history, name, facts, None))
        }
        Engine::Remote(_) => None,
    };
    let rows: Vec<(String, ToolFacts, Decision)> = tools
        .iter()
        .map(|name| {
            // A fresh session per tool: each row is what a first call would get.
            let mut session = Session::new();
            let empty = Value::Object(serde_json::Map::new());
            let facts = catalog.facts(name);
            let decision = match &engine {
                Engine::Local(local) => decide(
                    local,
                    &settings,
                    &mut session,
                    name,
                    &facts,
                    Some(&empty),
                    2,
                ),
                Engine::Remote(remote) => {
                    let history = session.history.clone();
                    let call = input(&settings, &session.id, &history, name, &facts, Some(&empty));
                    let ask = remote.enforce(&call, &session.id, "doctor");
                    match crate::runtime::current_thread() {
                        Ok(rt) => rt.block_on(ask),
                        Err(e) => {
                            Decision::new(crate::enforce::Verdict::Block, format!("internal: {e}"))
                        }
                    }
                }
            };
            let mut decision = decision;
            if let Some(rule) = hidden(name, &facts) {
                decision.extra.insert("hidden_by".into(), json!(rule));
            }
            (name.clone(), facts, decision)
        })
        .collect();
    let _ = rest;
    if args.json {
        let tools: Vec<Value> = rows
            .iter()
            .map(|(name, facts, d)| {
                json!({ "name": name, "title": facts.title, "annotations": {
                "readOnlyHint": facts.read_only, "destructiveHint": facts.destructive,
                "idempotentHint": facts.idempotent, "openWorldHint": facts.open_world,
            }, "pin": facts.pin.as_str(), "description_flags": facts.description_flags.names(),
               "hidden_by": d.extra.get("hidden_by"),
               "decision": d.verdict.as_str(), "reason": d.reason, "rule_ids": d.matched_rule_ids })
            })
            .collect();
        println!(
            "{}",
            json!({ "ok": true, "resolution": resolution, "engine": engine_text(&settings), "mode": settings.mode.as_str(), "server": server_info, "tools": tools })
        );
    } else {
        print_resolution(&resolution);
        println!("\nengine:      {}", engine_text(&settings));
        println!("mode:        {}", settings.mode.as_str());
        // The server's and the enforcer's texts, escaped: neither can forge a line.
        println!(
            "server:      {} {}",
            crate::logging::escaped(server_info["name"].as_str().unwrap_or("?")),
            crate::logging::escaped(server_info["version"].as_str().unwrap_or(""))
        );
        if !pinned_before {
            println!(
                "pins:        first sight of this agent and server: this session pinned every tool it listed (`thoth pins list`)"
            );
        }
        println!("\n{}:", crate::wording::count(rows.len(), "tool"));
        let names: Vec<String> = rows
            .iter()
            .map(|(n, _, _)| crate::logging::escaped(n).to_string())
            .collect();
        let claims: Vec<String> = rows.iter().map(|(_, f, _)| f.claims().join(",")).collect();
        let width = names.iter().map(String::len).max().unwrap_or(4).max(4);
        let claims_width = claims.iter().map(String::len).max().unwrap_or(0).max(6);
        println!(
            "  {:<width$}  {:<8}  {:<claims_width$}  {:<7}  REASON",
            "TOOL", "DECISION", "CLAIMS", "PIN"
        );
        for ((name, claimed), (_, facts, d)) in names.iter().zip(&claims).zip(&rows) {
            let mut notes = String::new();
            if d.extra.contains_key("hidden_by") {
                notes.push_str(" (hidden from the client's tool list)");
            }
            if !facts.description_flags.is_empty() {
                notes.push_str(&format!(
                    " (description holds {})",
                    facts.description_flags.names().join(", ")
                ));
            }
            println!(
                "  {name:<width$}  {:<8}  {claimed:<claims_width$}  {:<7}  {}{notes}",
                d.verdict.as_str(),
                facts.pin.as_str(),
                crate::logging::escaped(&d.reason)
            );
        }
    }
    ExitCode::SUCCESS
}

fn engine_text(settings: &RunSettings) -> String {
    match &settings.engine {
        crate::settings::EngineChoice::Local { policy, why } => {
            format!("local Cedar policy {} ({why})", policy.display())
        }
        crate::settings::EngineChoice::Remote { url, why } => {
            format!("remote enforcer {url} ({why})")
        }
    }
}

fn print_resolution(resolution: &Value) {
    println!(
        "command:     {}",
        resolution["command"].as_str().unwrap_or_default()
    );
    println!(
        "resolved:    {}",
        resolution["resolved"].as_str().unwrap_or_default()
    );
    let tried = resolution["tried"].as_array().map(Vec::len).unwrap_or(0);
    println!("paths tried: {tried}");
    for path in resolution["tried"].as_array().into_iter().flatten() {
        println!("  {}", path.as_str().unwrap_or_default());
    }
    println!(
        "child PATH:  {}",
        resolution["child_path"].as_str().unwrap_or_default()
    );
}

struct DoctorFailure {
    why: String,
    /// How the server ended, when it ended on its own (`exit status: 3`): `thoth run`
    /// exits with the server's code.
    exit_status: Option<String>,
    /// `thoth run`'s own diagnostics, told apart from the server's by their level.
    thoth_lines: Vec<String>,
    stderr_tail: Vec<String>,
}

/// Whether a stderr line is one of `thoth run`'s own (see `logging`: a level, padded
/// to five, then a space), not the server's.
fn is_thoth_line(line: &str) -> bool {
    ["ERROR ", " WARN ", " INFO ", "DEBUG ", "TRACE "]
        .iter()
        .any(|level| line.starts_with(level))
}

/// Says doctor is still waiting: a spinner on a terminal, else a line every few
/// seconds (a server that installs itself can take minutes to answer).
struct Progress {
    terminal: bool,
    every: Duration,
    started: Instant,
    said: Duration,
    frame: usize,
    spinning: bool,
}

/// Seconds between "still waiting" lines off a terminal.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Spinner frames' interval on a terminal.
const SPIN_EVERY: Duration = Duration::from_millis(120);

impl Progress {
    fn new(every: Option<Duration>) -> Self {
        use std::io::IsTerminal;
        Self {
            terminal: std::io::stderr().is_terminal(),
            every: every.unwrap_or(PROGRESS_EVERY),
            started: Instant::now(),
            said: Duration::ZERO,
            frame: 0,
            spinning: false,
        }
    }

    /// How long to wait for an answer before the next tick.
    fn interval(&self) -> Duration {
        if self.terminal {
            SPIN_EVERY
        } else {
            self.every
        }
    }

    fn tick(&mut self, method: &str) {
        let waited = self.started.elapsed();
        if self.terminal {
            const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
            self.frame = (self.frame + 1) % FRAMES.len();
            eprint!(
                "\r{} waiting for the server to answer {method} ({} s)\x1b[K",
                FRAMES[self.frame],
                waited.as_secs()
            );
            self.spinning = true;
        } else if waited >= self.said + self.every {
            self.said = waited;
            tracing::info!(
                "waiting for the server to answer {method} ({} s)…",
                waited.as_secs()
            );
        }
    }

    /// Clears the spinner line.
    fn done(&mut self) {
        if self.spinning {
            eprint!("\r\x1b[K");
            self.spinning = false;
        }
    }
}

/// Starts `thoth run` with the same flags, then initialize + tools/list.
fn talk_to_server(
    settings: &RunSettings,
    flags: &RunFlags,
    command: &[std::ffi::OsString],
    timeout: Duration,
    progress_every: Option<Duration>,
) -> Result<(Value, Vec<Value>), DoctorFailure> {
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let thoth_said = Arc::new(Mutex::new(Vec::new()));
    let fail = |why: String, exit_status: Option<String>| DoctorFailure {
        why,
        exit_status,
        thoth_lines: thoth_said.lock().map(|t| t.clone()).unwrap_or_default(),
        stderr_tail: tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default(),
    };
    let exe = std::env::current_exe()
        .map_err(|e| fail(format!("cannot find thoth itself: {e}"), None))?;
    let mut cmd = Command::new(exe);
    cmd.arg("run").args([
        "--agent-id",
        &settings.agent_id,
        "--tenant-id",
        &settings.tenant_id,
    ]);
    cmd.args(["--enforcement-mode", settings.mode.as_str()]);
    let optional = [
        ("--user-id", &flags.user_id),
        ("--endpoint-id", &flags.endpoint_id),
        ("--session-intent", &flags.session_intent),
    ];
    for (flag, value) in optional {
        if let Some(v) = value {
            cmd.args([flag, v]);
        }
    }
    if let Some(policy) = &flags.policy {
        cmd.arg("--policy").arg(policy);
    }
    if let Some(key) = &settings.api_key {
        // Never on a command line.
        cmd.env("THOTH_API_KEY", key.expose());
    }
    if std::env::var_os("THOTH_LOG").is_none() {
        // doctor has said which engine and policy it uses: the run's own INFO lines
        // would only repeat that.
        cmd.env("THOTH_LOG", "warn");
    }
    cmd.arg("--")
        .args(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start thoth run: {e}"), None))?;
    let stderr = child.stderr.take();
    let sink = tail.clone();
    let thoth_sink = thoth_said.clone();
    let stderr_reader = std::thread::spawn(move || {
        for line in stderr
            .into_iter()
            .flat_map(|s| BufReader::new(s).lines())
            .map_while(Result::ok)
        {
            if is_thoth_line(&line) {
                if let Ok(mut t) = thoth_sink.lock()
                    && t.len() < STDERR_TAIL
                {
                    t.push(line);
                }
                continue;
            }
            if let Ok(mut t) = sink.lock() {
                if t.len() == STDERR_TAIL {
                    t.pop_front();
                }
                t.push_back(line);
            }
        }
    });
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take();
    std::thread::spawn(move || {
        for line in stdout
            .into_iter()
            .flat_map(|s| BufReader::new(s).lines())
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut stdin = child.stdin.take();
    let deadline = Instant::now() + timeout;
    let mut progress = Progress::new(progress_every);
    let mut request = |id: u32, method: &str, params: Value| -> Result<Value, Unanswered> {
        let frame = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        if let Some(input) = stdin.as_mut() {
            writeln!(input, "{frame}")
                .and_then(|()| input.flush())
                .map_err(Unanswered::InputClosed)?;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left.min(progress.interval())) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {
                    progress.tick(method);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    progress.done();
                    return Err(Unanswered::Timeout {
                        method: method.to_string(),
                        seconds: timeout.as_secs(),
                    });
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    progress.done();
                    return Err(Unanswered::Exited(method.to_string()));
                }
            };
            progress.done();
            let Ok(reply) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if reply["id"] == json!(id) {
                if let Some(error) = reply.get("error") {
                    return Err(Unanswered::Failed {
                        method: method.to_string(),
                        error: error.to_string(),
                    });
                }
                return Ok(reply["result"].clone());
            }
        }
    };
    let result = (|| {
        let init = request(
            1,
            "initialize",
            json!({ "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "thoth-doctor", "version": env!("CARGO_PKG_VERSION") } }),
        )?;
        let list = request(2, "tools/list", json!({}))?;
        Ok::<_, Unanswered>((init, list))
    })();
    // A server that ended on its own has a status worth showing (thoth run exits with
    // the server's code soon after the server ends); one doctor stops has none.
    let ended_since = Instant::now();
    let mut ended = None;
    while result.is_err() && ended_since.elapsed() < STDERR_DRAIN {
        if let Ok(Some(status)) = child.try_wait() {
            ended = Some(status.to_string());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(stdin);
    let _ = child.wait();
    // The last lines the server wrote before it ended are the ones that explain it; a
    // grandchild that keeps the pipe open must not hold doctor, so the wait is bounded.
    let reading_since = Instant::now();
    while !stderr_reader.is_finished() && reading_since.elapsed() < STDERR_DRAIN {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (init, list) = result.map_err(|why| fail(why.to_string(), ended))?;
    let tools = list["tools"].as_array().cloned().unwrap_or_default();
    Ok((init["serverInfo"].clone(), tools))
}
