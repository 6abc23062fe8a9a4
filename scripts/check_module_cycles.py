#!/usr/bin/env python3
"""Fails when modules of one crate import each other in a circle.

For each crate under crates/ and eval/, every `crate::a::b` path (and `super::x` naming a
sibling module) in a module's non-test code is an edge from that module to the longest
module the path names. A module and its own submodules are one unit: a child reaching its
parent (the `impl Store` files under `store/`) or a parent declaring its children is not
an edge. Comments and a trailing `#[cfg(test)] mod tests` are ignored. Prints each cycle
(a strongly connected set of two or more modules) with the edges inside it.

    scripts/check_module_cycles.py [CRATE_SRC_DIR ...]
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def modules(src):
    """Module path (a::b) -> source text without comments and trailing tests."""
    out = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, src)[:-3].replace(os.sep, "::")
            if rel.endswith("::mod"):
                rel = rel[: -len("::mod")]
            if rel in ("lib", "main"):
                continue
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
            text = re.sub(r"//[^\n]*", "", text)
            out[rel] = text
    return out


def related(a, b):
    return a == b or a.startswith(b + "::") or b.startswith(a + "::")


def graph(mods):
    g = {m: set() for m in mods}
    for m, text in mods.items():
        for path in re.findall(r"\bcrate((?:::[a-z_][a-z0-9_]*)+)", text):
            parts = path.strip(":").split("::")
            target = None
            for n in range(len(parts), 0, -1):
                cand = "::".join(parts[:n])
                if cand in mods:
                    target = cand
                    break
            if target and not related(m, target):
                g[m].add(target)
        parent = m.rsplit("::", 1)[0] if "::" in m else ""
        for name in re.findall(r"\bsuper::([a-z_][a-z0-9_]*)", text):
            target = f"{parent}::{name}" if parent else name
            if target in mods and not related(m, target):
                g[m].add(target)
    return g


def cycles(g):
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def main():
    dirs = sys.argv[1:] or sorted(
        os.path.join(ROOT, d, "src")
        for d in [os.path.join("crates", c) for c in os.listdir(os.path.join(ROOT, "crates"))]
        + ["eval"]
        if os.path.isdir(os.path.join(ROOT, d, "src"))
    )
    bad = 0
    for src in dirs:
        g = graph(modules(src))
        for comp in cycles(g):
            bad += 1
            print(f"{os.path.relpath(src, ROOT)}: modules import each other in a circle:")
            for m in comp:
                print(f"  {m} -> {', '.join(sorted(t for t in g[m] if t in comp))}")
    if bad:
        sys.exit(1)
    print(f"module imports: no circle in {len(dirs)} crates")


if __name__ == "__main__":
    main()
