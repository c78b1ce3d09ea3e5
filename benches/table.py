#!/usr/bin/env python3
"""Prints the scan bench as a Markdown table of MB/s from criterion's estimates."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
groups = ["notification", "small_tools_call", "escape_dense_tools_call", "tools_list_50", "result_64k", "tools_call_1mib"]
engines = ["thoth_core", "serde_json_value", "serde_json_envelope_rawvalue", "simd_json_tape", "sonic_rs_value", "memchr_newline"]

def mbps(group, engine):
    base = root / group / engine / "new"
    est = json.loads((base / "estimates.json").read_text())
    bench = json.loads((base / "benchmark.json").read_text())
    nbytes = bench["throughput"]["Bytes"]
    return nbytes, nbytes / (est["mean"]["point_estimate"] / 1e9) / 1e6

print("| frame class | bytes | " + " | ".join(engines) + " | thoth/serde | thoth/simd |")
print("|---" * (len(engines) + 4) + "|")
for g in groups:
    try:
        rates = {e: mbps(g, e) for e in engines}
    except FileNotFoundError:
        continue
    nbytes = rates["thoth_core"][0]
    cells = [f"{rates[e][1]:,.0f}" for e in engines]
    r = {e: rates[e][1] for e in engines}
    print(f"| {g} | {nbytes} | " + " | ".join(cells) + f" | {r['thoth_core']/r['serde_json_value']:.2f}x | {r['thoth_core']/r['simd_json_tape']:.2f}x |")
