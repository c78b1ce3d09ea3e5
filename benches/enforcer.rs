//! The remote path measured: `thoth enforcer serve` under 64 concurrent clients, and
//! the added latency of a remote decision in a tools/call round trip through
//! `thoth run -- cat`, beside the local engine and `cat` alone, in one run.
//!
//! Run: `cargo bench --bench enforcer` (a bench binary printing decisions/s and
//! p50/p99; `THOTH_BENCH_SECONDS` sets the load duration, default 5). The server keeps
//! its state in its default SQLite file; with `THOTH_BENCH_DATABASE_URL=postgres://…`
//! the load also runs against one and two replicas on that PostgreSQL, while holds are
//! created and approved meanwhile (one every 10 ms).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const KEY: &str = "bench-key";

fn home() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("thoth-bench-enforcer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn policy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/policies/read-only.cedar")
}

fn thoth() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thoth"));
    cmd.env("HOME", home())
        .env("THOTH_ENV", "dev")
        .env("THOTH_LOG", "warn")
        .env_remove("THOTH_API_KEY");
    cmd
}

/// read_file is allowed; send_mail waits for an approver (a hold).
const POLICY: &str = r#"permit (principal, action, resource) when { resource.name == "read_file" };
@decision("step_up") forbid (principal, action, resource) when { resource.name == "send_mail" };
permit (principal, action, resource) when { resource.name == "send_mail" };
"#;

fn start_server() -> (Child, String) {
    start_replica(None)
}

fn start_replica(database: Option<&str>) -> (Child, String) {
    use std::os::unix::fs::PermissionsExt;
    let key = home().join("bench-key");
    std::fs::write(&key, KEY).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut child = thoth()
        .env("THOTH_LOG", "info")
        .env("THOTH_APPROVER_KEY", "bench-approver")
        .args(["enforcer", "serve", "--listen", "127.0.0.1:0", "--policy"])
        .arg(if database.is_some() {
            let path = home().join("bench.cedar");
            std::fs::write(&path, POLICY).unwrap();
            path
        } else {
            policy()
        })
        .args([
            "--max-requests-per-second",
            "100000",
            "--max-connections",
            "1024",
        ])
        .args(
            database
                .map(|url| ["--database-url", url])
                .into_iter()
                .flatten(),
        )
        .arg("--api-key-file")
        .arg(&key)
        .arg("--events-file")
        .arg(home().join("events.jsonl"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "no address logged"
        );
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            break url.to_string();
        }
    };
    // Its later lines are not read: keep the pipe drained.
    std::thread::spawn(move || for _ in reader.lines() {});
    (child, url)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn load(url: &str, seconds: u64) {
    load_on(&[url], seconds, false, "enforcer serve (SQLite state)");
}

/// 64 clients spread over `urls`; with `holds`, a 65th creates a hold every 10 ms and
/// approves it on the next replica.
fn load_on(urls: &[&str], seconds: u64, holds: bool, label: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (count, mut latencies) = runtime.block_on(async {
        let body = json!({
            "agent_id": "bench", "tenant_id": "local", "user_id": "u", "tool_name": "read_file",
            "tool_args": { "path": "/srv/data/file.txt", "limit": 4000 }, "session_id": "s",
            "session_tool_calls": ["read_file"], "enforcement_mode": "block", "environment": "dev"
        });
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let client = || {
            reqwest::Client::builder()
                .tls_backend_preconfigured(thoth::TlsSettings::default().client_config().unwrap())
                .build()
                .unwrap()
        };
        let approvals = holds.then(|| {
            let client = client();
            let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
            tokio::spawn(async move {
                let mut approved = 0u64;
                let mut i = 0usize;
                while Instant::now() < deadline {
                    let on = &urls[i % urls.len()];
                    let next = &urls[(i + 1) % urls.len()];
                    i += 1;
                    let held: serde_json::Value = client
                        .post(format!("{on}/v1/enforce"))
                        .header("x-api-key", KEY)
                        .json(&json!({
                            "agent_id": format!("bench-{i}"), "tenant_id": "local", "user_id": "u",
                            "tool_name": "send_mail", "tool_args": { "to": "a@b.example" },
                            "session_id": "h", "enforcement_mode": "block", "environment": "dev"
                        }))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    let token = held["hold_token"].as_str().unwrap().to_string();
                    let r = client
                        .post(format!("{next}/v1/holds/{token}/approve"))
                        .bearer_auth("bench-approver")
                        .header("x-approver-name", "bench")
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                    approved += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                approved
            })
        });
        let mut tasks = Vec::new();
        for n in 0..64 {
            let client = client();
            let url = format!("{}/v1/enforce", urls[n % urls.len()]);
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let r = client
                        .post(&url)
                        .header("x-api-key", KEY)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success());
                    let _ = r.bytes().await.unwrap();
                    latencies.push(started.elapsed());
                }
                latencies
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let approved = match approvals {
            Some(task) => task.await.unwrap(),
            None => 0,
        };
        (all.len(), (all, approved))
    });
    let (mut latencies, approved) = (std::mem::take(&mut latencies.0), latencies.1);
    latencies.sort();
    println!(
        "{label}, 64 concurrent clients, {seconds} s: {:.0} decisions/s, p50 {:?}, p99 {:?}{}",
        count as f64 / seconds as f64,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        if holds {
            format!(" ({approved} holds created and approved meanwhile)")
        } else {
            String::new()
        }
    );
}

fn round_trip(name: &str, mut cmd: Command, iterations: usize) -> Duration {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let frame = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "read_file", "arguments": { "path": "/etc/hosts" } } }).to_string() + "\n";
    let mut line = String::new();
    let mut latencies = Vec::with_capacity(iterations);
    for i in 0..iterations + 200 {
        let started = Instant::now();
        stdin.write_all(frame.as_bytes()).unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line.len(), frame.len(), "{name}: {line}");
        if i >= 200 {
            latencies.push(started.elapsed());
        }
    }
    drop(stdin);
    child.wait().unwrap();
    latencies.sort();
    let p50 = percentile(&latencies, 0.5);
    println!(
        "round trip {name:<28} p50 {:>9.1?}  p99 {:>9.1?}",
        p50,
        percentile(&latencies, 0.99)
    );
    p50
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing else.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds: u64 = std::env::var("THOTH_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let (mut server, url) = start_server();
    load(&url, seconds);
    if let Ok(database) = std::env::var("THOTH_BENCH_DATABASE_URL") {
        let (mut one, first) = start_replica(Some(&database));
        load_on(
            &[&first],
            seconds,
            true,
            "enforcer serve, 1 replica on PostgreSQL",
        );
        let (mut two, second) = start_replica(Some(&database));
        load_on(
            &[&first, &second],
            seconds,
            true,
            "enforcer serve, 2 replicas on PostgreSQL",
        );
        for replica in [&mut one, &mut two] {
            let _ = replica.kill();
            let _ = replica.wait();
        }
    }

    let remote = |telemetry: &str| {
        let mut cmd = thoth();
        cmd.args(["run", "--agent-id", "bench", "--", "cat"])
            .env("THOTH_ENFORCER_URL", &url)
            .env("THOTH_API_KEY", KEY)
            .env("THOTH_TELEMETRY", telemetry);
        cmd
    };
    let mut local = thoth();
    local
        .args(["run", "--agent-id", "bench", "--policy"])
        .arg(policy())
        .args(["--", "cat"]);
    let n = 2000;
    let cat = round_trip("cat alone", Command::new("cat"), n);
    let local_p50 = round_trip("thoth run (local Cedar)", local, n);
    let off = round_trip("thoth run (remote, no telemetry)", remote("off"), n);
    let on = round_trip("thoth run (remote, telemetry)", remote("on"), n);
    println!(
        "added p50 over cat: local {:?}, remote {:?} (telemetry off), {:?} (on); remote over local: {:?}",
        local_p50.saturating_sub(cat),
        off.saturating_sub(cat),
        on.saturating_sub(cat),
        off.saturating_sub(local_p50)
    );
    let _ = server.kill();
    let _ = server.wait();
}
