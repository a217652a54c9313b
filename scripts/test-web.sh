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

(cd web && npm ci --no-fund --no-audit --loglevel=error && npm test --silent)

find_postgres
db=concert_web_e2e
psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
export DATABASE_URL="${PG_ADMIN_URL%/*}/$db"

cargo build --locked --bins -q
bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
# This suite's ports: the usual ones + 1000 (public 51051-51054, internal 51061-51064).
offset=1000
export QUEUE_URL=http://127.0.0.1:51051 CATALOG_URL=http://127.0.0.1:51052 \
  RESERVATION_URL=http://127.0.0.1:51053 WALLET_URL=http://127.0.0.1:51054 \
  QUEUE_INTERNAL_URL=http://127.0.0.1:51061 CATALOG_INTERNAL_URL=http://127.0.0.1:51062 \
  RESERVATION_INTERNAL_URL=http://127.0.0.1:51063 WALLET_INTERNAL_URL=http://127.0.0.1:51064 \
  AUTH_JWKS_FILE="$ROOT/deploy/dev-auth/jwks.json" AUTH_ISSUER=https://dev-auth.concert.invalid/ \
  AUTH_AUDIENCE=concert-api AUTH_DEV_SIGNING_KEY="$ROOT/deploy/dev-auth/dev-signing-key.pem" \
  ADMISSION_PASS_SIGNING_KEY_FILE="$ROOT/deploy/dev-auth/admission-pass-key.pem" \
  ADMISSION_PASS_PUBLIC_KEY_FILE="$ROOT/deploy/dev-auth/admission-pass-public.pem" \
  QUEUE_MAX_ACTIVE=1000 HOLD_TTL_SECS=15 RUST_LOG=warn
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
  LISTEN_ADDR=127.0.0.1:$((51050 + i)) INTERNAL_LISTEN_ADDR=127.0.0.1:$((51060 + i)) \
    METRICS_ADDR=127.0.0.1:$((51070 + i)) "$bin/$name-service" >"$logs/$name.log" 2>&1 &
  pids+=($!)
  i=$((i + 1))
done
ctl="$bin/concertctl"
$ctl wait --timeout-secs 120 >/dev/null || { tail -n 20 "$logs"/*.log >&2; exit 1; }
$ctl seed >/dev/null

(cd web && npm run build --silent >/dev/null)
(cd web && PAGE_PORT=8090 SUITE_PORT_OFFSET=$offset exec node node_modules/vite/bin/vite.js preview) \
  >"$logs/page.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
  (echo >/dev/tcp/127.0.0.1/8090) 2>/dev/null && break
  sleep 0.2
done

for user in ada bea cal dan eve; do
  export "TOKEN_${user^^}=$($ctl token --user "web-$user-$$" --ttl-secs 3600)"
done
PAGE_URL=http://127.0.0.1:8090/ HOLD_TTL_SECS=15 node web/e2e/run.mjs || {
  echo "web: service logs:" >&2
  tail -n 5 "$logs"/*.log >&2
  exit 1
}

# After the browser journeys (joins, holds, payments): every metric the Grafana dashboard and
# the alert rules name must be exported by these services.
python3 scripts/check-metrics.py deploy/grafana/dashboards/concert.json deploy/prometheus/alerts.yml \
  http://127.0.0.1:51071/metrics http://127.0.0.1:51072/metrics \
  http://127.0.0.1:51073/metrics http://127.0.0.1:51074/metrics
