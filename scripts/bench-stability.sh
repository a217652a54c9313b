#!/usr/bin/env bash
# The database stays the size of what is live (issue #31; first written for #17): a new
# sale's costs on a fresh database, and again after SALES (default 10) past sales of
# SALE_PEOPLE (default 100,000) each on that database, on a private PostgreSQL cluster
# with production settings (autovacuum on; this machine's shared server runs without it).
# A past sale: SALE_PEOPLE join its line (`bench queue`), 5,000 buy (`bench pay`: holds then
# payments, the books kept forever) and 5,000 holds run out unpaid (`bench hold`); then the
# line is abandoned and expires by idleness. Retention is 0 days here (QUEUE_RETENTION_DAYS,
# RESERVATION_RETENTION_DAYS; 30 in production) and the purge runs every 5 s, so what
# ended leaves the hot tables as it would 30 days after a sale.
# Measured each time: IssueToken and GetQueueStatus (`bench queue --waiting 100000`),
# HoldSeat (`bench hold`) and PayReservation (`bench pay`). Prints each path after the past
# sales as a ratio of its fresh figure, and the tables' sizes; writes target/bench-stability/.
# The cluster lives in .run/pgdata-prod on 127.0.0.1:62433 and is stopped afterwards.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=lib/bench-suite.sh
. scripts/lib/bench-suite.sh
data="$ROOT/.run/pgdata-prod"
rm -rf "$data"
start_private_cluster "$data" 62433
stop_cluster() {
  local runas=()
  [ "$(id -u)" != 0 ] || runas=(runuser -u "$(stat -c %U "$data")" --)
  "${runas[@]}" "$(pg_bin_dir)/pg_ctl" -D "$data" -m fast stop >/dev/null || true
}
[ "$(psql "$PG_ADMIN_URL" -Atc 'SHOW autovacuum')" = on ] || { echo "autovacuum is off in $data" >&2; exit 1; }
export DATABASE_URL="${PG_ADMIN_URL%/*}/concert_stability"
out="$ROOT/target/bench-stability"
rm -rf "$out" && mkdir -p "$out"
# Retention 0 and a purge every 5 s stand for "30 days later"; a line abandoned after 30 s
# and unpaid holds running out after 60 s keep the run short.
export QUEUE_RETENTION_DAYS=0 RESERVATION_RETENTION_DAYS=0 PURGE_INTERVAL_SECS=5 QUEUE_IDLE_TIMEOUT_SECS=30 \
  HOLD_TTL_SECS=60 QUEUE_JOIN_RATE_TOTAL=0  # every join of the bench must be served
start_bench_suite concert_stability
trap 'kill "${bench_pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; stop_cluster' EXIT
C="$bin/concertctl"
measure() { # label
  $C bench --quiet --json "$out/$1-queue.json" queue --waiting 100000 --seconds 10
  $C bench --quiet --json "$out/$1-hold.json" hold --requests 5000
  $C bench --quiet --json "$out/$1-pay.json" pay --payments 5000
}
line_empty() {
  for _ in $(seq 1 600); do
    [ "$(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM queue.tokens WHERE state = 'WAITING'")" = 0 ] && return
    sleep 1
  done
}
measure fresh
line_empty
for sale in $(seq 1 "${SALES:-10}"); do
  echo "past sale $sale of ${SALES:-10}: ${SALE_PEOPLE:-100000} people join, 5,000 buy, 5,000 holds run out"
  $C bench --quiet --json "$out/sale-$sale-queue.json" queue --waiting "${SALE_PEOPLE:-100000}" --seconds 1
  $C bench --quiet --json "$out/sale-$sale-pay.json" pay --payments 5000
  $C bench --quiet --json "$out/sale-$sale-hold.json" hold --requests 5000
done
# The crowds leave as an abandoned line does: nobody polls, and the admission round expires
# them after QUEUE_IDLE_TIMEOUT_SECS; the unpaid holds run out after HOLD_TTL_SECS; then the
# purge deletes what ended. The aged figures are taken once the line is empty and purged, so
# both measurements see the same live line and differ only in what the database has been
# through.
echo "after the sales: waiting for the line to empty and the purge to run"
line_empty
sleep 70  # the last unpaid holds run out (60 s), then a purge
psql "$DATABASE_URL" -Atc "SELECT 'tokens left: ' || count(*) FROM queue.tokens"
psql "$DATABASE_URL" -Atc "SELECT 'reservations left: ' || count(*) || ' (' || count(*) FILTER (WHERE status = 'CONFIRMED') || ' sold)' FROM reservation.reservations"
measure aged
psql "$DATABASE_URL" -Atc "SELECT schemaname || '.' || relname, n_live_tup, n_dead_tup, autovacuum_count,
                                  pg_size_pretty(pg_total_relation_size(relid))
                           FROM pg_stat_user_tables WHERE n_live_tup + n_dead_tup > 1000 ORDER BY 1" >"$out/tables.txt"
python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def phase(label, file, prefix):
    return next(r for r in json.loads((out / f"{label}-{file}.json").read_text()) if r["name"].startswith(prefix))
print(f"\n{'path':<28} {'fresh /s':>9} {'p99 ms':>7} {'aged /s':>9} {'p99 ms':>7} {'ratio':>6}")
for name, file, prefix in [("IssueToken", "queue", "IssueToken"), ("GetQueueStatus", "queue", "GetQueueStatus"),
                           ("HoldSeat", "hold", "HoldSeat"), ("PayReservation", "pay", "PayReservation")]:
    f, a = phase("fresh", file, prefix), phase("aged", file, prefix)
    print(f"{name:<28} {f['per_sec']:>9.0f} {f['p99_ms']:>7.1f} {a['per_sec']:>9.0f} {a['p99_ms']:>7.1f} {a['per_sec'] / f['per_sec']:>6.2f}")
print("\ntables (live rows, dead rows, autovacuums, size with indexes):")
print((out / "tables.txt").read_text())
PY
