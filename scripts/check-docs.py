#!/usr/bin/env python3
"""Checks the commands the docs tell a person to paste.

`npx <package>` prompts before installing a package it has not cached, and where npm is set
not to prompt (CI, `npm_config_yes=false`) it fails instead: every `npx` in the repository's
Markdown passes `--yes`. Exits 1 naming each line that does not.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NPX = re.compile(r"(?<![\w-])npx\s+(?!--yes\b)(\S+)")


def main() -> int:
    problems = []
    skip = {"node_modules", "target", ".git"}
    docs = [p for p in sorted(ROOT.rglob("*.md")) if not skip & set(p.relative_to(ROOT).parts)]
    for doc in docs:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            for match in NPX.finditer(line):
                problems.append(f"{doc.relative_to(ROOT)}:{number}: `npx {match.group(1)}` needs --yes")
    for p in problems:
        print(f"docs: {p}", file=sys.stderr)
    if problems:
        return 1
    print("docs: every npx command passes --yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
