#!/usr/bin/env bash
# Ceilings side by side, in one run on this machine: PostgreSQL's own rate for the exact SQL
# of each hot path (pgbench, scripts/ceilings/*.sql, 64 clients, prepared statements as
# the services use them), a no-op call through the
# same gRPC server stack, and the real RPCs (concertctl bench, 64 in flight) against a fresh
# bench suite (scripts/lib/bench-suite.sh). Prints each real path as a ratio of its ceiling
# and writes target/ceilings/*.json. SECONDS_EACH (default 10) sets each phase's length.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=lib/bench-suite.sh
. scripts/lib/bench-suite.sh
start_bench_suite concert_ceilings
secs=${SECONDS_EACH:-10}
out="$ROOT/target/ceilings"
rm -rf "$out" && mkdir -p "$out"
command -v pgbench >/dev/null || { echo "pgbench not found (Debian: it comes with the postgresql package)" >&2; exit 1; }

psql "$DATABASE_URL" -qf scripts/ceilings/setup.sql >/dev/null
for path in join status hold debit purchase; do
  echo "pgbench: $path ($secs s, 64 clients)"
  pgbench -n -M prepared -c 64 -j 2 -T "$secs" -f "scripts/ceilings/$path.sql" "$DATABASE_URL" >"$out/pgbench-$path.txt" 2>&1 \
    || { cat "$out/pgbench-$path.txt" >&2; exit 1; }
done
C="$bin/concertctl"
$C bench --quiet --json "$out/noop.json" noop --seconds "$secs"
$C bench --quiet --json "$out/queue.json" queue --waiting 100000 --seconds "$secs"
$C bench --quiet --json "$out/hold.json" hold --requests 20000
$C bench --quiet --json "$out/pay.json" pay --payments 5000

python3 - "$out" <<'PY'
import json, re, sys, pathlib
out = pathlib.Path(sys.argv[1])
def tps(path):
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", (out / f"pgbench-{path}.txt").read_text())
    return float(m.group(1))
def real(file, name_prefix):
    for r in json.loads((out / file).read_text()):
        if r["name"].startswith(name_prefix):
            return r
    raise SystemExit(f"{file}: no phase {name_prefix!r}")
noop = real("noop.json", "Health/Check")
rows = [
    ("IssueToken (100,000 joins)", real("queue.json", "IssueToken"), "join INSERT", tps("join")),
    ("GetQueueStatus (100,000 waiting)", real("queue.json", "GetQueueStatus"), "token read", tps("status")),
    ("HoldSeat (distinct seats)", real("hold.json", "HoldSeat distinct"), "hold INSERT", tps("hold")),
    ("PayReservation (saga)", real("pay.json", "PayReservation"), "one-transaction purchase", tps("purchase")),
]
print(f"\n{'path':<34} {'real /s':>9} {'p99 ms':>7}   {'ceiling':<26} {'/s':>9} {'ratio':>6}")
print(f"{'(no-op gRPC call)':<34} {noop['per_sec']:>9.0f} {noop['p99_ms']:>7.1f}   {'-':<26} {'':>9} {'':>6}")
for name, r, ceiling, c in rows:
    print(f"{name:<34} {r['per_sec']:>9.0f} {r['p99_ms']:>7.1f}   {ceiling:<26} {c:>9.0f} {r['per_sec'] / c:>6.2f}")
print(f"{'debit alone (pgbench)':<34} {'':>9} {'':>7}   {'debit transaction':<26} {tps('debit'):>9.0f}")
for name, r, _, _ in rows:
    print(f"{name:<34} is {r['per_sec'] / noop['per_sec']:.2f} x the no-op call")
PY
