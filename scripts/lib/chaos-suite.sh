# shellcheck shell=bash
# What the database chaos tests share (test-db-crash.sh, test-failover.sh, test-backup.sh):
# the suite of this tree's debug builds (BENCH_BIN_DIR to use others) on the bench ports,
# with a recovery worker quick enough to settle interrupted payments within the test, and
# the wait for the books to settle afterwards.
# shellcheck source=bench-suite.sh
. "$ROOT/scripts/lib/bench-suite.sh"

start_chaos_suite() { # database name, [keep]
  if [ -z "${BENCH_BIN_DIR:-}" ]; then
    cargo build --locked --bins -q
    BENCH_BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
  fi
  export BENCH_BIN_DIR
  # The recovery worker looks every second and takes over a payment whose lease (5 s) ran out.
  export PAYMENT_RECOVERY_INTERVAL_MS=1000 PAYMENT_LEASE_SECS=5
  start_bench_suite "$@"
}

# Runs `concertctl reconcile --settled` into the file until it is clean and settled (exit 0)
# or the seconds run out (exit 1); the file keeps the last report.
await_settled() { # report file, seconds
  local _
  for _ in $(seq 1 "$2"); do
    "$bin/concertctl" reconcile --settled >"$1" 2>&1 && return 0
    sleep 1
  done
  return 1
}
