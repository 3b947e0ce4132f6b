#!/usr/bin/env python3
"""Module dependency graph of a crate: which top-level modules use which, and the cycles.

usage: tests/scripts/modgraph.py <crate dir> [--depth N] [--dot]

A module `a` uses `b` when a file of `a` names `crate::b` (in a `use` or a path) or,
from a submodule, `super::b`. Depth 1 (the default) groups files by their top-level
module (`oauth/token.rs` is `oauth`); depth 2 keeps one more level (`oauth::token`).
Test modules (`#[cfg(test)]` to the end of the file) are left out, as are the crate
root (`lib.rs`, `main.rs`), which uses everything. Prints the edges, then every pair or
longer cycle of the strongly connected components; exits 1 when there is a cycle.
"""
import pathlib
import re
import sys


def module_of(path: pathlib.Path, src: pathlib.Path) -> list[str]:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return parts


def strip(text: str) -> str:
    text = re.sub(r"//[^\n]*", "", text)
    cut = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text)
    return text[: cut.start()] if cut else text


def main() -> int:
    args = sys.argv[1:]
    depth = 1
    if "--depth" in args:
        i = args.index("--depth")
        depth = int(args[i + 1])
        del args[i : i + 2]
    dot = "--dot" in args
    args = [a for a in args if a != "--dot"]
    src = pathlib.Path(args[0]) / "src"
    edges: dict[str, set[str]] = {}
    for path in sorted(src.rglob("*.rs")):
        parts = module_of(path, src)
        if parts in (["lib"], ["main"]) or parts[0] == "bin":
            continue
        me = "::".join(parts[:depth])
        text = strip(path.read_text())
        targets = set()
        for m in re.finditer(r"\bcrate::((?:\w+::)*\w+)", text):
            targets.add(tuple(m.group(1).split("::")))
        for m in re.finditer(r"\buse\s+crate::\{([^;]*)\}", text, re.S):
            for item in re.split(r",", m.group(1)):
                item = item.split(" as ")[0].strip()
                if item:
                    targets.add(tuple(re.split(r"::", re.sub(r"[{}\s]", "", item))))
        for m in re.finditer(r"\bsuper::((?:\w+::)*\w+)", text):
            targets.add(tuple(parts[:-1] + m.group(1).split("::")))
        modules = {"::".join(module_of(p, src)[:depth]) for p in src.rglob("*.rs")}
        for t in targets:
            name = "::".join(t[:depth])
            while name and name not in modules:
                name = "::".join(name.split("::")[:-1])
            if name and name != me and not name.startswith(me + "::") and not me.startswith(name + "::"):
                edges.setdefault(me, set()).add(name)
            elif name and name != me and depth > 1:
                edges.setdefault(me, set()).add(name)
    nodes = sorted(set(edges) | {t for ts in edges.values() for t in ts})
    if dot:
        print("digraph modules {")
        for a in nodes:
            for b in sorted(edges.get(a, ())):
                print(f'  "{a}" -> "{b}";')
        print("}")
    else:
        for a in nodes:
            print(f"{a} -> {', '.join(sorted(edges.get(a, ()))) or '(nothing)'}")
    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
                sccs.append(sorted(comp))

    for v in nodes:
        if v not in index:
            visit(v)
    if not dot:
        pairs = sorted(
            f"{a}<->{b}" for a in nodes for b in edges.get(a, ()) if a < b and a in edges.get(b, ())
        )
        print(f"\ncycles (strongly connected groups): {len(sccs)}")
        for comp in sccs:
            print("  " + " , ".join(comp))
        print(f"two-way pairs: {len(pairs)}" + ("".join(f"\n  {p}" for p in pairs)))
    return 1 if sccs else 0


if __name__ == "__main__":
    sys.exit(main())
