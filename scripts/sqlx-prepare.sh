#!/usr/bin/env bash
# Regenerates (or with --check, verifies) the compile-time SQL metadata (`.sqlx/` of each
# service crate, and of libs/platform, that uses `sqlx::query!`): a scratch database gets each service's schema
# from migrations/<svc> (sqlx-cli), and `cargo sqlx prepare` checks every query of that
# crate against its own schema (the search_path is that schema alone, as at run time).
# Builds use the committed metadata (SQLX_OFFLINE, .cargo/config.toml); a query or schema
# change without a re-run fails `--check` in CI. sqlx-cli 0.8 (the workspace's sqlx) is
# installed with cargo when missing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=lib/postgres.sh
. scripts/lib/postgres.sh
check=() done=written
[ "${1:-}" = --check ] && check=(--check) done="is current"
CRATES=(catalog queue reservation wallet)

if ! cargo sqlx --version 2>/dev/null | grep -q ' 0\.8\.'; then
  echo "sqlx: installing sqlx-cli 0.8 (matches the workspace's sqlx)"
  cargo install sqlx-cli --version '~0.8' --no-default-features --features postgres,rustls --locked --quiet
fi
find_postgres
db=concert_sqlx_$$
base=${PG_ADMIN_URL%/*}
trap 'psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $db" >/dev/null
for svc in "${CRATES[@]}"; do
  url="$base/$db?options=-c%20search_path%3D$svc"
  psql "$base/$db" -qc "CREATE SCHEMA $svc" >/dev/null
  sqlx migrate run --source "migrations/$svc" --database-url "$url" >/dev/null
  # --lib: every query is in the library; test targets pull other services in as
  # dev-dependencies, whose queries belong to other schemas (their own run checks them).
  # The same check offline first, so that the prepare below recompiles only this crate (it
  # touches it) and collects only its queries: a dependency built with another feature set
  # (a clippy run of the workspace, say) would otherwise be rebuilt during it and add its own.
  (cd "services/$svc" && SQLX_OFFLINE=true cargo check --locked --lib -q)
  (cd "services/$svc" && DATABASE_URL="$url" SQLX_OFFLINE=false cargo sqlx prepare "${check[@]}" -- --locked --lib)
  echo "sqlx: services/$svc/.sqlx $done"
done
# The platform's own statements name no table (locks, schema creation).
(cd libs/platform && SQLX_OFFLINE=true cargo check --locked --lib -q)
(cd libs/platform && DATABASE_URL="$base/$db" SQLX_OFFLINE=false cargo sqlx prepare "${check[@]}" -- --locked --lib)
echo "sqlx: libs/platform/.sqlx $done"
