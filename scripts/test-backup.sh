#!/usr/bin/env bash
# Backups are restorable (issue #31, fourth part). A PostgreSQL cluster archives every WAL
# segment with pgBackRest (Debian's `pgbackrest`; `archive_command` = archive-push) into a
# repository; a full base backup is taken online, in the middle of a rush; the rush goes on
# and ends. Then the machine is lost (the cluster stopped with `-m immediate` and its data
# directory deleted), and the backup plus the archived WAL are restored into a fresh data
# directory on another port (point-in-time recovery to the end of the archive). The suite
# starts on the restored database as it is, and checks, and prints:
#   - `concertctl reconcile --settled` and `audit` are clean on the restored books;
#   - the restored books are the same as the lost cluster's at its end (wallets, payments,
#     debits, seats sold, every won charged, debited, refunded and held): nothing written
#     after the base backup was lost, since its WAL was archived;
#   - how long the backup and the restore took, and the repository's size.
# Everything private: .run/backup (removed first), PostgreSQL on 62451 (the original) and
# 62452 (the restored), this tree's debug builds (BENCH_BIN_DIR to use others) on the bench
# ports. Installs pgbackrest with apt-get when missing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=lib/postgres.sh
. scripts/lib/postgres.sh
# shellcheck source=lib/apt.sh
. scripts/lib/apt.sh
command -v pgbackrest >/dev/null 2>&1 || apt_install pgbackrest
pgbin=$(pg_bin_dir) || { echo "backup: no PostgreSQL binaries" >&2; exit 1; }

dir="$ROOT/.run/backup"
out="${CARGO_TARGET_DIR:-$ROOT/target}/backup"
rm -rf "$dir" "$out"
mkdir -p "$dir/log" "$dir/lock" "$out"
runas=()
if [ "$(id -u)" = 0 ]; then
  user=postgres
  id "$user" >/dev/null 2>&1 || user=nobody
  runas=(runuser -u "$user" --)
  chown -R "$user" "$dir"
fi
conf="$dir/pgbackrest.conf"
cat >"$conf" <<CONF
[global]
repo1-path=$dir/repo
repo1-retention-full=2
start-fast=y
log-path=$dir/log
lock-path=$dir/lock
log-level-console=warn
log-level-file=info

[concert]
pg1-path=$dir/pg-original
pg1-port=62451
pg1-socket-path=$dir
CONF
chmod 644 "$conf"
backrest() { "${runas[@]}" pgbackrest --config="$conf" --stanza=concert "$@"; }
cleanup() {
  kill "${bench_pids[@]}" 2>/dev/null || true
  for data in "$dir/pg-original" "$dir/pg-restored"; do
    [ -f "$data/postmaster.pid" ] && "${runas[@]}" "$pgbin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

# The original: every WAL segment archived as it fills (and at least every 10 s).
"${runas[@]}" "$pgbin/initdb" -D "$dir/pg-original" -U postgres --auth=trust >/dev/null
cat >>"$dir/pg-original/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = 62451
unix_socket_directories = '$dir'
max_connections = 300
wal_level = replica
archive_mode = on
archive_command = 'pgbackrest --config=$conf --stanza=concert archive-push %p'
archive_timeout = 10
CONF
"${runas[@]}" "$pgbin/pg_ctl" -D "$dir/pg-original" -l "$dir/original.log" -w start >/dev/null
backrest stanza-create
backrest check
echo "backup: cluster on 127.0.0.1:62451 archiving its WAL with pgBackRest into $dir/repo"

export DATABASE_URL=postgres://postgres@127.0.0.1:62451/postgres
# shellcheck source=lib/chaos-suite.sh
. scripts/lib/chaos-suite.sh
start_chaos_suite concert_backup
trap cleanup EXIT
ctl="$bin/concertctl"

echo "backup: a rush of 360 people (6 a second) for 300 seats; a full backup taken 10 s in"
started=$(date +%s.%N)
"$ctl" bench rush --users 360 --seats 300 --arrival-rate 6 --max-active 40 --seats-per-person 2 \
  --duration 75 --quiet --json "$out/rush.json" >"$out/rush.log" 2>&1 &
rush=$!
sleep 10
t0=$(date +%s.%N)
backrest backup --type=full
backed_up=$(date +%s.%N)
echo "backup: full backup online in $(python3 -c "print(f'{$backed_up - $t0:.1f}')") s"
wait "$rush" || { tail -n 30 "$out/rush.log" >&2; echo "backup: FAIL: the rush broke an invariant" >&2; exit 1; }
# Seats sold after the base backup finished live only in the archived WAL: the restore must
# bring them back (the run's timeline starts a little after the command: this undercounts).
after=$(python3 -c "
import json; r = json.load(open('$out/rush.json'))
print(sum(s['paid'] for s in r['timeline'] if s['t'] > $backed_up - $started))")
echo "backup: seats sold after the base backup finished: $after"
[ "$after" -gt 0 ] || { echo "backup: FAIL: nothing was sold after the backup; the WAL replay is untested" >&2; exit 1; }
await_settled "$out/reconcile-original.txt" 60 || { cat "$out/reconcile-original.txt" >&2; echo "backup: FAIL: the original did not settle" >&2; exit 1; }
echo "backup: the original at its end:"
sed 's/^/  /' "$out/reconcile-original.txt"
stop_bench_suite
# The last segment is archived (check switches WAL and waits for it), then the machine is lost.
backrest check
"${runas[@]}" "$pgbin/pg_ctl" -D "$dir/pg-original" -m immediate stop >/dev/null
rm -rf "$dir/pg-original"
echo "backup: the original cluster is gone (stopped, data directory deleted)"
echo "backup: repository $(du -sh "$dir/repo" | cut -f1): $(backrest info | grep -cE '^ +full backup') full backup, WAL $(backrest info | sed -n 's/.*wal archive min\/max[^:]*: //p')"

# Restore into a fresh data directory: the base backup, then every archived WAL segment.
t0=$(date +%s.%N)
backrest restore --pg1-path="$dir/pg-restored"
cat >>"$dir/pg-restored/postgresql.conf" <<CONF
port = 62452
CONF
"${runas[@]}" "$pgbin/pg_ctl" -D "$dir/pg-restored" -l "$dir/restored.log" -w -t 120 start >/dev/null
for _ in $(seq 1 120); do
  [ "$(psql -At "postgres://postgres@127.0.0.1:62452/postgres" -c 'SELECT pg_is_in_recovery()')" = f ] && break
  sleep 0.5
done
echo "backup: restored and promoted on 127.0.0.1:62452 in $(python3 -c "import time; print(f'{time.time() - $t0:.1f}')") s"

export DATABASE_URL=postgres://postgres@127.0.0.1:62452/postgres
start_chaos_suite concert_backup keep
trap cleanup EXIT
"$ctl" reconcile --settled >"$out/reconcile-restored.txt" 2>&1 ||
  { cat "$out/reconcile-restored.txt" >&2; echo "backup: FAIL: the restored books do not reconcile" >&2; exit 1; }
echo "backup: the restored books:"
sed 's/^/  /' "$out/reconcile-restored.txt"
diff -u "$out/reconcile-original.txt" "$out/reconcile-restored.txt" >&2 ||
  { echo "backup: FAIL: the restored books differ from the original's at its end" >&2; exit 1; }
"$ctl" audit
echo "backup: passed: the restored books are the original's, every won and seat accounted for"
