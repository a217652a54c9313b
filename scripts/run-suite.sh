#!/usr/bin/env bash
# Starts the whole suite with demo data: finds (or creates) PostgreSQL, builds, starts the
# four services in the background, seeds demo concerts, walks the demo journey, and leaves
# everything running. Stop it with scripts/stop-suite.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=lib/postgres.sh
. scripts/lib/postgres.sh

command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
find_postgres
if [ -z "${DATABASE_URL:-}" ]; then
  ensure_database concert
  export DATABASE_URL="${PG_ADMIN_URL%/*}/concert"
fi

echo "build: cargo build --release (first build takes a few minutes)"
cargo build --release --locked --bins -q

"$ROOT/scripts/stop-suite.sh" >/dev/null 2>&1 || true
mkdir -p .run/logs .run/pids
start() { # name, then VAR=value pairs
  local name=$1; shift
  env "$@" "target/release/$name-service" >".run/logs/$name.log" 2>&1 &
  echo $! >".run/pids/$name.pid"
  echo "start: $name-service (pid $!, log .run/logs/$name.log)"
}
export QUEUE_URL=http://127.0.0.1:50051 CATALOG_URL=http://127.0.0.1:50052 \
  RESERVATION_URL=http://127.0.0.1:50053 WALLET_URL=http://127.0.0.1:50054
start wallet
start queue
start catalog
start reservation

ctl=target/release/concertctl
if ! $ctl wait --timeout-secs 60; then
  echo "a service did not start; last log lines:" >&2
  tail -n 20 .run/logs/*.log >&2
  exit 1
fi
$ctl seed
echo
echo "== demo journey"
$ctl demo
echo
echo "== cross-service reconciliation"
# The demo's payment may still be finishing its last step (token expiry): wait until settled.
for _ in $(seq 1 20); do
  if $ctl reconcile --settled >/dev/null 2>&1; then break; fi
  sleep 0.5
done
$ctl reconcile
cat <<'TXT'

The suite is running (logs in .run/logs, stop with scripts/stop-suite.sh).
Call it by hand with buf (npx @bufbuild/buf) or grpcurl; reflection is on:
  buf curl --protocol grpc --http2-prior-knowledge --list-methods http://127.0.0.1:50052
  buf curl --protocol grpc --http2-prior-knowledge http://127.0.0.1:50052/concert.catalog.v1.CatalogService/ListConcerts
  buf curl --protocol grpc --http2-prior-knowledge -d '{"user_id":"me","concert_id":"<id>"}' \
      http://127.0.0.1:50051/concert.queue.v1.QueueService/IssueToken
  grpcurl -plaintext -H 'authorization: Bearer <token>' -d '{"concert_id":"<id>"}' \
      127.0.0.1:50052 concert.catalog.v1.CatalogService/ListAvailableDates
Ports: queue 50051, catalog 50052, reservation 50053, wallet 50054 (gRPC and grpc-web).
TXT
