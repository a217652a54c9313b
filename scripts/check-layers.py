#!/usr/bin/env python3
"""Fails when a module of a service crate imports one above it.

Every service is layered `app → config → grpc → service → {batch, clients} → store →
faults → {domain, error}` (issue #13): a module may name modules of its own layer or below,
never above. `error` sits with `domain` at the bottom: it is the vocabulary every layer
answers in, and it imports nothing of the crate. Counts every `crate::<module>` path in a file's code and doc comments before
its `#[cfg(test)]` block (a doc link upwards is a dependency a reader follows too).

Handlers call use cases only (issue #28): `grpc` may not name `store`, `batch` or `clients`
even though they sit below it; what a handler needs from them comes through `service`."""
import pathlib, re, sys

RANK = {"domain": 0, "error": 0, "faults": 1, "store": 2, "batch": 3, "clients": 3,
        "service": 4, "grpc": 5, "config": 6, "app": 7}
# Layers a module may not name although they are below it: it must go through the one between.
SKIPS = {"grpc": {"store", "batch", "clients"}}
root = pathlib.Path(__file__).resolve().parent.parent
problems, checked = [], 0


def use_groups(body: str) -> list[str]:
    """The text inside each `crate::{ … }`, nested braces included."""
    groups = []
    for start in (m.end() for m in re.finditer(r"crate::\{", body)):
        depth, i = 1, start
        while i < len(body) and depth:
            depth += {"{": 1, "}": -1}.get(body[i], 0)
            i += 1
        groups.append(body[start : i - 1])
    return groups


for crate in sorted(root.glob("services/*/src")):
    for f in sorted(crate.rglob("*.rs")):
        rel = f.relative_to(crate)
        top = rel.parts[0].removesuffix(".rs")
        if top in ("lib", "main"):
            continue
        if top not in RANK:
            problems.append(f"{f.relative_to(root)}: module `{top}` has no layer; add it to RANK")
            continue
        checked += 1
        body = f.read_text().split("#[cfg(test)]")[0]
        deps = set(re.findall(r"crate::(\w+)", body))
        for group in use_groups(body):
            deps |= set(re.findall(r"(?:^|[,{\s])(\w+)::", group))
            deps |= {d for d in re.findall(r"(?:^|[,{\s])(\w+)\s*(?:,|$)", group) if d in RANK}
        for dep in sorted(deps & RANK.keys()):
            if RANK[dep] > RANK[top]:
                problems.append(f"{f.relative_to(root)}: `{top}` imports `{dep}`, a layer above it")
            elif dep in SKIPS.get(top, ()):
                problems.append(f"{f.relative_to(root)}: `{top}` reaches `{dep}` directly; go through `service`")
for p in problems:
    print(p, file=sys.stderr)
print(f"layers: {checked} files checked, {len(problems)} problems")
sys.exit(1 if problems else 0)
