//! `thoth run` measured against the same work without thoth, in one run:
//!
//! - `passthrough_100MB`: 100 MB of notifications through `thoth run -- cat` (client
//!   pump, scan, server writer, `cat`, server relay) beside the same bytes through the
//!   same pipes with a plain byte copy where thoth's pumps are (`plain_copy_proxy_cat`:
//!   threads copying client → cat → client), and through `cat` alone (half the pipes);
//!   then the pumps in process (`pumps_in_process`: [`thoth::proxy::run_pipes`], the
//!   server's stdin pipe looped to its stdout) beside threads copying through the same
//!   three pipes (`plain_copy_in_process`);
//! - `realistic_stream`: ~20 MB of what an MCP session carries (results of 20 to 8000
//!   words with escapes, pings and their answers, progress notifications, tools/call
//!   with `_meta.progressToken`; 10 % of frames over 4 KB) through `thoth run -- cat`,
//!   beside the plain copy proxy and `cat` alone;
//! - `realistic_no_calls`, `realistic_65pct_calls`: the same kinds of frames with no
//!   tools/call and with 65 % of frames tools/call decided by the policy, through
//!   `thoth run -- cat` beside the minimal relay (the floor: two threads, blocking
//!   copies, no parsing; this binary re-run with `THOTH_BENCH_MINIMAL_RELAY`) and `cat`
//!   alone, with thoth's peak RSS;
//! - `round_trip_latency`: p50 of 2,000 interleaved round trips through `cat`, the
//!   minimal relay and `thoth run`, unpinned and pinned to one CPU (printed first);
//! - `tools_call_stream`: 10 MB of allowed tools/call frames through `thoth run -- cat`
//!   (every frame decided by the local engine), beside `cat` alone;
//! - `round_trip`: one tools/call written and its echo read back, through
//!   `thoth run -- cat` and through `cat` alone (the added latency is the difference);
//! - `local_decision/<policy>`: one decision of the local Cedar engine, per example
//!   policy, as thoth runs it (an outcome is reused when no policy reads per-call
//!   context) and `<policy>_uncached` (Cedar evaluated every time); criterion's median
//!   is the p50.
//!
//! Run: `cargo bench --bench proxy`. Peak memory while relaying: see README.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use serde_json::json;
use thoth::LocalEngine;
use thoth::Mode;
use thoth::Profile;
use thoth::RunSettings;
use thoth::{Catalog, Engine, Session, ToolFacts, decide};

fn policy(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/policies")
        .join(name)
}

fn home() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("thoth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn thoth_cat() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thoth"));
    cmd.args(["run", "--agent-id", "bench", "--policy"])
        .arg(policy("read-only.cedar"))
        .args(["--", "cat"])
        .env("HOME", home())
        .env("THOTH_ENV", "dev")
        .env("THOTH_LOG", "warn");
    cmd
}

fn spawn(mut cmd: Command) -> (Child, ChildStdin, ChildStdout) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    (child, stdin, stdout)
}

/// Pushes `input` through a fresh process and reads everything back.
fn stream_through(cmd: Command, input: &'static [u8]) -> Duration {
    let started = Instant::now();
    let (mut child, mut stdin, mut stdout) = spawn(cmd);
    let writer = std::thread::spawn(move || {
        stdin.write_all(input).unwrap();
    });
    let total = drain(&mut stdout);
    writer.join().unwrap();
    child.wait().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(total, input.len(), "every byte came back");
    elapsed
}

fn copy_bytes(from: &mut impl Read, to: &mut impl Write) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).unwrap();
        if n == 0 {
            return;
        }
        to.write_all(&buf[..n]).unwrap();
    }
}

/// A plain byte copy where thoth's pumps are: feeder → pipe → copy → `to_server` …
/// `from_server` → copy → pipe → reader, the copies being threads. A read/write loop
/// through user memory, as any proxy that looks at the bytes must (`std::io::copy`
/// would splice pipe to pipe inside the kernel). Returns the bytes read back.
fn copies_around(
    input: &'static [u8],
    mut to_server: impl Write + Send + 'static,
    mut from_server: impl Read + Send + 'static,
) -> usize {
    let (mut client_in, mut feed) = std::io::pipe().unwrap();
    let (back, mut client_out) = std::io::pipe().unwrap();
    let feeder = std::thread::spawn(move || feed.write_all(input).unwrap());
    let to_server = std::thread::spawn(move || copy_bytes(&mut client_in, &mut to_server));
    let to_client = std::thread::spawn(move || copy_bytes(&mut from_server, &mut client_out));
    let total = drain(back);
    feeder.join().unwrap();
    to_server.join().unwrap();
    to_client.join().unwrap();
    total
}

/// The same pipes as `thoth run -- cat` with a plain byte copy where thoth scans.
fn copy_proxy_through(input: &'static [u8]) -> Duration {
    let started = Instant::now();
    let (mut child, cat_in, cat_out) = spawn(Command::new("cat"));
    let total = copies_around(input, cat_in, cat_out);
    child.wait().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(total, input.len(), "every byte came back");
    elapsed
}

/// Reads `from` to its end; returns how many bytes came.
fn drain(mut from: impl Read) -> usize {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    loop {
        let n = from.read(&mut buf).unwrap();
        if n == 0 {
            return total;
        }
        total += n;
    }
}

/// The pumps in process: feeder → pipe → client pump (scan) → pipe → relay → pipe →
/// reader, with no child between the pumps (the server's stdin pipe is its stdout).
fn pumps_through(input: &'static [u8]) -> Duration {
    // Loading the policy is not relaying: it stays out of the measured time.
    let parts = (
        settings(Mode::Block),
        Engine::Local(std::sync::Arc::new(
            LocalEngine::load(&policy("read-only.cedar")).unwrap(),
        )),
        Session::new(),
    );
    let started = Instant::now();
    let (client_in, mut feed) = std::io::pipe().unwrap();
    let (server_out, server_in) = std::io::pipe().unwrap();
    let (back, client_out) = std::io::pipe().unwrap();
    let feeder = std::thread::spawn(move || feed.write_all(input).unwrap());
    let pumps = std::thread::spawn(move || {
        thoth::run_pipes(
            parts,
            client_in.into(),
            client_out.into(),
            server_in.into(),
            server_out.into(),
        )
        .unwrap()
    });
    let total = drain(back);
    feeder.join().unwrap();
    pumps.join().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(total, input.len(), "every byte came back");
    elapsed
}

/// The same three pipes with a plain byte copy where the pumps are.
fn copies_through(input: &'static [u8]) -> Duration {
    let started = Instant::now();
    let (server_out, server_in) = std::io::pipe().unwrap();
    let total = copies_around(input, server_in, server_out);
    let elapsed = started.elapsed();
    assert_eq!(total, input.len(), "every byte came back");
    elapsed
}

fn frames(target: usize, make: impl Fn(usize) -> String) -> &'static [u8] {
    let mut out = Vec::with_capacity(target + 256);
    let mut i = 0;
    while out.len() < target {
        out.extend_from_slice(make(i).as_bytes());
        out.push(b'\n');
        i += 1;
    }
    Box::leak(out.into_boxed_slice())
}

const WORDS: &[&str] = &[
    "the",
    "patient",
    "record",
    "shows",
    "a",
    "value",
    "of",
    "\\\"quoted\\\"",
    "text",
    "line\\n",
    "with",
    "caf\u{e9}",
    "tab\\t",
    "data",
    "and",
    "results",
    "for",
    "query",
    "file",
    "path",
];

/// `n` words of tool-result text, as a JSON string body (escapes included).
fn words(n: usize, seed: usize) -> String {
    (0..n)
        .map(|k| WORDS[(seed + k * 7) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// One frame of a realistic session: 10 % large results (700–8000 words, over 4 KB),
/// 30 % small results (20–520 words), 20 % tools/call with a progress token, 10 %
/// pings, 10 % ping answers, 20 % progress notifications.
fn realistic(i: usize) -> String {
    match i % 10 {
        0 => format!(
            r#"{{"jsonrpc":"2.0","id":"r{i}","result":{{"content":[{{"type":"text","text":"{}"}}],"isError":false}}}}"#,
            words(700 + (i * 7919) % 7300, i)
        ),
        1..=3 => format!(
            r#"{{"jsonrpc":"2.0","id":"r{i}","result":{{"content":[{{"type":"text","text":"{}"}}],"isError":false}}}}"#,
            words(20 + (i * 31) % 500, i)
        ),
        4 | 5 => format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"read_file","arguments":{{"path":"/srv/data/file-{i}.txt","limit":4000}},"_meta":{{"progressToken":"p{i}"}}}}}}"#
        ),
        6 => format!(r#"{{"jsonrpc":"2.0","id":"ping-{i}","method":"ping"}}"#),
        7 => format!(r#"{{"jsonrpc":"2.0","id":"ping-{i}","result":{{}}}}"#),
        _ => format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":"p{i}","progress":{i},"total":100000,"message":"reading part {i}"}}}}"#
        ),
    }
}

/// A frame of a session with `calls_percent` % tools/call (decided by the policy; a
/// progress token on each) and the rest as in [`realistic`] without its calls.
fn mixed(i: usize, calls_percent: usize) -> String {
    if (i * 37) % 100 < calls_percent {
        return format!(
            r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"read_file","arguments":{{"path":"/srv/data/file-{i}.txt","limit":4000}},"_meta":{{"progressToken":"p{i}"}}}}}}"#
        );
    }
    // The kinds of `realistic` other than its tools/call (4 and 5), in turn.
    realistic([0, 1, 2, 3, 6, 7, 8, 9][i % 8] + 10 * (i / 8))
}

/// Peak RSS (VmHWM, KiB) of `pid`, sampled until it exits.
fn watch_peak_rss(pid: u32) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            let hwm = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|n| n.parse().ok());
            match hwm {
                Some(kib) => peak = peak.max(kib),
                None => break,
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        peak
    })
}

/// One pass of `input` through `thoth run -- cat`, for thoth's peak RSS.
fn peak_rss_through_thoth(input: &'static [u8]) -> u64 {
    let (mut child, mut stdin, mut stdout) = spawn(thoth_cat());
    let peak = watch_peak_rss(child.id());
    let writer = std::thread::spawn(move || stdin.write_all(input).unwrap());
    drain(&mut stdout);
    writer.join().unwrap();
    child.wait().unwrap();
    peak.join().unwrap()
}

/// Sessions with no tools/call and with 65 % tools/call: `thoth run -- cat` beside the
/// minimal relay and `cat` alone (the ratios to the relay are the figures that count),
/// and thoth's peak RSS on each.
fn mixes(c: &mut Criterion) {
    for (label, percent) in [("realistic_no_calls", 0), ("realistic_65pct_calls", 65)] {
        let session = frames(20_000_000, |i| mixed(i, percent));
        let count = session.iter().filter(|&&b| b == b'\n').count();
        let calls = session
            .split(|&b| b == b'\n')
            .filter(|f| f.windows(12).any(|w| w == b"\"tools/call\""))
            .count();
        eprintln!(
            "{label}: {count} frames ({calls} tools/call) of {} bytes; thoth peak RSS {} KiB",
            session.len(),
            peak_rss_through_thoth(session)
        );
        let mut group = c.benchmark_group(label);
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(10))
            .throughput(Throughput::Bytes(session.len() as u64));
        group.bench_function("thoth_run_cat", |b| {
            b.iter_custom(|n| (0..n).map(|_| stream_through(thoth_cat(), session)).sum())
        });
        group.bench_function("minimal_relay_cat", |b| {
            b.iter_custom(|n| {
                (0..n)
                    .map(|_| stream_through(relay(&["cat"]), session))
                    .sum()
            })
        });
        group.bench_function("cat_alone", |b| {
            b.iter_custom(|n| {
                (0..n)
                    .map(|_| stream_through(Command::new("cat"), session))
                    .sum()
            })
        });
        group.finish();
    }
}

fn streams(c: &mut Criterion) {
    let session = frames(20_000_000, realistic);
    let count = session.iter().filter(|&&b| b == b'\n').count();
    let large = session
        .split(|&b| b == b'\n')
        .filter(|f| f.len() > 4096)
        .count();
    eprintln!(
        "realistic_stream: {count} frames ({large} over 4 KB) of {} bytes",
        session.len()
    );
    let mut group = c.benchmark_group("realistic_stream");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Bytes(session.len() as u64));
    group.bench_function("thoth_run_cat", |b| {
        b.iter_custom(|n| (0..n).map(|_| stream_through(thoth_cat(), session)).sum())
    });
    group.bench_function("cat_alone", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| stream_through(Command::new("cat"), session))
                .sum()
        })
    });
    group.bench_function("plain_copy_proxy_cat", |b| {
        b.iter_custom(|n| (0..n).map(|_| copy_proxy_through(session)).sum())
    });
    group.finish();

    let notifications = frames(100_000_000, |i| {
        format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":"tok-{i}","progress":{i},"total":1000000,"message":"working on the next part of the job"}}}}"#
        )
    });
    let mut group = c.benchmark_group("passthrough_100MB");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Bytes(notifications.len() as u64));
    group.bench_function("thoth_run_cat", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| stream_through(thoth_cat(), notifications))
                .sum()
        })
    });
    group.bench_function("cat_alone", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| stream_through(Command::new("cat"), notifications))
                .sum()
        })
    });
    group.bench_function("plain_copy_proxy_cat", |b| {
        b.iter_custom(|n| (0..n).map(|_| copy_proxy_through(notifications)).sum())
    });
    group.bench_function("pumps_in_process", |b| {
        b.iter_custom(|n| (0..n).map(|_| pumps_through(notifications)).sum())
    });
    group.bench_function("plain_copy_in_process", |b| {
        b.iter_custom(|n| (0..n).map(|_| copies_through(notifications)).sum())
    });
    group.finish();

    let calls = frames(10_000_000, |i| {
        json!({ "jsonrpc": "2.0", "id": i, "method": "tools/call", "params": { "name": "read_file", "arguments": { "path": format!("/srv/data/file-{i}.txt"), "limit": 4000 } } }).to_string()
    });
    let count = calls.iter().filter(|&&b| b == b'\n').count();
    eprintln!("tools_call_stream: {count} frames of {} bytes", calls.len());
    let mut group = c.benchmark_group("tools_call_stream");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(count as u64));
    group.bench_function("thoth_run_cat", |b| {
        b.iter_custom(|n| (0..n).map(|_| stream_through(thoth_cat(), calls)).sum())
    });
    group.bench_function("cat_alone", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| stream_through(Command::new("cat"), calls))
                .sum()
        })
    });
    group.finish();
}

fn round_trip(c: &mut Criterion) {
    let frame = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "read_file", "arguments": { "path": "/etc/hosts" } } }).to_string() + "\n";
    let mut group = c.benchmark_group("round_trip");
    for (name, cmd) in [
        ("thoth_run_cat", thoth_cat()),
        ("cat_alone", Command::new("cat")),
    ] {
        let (mut child, mut stdin, stdout) = spawn(cmd);
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                stdin.write_all(frame.as_bytes()).unwrap();
                line.clear();
                reader.read_line(&mut line).unwrap();
                assert_eq!(line.len(), frame.len());
            })
        });
        drop(stdin);
        child.wait().unwrap();
    }
    group.finish();
}

fn settings(mode: Mode) -> RunSettings {
    RunSettings {
        agent_id: "bench".into(),
        user_id: "ana@example.com".into(),
        endpoint_id: "host".into(),
        session_intent: "general".into(),
        mode,
        ..RunSettings::local(policy("read-only.cedar"), Profile { dir: home() }).unwrap()
    }
}

fn local_decision(c: &mut Criterion) {
    let args = json!({ "path": "/home/ana/project/src/main.rs", "encoding": "utf-8", "limit": 4000, "recursive": false, "tags": ["a", "b"] });
    let settings = settings(Mode::Block);
    let facts = ToolFacts::default();
    let mut group = c.benchmark_group("local_decision");
    for (name, cached) in ["allow-all.cedar", "read-only.cedar", "hipaa.cedar"]
        .into_iter()
        .flat_map(|n| [(n, true), (n, false)])
    {
        let engine = LocalEngine::load(&policy(name)).unwrap();
        // As thoth runs it (outcomes reused when no policy reads per-call context), and
        // evaluating Cedar every time.
        let (engine, label) = if cached {
            (engine, name.trim_end_matches(".cedar").to_string())
        } else {
            (
                engine.without_outcome_cache(),
                format!("{}_uncached", name.trim_end_matches(".cedar")),
            )
        };
        group.bench_function(label, |b| {
            b.iter_batched(
                Session::new,
                |mut session| {
                    decide(
                        &engine,
                        &settings,
                        &mut session,
                        "read_file",
                        &facts,
                        Some(&args),
                        100,
                    )
                    .verdict
                },
                BatchSize::SmallInput,
            )
        });
    }
    // What the catalog adds before the policy: the arguments checked against the
    // tool's listed inputSchema (compiled on the first call, then reused), then the
    // same decision.
    // With pins, as `thoth run` has them: a pinned tool's facts cost no file access.
    let pins_dir = std::env::temp_dir().join(format!("thoth-bench-pins-{}", std::process::id()));
    let mut catalog = Catalog::with_pins(thoth::PinSession::open(
        &pins_dir,
        "bench",
        "[\"srv\"]",
        &[],
    ));
    let page = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [{
        "name": "read_file",
        "inputSchema": {"type": "object", "required": ["path"], "properties": {
            "path": {"type": "string", "minLength": 1},
            "encoding": {"type": "string", "enum": ["utf-8", "latin-1"]},
            "limit": {"type": "integer", "minimum": 1},
            "recursive": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}}
        }},
        "annotations": {"readOnlyHint": true}
    }]}});
    catalog.absorb_page(page.to_string().as_bytes());
    let engine = LocalEngine::load(&policy("read-only.cedar")).unwrap();
    group.bench_function("read-only_schema_checked", |b| {
        b.iter_batched(
            Session::new,
            |mut session| {
                let listed = catalog.facts("read_file");
                let checked = catalog.check("read_file", &args).is_ok();
                let verdict = decide(
                    &engine,
                    &settings,
                    &mut session,
                    "read_file",
                    &listed,
                    Some(&args),
                    100,
                )
                .verdict;
                (checked, verdict)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("schema_check_alone", |b| {
        b.iter(|| catalog.check("read_file", &args).is_ok())
    });
    group.finish();
}

/// Set in the environment of this bench's own binary re-run as the minimal relay.
const RELAY_ENV: &str = "THOTH_BENCH_MINIMAL_RELAY";

/// The floor every proxy is measured against: a process between client and server
/// that copies bytes both ways with two threads and blocking reads and writes, and
/// looks at nothing. `<this bench> ` with [`RELAY_ENV`] set runs it in front of the
/// command in its arguments.
fn minimal_relay() -> ! {
    let args: Vec<String> = std::env::args().skip_while(|a| a != "--").skip(1).collect();
    let (program, rest) = args.split_first().expect("a server command after --");
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the server starts");
    let mut to_server = child.stdin.take().expect("stdin");
    let mut from_server = child.stdout.take().expect("stdout");
    let up = std::thread::spawn(move || {
        copy_bytes(&mut std::io::stdin().lock(), &mut to_server);
        drop(to_server);
    });
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from_server.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    let _ = up.join();
    let status = child.wait().map(|s| s.code().unwrap_or(1)).unwrap_or(1);
    std::process::exit(status)
}

/// This bench's binary as the minimal relay in front of `server`.
fn relay(server: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("the bench binary"));
    cmd.env(RELAY_ENV, "1").arg("--").args(server);
    cmd
}

/// One round trip: write `frame`, read its echo.
fn round_trip_once(
    stdin: &mut ChildStdin,
    reader: &mut BufReader<ChildStdout>,
    frame: &[u8],
    line: &mut String,
) -> Duration {
    let started = Instant::now();
    stdin.write_all(frame).unwrap();
    line.clear();
    reader.read_line(line).unwrap();
    let took = started.elapsed();
    assert_eq!(line.len(), frame.len());
    took
}

/// A process under measurement: its name, pipes and round-trip times.
type Measured = (
    &'static str,
    Child,
    ChildStdin,
    BufReader<ChildStdout>,
    Vec<Duration>,
);

/// p50 of round trips, as MCP clients load a proxy (each request waits for its answer):
/// `cat` alone, the minimal relay in front of `cat`, and `thoth run -- cat`, one round
/// trip of each in turn (interleaved, so drift hits all three alike), 2,000 each after
/// 200 of warm-up. Printed with the latency each adds over `cat` alone, and the ratio
/// of thoth's to the relay's.
fn latency_table(label: &str) -> (f64, f64) {
    const ROUNDS: usize = 2000;
    const WARMUP: usize = 200;
    let frame = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "read_file", "arguments": { "path": "/etc/hosts" } } }).to_string() + "\n";
    let mut procs: Vec<Measured> = [
        ("cat alone", Command::new("cat")),
        ("minimal relay -- cat", relay(&["cat"])),
        ("thoth run -- cat", thoth_cat()),
    ]
    .into_iter()
    .map(|(name, cmd)| {
        let (child, stdin, stdout) = spawn(cmd);
        (
            name,
            child,
            stdin,
            BufReader::new(stdout),
            Vec::with_capacity(ROUNDS),
        )
    })
    .collect();
    let mut line = String::new();
    for round in 0..WARMUP + ROUNDS {
        for (_, _, stdin, reader, samples) in procs.iter_mut() {
            let took = round_trip_once(stdin, reader, frame.as_bytes(), &mut line);
            if round >= WARMUP {
                samples.push(took);
            }
        }
    }
    let p50s: Vec<f64> = procs
        .iter_mut()
        .map(|(_, _, _, _, samples)| {
            samples.sort();
            samples[samples.len() / 2].as_secs_f64() * 1e6
        })
        .collect();
    eprintln!(
        "\nround_trip_latency ({label}): p50 of {ROUNDS} interleaved round trips of one small tools/call"
    );
    for ((name, ..), p50) in procs.iter().zip(&p50s) {
        eprintln!(
            "  {name:<22} {p50:>8.1} µs   adds {:>6.1} µs",
            p50 - p50s[0]
        );
    }
    let relay_added = p50s[1] - p50s[0];
    let thoth_added = p50s[2] - p50s[0];
    eprintln!(
        "  thoth adds {:.2}× what the minimal relay adds",
        thoth_added / relay_added.max(0.01)
    );
    for (_, mut child, stdin, ..) in procs {
        drop(stdin);
        child.wait().unwrap();
    }
    (relay_added, thoth_added)
}

/// The CPUs this process may run on (`Cpus_allowed_list`), for the report.
fn allowed_cpus() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Cpus_allowed_list:")
                    .map(|v| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "?".into())
}

/// Unpinned, then every process on CPU 0 (`taskset -a -pc 0` on this process before
/// the children start, so they inherit it): core placement moves unpinned figures by
/// more than the difference being measured.
fn latency() {
    let cpus = allowed_cpus();
    latency_table(&format!("unpinned, CPUs {cpus}"));
    let pin = |list: &str| {
        Command::new("taskset")
            .args(["-a", "-pc", list, &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        pin("0"),
        "taskset is needed for the pinned latency figures (util-linux)"
    );
    latency_table(&format!("pinned, CPUs {}", allowed_cpus()));
    // The throughput benches run as they were started.
    assert!(pin(&cpus), "restoring the CPU list {cpus}");
}

criterion_group!(benches, local_decision, round_trip, mixes, streams);

fn main() {
    if std::env::var_os(RELAY_ENV).is_some() {
        minimal_relay();
    }
    // `cargo bench --bench proxy -- <filter>`: the latency table runs when no filter is
    // given or the filter names it.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    if filter
        .as_deref()
        .is_none_or(|f| "round_trip_latency".contains(f))
    {
        latency();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
