//! Scan throughput per frame class, thoth-core beside its peers in the same run.
//!
//! Engines: thoth-core `scan` (+ `tool_call` on tools/call frames, full strict
//! validation), serde_json `Value`, serde_json borrowed envelope with `&RawValue`
//! params/result then a `Value` of those, simd-json tape (buffers reused, the input copy
//! it needs included), sonic-rs `Value`, and a `memchr` newline search as the floor.
//! Run: `cargo bench --bench scan` then `python3 benches/table.py`.

mod frames;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    jsonrpc: Option<&'a str>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
}

fn serde_envelope(frame: &[u8]) -> usize {
    let env: Envelope<'_> = serde_json::from_slice(frame).expect("envelope");
    let inner = env.params.or(env.result).expect("params or result");
    let value: serde_json::Value = serde_json::from_str(inner.get()).expect("inner");
    usize::from(env.jsonrpc.is_some())
        + usize::from(env.id.is_some())
        + env.method.map_or(0, |m| m.len())
        + usize::from(value.is_object())
}

fn bench(c: &mut Criterion) {
    for (name, frame) in frames::all() {
        assert!(frames::thoth_scan(&frame) > 0, "{name} must scan");
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(frame.len() as u64));
        if frame.len() > 100_000 {
            group.sample_size(30);
        }
        group.bench_function("thoth_core", |b| {
            b.iter(|| frames::thoth_scan(black_box(&frame)))
        });
        group.bench_function("serde_json_value", |b| {
            b.iter(|| {
                serde_json::from_slice::<serde_json::Value>(black_box(&frame)).expect("serde")
            })
        });
        group.bench_function("serde_json_envelope_rawvalue", |b| {
            b.iter(|| serde_envelope(black_box(&frame)))
        });
        let mut buffers = simd_json::Buffers::default();
        let mut copy = Vec::with_capacity(frame.len());
        group.bench_function("simd_json_tape", |b| {
            b.iter(|| {
                copy.clear();
                copy.extend_from_slice(black_box(&frame));
                simd_json::to_tape_with_buffers(&mut copy, &mut buffers)
                    .expect("simd-json")
                    .0
                    .len()
            })
        });
        group.bench_function("sonic_rs_value", |b| {
            b.iter(|| sonic_rs::from_slice::<sonic_rs::Value>(black_box(&frame)).expect("sonic"))
        });
        group.bench_function("memchr_newline", |b| {
            b.iter(|| memchr::memchr(b'\n', black_box(&frame)))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
