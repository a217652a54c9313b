#!/usr/bin/env bash
# The booking page's tests: Vitest unit tests, then the browser scenarios in headless
# Chromium against a suite of real services started here (their own database and ports, so a
# suite from run-suite.sh may keep running), through the page server's grpc-web proxy.
# Installs what is missing: the page's npm packages (npm ci) and Debian's chromium.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=lib/postgres.sh
. scripts/lib/postgres.sh

command -v npm >/dev/null 2>&1 || { echo "web: npm not found: install Node.js 20+" >&2; exit 1; }
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "web: installing Debian's chromium for the browser tests"
  if [ "$(id -u)" = 0 ]; then apt_get() { apt-get "$@"; }; else apt_get() { sudo apt-get "$@"; }; fi
  DEBIAN_FRONTEND=noninteractive apt_get install -y --no-install-recommends chromium >/dev/null 2>&1 ||
    { apt_get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt_get install -y --no-install-recommends chromium >/dev/null; }
fi

(cd web && npm ci --no-fund --no-audit --loglevel=error && npm run lint --silent && npm test --silent)

find_postgres
db=concert_web_e2e
psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
export DATABASE_URL="${PG_ADMIN_URL%/*}/$db"

cargo build --locked --bins -q
bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
# One join a second per user (a burst of 2), so that a buyer's other tabs joining back to
# back get the page's join refused for load, with a RetryInfo (no scenario's buyer joins
# more often than that otherwise).
# This suite's ports: the usual ones − 30000 (public 20051-20054, internal 20061-20064,
# metrics 20071-20074), below Linux's ephemeral range (32768-60999), so no client socket left
# by the tests before can be holding one.
offset=-30000
export QUEUE_URL=http://127.0.0.1:20051 CATALOG_URL=http://127.0.0.1:20052 \
  RESERVATION_URL=http://127.0.0.1:20053 WALLET_URL=http://127.0.0.1:20054 \
  QUEUE_INTERNAL_URL=http://127.0.0.1:20061 CATALOG_INTERNAL_URL=http://127.0.0.1:20062 \
  RESERVATION_INTERNAL_URL=http://127.0.0.1:20063 WALLET_INTERNAL_URL=http://127.0.0.1:20064 \
  AUTH_JWKS_FILE="$ROOT/deploy/dev-auth/jwks.json" AUTH_ISSUER=https://dev-auth.concert.invalid/ \
  AUTH_AUDIENCE=concert-api AUTH_DEV_SIGNING_KEY="$ROOT/deploy/dev-auth/dev-signing-key.pem" \
  ADMISSION_PASS_SIGNING_KEY_FILE="$ROOT/deploy/dev-auth/admission-pass-key.pem" \
  ADMISSION_PASS_PUBLIC_KEY_FILE="$ROOT/deploy/dev-auth/admission-pass-public.pem" \
  QUEUE_MAX_ACTIVE=1000 HOLD_TTL_SECS=30 RUST_LOG=warn \
  QUEUE_JOIN_RATE_PER_USER=1 QUEUE_JOIN_BURST_PER_USER=2
logs=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
i=1
for name in queue catalog reservation wallet; do
  LISTEN_ADDR=127.0.0.1:$((20050 + i)) INTERNAL_LISTEN_ADDR=127.0.0.1:$((20060 + i)) \
    METRICS_ADDR=127.0.0.1:$((20070 + i)) "$bin/$name-service" >"$logs/$name.log" 2>&1 &
  pids+=($!)
  i=$((i + 1))
done
ctl="$bin/concertctl"
# Up to 120 s for every service to be healthy, but not a second longer than it takes one of
# them to exit (a port taken, a bad setting): then its log says why.
healthy=
for _ in $(seq 1 120); do
  if $ctl wait --timeout-secs 1 >/dev/null 2>&1; then healthy=1; break; fi
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "web: a service exited before it was healthy:" >&2; break 2; }
  done
done
[ -n "$healthy" ] || { tail -n 20 "$logs"/*.log >&2; exit 1; }
$ctl seed >/dev/null

(cd web && npm run build --silent >/dev/null)
(cd web && PAGE_PORT=8090 SUITE_PORT_OFFSET=$offset exec node node_modules/vite/bin/vite.js preview) \
  >"$logs/page.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
  (echo >/dev/tcp/127.0.0.1/8090) 2>/dev/null && break
  sleep 0.2
done

# ray2, ray3, sue2, sue3: the people who try again when a press of Join goes straight through
# (web/e2e/run.mjs, refusedAtTheDoor).
for user in ada bea cal dan eve fay gus hal ivy jon kim lee mia ned oli pam ray ray2 ray3 sue sue2 sue3; do
  export "TOKEN_${user^^}=$($ctl token --user "web-$user-$$" --ttl-secs 3600)"
done
CONCERTCTL=$ctl PAGE_URL=http://127.0.0.1:8090/ HOLD_TTL_SECS=30 node web/e2e/run.mjs || {
  echo "web: service logs:" >&2
  tail -n 5 "$logs"/*.log >&2
  exit 1
}

# After the browser journeys (joins, holds, payments): every metric the Grafana dashboard and
# the alert rules name must be exported by these services.
python3 scripts/check-metrics.py deploy/grafana/dashboards/concert.json deploy/prometheus/alerts.yml \
  http://127.0.0.1:20071/metrics http://127.0.0.1:20072/metrics \
  http://127.0.0.1:20073/metrics http://127.0.0.1:20074/metrics
