#!/usr/bin/env bash
# Stable over time (issue #17): the same measurements on a fresh database and again after
# AGING_JOINS (default 1,000,000) more joins on that database, on a private PostgreSQL
# cluster with production settings (autovacuum on, PostgreSQL's defaults otherwise; this
# machine's shared server runs with autovacuum off). Measured each time: IssueToken and
# GetQueueStatus (`bench queue --waiting 100000`) and PayReservation (`bench pay`); the
# aged figures once the aging joins have left the line by idle expiry.
# Prints each path after aging as a ratio of its fresh figure; writes target/bench-stability/.
# The cluster lives in .run/pgdata-prod on 127.0.0.1:55433 and is stopped afterwards.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=lib/bench-suite.sh
. scripts/lib/bench-suite.sh
data="$ROOT/.run/pgdata-prod"
rm -rf "$data"
start_private_cluster "$data" 55433
stop_cluster() {
  local runas=()
  [ "$(id -u)" != 0 ] || runas=(runuser -u "$(stat -c %U "$data")" --)
  "${runas[@]}" "$(pg_bin_dir)/pg_ctl" -D "$data" -m fast stop >/dev/null || true
}
[ "$(psql "$PG_ADMIN_URL" -Atc 'SHOW autovacuum')" = on ] || { echo "autovacuum is off in $data" >&2; exit 1; }
export DATABASE_URL="${PG_ADMIN_URL%/*}/concert_stability"
out="$ROOT/target/bench-stability"
rm -rf "$out" && mkdir -p "$out"
start_bench_suite concert_stability
trap 'kill "${bench_pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; stop_cluster' EXIT
C="$bin/concertctl"
measure() { # label
  $C bench --quiet --json "$out/$1-queue.json" queue --waiting 100000 --seconds 10
  $C bench --quiet --json "$out/$1-pay.json" pay --payments 5000
}
measure fresh
echo "aging: ${AGING_JOINS:-1000000} joins"
$C bench --quiet --json "$out/aging.json" queue --waiting "${AGING_JOINS:-1000000}" --seconds 1
# The aging crowd then leaves as an abandoned line does: nobody polls, and the admission
# round expires them after QUEUE_IDLE_TIMEOUT_SECS (120 s by default). The aged figures are
# taken once the line is empty again, so both measurements see the same live line and
# differ only in what the database has been through.
echo "aging: waiting for idle expiry to empty the line"
for _ in $(seq 1 600); do
  [ "$(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM queue.tokens WHERE state = 'WAITING'")" = 0 ] && break
  sleep 1
done
measure aged
psql "$DATABASE_URL" -Atc "SELECT relname, n_live_tup, n_dead_tup, autovacuum_count, autoanalyze_count
                           FROM pg_stat_user_tables WHERE n_live_tup > 1000 ORDER BY relname" >"$out/tables.txt"
python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def phase(label, file, prefix):
    return next(r for r in json.loads((out / f"{label}-{file}.json").read_text()) if r["name"].startswith(prefix))
print(f"\n{'path':<28} {'fresh /s':>9} {'p99 ms':>7} {'aged /s':>9} {'p99 ms':>7} {'ratio':>6}")
for name, file, prefix in [("IssueToken", "queue", "IssueToken"), ("GetQueueStatus", "queue", "GetQueueStatus"),
                           ("PayReservation", "pay", "PayReservation")]:
    f, a = phase("fresh", file, prefix), phase("aged", file, prefix)
    print(f"{name:<28} {f['per_sec']:>9.0f} {f['p99_ms']:>7.1f} {a['per_sec']:>9.0f} {a['p99_ms']:>7.1f} {a['per_sec'] / f['per_sec']:>6.2f}")
print("\ntables (live, dead, autovacuums, autoanalyzes):")
print((out / "tables.txt").read_text())
PY
