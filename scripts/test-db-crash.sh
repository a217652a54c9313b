#!/usr/bin/env bash
# Losing the database loses nothing (issue #31, first part): PostgreSQL dies mid-rush — the
# postmaster and every backend killed with SIGKILL at once, as when its machine fails — and
# is started again 6 s later (crash recovery replays its WAL). Checks, and prints:
#   - every service kept answering: no call of the rush got INTERNAL or UNKNOWN; the outage
#     shows as UNAVAILABLE (and DEADLINE_EXCEEDED for calls that waited it out);
#   - health went NOT_SERVING while the database was down and SERVING once it was back;
#   - no service restarted (same processes), and sales went on after the restart;
#   - the recovery worker settled every payment the crash interrupted: `concertctl reconcile
#     --settled` and `concertctl audit` are clean (every won and every seat accounted for).
# A private cluster on 127.0.0.1:62438 (.run/pgdata-crash, removed first), this tree's debug
# builds (BENCH_BIN_DIR to use others) on the bench ports, a small rush as the traffic.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=lib/postgres.sh
. scripts/lib/postgres.sh
data="$ROOT/.run/pgdata-crash"
port=62438
out="${CARGO_TARGET_DIR:-$ROOT/target}/db-crash"
rm -rf "$data" "$out"
mkdir -p "$out"
start_private_cluster "$data" "$port"
stop_cluster() {
  local runas=()
  [ "$(id -u)" != 0 ] || runas=(runuser -u "$(stat -c %U "$data")" --)
  "${runas[@]}" "$(pg_bin_dir)/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
}
export DATABASE_URL="${PG_ADMIN_URL%/*}/concert_crash"
# shellcheck source=lib/chaos-suite.sh
. scripts/lib/chaos-suite.sh
start_chaos_suite concert_crash
trap 'kill "${bench_pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; stop_cluster' EXIT
ctl="$bin/concertctl"
services=("${bench_pids[@]}")

echo "db-crash: a rush of 1,500 people for 200 seats; PostgreSQL killed once 40 seats are sold (mid-sale), started 6 s later"
"$ctl" bench rush --users 1500 --seats 200 --arrival-rate 100 --max-active 80 --seats-per-person 2 \
  --duration 90 --quiet --json "$out/rush.json" >"$out/rush.log" 2>&1 &
rush=$!
started=$(date +%s.%N)
# The kill lands mid-sale, whatever this machine's pace: once 40 of the 200 seats are sold
# (a fixed delay let a quick machine sell out before it, and nothing was left to sell
# after the restart). At most 30 s.
for _ in $(seq 1 300); do
  sold=$(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM reservation.reservations WHERE status = 'CONFIRMED'" 2>/dev/null || echo 0)
  [ "${sold:-0}" -lt 40 ] || break
  sleep 0.1
done
postmaster=$(head -1 "$data/postmaster.pid")
backends=$(pgrep -P "$postmaster" | tr '\n' ' ')
kill -9 "$postmaster" $backends
killed=$(date +%s.%N)
echo "db-crash: killed the postmaster ($postmaster) and its $(wc -w <<<"$backends") processes, $(python3 -c "print(f'{$killed - $started:.1f}')") s into the rush with ${sold:-0} seats sold"
# The replicas ask their database every second (2 s to answer): NOT_SERVING within ~3 s.
not_serving=""
for _ in $(seq 1 50); do
  if ! "$ctl" wait --only reservation --timeout-secs 1 >/dev/null 2>&1; then
    not_serving=$(python3 -c "import time; print(f'{time.time() - $killed:.1f}')")
    break
  fi
  sleep 0.2
done
[ -n "$not_serving" ] || { echo "db-crash: FAIL: health stayed SERVING with the database down" >&2; exit 1; }
echo "db-crash: health NOT_SERVING ${not_serving} s after the kill"
sleep "$(python3 -c "import time; print(max(0.0, 6 - (time.time() - $killed)))")"
start_private_cluster "$data" "$port" >/dev/null
restarted=$(date +%s.%N)
"$ctl" wait --timeout-secs 60 >/dev/null ||
  { echo "db-crash: FAIL: the services did not report SERVING again within 60 s" >&2; exit 1; }
serving=$(python3 -c "import time; print(f'{time.time() - $restarted:.1f}')")
echo "db-crash: PostgreSQL back $(python3 -c "print(f'{$restarted - $killed:.1f}')") s after the kill; every service SERVING ${serving} s later"
wait "$rush" || echo "db-crash: the rush reported a failed check (expected while a database is down); its figures follow"

for pid in "${services[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "db-crash: FAIL: service process $pid is gone" >&2; tail -n 20 "$ROOT"/target/bench-logs/*.log >&2; exit 1; }
done
echo "db-crash: no service restarted (${#services[@]} processes, the same as before)"

# Seconds of the rush's timeline from which a payment can only have come after the restart:
# the database was down from the kill until then, and the timeline starts no earlier than
# this script's clock did (a second's margin for a payment committing at the kill).
python3 - "$out/rush.json" "$(python3 -c "print(int($killed - $started) + 2)")" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
back_at = int(sys.argv[2])
bad, outage = [], {}
for row in report["rpcs"]:
    for code, n in row["codes"].items():
        if code in ("Internal", "Unknown", "DataLoss"):
            bad.append(f"{row['rpc']} {code} ×{n}")
        if code in ("Unavailable", "DeadlineExceeded"):
            outage[f"{row['rpc']} {code}"] = n
print("db-crash: calls that met the outage:", ", ".join(f"{k} ×{v}" for k, v in sorted(outage.items())) or "none")
paid_after = sum(s["paid"] for s in report["timeline"] if s["t"] >= back_at) if "timeline" in report else None
print(f"db-crash: seats sold {report['seats_sold']} of {report['seats']}; payments in the seconds after the restart: {paid_after}")
if bad:
    sys.exit("db-crash: FAIL: " + ", ".join(bad))
if not outage:
    sys.exit("db-crash: FAIL: no call saw the outage; the kill did not land")
if paid_after == 0:
    sys.exit("db-crash: FAIL: nothing was sold after the restart")
PY

await_settled "$out/reconcile.txt" 90 ||
  { cat "$out/reconcile.txt"; echo "db-crash: FAIL: not reconciled and settled within 90 s" >&2; exit 1; }
cat "$out/reconcile.txt"
"$ctl" audit
echo "db-crash: passed"
