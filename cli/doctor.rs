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
use crate::enforce::Decision;
use crate::exit::config_error;
use crate::proxy::decide::{Engine, Session, decide, input};
use crate::run_cmd::{load_engine, load_settings};
use crate::settings::RunSettings;

/// Why the server gave no usable answer to one of doctor's requests.
#[derive(Debug, thiserror::Error)]
enum Unanswered {
    #[error("the server closed its input: {0}")]
    InputClosed(std::io::Error),
    #[error("no answer to {method} within {seconds}s")]
    Timeout { method: String, seconds: u64 },
    #[error("the server exited before answering {0}")]
    Exited(String),
    #[error("{method} failed: {error}")]
    Failed { method: String, error: String },
}

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
        Err(e) => return config_error(&e),
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
    let exchange = talk_to_server(
        &settings,
        &args.flags,
        &args.command,
        Duration::from_secs(args.timeout),
    );
    let (server_info, tools) = match exchange {
        Ok(found) => found,
        Err(failure) => {
            if args.json {
                println!(
                    "{}",
                    json!({ "ok": false, "resolution": resolution, "error": failure.why, "stderr_tail": failure.stderr_tail })
                );
            } else {
                print_resolution(&resolution);
                println!("\nFAILED: {}", failure.why);
                println!("server stderr (last {STDERR_TAIL} lines):");
                for line in &failure.stderr_tail {
                    println!("  {}", crate::logging::escaped(line));
                }
            }
            return ExitCode::from(crate::exit::FAILURE);
        }
    };
    let rows: Vec<(String, Decision)> = tools
        .iter()
        .map(|name| {
            // A fresh session per tool: each row is what a first call would get.
            let mut session = Session::new();
            let empty = Value::Object(serde_json::Map::new());
            let decision = match &engine {
                Engine::Local(local) => {
                    decide(local, &settings, &mut session, name, Some(&empty), 2)
                }
                Engine::Remote(remote) => {
                    let history = session.history.clone();
                    let call = input(&settings, &session.id, &history, name, Some(&empty));
                    let ask = remote.enforce(&call, &session.id, "doctor");
                    match crate::runtime::current_thread() {
                        Ok(rt) => rt.block_on(ask),
                        Err(e) => {
                            Decision::new(crate::enforce::Verdict::Block, format!("internal: {e}"))
                        }
                    }
                }
            };
            (name.clone(), decision)
        })
        .collect();
    let _ = rest;
    if args.json {
        let tools: Vec<Value> = rows
            .iter()
            .map(|(name, d)| json!({ "name": name, "decision": d.verdict.as_str(), "reason": d.reason, "rule_ids": d.matched_rule_ids }))
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
        println!("\n{} tool(s):", rows.len());
        let names: Vec<String> = rows
            .iter()
            .map(|(n, _)| crate::logging::escaped(n).to_string())
            .collect();
        let width = names.iter().map(String::len).max().unwrap_or(4).max(4);
        println!("  {:<width$}  {:<8}  REASON", "TOOL", "DECISION");
        for (name, (_, d)) in names.iter().zip(&rows) {
            println!(
                "  {name:<width$}  {:<8}  {}",
                d.verdict.as_str(),
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
    stderr_tail: Vec<String>,
}

/// Starts `thoth run` with the same flags, then initialize + tools/list.
fn talk_to_server(
    settings: &RunSettings,
    flags: &RunFlags,
    command: &[std::ffi::OsString],
    timeout: Duration,
) -> Result<(Value, Vec<String>), DoctorFailure> {
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let fail = |why: String, tail: &Arc<Mutex<VecDeque<String>>>| DoctorFailure {
        why,
        stderr_tail: tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default(),
    };
    let exe = std::env::current_exe()
        .map_err(|e| fail(format!("cannot find thoth itself: {e}"), &tail))?;
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
    cmd.arg("--")
        .args(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start thoth run: {e}"), &tail))?;
    let stderr = child.stderr.take();
    let sink = tail.clone();
    std::thread::spawn(move || {
        for line in stderr
            .into_iter()
            .flat_map(|s| BufReader::new(s).lines())
            .map_while(Result::ok)
        {
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
    let mut request = |id: u32, method: &str, params: Value| -> Result<Value, Unanswered> {
        let frame = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        if let Some(input) = stdin.as_mut() {
            writeln!(input, "{frame}")
                .and_then(|()| input.flush())
                .map_err(Unanswered::InputClosed)?;
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => Unanswered::Timeout {
                    method: method.to_string(),
                    seconds: timeout.as_secs(),
                },
                mpsc::RecvTimeoutError::Disconnected => Unanswered::Exited(method.to_string()),
            })?;
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
    drop(stdin);
    let _ = child.wait();
    let (init, list) = result.map_err(|why| fail(why.to_string(), &tail))?;
    let tools = list["tools"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok((init["serverInfo"].clone(), tools))
}
