//! Performance as a checked property: instruction counts under valgrind, which this
//! noisy 2-core machine (or any CI runner) reproduces run after run, where wall time
//! swings by more than the regressions worth catching.
//!
//! `cargo bench --bench instructions` runs every case twice under
//! `valgrind --tool=cachegrind --cache-sim=no` (this binary with `--case NAME --iters
//! N`, once with N = 0 and once with the case's N), so start-up, policy loading and
//! runtime creation cancel out, and reports instructions per iteration beside the
//! threshold in `benches/instructions.thresholds`. It fails when a case is over its
//! threshold. Cases:
//!
//! - `scan/<class>`: `thoth_core::scan` then `tool_call` on one frame of each class of
//!   the scan bench (`benches/frames.rs`);
//! - `proxy/round_trip`: one small tools/call through the real pumps in process
//!   (`thoth::run_pipes`: client pump, scan, local decision, server writer, relay), a
//!   thread of the bench answering each line with a small tool result, as a server does.
//!
//! Updating the thresholds (after a change that is meant to cost more, or to lock in
//! a gain): `THOTH_PERF_UPDATE=1 cargo bench --bench instructions` rewrites the file
//! with each measurement plus a margin ([`margin_percent`]); commit it with the reason.

mod frames;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;

/// Head room written above a measurement when thresholds are updated: the scanner's
/// counts repeat exactly; those of the pumps move by a fraction of a per cent with
/// thread scheduling (three runs: 23,527 to 23,541).
fn margin_percent(case: &str) -> u64 {
    if case.starts_with("scan/") { 3 } else { 10 }
}

fn thresholds_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/instructions.thresholds")
}

/// Every case with its iteration count.
fn cases() -> Vec<(String, u64)> {
    let mut cases: Vec<(String, u64)> = frames::all()
        .into_iter()
        .map(|(name, frame)| {
            // About 20 MB scanned per case: enough iterations to drown start-up noise.
            let iters = (20_000_000 / frame.len().max(1)).clamp(4, 20_000) as u64;
            (format!("scan/{name}"), iters)
        })
        .collect();
    cases.push(("proxy/round_trip".into(), 2_000));
    cases
}

/// `iters` small tools/call frames through the real pumps, each read back.
fn round_trips(iters: u64) {
    let policy =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/policies/read-only.cedar");
    let profile = thoth::Profile {
        dir: std::env::temp_dir().join(format!("thoth-instructions-{}", std::process::id())),
    };
    let settings = thoth::RunSettings::local(policy.clone(), profile).expect("settings");
    let engine = thoth::Engine::Local(std::sync::Arc::new(
        thoth::LocalEngine::load(&policy).expect("policy"),
    ));
    let parts = (settings, engine, thoth::Session::new());
    let frame = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/etc/hosts"}}}
"#;
    let (client_in, mut feed) = std::io::pipe().expect("pipe");
    // The server: reads each call, answers it (a server answers with a response; a
    // loop of its stdin to its stdout would answer with the request itself).
    let (server_reads, server_in) = std::io::pipe().expect("pipe");
    let (server_out, mut server_writes) = std::io::pipe().expect("pipe");
    let server = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(server_reads);
        let mut line = Vec::new();
        while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            if server_writes.write_all(ANSWER).is_err() {
                break;
            }
            line.clear();
        }
    });
    let (mut back, client_out) = std::io::pipe().expect("pipe");
    let pumps = std::thread::spawn(move || {
        thoth::run_pipes(
            parts,
            client_in.into(),
            client_out.into(),
            server_in.into(),
            server_out.into(),
        )
    });
    // One at a time, as a client that waits for each answer.
    let mut echo = vec![0u8; ANSWER.len()];
    for _ in 0..iters {
        feed.write_all(frame).expect("write");
        back.read_exact(&mut echo).expect("answer");
        assert_eq!(&echo[..], ANSWER);
    }
    drop(feed);
    let mut rest = Vec::new();
    back.read_to_end(&mut rest).expect("drain");
    pumps.join().expect("pumps").expect("pumps ran");
    server.join().expect("server");
}

/// The server's answer to each call of the round trip.
const ANSWER: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"127.0.0.1 localhost"}],"isError":false}}
"#;

fn run_case(name: &str, iters: u64) {
    if name == "proxy/round_trip" {
        return round_trips(iters);
    }
    let class = name.strip_prefix("scan/").expect("a known case");
    let (_, frame) = frames::all()
        .into_iter()
        .find(|(n, _)| *n == class)
        .expect("a known frame class");
    let mut sum = 0usize;
    for _ in 0..iters {
        sum = sum.wrapping_add(frames::thoth_scan(std::hint::black_box(&frame)));
    }
    std::hint::black_box(sum);
}

/// Instructions executed by this binary running `case` for `iters` iterations.
fn instructions(case: &str, iters: u64) -> u64 {
    let exe = std::env::current_exe().expect("this binary");
    let out = Command::new("valgrind")
        .args([
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
        ])
        .arg(exe)
        .args(["--case", case, "--iters", &iters.to_string()])
        .env("THOTH_LOG", "error")
        .output()
        .expect("valgrind runs (Debian: apt-get install valgrind)");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{case} under valgrind failed:\n{text}"
    );
    text.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("I")?;
            let rest = rest.trim_start().strip_prefix("refs:")?;
            rest.trim().replace(',', "").parse().ok()
        })
        .unwrap_or_else(|| panic!("no `I refs` in valgrind's output:\n{text}"))
}

fn read_thresholds() -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(thresholds_path()).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (name, n) = l.split_once(char::is_whitespace)?;
            Some((name.to_string(), n.trim().parse().ok()?))
        })
        .collect()
}

fn write_thresholds(measured: &BTreeMap<String, u64>) {
    let mut text = String::from(
        "# Instructions per iteration at most, per case of benches/instructions.rs (x86_64,\n\
         # valgrind cachegrind). Written by THOTH_PERF_UPDATE=1 cargo bench --bench\n\
         # instructions: the measurement plus 3 % (scan) or 10 % (pumps). Raise one only\n\
         # with the reason in the commit message.\n\
",
    );
    for (name, n) in measured {
        text.push_str(&format!("{name} {}\n", n + n * margin_percent(name) / 100));
    }
    std::fs::write(thresholds_path(), text).expect("thresholds written");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--case") {
        let case = &args[i + 1];
        let iters: u64 = args
            .iter()
            .position(|a| a == "--iters")
            .and_then(|j| args.get(j + 1))
            .and_then(|n| n.parse().ok())
            .expect("--iters N");
        run_case(case, iters);
        return;
    }
    let update = std::env::var_os("THOTH_PERF_UPDATE").is_some();
    let thresholds = read_thresholds();
    let mut measured = BTreeMap::new();
    let mut over = Vec::new();
    eprintln!("{:<34} {:>14} {:>14}", "case", "instr/iter", "threshold");
    for (case, iters) in cases() {
        let base = instructions(&case, 0);
        let total = instructions(&case, iters);
        let per = total.saturating_sub(base) / iters;
        let limit = thresholds.get(&case).copied();
        eprintln!(
            "{case:<34} {per:>14} {:>14}",
            limit.map_or_else(|| "none".into(), |l| l.to_string())
        );
        match limit {
            Some(l) if per > l => over.push(format!("{case}: {per} > {l}")),
            None if !update => over.push(format!("{case}: no threshold")),
            _ => {}
        }
        measured.insert(case, per);
    }
    if update {
        write_thresholds(&measured);
        eprintln!("thresholds written to {}", thresholds_path().display());
        return;
    }
    assert!(
        over.is_empty(),
        "over the instruction thresholds (benches/instructions.thresholds):\n{}",
        over.join("\n")
    );
    eprintln!("every case within its threshold");
}
