//! Content inspection speed: thoth's detectors (one pass of the gates per string, then
//! only the patterns whose gate opened) over a server's answer, beside the naive baseline
//! (each detector's pattern as its own `regex` pass over the same text), in one run.
//!
//! Inputs: answers of 2 KB, 64 KB and 1 MiB, one text result each, built from the
//! checked-in corpora (`tests/data/inspect`): mixed prose, code, hashes, tool JSON and
//! a few findings (one per 2 KB). Run: `cargo bench --bench inspect`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const POSITIVE: &str = include_str!("../tests/data/inspect/positive.tsv");
const NEGATIVE: &str = include_str!("../tests/data/inspect/negative.txt");

/// The text of an answer of about `size` bytes: negative lines, with a finding every
/// 2 KB.
fn text(size: usize) -> String {
    let negatives: Vec<&str> = NEGATIVE.lines().filter(|l| !l.starts_with('#')).collect();
    let positives: Vec<&str> = POSITIVE
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t').map(|(_, t)| t))
        .filter(|t| !t.contains('\\'))
        .collect();
    let mut out = String::with_capacity(size + 256);
    let (mut n, mut p, mut next_finding) = (0, 0, 1024);
    while out.len() < size {
        if out.len() >= next_finding {
            out.push_str(positives[p % positives.len()]);
            p += 1;
            next_finding += 2048;
        } else {
            out.push_str(negatives[n % negatives.len()]);
            n += 1;
        }
        out.push('\n');
    }
    out.truncate(size);
    while !out.is_char_boundary(out.len()) {
        out.pop();
    }
    out
}

fn answer(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0", "id": 7,
        "result": { "content": [{ "type": "text", "text": text }], "isError": false }
    }))
    .expect("answer")
}

fn bench(c: &mut Criterion) {
    let naive: Vec<regex::Regex> = thoth::DETECTORS
        .iter()
        .map(|d| regex::Regex::new(d.pattern).expect("pattern"))
        .collect();
    let mut group = c.benchmark_group("inspect");
    for (name, size) in [("2k", 2 * 1024), ("64k", 64 * 1024), ("1mib", 1024 * 1024)] {
        let text = text(size);
        let line = answer(&text);
        group.throughput(Throughput::Bytes(line.len() as u64));
        group.bench_function(format!("thoth/{name}"), |b| {
            b.iter(|| {
                thoth::inspect_line(black_box(&line), |_| false)
                    .detections
                    .count()
            })
        });
        group.bench_function(format!("thoth_redacting/{name}"), |b| {
            b.iter(|| thoth::inspect_line(black_box(&line), |_| true).redactions)
        });
        group.bench_function(format!("naive_regex_each/{name}"), |b| {
            b.iter(|| {
                naive
                    .iter()
                    .map(|r| r.find_iter(black_box(&text)).count())
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
