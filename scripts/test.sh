#!/usr/bin/env bash
# Runs every test against real PostgreSQL, then the booking page's tests (scripts/test-web.sh:
# Vitest, and headless Chromium against real services). Each test gets its own database (sqlx::test
# creates and drops them on the server found below), so tests run in parallel.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=lib/postgres.sh
. scripts/lib/postgres.sh

command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
find_postgres
export DATABASE_URL="$PG_ADMIN_URL"
# The prod overlay's PgBouncer, for the test that runs the journey through it.
PGBOUNCER=$(scripts/install-pgbouncer.sh)
export PGBOUNCER
cargo test --workspace --locked "$@"
# The booking page: unit tests and the browser scenarios in headless Chromium.
scripts/test-web.sh
