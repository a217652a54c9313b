#!/usr/bin/env python3
"""Checks that the test scripts never listen on a port inside Linux's ephemeral range.

A client socket the tests left behind (TIME_WAIT, or a connection still open) can hold any
port of net.ipv4.ip_local_port_range (32768-60999 by default), so a server started on a
fixed port there fails now and then: "Address already in use" (issue #27 item 12). Servers
the tests start take port 0 (the Rust tests do) or a fixed port outside that range (the
scripts). This reads every test script and each port it names, literally or as the base of
`$((base + i))`. Exits 1 naming each port in the range.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EPHEMERAL = range(32768, 61000)
# `:5432`, a default `${2:-5432}`, `$((base + i))`, or a port handed to start_private_cluster.
PORT = re.compile(r"(?::-?|\$\(\(|start_private_cluster \S+ )(\d{4,5})\b")
SCRIPTS = [
    "scripts/test.sh",
    "scripts/test-web.sh",
    "scripts/test-fresh-postgres.sh",
    "scripts/test-db-crash.sh",
    "scripts/test-failover.sh",
    "scripts/test-backup.sh",
    "scripts/lib/bench-suite.sh",
    "scripts/lib/postgres.sh",
    "scripts/bench-profile.sh",
    "scripts/bench-stability.sh",
    "web/e2e/run.mjs",
]


def main() -> int:
    problems = []
    for name in SCRIPTS:
        for number, line in enumerate((ROOT / name).read_text().splitlines(), 1):
            if line.lstrip().startswith(("#", "//")):
                continue
            for port in map(int, PORT.findall(line)):
                if port in EPHEMERAL:
                    problems.append(f"{name}:{number}: port {port} is in the ephemeral range 32768-60999")
    for p in problems:
        print(f"ports: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"ports: the test scripts listen outside the ephemeral range ({len(SCRIPTS)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
