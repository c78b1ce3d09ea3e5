#!/usr/bin/env python3
"""Fails when the modules of cli/ import each other in a cycle (docs/architecture.md §1).

A module is a file (`a/mod.rs` is `a`, `lib.rs` the root). An edge A -> B is any path
`crate::B…` or `super::…` in A's code outside its `#[cfg(test)]` module, resolved to
the longest module it names. A child using its parent (or the reverse) counts like any
other edge, so a parent that only declares and re-exports its children stays acyclic.
"""
import os
import re
import sys

root = sys.argv[1] if len(sys.argv) > 1 else "cli"
modules = {}
for folder, _, files in os.walk(root):
    for name in files:
        if name.endswith(".rs"):
            parts = os.path.relpath(os.path.join(folder, name), root)[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts in (["lib"], ["main"]):
                parts = []
            modules["::".join(parts)] = os.path.join(folder, name)


def resolve(path):
    parts = path.split("::")
    for i in range(len(parts), 0, -1):
        if "::".join(parts[:i]) in modules:
            return "::".join(parts[:i])
    return None


edges = {m: set() for m in modules}
for module, path in modules.items():
    with open(path, encoding="utf-8") as f:
        code = re.sub(r"//[^\n]*", "", f.read())
    test = code.find("#[cfg(test)]")
    if test >= 0:
        code = code[:test]
    here = module.split("::") if module else []
    for m in re.finditer(r"\b(crate|super)::([\w:]*)(\{[^;]*?\})?", code):
        base = [] if m.group(1) == "crate" else here[:-1]
        head = [p for p in m.group(2).split("::") if p]
        tails = [""]
        if m.group(3):
            tails = [t.strip().split(" as ")[0].strip("{} ") for t in m.group(3)[1:-1].split(",")]
        for tail in tails:
            names = base + head + ([tail] if tail and tail != "self" else [])
            target = resolve("::".join(names)) if names else ""
            if target is not None and target != module:
                edges[module].add(target)

index, low, stack, on, cycles = {}, {}, [], set(), []
sys.setrecursionlimit(10000)


def visit(n):
    index[n] = low[n] = len(index)
    stack.append(n)
    on.add(n)
    for w in edges[n]:
        if w not in index:
            visit(w)
            low[n] = min(low[n], low[w])
        elif w in on:
            low[n] = min(low[n], index[w])
    if low[n] == index[n]:
        group = []
        while True:
            w = stack.pop()
            on.discard(w)
            group.append(w)
            if w == n:
                break
        if len(group) > 1:
            cycles.append(sorted(group))


for n in modules:
    if n not in index:
        visit(n)
for group in cycles:
    print("import cycle among: " + ", ".join(g or "<crate root>" for g in group))
    for a in group:
        print(f"  {a or '<crate root>'} -> {', '.join(sorted(e for e in edges[a] if e in group))}")
if cycles:
    sys.exit(1)
print(f"layers: {len(modules)} modules of {root}/, no import cycle")
