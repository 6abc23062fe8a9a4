#!/usr/bin/env python3
"""Fails when modules of one crate import each other in a circle.

For each crate under crates/ and eval/, every path a module's non-test code names with
`crate::` (`crate::a::b::X`, the grouped `crate::{a::X, b}`, or `crate::X` for a name the
crate root re-exports from module `a`) and every `super::x` naming a sibling is a
reference to the longest module the path names. A reference counts as an edge between
the two sides' branches below their nearest common ancestor: `a::b` naming `c::d` is an
edge `a -> c`, and `a::b` naming `a::c` an edge `a::b -> a::c`, so circles are found
between top-level modules and between the siblings inside any module. A module reaching
its own ancestor (the `impl Store` files under `store/`) or descendant is not an edge.
Comments and a trailing `#[cfg(test)] mod tests` are ignored. Prints each circle (a
strongly connected set of two or more modules) with the edges inside it.

    scripts/check_module_cycles.py [CRATE_SRC_DIR ...]
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def strip(text):
    text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
    return re.sub(r"//[^\n]*", "", text)


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
                out[rel] = strip(fh.read())
    return out


def root_exports(src):
    """Names the crate root re-exports (`pub use a::...::{X, Y}`) -> module `a`."""
    out = {}
    for name in ("lib.rs", "main.rs"):
        path = os.path.join(src, name)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as fh:
            text = strip(fh.read())
        for m in re.finditer(r"pub(?:\([a-z]+\))?\s+use\s+([a-z_][a-z0-9_]*)::([^;]*);", text):
            for ident in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", m.group(2)):
                out.setdefault(ident, m.group(1))
    return out


def expand(tree):
    """The paths of a use tree (`a::{b, c::{d}}`, without the `crate::`)."""
    tree = tree.strip()
    depth, top, start = 0, [], 0
    # Split at top-level commas.
    for i, ch in enumerate(tree):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            top.append(tree[start:i])
            start = i + 1
    top.append(tree[start:])
    out = []
    for part in (p.strip() for p in top):
        if not part:
            continue
        if "{" in part:
            head, _, rest = part.partition("{")
            head = head.rstrip(":").strip()
            for sub in expand(rest[: rest.rfind("}")]):
                out.append(f"{head}::{sub}" if head else sub)
        else:
            out.append(part.split(" as ")[0].strip())
    return out


def references(text):
    """Every `crate::` path in `text` (grouped imports expanded), as component lists."""
    paths = []
    for m in re.finditer(r"\bcrate::\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        paths.extend(expand(text[m.end() : i - 1]))
    paths.extend(p.strip(":") for p in re.findall(r"\bcrate((?:::[A-Za-z_][A-Za-z0-9_]*)+)", text))
    return [p.split("::") for p in paths if p]


def resolve(parts, mods, exports):
    for n in range(len(parts), 0, -1):
        cand = "::".join(parts[:n])
        if cand in mods:
            return cand
    m = exports.get(parts[0])
    return m if m in mods else None


def edge(a, b):
    """The edge `a` naming `b` makes: the branches below their nearest common ancestor,
    or None when one contains the other."""
    pa, pb = a.split("::"), b.split("::")
    k = 0
    while k < min(len(pa), len(pb)) and pa[k] == pb[k]:
        k += 1
    if k == len(pa) or k == len(pb):
        return None
    return "::".join(pa[: k + 1]), "::".join(pb[: k + 1])


def graph(mods, exports):
    nodes = set(mods)
    for m in mods:
        parts = m.split("::")
        nodes.update("::".join(parts[: i + 1]) for i in range(len(parts)))
    g = {m: set() for m in nodes}
    for m, text in mods.items():
        targets = [resolve(p, mods, exports) for p in references(text)]
        parent = m.rsplit("::", 1)[0] if "::" in m else ""
        for name in re.findall(r"\bsuper::([a-z_][a-z0-9_]*)", text):
            t = f"{parent}::{name}" if parent else name
            if t in mods:
                targets.append(t)
        for t in targets:
            e = t and edge(m, t)
            if e:
                g[e[0]].add(e[1])
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
        g = graph(modules(src), root_exports(src))
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
