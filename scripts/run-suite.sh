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
# Where cargo put the binaries (CARGO_TARGET_DIR, when set, moves them).
bin="${CARGO_TARGET_DIR:-$ROOT/target}/release"

"$ROOT/scripts/stop-suite.sh" >/dev/null 2>&1 || true
mkdir -p .run/logs .run/pids
start() { # name, then VAR=value pairs
  local name=$1; shift
  env "$@" "$bin/$name-service" >".run/logs/$name.log" 2>&1 &
  echo $! >".run/pids/$name.pid"
  echo "start: $name-service (pid $!, log .run/logs/$name.log)"
}
# Public ports (browsers, users; access tokens required) and internal ports (peers, admin).
export QUEUE_URL=http://127.0.0.1:50051 CATALOG_URL=http://127.0.0.1:50052 \
  RESERVATION_URL=http://127.0.0.1:50053 WALLET_URL=http://127.0.0.1:50054 \
  QUEUE_INTERNAL_URL=http://127.0.0.1:50061 CATALOG_INTERNAL_URL=http://127.0.0.1:50062 \
  RESERVATION_INTERNAL_URL=http://127.0.0.1:50063 WALLET_INTERNAL_URL=http://127.0.0.1:50064
# DEV-ONLY identity (deploy/dev-auth/README.md): the services trust the committed dev key,
# and concertctl signs the demo users' access tokens with it.
export AUTH_JWKS_FILE="$ROOT/deploy/dev-auth/jwks.json" AUTH_ISSUER=https://dev-auth.concert.invalid/ \
  AUTH_AUDIENCE=concert-api AUTH_DEV_SIGNING_KEY="$ROOT/deploy/dev-auth/dev-signing-key.pem" \
  ADMISSION_PASS_SIGNING_KEY_FILE="$ROOT/deploy/dev-auth/admission-pass-key.pem" \
  ADMISSION_PASS_PUBLIC_KEY_FILE="$ROOT/deploy/dev-auth/admission-pass-public.pem"
# Prometheus text on /metrics, one port per service (README "Observability").
start wallet METRICS_ADDR=127.0.0.1:9464
start queue METRICS_ADDR=127.0.0.1:9461
start catalog METRICS_ADDR=127.0.0.1:9462
start reservation METRICS_ADDR=127.0.0.1:9463

ctl="$bin/concertctl"
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
# The booking page: built once, served by Vite's preview server, which proxies grpc-web
# calls to the public ports with Envoy's routing table (web/vite.config.ts).
page_url=""
if command -v npm >/dev/null 2>&1; then
  echo
  echo "== booking page"
  (cd web && { [ -d node_modules ] || npm ci --no-fund --no-audit --loglevel=error; } && npm run build --silent >/dev/null)
  (cd web && PAGE_PORT=8080 exec node node_modules/vite/bin/vite.js preview) >.run/logs/page.log 2>&1 &
  echo $! >.run/pids/page.pid
  # Print the link only once the page answers (the preview server takes a moment to start).
  for _ in $(seq 1 50); do
    (echo >/dev/tcp/127.0.0.1/8080) 2>/dev/null && break
    sleep 0.2
  done
  page_url=http://127.0.0.1:8080/
else
  echo "booking page: skipped (npm not found: install Node.js 20+)"
fi
TOKEN=$($ctl token --user me --ttl-secs 3600)
CONCERT=$($ctl concerts | grep -v $'\tbench ' | head -n 1 | cut -f 1 || true)
cat <<TXT

The suite is running (logs in .run/logs, stop with scripts/stop-suite.sh).
Booking page: ${page_url:-not served (no npm)}
  sign in as "me" with this DEV-ONLY link: ${page_url}#access_token=$TOKEN
Public ports: queue 50051, catalog 50052, reservation 50053, wallet 50054 (gRPC and grpc-web;
an access token is required). Internal ports (peers, admin, concertctl): 50061-50064.
Metrics (Prometheus text): http://127.0.0.1:9461/metrics (queue), :9462 catalog,
:9463 reservation, :9464 wallet.

Call it by hand as user "me" (buf: npx @bufbuild/buf; grpcurl works the same way). An access
token for "me", valid one hour, signed with the DEV-ONLY key (concertctl token --user me):
  export TOKEN=$TOKEN
  buf curl --protocol grpc --http2-prior-knowledge --list-methods http://127.0.0.1:50052
  buf curl --protocol grpc --http2-prior-knowledge http://127.0.0.1:50052/concert.catalog.v1.CatalogService/ListConcerts
  buf curl --protocol grpc --http2-prior-knowledge -H "authorization: Bearer \$TOKEN" \\
      -d '{"concert_id":"$CONCERT"}' http://127.0.0.1:50051/concert.queue.v1.QueueService/IssueToken
  # once GetQueueStatus says ACTIVE, protected calls carry its admission_pass (or the bare
  # queue token, which costs a check with the queue):
  grpcurl -plaintext -H "authorization: Bearer \$TOKEN" -H 'x-queue-token: <admission_pass>' \\
      -d '{"concert_id":"$CONCERT"}' 127.0.0.1:50052 concert.catalog.v1.CatalogService/ListAvailableDates
TXT
