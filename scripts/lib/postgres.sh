# shellcheck shell=bash
# Finds a PostgreSQL server for the suite, in this order:
#   1. $DATABASE_URL if set;
#   2. a server on 127.0.0.1:5432 (user postgres, trust auth);
#   3. a private throwaway cluster initialised from the installed PostgreSQL binaries
#      (data in .run/pgdata, port 25432: below the ephemeral range, where a client socket
#      left in TIME_WAIT could hold it);
#   4. no binaries: on Debian/Ubuntu, install the distribution's `postgresql` package (as
#      root, or through sudo without a password) and go on with 3;
#   5. otherwise: say the one command to run, and fail.
# Sets PG_ADMIN_URL (a URL to the `postgres` maintenance database of that server).

pg_bin_dir() {
  local d
  for d in /usr/lib/postgresql/*/bin /usr/local/pgsql/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

pg_reachable() { # host port
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$1" -p "$2"
  else
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
  fi
}

# PG_SERVER_OPTS adds server settings (e.g. "-c shared_preload_libraries=pg_stat_statements").
start_private_cluster() { # [data directory (.run/pgdata)] [port (25432)]
  local bin data="${1:-$ROOT/.run/pgdata}" port="${2:-25432}" runas=()
  bin=$(pg_bin_dir) || return 1
  mkdir -p "$ROOT/.run"
  # initdb refuses to run as root: run the cluster as the postgres (or nobody) user.
  if [ "$(id -u)" = 0 ]; then
    local user=postgres
    id "$user" >/dev/null 2>&1 || user=nobody
    runas=(runuser -u "$user" --)
    mkdir -p "$data" && chown "$user" "$data" "$ROOT/.run"
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    echo "postgres: initialising a private cluster in $data"
    "${runas[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
  fi
  if ! pg_reachable 127.0.0.1 "$port"; then
    echo "postgres: starting the private cluster on 127.0.0.1:$port"
    "${runas[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
      -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300 ${PG_SERVER_OPTS:-}" start >/dev/null
  fi
  PG_ADMIN_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

# Installs the distribution's PostgreSQL server on Debian or Ubuntu: as root, or with sudo
# when it needs no password. The packaged server is not used as such (its service may not
# run where there is no init system); its binaries make the private cluster.
install_postgres() {
  command -v apt-get >/dev/null 2>&1 || return 1
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    sudo -n true 2>/dev/null || {
      echo "postgres: not installed; run: sudo apt-get install -y postgresql" >&2
      return 1
    }
    sudo=(sudo -n)
  fi
  echo "postgres: installing the distribution's PostgreSQL (apt-get install postgresql)"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >/dev/null ||
    { "${sudo[@]}" apt-get update >/dev/null &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >/dev/null; } ||
    return 1
  pg_bin_dir >/dev/null
}

find_postgres() {
  if [ -n "${DATABASE_URL:-}" ]; then
    PG_ADMIN_URL="${DATABASE_URL%/*}/postgres"
    echo "postgres: using DATABASE_URL's server"
  elif pg_reachable 127.0.0.1 5432; then
    PG_ADMIN_URL="postgres://postgres@127.0.0.1:5432/postgres"
    echo "postgres: using the server on 127.0.0.1:5432"
  elif start_private_cluster; then
    :
  elif install_postgres && start_private_cluster; then
    :
  else
    cat >&2 <<'MSG'
postgres: no PostgreSQL found. Either
  - set DATABASE_URL=postgres://user@host:port/db (the user needs CREATEDB for the tests), or
  - start a server on 127.0.0.1:5432 (user postgres, trust auth), or
  - install the server binaries so a private cluster can be created:
      Debian/Ubuntu:  apt-get install postgresql
      macOS:          brew install postgresql@16
MSG
    return 1
  fi
}

# Creates database $1 on the found server if it does not exist (needs psql).
ensure_database() {
  local name=$1
  command -v psql >/dev/null 2>&1 || { echo "postgres: psql not found; assuming database $name exists"; return 0; }
  if ! psql "$PG_ADMIN_URL" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
    psql "$PG_ADMIN_URL" -qc "CREATE DATABASE \"$name\"" >/dev/null
    echo "postgres: created database $name"
  fi
}
