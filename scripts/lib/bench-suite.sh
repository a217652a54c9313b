# Starts a fresh suite of release builds for benchmarks (sourced by bench-rush.sh and
# bench-ceilings.sh): its own database (recreated), queue, catalog, wallet and two
# reservation replicas on ports 6115x/6116x and 6117x/6118x (outside the ephemeral range,
# where a client socket could hold them), so a demo suite from
# run-suite.sh may keep running. Stopped when the sourcing script exits.
# Sets DATABASE_URL, bin (where the binaries are) and queue_pid (the first queue replica). BENCH_BIN_DIR runs the
# binaries of a saved build instead of building this tree's.
# shellcheck source=postgres.sh
. "$ROOT/scripts/lib/postgres.sh"

start_bench_suite() { # database name, [keep: start on the database as it is (a restored one)]
  find_postgres
  if [ "${2:-}" != keep ]; then
    psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null
  fi
  ensure_database "$1"
  export DATABASE_URL="${PG_ADMIN_URL%/*}/$1"
  # BENCH_BIN_DIR: binaries saved from another build, for A/B runs interleaved against the
  # same suite scripts (nothing is built then).
  if [ -n "${BENCH_BIN_DIR:-}" ]; then
    bin=$BENCH_BIN_DIR
  else
    cargo build --release --locked --bins -q
    bin="${CARGO_TARGET_DIR:-$ROOT/target}/release"
  fi
  local logs="$ROOT/target/bench-logs"
  mkdir -p "$logs"
  bench_pids=()
  trap 'kill "${bench_pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
  export QUEUE_INTERNAL_URL=http://127.0.0.1:61161 CATALOG_INTERNAL_URL=http://127.0.0.1:61162 \
    RESERVATION_INTERNAL_URL=http://127.0.0.1:61163 WALLET_INTERNAL_URL=http://127.0.0.1:61164 \
    QUEUE_URL=http://127.0.0.1:61151 CATALOG_URL=http://127.0.0.1:61152 \
    RESERVATION_URL=http://127.0.0.1:61153 WALLET_URL=http://127.0.0.1:61154
  export AUTH_JWKS_FILE="$ROOT/deploy/dev-auth/jwks.json" AUTH_ISSUER=https://dev-auth.concert.invalid/ \
    AUTH_AUDIENCE=concert-api AUTH_DEV_SIGNING_KEY="$ROOT/deploy/dev-auth/dev-signing-key.pem" \
    ADMISSION_PASS_SIGNING_KEY_FILE="$ROOT/deploy/dev-auth/admission-pass-key.pem" \
    ADMISSION_PASS_PUBLIC_KEY_FILE="$ROOT/deploy/dev-auth/admission-pass-public.pem"
  # Room for a rush: streams to every waiting person; joins refused at the rate one replica
  # absorbs on this 2-core machine beside the generator (~5,000/s: docs/BENCHMARKS.md), before
  # their access token is checked, so a flood's excess costs next to nothing and backs off;
  # bench users admitted at once. Each may be overridden from the environment.
  export QUEUE_MAX_WATCH_STREAMS="${QUEUE_MAX_WATCH_STREAMS:-200000}" \
    MAX_STREAMS_PER_CONNECTION="${MAX_STREAMS_PER_CONNECTION:-2000}" \
    MAX_IN_FLIGHT_REQUESTS="${MAX_IN_FLIGHT_REQUESTS:-4096}" \
    QUEUE_JOIN_RATE_TOTAL="${QUEUE_JOIN_RATE_TOTAL:-5000}" \
    QUEUE_MAX_ACTIVE="${QUEUE_MAX_ACTIVE:-100000}" RUST_LOG="${RUST_LOG:-warn}"
  bench_start wallet wallet 61154 61164
  bench_start queue queue 61151 61161
  # QUEUE_REPLICAS=2: a second queue replica on 61191/61201 (the line lives in PostgreSQL, so
  # replicas share it); scripts pass it to the load with --targets.
  if [ "${QUEUE_REPLICAS:-1}" = 2 ]; then
    bench_start queue queue-1 61191 61201
  fi
  bench_start catalog catalog 61152 61162
  bench_start reservation reservation-0 61153 61163
  "$bin/concertctl" wait --only wallet --timeout-secs 60 >/dev/null
  "$bin/concertctl" wait --only reservation --timeout-secs 60 >/dev/null
  bench_start reservation reservation-1 61173 61183
  "$bin/concertctl" wait --timeout-secs 60 >/dev/null
}

# Stops the suite start_bench_suite started (scripts that start several in turn).
stop_bench_suite() {
  kill "${bench_pids[@]}" 2>/dev/null || true
  wait "${bench_pids[@]}" 2>/dev/null || true
  bench_pids=()
}

bench_start() { # binary, log name, listen port, internal port
  # BENCH_METRICS=1: each process exports /metrics on its listen port + 200 (server-side
  # call durations, pool waits), to tell a call's time in the service from the client's.
  local metrics=()
  [ "${BENCH_METRICS:-}" != 1 ] || metrics=(METRICS_ADDR=127.0.0.1:$(($3 + 200)))
  env "${metrics[@]}" LISTEN_ADDR=127.0.0.1:$3 INTERNAL_LISTEN_ADDR=127.0.0.1:$4 "$bin/$1-service" \
    >"$ROOT/target/bench-logs/$2.log" 2>&1 &
  bench_pids+=($!)
  # The queue replica's pid, for scripts that watch its memory.
  [ "$2" != queue ] || queue_pid=$!
}
