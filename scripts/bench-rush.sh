#!/usr/bin/env bash
# Runs `concertctl bench rush` against a fresh suite of release builds on this machine: its
# own database (concert_rush, recreated each run), queue, catalog, wallet and two
# reservation replicas, on ports 5115x/5116x and 5117x/5118x, so a demo suite from
# run-suite.sh may keep running. Arguments go to `concertctl bench rush`, e.g.
#   scripts/bench-rush.sh --users 100000 --seats 5000 --arrival-rate 20000 \
#     --json target/rush.json --plot docs/rush-100k.svg
# Service settings may be overridden from the environment (e.g. QUEUE_MAX_WATCH_STREAMS).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=lib/postgres.sh
. scripts/lib/postgres.sh
find_postgres
psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS concert_rush WITH (FORCE)" >/dev/null
ensure_database concert_rush
export DATABASE_URL="${PG_ADMIN_URL%/*}/concert_rush"

cargo build --release --locked --bins -q
bin="${CARGO_TARGET_DIR:-$ROOT/target}/release"
logs="$ROOT/target/rush-logs"
mkdir -p "$logs"
pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT

export QUEUE_INTERNAL_URL=http://127.0.0.1:51161 CATALOG_INTERNAL_URL=http://127.0.0.1:51162 \
  RESERVATION_INTERNAL_URL=http://127.0.0.1:51163 WALLET_INTERNAL_URL=http://127.0.0.1:51164 \
  QUEUE_URL=http://127.0.0.1:51151 CATALOG_URL=http://127.0.0.1:51152 \
  RESERVATION_URL=http://127.0.0.1:51153 WALLET_URL=http://127.0.0.1:51154
export AUTH_JWKS_FILE="$ROOT/deploy/dev-auth/jwks.json" AUTH_ISSUER=https://dev-auth.concert.invalid/ \
  AUTH_AUDIENCE=concert-api AUTH_DEV_SIGNING_KEY="$ROOT/deploy/dev-auth/dev-signing-key.pem"
# A rush streams to every waiting person: room for them (the defaults suit a replica among
# many). Holds of people who walk away run out after HOLD_TTL_SECS.
export QUEUE_MAX_WATCH_STREAMS="${QUEUE_MAX_WATCH_STREAMS:-200000}" \
  MAX_STREAMS_PER_CONNECTION="${MAX_STREAMS_PER_CONNECTION:-2000}" \
  MAX_IN_FLIGHT_REQUESTS="${MAX_IN_FLIGHT_REQUESTS:-4096}" \
  QUEUE_JOIN_RATE_TOTAL="${QUEUE_JOIN_RATE_TOTAL:-100000}" \
  HOLD_TTL_SECS="${HOLD_TTL_SECS:-30}" RUST_LOG="${RUST_LOG:-warn}"
start() { # name, log name, listen port, internal port
  LISTEN_ADDR=127.0.0.1:$3 INTERNAL_LISTEN_ADDR=127.0.0.1:$4 "$bin/$1-service" >"$logs/$2.log" 2>&1 &
  pids+=($!)
}
start wallet wallet 51154 51164
start queue queue 51151 51161
start catalog catalog 51152 51162
start reservation reservation-0 51153 51163
"$bin/concertctl" wait --only wallet --timeout-secs 60 >/dev/null
"$bin/concertctl" wait --only reservation --timeout-secs 60 >/dev/null
start reservation reservation-1 51173 51183
"$bin/concertctl" wait --timeout-secs 60 >/dev/null
"$bin/concertctl" bench rush --targets reservation=http://127.0.0.1:51153,http://127.0.0.1:51173 "$@"
