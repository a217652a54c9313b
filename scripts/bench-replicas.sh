#!/usr/bin/env bash
# Joins served by one queue replica and by two (issue #26: scale-out stays linear in
# principle, since the line lives in PostgreSQL). A fresh bench suite each time; the same
# number of joins, from the same two generator processes, each process aimed at one replica
# (or both at the only one). Prints joins per second and the ratio two : one.
#   scripts/bench-replicas.sh [JOINS per generator, default 20000]
# Everything shares this machine's cores: the ratio says what a second replica adds here,
# beside the generators, the other services and PostgreSQL.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
joins=${1:-20000}
# What the replicas can serve, not what the gate lets through.
export QUEUE_JOIN_RATE_TOTAL=${QUEUE_JOIN_RATE_TOTAL:-1000000}
# shellcheck source=lib/bench-suite.sh
. scripts/lib/bench-suite.sh
out=$(mktemp -d)

run() { # replicas
  QUEUE_REPLICAS=$1 start_bench_suite concert_replicas
  local second=http://127.0.0.1:61151
  [ "$1" != 2 ] || second=http://127.0.0.1:61191
  QUEUE_URL=http://127.0.0.1:61151 "$bin/concertctl" bench --quiet --json "$out/$1-a.json" \
    queue --waiting "$joins" --seconds 1 >/dev/null &
  local a=$!
  QUEUE_URL=$second "$bin/concertctl" bench --quiet --json "$out/$1-b.json" \
    queue --waiting "$joins" --seconds 1 >/dev/null &
  local b=$!
  wait "$a" "$b"
  stop_bench_suite
}

joins_per_sec() { # replicas
  python3 - "$out/$1-a.json" "$out/$1-b.json" <<'PY'
import json, sys
total = 0.0
for path in sys.argv[1:]:
    phases = json.load(open(path))
    join = next(p for p in phases if p["name"].startswith("IssueToken"))
    total += join["ok"] / join["seconds"]
print(f"{total:.0f}")
PY
}

run 1
one=$(joins_per_sec 1)
run 2
two=$(joins_per_sec 2)
echo "joins served: one queue replica ${one}/s, two ${two}/s, ratio $(python3 -c "print(f'{$two / $one:.2f}')")"
