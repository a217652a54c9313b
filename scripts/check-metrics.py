#!/usr/bin/env python3
"""Checks that every metric the Grafana dashboard and the Prometheus alert rules name is
exported by a running suite.

Usage: check-metrics.py DASHBOARD.json RULES.yml URL [URL ...]

Reads the PromQL expressions of the dashboard's panels and of the rules (`expr:`), takes the
metric names out of them, scrapes each URL (a replica's /metrics) and fails, naming them,
when a metric is exported by none of them. Standard library only, so it runs on a fresh
machine. Run by scripts/test-web.sh against the services it started.
"""
import json
import re
import sys
import urllib.request

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "le"}


def dashboard_exprs(path):
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    return [t["expr"] for p in dash.get("panels", []) for t in p.get("targets", []) if t.get("expr")]


def rule_exprs(path):
    """`expr:` values of a Prometheus rules file: inline, or a block scalar (`expr: |`)."""
    exprs, block, indent = [], None, 0
    for line in open(path, encoding="utf-8").read().splitlines():
        if block is not None:
            if line.strip() and len(line) - len(line.lstrip()) > indent:
                block.append(line.strip())
                continue
            exprs.append(" ".join(block))
            block = None
        m = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if m:
            if m.group(2) in ("|", ">", "|-", ">-"):
                block, indent = [], len(m.group(1))
            else:
                exprs.append(m.group(2))
    if block is not None:
        exprs.append(" ".join(block))
    return exprs


def metric_names(expr):
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", expr):
        name, call = m.group(1), m.group(2)
        if call or name in KEYWORDS or re.fullmatch(r"[0-9.e+-]+", name):
            continue
        names.add(name)
    return names


def exported(urls):
    series = set()
    for url in urls:
        with urllib.request.urlopen(url, timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line and not line.startswith("#"):
                    series.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return series


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    dashboard, rules, urls = argv[1], argv[2], argv[3:]
    wanted = {}
    for source, exprs in ((dashboard, dashboard_exprs(dashboard)), (rules, rule_exprs(rules))):
        for expr in exprs:
            for name in metric_names(expr):
                wanted.setdefault(name, set()).add(source)
    if not wanted:
        print("metrics: no metric names found in the dashboard or the rules", file=sys.stderr)
        return 1
    have = exported(urls)
    missing = sorted(name for name in wanted if name not in have)
    for name in missing:
        print(f"metrics: {name} (named in {', '.join(sorted(wanted[name]))}) is not exported", file=sys.stderr)
    if missing:
        return 1
    print(f"metrics: all {len(wanted)} metrics named by the dashboard and the alert rules are exported")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
