#!/usr/bin/env bash
# Runs `concertctl bench rush` against a fresh suite of release builds on this machine: its
# own database (concert_rush, recreated each run), queue, catalog, wallet and two
# reservation replicas, on ports 6115x/6116x and 6117x/6118x (outside the ephemeral range, where a client socket could hold them), so a demo suite from
# run-suite.sh may keep running. Arguments go to `concertctl bench rush`, e.g.
#   scripts/bench-rush.sh --users 100000 --seats 5000 --arrival-rate 20000 \
#     --json target/rush.json --plot docs/rush-100k.svg
# Service settings may be overridden from the environment (e.g. QUEUE_MAX_WATCH_STREAMS);
# QUEUE_REPLICAS=2 runs two queue replicas and spreads the people over both.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# Holds of people who walk away run out after this, so their seats sell within the run.
export HOLD_TTL_SECS="${HOLD_TTL_SECS:-30}"
# shellcheck source=lib/bench-suite.sh
. scripts/lib/bench-suite.sh
start_bench_suite concert_rush
queues=http://127.0.0.1:61151
[ "${QUEUE_REPLICAS:-1}" != 2 ] || queues=$queues,http://127.0.0.1:61191
"$bin/concertctl" bench rush --targets reservation=http://127.0.0.1:61153,http://127.0.0.1:61173 \
  --targets "queue=$queues" --queue-pid "$queue_pid" "$@"
