#!/usr/bin/env bash
# Proves the README commands' PostgreSQL set-up on a machine that has no PostgreSQL at all:
# a minimal Debian 12 (debootstrap, cached under ${CARGO_TARGET_DIR:-target}/fresh-debian)
# runs scripts/lib/postgres.sh, which must install the distribution's server, initialise a
# private cluster and answer a query. Needs root (chroot) and Debian's package mirror.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "fresh-postgres: needs root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || apt-get install -y --no-install-recommends debootstrap >/dev/null
base="$(realpath -m "${CARGO_TARGET_DIR:-target}")/fresh-debian"
if [ ! -x "$base/bin/bash" ]; then
  echo "fresh-postgres: debootstrap bookworm (minbase) into $base"
  rm -rf "$base"
  debootstrap --variant=minbase bookworm "$base" http://deb.debian.org/debian >/dev/null
fi
# A copy per run, so the cached base stays without PostgreSQL.
root=$(mktemp -d)
cleanup() {
  chroot "$root" sh -c 'for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && runuser -u postgres -- "$d/pg_ctl" -D /src/.run/pgdata -m fast stop; done' >/dev/null 2>&1 || true
  umount "$root/proc" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT
cp -a "$base/." "$root/"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
mkdir -p "$root/src/scripts/lib"
cp scripts/lib/postgres.sh "$root/src/scripts/lib/"
# Port 5432 may be the host's server (same network): the check below refuses to pass by
# finding it, and the private cluster gets its own port.
chroot "$root" bash -c '
  set -euo pipefail
  ROOT=/src
  . /src/scripts/lib/postgres.sh
  pg_bin_dir >/dev/null && { echo "fresh-postgres: the base already has PostgreSQL" >&2; exit 1; }
  install_postgres
  start_private_cluster
  "$(pg_bin_dir)/psql" "$PG_ADMIN_URL" -Atc "SELECT version()"
' 2>&1 | grep -v "^invoke-rc.d\|^update-alternatives\|^debconf\|^Creating config\|^Building PostgreSQL" | tail -3
echo "fresh-postgres: a machine without PostgreSQL gets one from the README commands"
