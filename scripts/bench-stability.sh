#!/usr/bin/env bash
# The database stays the size of what is live (issue #31; first written for #17): a new
# sale's costs on a database that has been through SALES (default 10) past sales of
# SALE_PEOPLE (default 100,000) each, against the same on a fresh database, on a private
# PostgreSQL cluster with production settings (autovacuum on; this machine's shared server
# runs without it).
#
# A past sale: SALE_PEOPLE join its line (`bench queue`), 5,000 buy (`bench pay`: holds then
# payments, the books kept forever) and 5,000 holds run out unpaid (`bench hold`); then the
# line is abandoned and expires by idleness. Retention is 0 days here (QUEUE_RETENTION_DAYS,
# RESERVATION_RETENTION_DAYS; 30 in production) and the purge runs every 5 s, so what
# ended leaves the hot tables as it would 30 days after a sale. Before each measurement on
# the aged database everything the measurement before it left has ended and been purged,
# and autovacuum has nothing due (as 30 days later), so both databases are measured with
# the same live rows and differ only in what they have been through.
#
# A new sale, measured: HoldSeat (`bench hold`, 20,000 seats), PayReservation (`bench pay`,
# 5,000) and IssueToken then GetQueueStatus (`bench queue --waiting 100000`). The machine's
# speed drifts by a third over minutes (docs/BENCHMARKS.md), more than the effect looked
# for, so the two databases are measured in ROUNDS (default 3) interleaved pairs, the
# order alternating (fresh then aged, aged then fresh), each on a suite started for it; a
# fresh database is created anew for every round. Prints each path's aged/fresh ratio per
# pair and the median; writes target/bench-stability/ (each phase's JSON, the statements
# of each measurement from pg_stat_statements, the tables' sizes).
# The cluster lives in .run/pgdata-prod on 127.0.0.1:62433 and is stopped afterwards.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=lib/bench-suite.sh
. scripts/lib/bench-suite.sh
data="$ROOT/.run/pgdata-prod"
# KEEP_AGED=1: measure again on the aged database an earlier run left (no new past sales).
[ "${KEEP_AGED:-0}" = 1 ] || rm -rf "$data"
PG_SERVER_OPTS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all" \
  start_private_cluster "$data" 62433
stop_cluster() {
  local runas=()
  [ "$(id -u)" != 0 ] || runas=(runuser -u "$(stat -c %U "$data")" --)
  "${runas[@]}" "$(pg_bin_dir)/pg_ctl" -D "$data" -m fast stop >/dev/null || true
}
cleanup() { stop_bench_suite; stop_cluster; }
trap cleanup EXIT
[ "$(psql "$PG_ADMIN_URL" -Atc 'SHOW autovacuum')" = on ] || { echo "autovacuum is off in $data" >&2; exit 1; }
psql "$PG_ADMIN_URL" -qc 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' >/dev/null
out="$ROOT/target/bench-stability"
rm -rf "$out.old" && { [ ! -d "$out" ] || mv "$out" "$out.old"; } && mkdir -p "$out"
# Retention 0 and a purge every 5 s stand for "30 days later"; a line abandoned after 60 s
# (longer than a measurement's joins and polls, or its pollers would find their tokens
# expired), admitted people done after 120 s and unpaid holds running out after 60 s keep
# the run short.
export QUEUE_RETENTION_DAYS=0 RESERVATION_RETENTION_DAYS=0 PURGE_INTERVAL_SECS=5 QUEUE_IDLE_TIMEOUT_SECS=60 \
  QUEUE_ACTIVE_TTL_SECS=120 HOLD_TTL_SECS=60 QUEUE_JOIN_RATE_TOTAL=0 # every join of the bench must be served
SALES=${SALES:-10} SALE_PEOPLE=${SALE_PEOPLE:-100000} ROUNDS=${ROUNDS:-3}

suite_on() { # database, [keep]
  # On the private cluster (start_bench_suite uses DATABASE_URL's server).
  export DATABASE_URL="${PG_ADMIN_URL%/*}/$1"
  start_bench_suite "$1" "${2:-}"
  trap cleanup EXIT # start_bench_suite sets a trap of its own
  # Later suites run the binaries this one built.
  export BENCH_BIN_DIR=$bin
}
q() { psql "$DATABASE_URL" -Atc "$1"; }
wait_for() { # description, SQL that returns t when done; up to 15 minutes
  for _ in $(seq 1 900); do
    [ "$(q "$2")" = t ] && return
    sleep 1
  done
  echo "gave up waiting: $1" >&2
  exit 1
}
# Everything earlier sales and measurements left has ended and been purged: no token
# (waiting, admitted or ended), no hold but the sold ones (the books).
settled() {
  wait_for "the line empty and purged, the holds run out and purged" \
    "SELECT NOT EXISTS (SELECT 1 FROM queue.tokens)
        AND NOT EXISTS (SELECT 1 FROM reservation.reservations WHERE status IN ('HELD', 'EXPIRED', 'CANCELLED'))"
  # Autovacuum's own rule (threshold 50 + scale factor 0.2 of the live rows): nothing due
  # on the tables the sales churn.
  wait_for "autovacuum done with the purged tables" \
    "SELECT bool_and(n_dead_tup <= 50 + 0.2 * n_live_tup) FROM pg_stat_user_tables
      WHERE (schemaname, relname) IN (('queue', 'tokens'), ('reservation', 'reservations'))"
}
C() { "$bin/concertctl" "$@"; }
statements() { # file: the statements since the last reset, most time first
  psql "$PG_ADMIN_URL" -Atc "SELECT calls, round(mean_exec_time::numeric, 3) AS mean_ms,
                                    round(total_exec_time::numeric) AS total_ms, left(regexp_replace(query, '\s+', ' ', 'g'), 160)
                             FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                             WHERE d.datname LIKE 'concert_%'
                             ORDER BY total_exec_time DESC LIMIT 25" >"$1"
  psql "$PG_ADMIN_URL" -qAtc 'SELECT pg_stat_statements_reset()' >/dev/null
}
measure() { # label: a new sale's holds, payments, joins and polls
  psql "$PG_ADMIN_URL" -qAtc 'SELECT pg_stat_statements_reset()' >/dev/null
  C bench --quiet --json "$out/$1-hold.json" hold --requests 20000
  statements "$out/$1-hold-statements.txt"
  C bench --quiet --json "$out/$1-pay.json" pay --payments 5000
  statements "$out/$1-pay-statements.txt"
  C bench --quiet --json "$out/$1-queue.json" queue --waiting 100000 --seconds 10
  statements "$out/$1-queue-statements.txt"
}
tables() { # file
  q "SELECT schemaname || '.' || relname, n_live_tup, n_dead_tup, autovacuum_count,
            pg_size_pretty(pg_total_relation_size(relid))
     FROM pg_stat_user_tables WHERE n_live_tup + n_dead_tup > 1000 ORDER BY 1" >"$1"
}

# The aged database: the past sales.
if [ "${KEEP_AGED:-0}" = 1 ] && [ "$(psql "$PG_ADMIN_URL" -Atc "SELECT count(*) FROM pg_database WHERE datname = 'concert_aged'")" = 1 ]; then
  echo "KEEP_AGED: measuring the aged database an earlier run left"
  suite_on concert_aged keep
else
  suite_on concert_aged
  for sale in $(seq 1 "$SALES"); do
    echo "past sale $sale of $SALES: $SALE_PEOPLE people join, 5,000 buy, 5,000 holds run out"
    C bench --quiet --json "$out/sale-$sale-queue.json" queue --waiting "$SALE_PEOPLE" --seconds 1
    C bench --quiet --json "$out/sale-$sale-pay.json" pay --payments 5000
    C bench --quiet --json "$out/sale-$sale-hold.json" hold --requests 5000
  done
fi
echo "after the sales: waiting for the line to empty, the holds to run out, the purge and autovacuum"
settled
q "SELECT 'reservations kept (the books): ' || count(*) FROM reservation.reservations"
tables "$out/aged-after-sales-tables.txt"
stop_bench_suite

aged_round() {
  suite_on concert_aged keep
  settled
  measure "aged-$1"
  tables "$out/aged-$1-tables.txt"
  stop_bench_suite
}
fresh_round() {
  suite_on "concert_fresh"
  measure "fresh-$1"
  stop_bench_suite
}
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round of $ROUNDS"
  if [ $((round % 2)) = 1 ]; then fresh_round "$round" && aged_round "$round"; else aged_round "$round" && fresh_round "$round"; fi
done

python3 - "$out" "$ROUNDS" <<'PY'
import json, pathlib, statistics, sys
out, rounds = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def phase(label, file, prefix):
    return next(r for r in json.loads((out / f"{label}-{file}.json").read_text()) if r["name"].startswith(prefix))
print("\nA new sale on a database after the past sales (aged) against a fresh one, calls/s (p99 ms),"
      " interleaved pairs; ratio = aged / fresh")
for name, file, prefix in [("IssueToken", "queue", "IssueToken"), ("GetQueueStatus", "queue", "GetQueueStatus"),
                           ("HoldSeat", "hold", "HoldSeat"), ("PayReservation", "pay", "PayReservation")]:
    cells, ratios = [], []
    for r in range(1, rounds + 1):
        f, a = phase(f"fresh-{r}", file, prefix), phase(f"aged-{r}", file, prefix)
        ratios.append(a["per_sec"] / f["per_sec"])
        cells.append(f"{f['per_sec']:.0f} ({f['p99_ms']:.0f}) → {a['per_sec']:.0f} ({a['p99_ms']:.0f}) = {ratios[-1]:.2f}")
    print(f"{name:<15} median {statistics.median(ratios):.2f} | " + " | ".join(cells))
print("\ntables after the past sales (live rows, dead rows, autovacuums, size with indexes):")
print((out / "aged-after-sales-tables.txt").read_text())
PY
