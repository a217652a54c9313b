#!/usr/bin/env bash
# Where the time of one hot path goes (issue #17): a fresh bench suite on a private
# PostgreSQL cluster with pg_stat_statements loaded (autovacuum off, as on this machine's
# shared server, so the figures compare with bench-ceilings.sh), one `concertctl bench`
# scenario, and for its timed phase only: each process's CPU per call (the four services,
# the generator, PostgreSQL), PostgreSQL's statements by time, and a `perf record -a -g`
# profile of the whole machine (target/bench-profile/perf.data; `perf report -i ...`).
#   scripts/bench-profile.sh pay                 # PayReservation, 5,000 payments
#   scripts/bench-profile.sh joins               # IssueToken, 100,000 new users
#   scripts/bench-profile.sh polls               # GetQueueStatus, 100,000 waiting
#   scripts/bench-profile.sh hold                # HoldSeat, distinct seats
#   scripts/bench-profile.sh pay --payments 20000  # other bench arguments
#   scripts/bench-profile.sh ceiling-purchase    # pgbench with scripts/ceilings/purchase.sql
#                                                # (10 s, 64 clients, as bench-ceilings.sh)
# PERF=0 skips perf. The cluster lives in .run/pgdata-profile on 127.0.0.1:55434.
# PROFILE_SETUP_SQL runs once the suite has migrated, before the bench: e.g. an A/B of one
# database object with the same binaries ("ALTER TABLE reservation.reservations DISABLE
# TRIGGER reservations_seat_taken").
# AGING_JOINS=N first ages the database as bench-stability.sh does (N joins in another room
# that then leave by idle expiry; QUEUE_IDLE_TIMEOUT_SECS applies) and AUTOVACUUM=on runs
# the cluster with production settings; the profiled phase comes after.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# Arguments after the scenario replace its default bench arguments.
ceiling=""
case "${1:-}" in
  ceiling-join | ceiling-purchase | ceiling-hold | ceiling-debit | ceiling-status) ceiling=${1#ceiling-} args=(x) ;;
  pay) args=(pay --payments 5000) phase=PayReservation ;;
  joins) args=(queue --waiting 100000 --seconds 1) phase=IssueToken ;;
  polls) args=(queue --waiting 100000 --seconds 10) phase=GetQueueStatus ;;
  hold) args=(hold --requests 20000) phase="HoldSeat distinct" ;;
  *) echo "usage: $0 pay|joins|polls|hold [bench arguments] | ceiling-join|ceiling-purchase|..." >&2; exit 2 ;;
esac
[ $# -lt 2 ] || args=("${args[0]}" "${@:2}")
# shellcheck source=lib/bench-suite.sh
. scripts/lib/bench-suite.sh
data="$ROOT/.run/pgdata-profile"
rm -rf "$data"
PG_SERVER_OPTS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on -c autovacuum=${AUTOVACUUM:-off}" \
  start_private_cluster "$data" 25434
stop_cluster() {
  local runas=()
  [ "$(id -u)" != 0 ] || runas=(runuser -u "$(stat -c %U "$data")" --)
  "${runas[@]}" "$(pg_bin_dir)/pg_ctl" -D "$data" -m fast stop >/dev/null || true
}
export DATABASE_URL="${PG_ADMIN_URL%/*}/concert_profile"
out="$ROOT/target/bench-profile"
rm -rf "$out" && mkdir -p "$out"
# The profile measures what a served call costs, so the queue's total join gate (which a
# flood needs, bench-suite.sh sets it to 5,000/s) is off unless the caller sets it: the
# closed-loop joins here pass it on a quick machine and were refused (every join must succeed).
export QUEUE_JOIN_RATE_TOTAL="${QUEUE_JOIN_RATE_TOTAL:-0}"
start_bench_suite concert_profile
trap 'kill "${bench_pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; stop_cluster' EXIT
psql "$DATABASE_URL" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
[ -z "${PROFILE_SETUP_SQL:-}" ] || psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -qc "$PROFILE_SETUP_SQL"
postmaster=$(head -1 "$data/postmaster.pid")
if [ -n "${AGING_JOINS:-}" ]; then
  echo "aging: $AGING_JOINS joins, then waiting for idle expiry to empty the line"
  "$bin/concertctl" bench --quiet queue --waiting "$AGING_JOINS" --seconds 1 >"$out/aging.log"
  for _ in $(seq 1 900); do
    [ "$(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM queue.tokens WHERE state = 'WAITING'")" = 0 ] && break
    sleep 1
  done
fi
perf_out=()
[ "${PERF:-1}" = 0 ] || ! command -v perf >/dev/null || perf_out=(--perf-out "$out/perf.data")
if [ -n "$ceiling" ]; then
  psql "$DATABASE_URL" -qf scripts/ceilings/setup.sql >/dev/null
  window=(--command "pgbench -n -M prepared -c 64 -j 2 -T ${SECONDS_EACH:-10} -f scripts/ceilings/$ceiling.sql $DATABASE_URL")
else
  "$bin/concertctl" bench --quiet --json "$out/bench.json" "${args[@]}" >"$out/bench.log" &
  bench=$!
  window=(--phase "$phase" --bench-pid "$bench")
fi
# bench_pids: wallet, queue, catalog, reservation-0, reservation-1 (start_bench_suite's order).
python3 scripts/lib/profile_window.py --log "$out/bench.log" "${window[@]}" \
  --postmaster "$postmaster" --db "$DATABASE_URL" --json "$out/profile.json" "${perf_out[@]}" \
  --group "wallet=${bench_pids[0]}" --group "queue=${bench_pids[1]}" --group "catalog=${bench_pids[2]}" \
  --group "reservation=${bench_pids[3]},${bench_pids[4]}" | tee "$out/profile.txt"
[ -n "$ceiling" ] || wait "$bench"
if [ ${#perf_out[@]} -gt 0 ]; then
  echo
  echo "perf: CPU by process (all samples of the phase)"
  perf report -i "$out/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
  echo "perf: busiest symbols"
  perf report -i "$out/perf.data" --no-children --sort comm,sym --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -"${SYMBOLS:-40}"
fi | tee -a "$out/profile.txt"
