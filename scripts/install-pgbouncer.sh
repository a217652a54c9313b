#!/usr/bin/env bash
# Prints the path of a PgBouncer >= 1.21 (transaction pooling that tracks prepared
# statements, which sqlx needs), building one when needed.
#
# Debian 12 ships PgBouncer 1.18, too old (sqlx issue #67). Then this builds 1.24.1 from
# Debian 13's source tarball (checked against its SHA-256) into
# ${CARGO_TARGET_DIR:-target}/pgbouncer, once; it needs a C compiler, pkg-config and the
# libevent and OpenSSL headers, which it installs with apt-get when missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.24.1
SHA256=da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0
URL="https://deb.debian.org/debian/pool/main/p/pgbouncer/pgbouncer_${VERSION}.orig.tar.gz"
PREFIX="$(realpath -m "${CARGO_TARGET_DIR:-target}")/pgbouncer"

new_enough() { # version string "PgBouncer X.Y.Z" on stdin
    awk 'NR==1 { split($2, v, "."); exit !(v[1] > 1 || (v[1] == 1 && v[2] >= 21)) }'
}

for candidate in "${PGBOUNCER:-}" "$(command -v pgbouncer || true)" "$PREFIX/bin/pgbouncer"; do
    if [[ -n "$candidate" && -x "$candidate" ]] && "$candidate" --version | new_enough; then
        echo "$candidate"
        exit 0
    fi
done

{
    if ! pkg-config --exists libevent openssl 2>/dev/null || ! command -v cc >/dev/null; then
        echo "installing build dependencies of PgBouncer (apt-get)"
        apt-get install -y --no-install-recommends build-essential pkg-config libevent-dev libssl-dev \
            || { apt-get update && apt-get install -y --no-install-recommends build-essential pkg-config libevent-dev libssl-dev; }
    fi
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    echo "building PgBouncer $VERSION into $PREFIX"
    curl -fsSL "$URL" -o "$work/pgbouncer.tar.gz"
    echo "$SHA256  $work/pgbouncer.tar.gz" | sha256sum -c --quiet
    tar -xzf "$work/pgbouncer.tar.gz" -C "$work"
    cd "$work/pgbouncer-$VERSION"
    ./configure --prefix="$PREFIX" --without-cares --without-pam --without-systemd >"$work/configure.log"
    make -j"$(nproc)" >"$work/make.log"
    make install >/dev/null
} >&2
echo "$PREFIX/bin/pgbouncer"
