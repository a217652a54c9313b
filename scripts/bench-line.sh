#!/usr/bin/env bash
# The waiting room at scale (issue #17's "a million in line at flat cost"): for each line
# length given (default 10000 1000000), a fresh bench suite (scripts/lib/bench-suite.sh),
# `concertctl bench queue --waiting N` (joins, then GetQueueStatus polls spread over the
# line, 64 in flight), and the queue-service's memory: resident now (VmRSS) and at its peak
# (VmHWM), and its CPU time per poll. Polls come from POLLERS people spread over the line
# (default: the first length), the same population at every length, so per-person caches
# (verified access tokens, remembered rows) serve every length alike and the ratio shows the
# line's own cost. Prints one line per length with the poll rate and the queue's CPU per
# poll as ratios of the first length's, and writes target/bench-line/<N>.json.
#   scripts/bench-line.sh 10000 1000000
# POLL_SECONDS (default 20) sets how long the polls run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# The bench's people do not poll while the others join (a million joins take minutes), so
# the default idle expiry (60 s) would empty most of the line before the polls begin.
export QUEUE_IDLE_TIMEOUT_SECS="${QUEUE_IDLE_TIMEOUT_SECS:-3600}"
# shellcheck source=lib/bench-suite.sh
. scripts/lib/bench-suite.sh
out="$ROOT/target/bench-line"
rm -rf "$out" && mkdir -p "$out"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 1000000)
for n in "${sizes[@]}"; do
  start_bench_suite concert_line
  "$bin/concertctl" bench --quiet --json "$out/$n.json" queue --waiting "$n" --seconds "${POLL_SECONDS:-20}" \
    --pollers "${POLLERS:-${sizes[0]}}" >"$out/$n.log" &
  bench=$!
  # The queue replica's CPU time (user + system, clock ticks) once the joins are done and
  # again at the end: its CPU per poll, whatever share of the machine the generator takes.
  until grep -q '^IssueToken' "$out/$n.log" 2>/dev/null; do
    kill -0 "$bench" 2>/dev/null || { cat "$out/$n.log"; wait "$bench"; exit 1; }
    sleep 0.2
  done
  awk '{ print $14 + $15 }' "/proc/$queue_pid/stat" >"$out/$n.cpu"
  awk '/^Vm(RSS|HWM)/ { printf "%s %d\n", $1, $2 / 1024 }' "/proc/$queue_pid/status" >"$out/$n.mem"
  wait "$bench"
  awk '{ print $14 + $15 }' "/proc/$queue_pid/stat" >>"$out/$n.cpu"
  cat "$out/$n.log"
  awk '/^Vm(RSS|HWM)/ { printf "%s %d\n", $1, $2 / 1024 }' "/proc/$queue_pid/status" >"$out/$n.mem"
  stop_bench_suite
done
python3 - "$out" "$(getconf CLK_TCK)" "${sizes[@]}" <<'PY'
import json, pathlib, sys
out, tick, sizes = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
def phase(n, prefix):
    return next(r for r in json.loads((out / f"{n}.json").read_text()) if r["name"].startswith(prefix))
def mem(n):
    return dict(line.split() for line in (out / f"{n}.mem").read_text().splitlines())
def cpu_us_per_poll(n):
    before, after = (int(x) for x in (out / f"{n}.cpu").read_text().split())
    return (after - before) / tick * 1e6 / phase(n, "GetQueueStatus")["calls"]
base, base_cpu = phase(sizes[0], "GetQueueStatus")["per_sec"], cpu_us_per_poll(sizes[0])
print(f"\n{'waiting':>10} {'joins /s':>9} {'p99 ms':>7} {'polls /s':>9} {'p99 ms':>7} {'ratio':>6}"
      f" {'queue CPU us/poll':>18} {'ratio':>6} {'RSS MB':>7} {'peak MB':>8}")
for n in sizes:
    j, p, m, c = phase(n, "IssueToken"), phase(n, "GetQueueStatus"), mem(n), cpu_us_per_poll(n)
    print(f"{int(n):>10,} {j['per_sec']:>9.0f} {j['p99_ms']:>7.1f} {p['per_sec']:>9.0f} {p['p99_ms']:>7.1f}"
          f" {p['per_sec'] / base:>6.2f} {c:>18.1f} {base_cpu / c:>6.2f} {m['VmRSS:']:>7} {m['VmHWM:']:>8}")
PY
