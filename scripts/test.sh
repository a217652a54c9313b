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
# The rush's plot lays out and draws its text with a system font (fontdb finds it; tested).
if ! find /usr/share/fonts /usr/local/share/fonts "$HOME/.local/share/fonts" -name '*.[ot]tf' 2>/dev/null | grep -q .; then
  # shellcheck source=lib/apt.sh
  . scripts/lib/apt.sh
  apt_install fonts-dejavu-core
fi
cargo test --workspace --locked "$@"
# PostgreSQL killed mid-rush and restarted: nothing lost, nothing INTERNAL, nothing restarted.
scripts/test-db-crash.sh
# Patroni fails over from a killed primary to its synchronous standby, then switches back:
# nothing acknowledged is lost.
scripts/test-failover.sh
# A base backup taken mid-rush plus the archived WAL restore into a fresh cluster whose books
# are the lost one's.
scripts/test-backup.sh
# The booking page: unit tests and the browser scenarios in headless Chromium.
scripts/test-web.sh
