#!/usr/bin/env python3
"""Fails when the modules of cli/ import each other in a cycle (docs/architecture.md §1).

A module is a file (`a/mod.rs` is `a`, `lib.rs` the root). An edge A -> B is any path
in A's code (outside its test module) that names B: `crate::B…`, `super::…`, `self::…`
or a bare path through one of A's child modules (`use child::X`). A name a module
re-exports (`pub use child::X`) resolves to the module it comes from, so a parent that
only declares and re-exports its children adds no edge back from them; a child using
an item its parent defines is an edge to the parent like any other.
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


def code_of(path):
    with open(path, encoding="utf-8") as f:
        code = re.sub(r"//[^\n]*", "", f.read())
    test = re.search(r"#\[cfg\((all\()?test", code)
    return code[: test.start()] if test else code


def join(*parts):
    return "::".join(p for p in parts if p)


def children(module):
    prefix = module + "::" if module else ""
    return {
        m[len(prefix):] for m in modules
        if m.startswith(prefix) and m != module and "::" not in m[len(prefix):]
    }


def use_items(group):
    """The paths of a use tree's group `{a, b::c, d as e}` (one level of nesting)."""
    items, depth, cur = [], 0, ""
    for ch in group:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    items.append(cur)
    out = []
    for item in items:
        item = item.split(" as ")[0].strip()
        if "::{" in item:
            head, rest = item.split("::{", 1)
            out += [join(head, t) for t in use_items(rest.rstrip("}"))]
        elif item:
            out.append("" if item == "self" else item)
    return out


codes = {m: code_of(p) for m, p in modules.items()}

# Names each module re-exports, and where they come from (module-relative paths).
reexports = {m: {} for m in modules}
for module, code in codes.items():
    for m in re.finditer(r"pub use ([\w:]+?)(?:::\{([^;]*)\}|::(\w+)(?: as (\w+))?);", code):
        base = m.group(1)
        items = use_items(m.group(2)) if m.group(2) is not None else [m.group(3)]
        for item in items:
            path = join(base, item)
            name = (m.group(4) if m.group(3) else None) or path.split("::")[-1]
            reexports[module][name] = path


def absolute(module, path):
    """A path as written in `module`, made crate-absolute (None: not a crate path)."""
    parts = path.split("::")
    here = module.split("::") if module else []
    if parts[0] == "crate":
        return parts[1:]
    if parts[0] in ("super", "self"):
        base = here
        while parts and parts[0] in ("super", "self"):
            if parts[0] == "super":
                base = base[:-1]
            parts = parts[1:]
        return base + parts
    if parts[0] in children(module):
        return here + parts
    return None


def resolve(parts, seen=0):
    """The module a crate-absolute path lands in, through re-exports."""
    for i in range(len(parts), -1, -1):
        m = "::".join(parts[:i])
        if m in modules:
            rest = parts[i:]
            if rest and rest[0] in reexports[m] and seen < 8:
                target = absolute(m, reexports[m][rest[0]])
                if target is not None:
                    return resolve(target + rest[1:], seen + 1)
            return m
    return None


edges = {m: set() for m in modules}
for module, code in codes.items():
    for m in re.finditer(r"(?<![\w:])((?:crate|super|self|[a-z_][a-z0-9_]*)(?:::[\w]+)*)(?:::\{([^;]*?)\})?", code):
        head = m.group(1)
        first = head.split("::")[0]
        if "::" not in head and m.group(2) is None:
            continue
        if first not in ("crate", "super", "self") and first not in children(module):
            continue
        tails = use_items(m.group(2)) if m.group(2) is not None else [""]
        for tail in tails:
            parts = absolute(module, join(head, tail))
            if parts is None:
                continue
            target = resolve(parts)
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
        print(f"  {a or '<crate root>'} -> {', '.join(sorted(e or '<crate root>' for e in edges[a] if e in group))}")
if cycles:
    sys.exit(1)
print(f"layers: {len(modules)} modules of {root}/, no import cycle")
