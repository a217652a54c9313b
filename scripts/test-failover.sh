#!/usr/bin/env bash
# Losing the database's machine loses nothing (issue #31, second part). Builds, on this
# machine's loopback, what production runs: PostgreSQL as a primary and a synchronous standby
# managed by Patroni (Debian's `patroni`, with `etcd-server` as its store), behind HAProxy
# (Debian's `haproxy`), which routes to whichever node Patroni's REST check calls the
# primary. The suite (queue, catalog, wallet, two reservation replicas) reaches PostgreSQL
# only through HAProxy. Under a rush (joins, holds, charges, payments from many users, over
# both reservation replicas):
#   1. failover: the primary's machine is lost — its Patroni agent, postmaster and every
#      backend killed with SIGKILL at once — and Patroni promotes the synchronous standby
#      once the leader key's TTL (8 s) runs out; the killed node then rejoins as a standby
#      (pg_rewind);
#   2. switchover: a planned `patronictl switchover` back to it, still under traffic (the
#      old primary is demoted under its open connections).
# Then checks, and prints:
#   - acknowledged and lost: 0 — every HoldSeat, Charge and PayReservation try and its answer
#     is in a client-side log (`bench rush --ack-log`); every payment answered OK is in the
#     books (ExportPayments) paid, with its seats, and every charge answered OK is in the
#     wallet (ExportBooks); no seat sold twice;
#   - `concertctl reconcile --settled` clean once the recovery worker is done, and `audit`;
#   - per event, the window in which writes failed (from the log), and how many calls failed
#     with which codes; never INTERNAL or UNKNOWN; no service restarted.
# Everything private: data in .run/failover (removed first), ports outside the ephemeral
# range (etcd 62379/62380, PostgreSQL 62441/62442, Patroni REST 62008/62009, HAProxy 62440),
# this tree's debug builds (BENCH_BIN_DIR to use others) on the bench ports. Installs
# patroni, etcd-server and haproxy with apt-get when missing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=lib/postgres.sh
. scripts/lib/postgres.sh

# shellcheck source=lib/apt.sh
. scripts/lib/apt.sh
need=()
command -v patroni >/dev/null 2>&1 || need+=(patroni)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
if [ "${#need[@]}" -gt 0 ]; then
  apt_install "${need[@]}"
  # Debian starts the packaged etcd and haproxy services where it can; this test runs its own.
  systemctl disable --now etcd haproxy >/dev/null 2>&1 || sudo -n systemctl disable --now etcd haproxy >/dev/null 2>&1 || true
fi
pgbin=$(pg_bin_dir) || { echo "failover: no PostgreSQL binaries" >&2; exit 1; }

dir="$ROOT/.run/failover"
out="${CARGO_TARGET_DIR:-$ROOT/target}/failover"
rm -rf "$dir" "$out"
mkdir -p "$dir" "$out"
# PostgreSQL refuses to run as root: Patroni and its clusters run as postgres (or nobody).
runas=()
if [ "$(id -u)" = 0 ]; then
  user=postgres
  id "$user" >/dev/null 2>&1 || user=nobody
  runas=(runuser -u "$user" --)
  chown "$user" "$dir"
fi

cleanup() {
  kill "${bench_pids[@]}" 2>/dev/null || true
  [ -z "${rush:-}" ] || kill "$rush" 2>/dev/null || true
  # Patroni's agents first (else they would start PostgreSQL again), then the clusters, etcd
  # and HAProxy: everything this test started names its directory on its command line.
  pkill -9 -f "bin/patroni $dir/" 2>/dev/null || true
  for node in a b; do
    [ -f "$dir/pg-$node/postmaster.pid" ] &&
      "${runas[@]}" "$pgbin/pg_ctl" -D "$dir/pg-$node" -m immediate stop >/dev/null 2>&1 || true
  done
  pkill -f -- "$dir/" 2>/dev/null || true
  sleep 0.5
  pkill -9 -f -- "$dir/" 2>/dev/null || true
}
trap cleanup EXIT

"${runas[@]}" etcd --name failover --data-dir "$dir/etcd" \
  --listen-client-urls http://127.0.0.1:62379 --advertise-client-urls http://127.0.0.1:62379 \
  --listen-peer-urls http://127.0.0.1:62380 --initial-advertise-peer-urls http://127.0.0.1:62380 \
  --initial-cluster failover=http://127.0.0.1:62380 >"$out/etcd.log" 2>&1 &
disown  # killed by cleanup, or on purpose: no job-control notices

# ttl 8 s, looked at every second: the standby takes over ≤ 8 s after the primary's agent
# last renewed its key (loop_wait + 2 × retry_timeout ≤ ttl, as Patroni requires).
# synchronous_mode: a commit is acknowledged once the standby has it, and only that
# standby may be promoted, so an acknowledged commit survives losing the primary.
write_patroni() { # node, postgres port, rest port
  cat >"$dir/patroni-$1.yml" <<EOF
scope: concert-failover
name: pg-$1
log:
  level: WARNING
restapi:
  listen: 127.0.0.1:$3
  connect_address: 127.0.0.1:$3
etcd3:
  hosts: 127.0.0.1:62379
bootstrap:
  dcs:
    ttl: 8
    loop_wait: 1
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: 300
        wal_log_hints: 'on'
        synchronous_commit: 'on'
        wal_keep_size: 256MB
  initdb:
    - encoding: UTF8
    - locale: C
  pg_hba:
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
    - local all all trust
    - local replication all trust
postgresql:
  listen: 127.0.0.1:$2
  connect_address: 127.0.0.1:$2
  data_dir: $dir/pg-$1
  bin_dir: $pgbin
  pgpass: $dir/pgpass-$1
  authentication:
    superuser: {username: postgres}
    replication: {username: postgres}
    rewind: {username: postgres}
  parameters:
    unix_socket_directories: '$dir'
EOF
}
write_patroni a 62441 62008
write_patroni b 62442 62009
start_patroni() { # node
  "${runas[@]}" patroni "$dir/patroni-$1.yml" >>"$out/patroni-$1.log" 2>&1 &
  disown
}
agent_of() { # node: the Patroni agent's pid (not runuser's)
  pgrep -f "bin/patroni $dir/patroni-$1.yml" | head -1
}
role() { # rest port: primary, sync standby, standby or down
  if curl -fs -o /dev/null "http://127.0.0.1:$1/primary"; then echo primary
  elif curl -fs -o /dev/null "http://127.0.0.1:$1/sync"; then echo sync
  elif curl -fs -o /dev/null "http://127.0.0.1:$1/replica"; then echo standby
  else echo down; fi
}
wait_role() { # rest port, role, seconds
  local i
  for i in $(seq 1 $(($3 * 5))); do
    [ "$(role "$1")" = "$2" ] && return 0
    sleep 0.2
  done
  echo "failover: FAIL: 127.0.0.1:$1 did not become $2 within $3 s" >&2
  "${runas[@]}" patronictl -c "$dir/patroni-a.yml" list >&2 || true
  return 1
}
start_patroni a
wait_role 62008 primary 60
start_patroni b
wait_role 62009 sync 90
echo "failover: Patroni cluster up: pg-a primary, pg-b synchronous standby"

cat >"$dir/haproxy.cfg" <<EOF
global
  maxconn 2000
defaults
  mode tcp
  timeout connect 2s
  timeout client 30m
  timeout server 30m
  timeout check 1s
listen postgres-primary
  bind 127.0.0.1:62440
  option httpchk GET /primary
  http-check expect status 200
  # Checked every 500 ms; a node that stops being the primary loses its open sessions.
  default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
  server pg-a 127.0.0.1:62441 maxconn 500 check port 62008
  server pg-b 127.0.0.1:62442 maxconn 500 check port 62009
EOF
haproxy -f "$dir/haproxy.cfg" -db >"$out/haproxy.log" 2>&1 &
disown
for _ in $(seq 1 50); do pg_reachable 127.0.0.1 62440 && break; sleep 0.2; done

export DATABASE_URL=postgres://postgres@127.0.0.1:62440/postgres
# shellcheck source=lib/chaos-suite.sh
. scripts/lib/chaos-suite.sh
start_chaos_suite concert_failover
trap cleanup EXIT
ctl="$bin/concertctl"
services=("${bench_pids[@]}")

now() { python3 -c 'import time; print(f"{time.time():.3f}")'; }
echo "failover: a rush of 4,000 people for 1,000 seats over both reservation replicas"
"$ctl" bench rush --users 4000 --seats 1000 --arrival-rate 60 --max-active 100 --seats-per-person 2 \
  --duration 110 --targets reservation=http://127.0.0.1:61153,http://127.0.0.1:61173 \
  --ack-log "$out/acks.jsonl" --quiet --json "$out/rush.json" >"$out/rush.log" 2>&1 &
rush=$!
sleep 12

# 1. Failover: the primary's machine is gone.
agent=$(agent_of a)
postmaster=$(head -1 "$dir/pg-a/postmaster.pid")
backends=$(pgrep -P "$postmaster" | tr '\n' ' ')
kill -9 "$agent" "$postmaster" $backends
killed=$(now)
echo "failover: killed pg-a (the primary): its Patroni agent, postmaster and $(wc -w <<<"$backends") backends"
wait_role 62009 primary 40
promoted=$(now)
echo "failover: pg-b promoted $(python3 -c "print(f'{$promoted - $killed:.1f}')") s after the kill"
# The lost machine comes back: its node rejoins as a standby (pg_rewind when its timeline forked).
start_patroni a
wait_role 62008 sync 90
echo "failover: pg-a rejoined as the synchronous standby $(python3 -c "print(f'{$(now) - $killed:.1f}')") s after the kill"
sleep 5

# 2. Switchover, planned: back to pg-a.
switched=$(now)
"${runas[@]}" patronictl -c "$dir/patroni-a.yml" switchover --leader pg-b --candidate pg-a --force >"$out/switchover.log" 2>&1 ||
  { cat "$out/switchover.log" >&2; exit 1; }
wait_role 62008 primary 40
echo "failover: switchover to pg-a done $(python3 -c "print(f'{$(now) - $switched:.1f}')") s after it was asked for"
wait_role 62009 sync 90

wait "$rush" || echo "failover: the rush reported a failed check; the checks that matter here follow"
for pid in "${services[@]}"; do
  kill -0 "$pid" 2>/dev/null || { echo "failover: FAIL: service process $pid is gone" >&2; tail -n 20 "$ROOT"/target/bench-logs/*.log >&2; exit 1; }
done
echo "failover: no service restarted (${#services[@]} processes, the same as before)"

python3 - "$out/rush.json" "$out/acks.jsonl" "$killed" "$switched" <<'PY'
import json, sys
from collections import Counter
report = json.load(open(sys.argv[1]))
tries = [json.loads(line) for line in open(sys.argv[2])]
events = {"failover (SIGKILL of the primary's machine)": float(sys.argv[3]),
          "switchover (patronictl)": float(sys.argv[4])}
failed = {"Unavailable", "DeadlineExceeded", "Internal", "Unknown", "Cancelled"}
marks = sorted(events.values()) + [float("inf")]
bad = []
for name, at in events.items():
    until = min(m for m in marks if m > at)
    after = [t for t in tries if at * 1000 <= t["at_ms"] < min(until, at + 60) * 1000]
    fails = [t for t in after if t["code"] in failed]
    if not fails:
        print(f"failover: {name}: no write failed")
        continue
    first, last = fails[0]["at_ms"] / 1000 - at, fails[-1]["at_ms"] / 1000 - at
    ok_after = next((t["at_ms"] / 1000 - at for t in after if t["code"] == "Ok" and t["at_ms"] > fails[-1]["at_ms"]), None)
    # The outage as a writer felt it: from the last write acknowledged before the first
    # failure (calls in flight at the kill hang until they fail) to the first one after the last.
    ok_before = max((t["at_ms"] / 1000 - at for t in tries if t["code"] == "Ok" and t["at_ms"] < fails[0]["at_ms"]), default=None)
    codes = Counter(f"{t['rpc']} {t['code']}" for t in fails)
    if ok_after is None:
        bad.append(f"{name}: no write acknowledged after it")
        print(f"failover: {name}: writes failed from +{first:.1f} s to +{last:.1f} s; none acknowledged after")
    else:
        print(f"failover: {name}: writes failed from +{first:.1f} s to +{last:.1f} s after it; no write acknowledged "
              f"from {ok_before:+.1f} s to +{ok_after:.1f} s (write outage {ok_after - ok_before:.1f} s)")
    print("failover:   failed tries:", ", ".join(f"{k} ×{v}" for k, v in sorted(codes.items())))
acked = Counter(t["rpc"] for t in tries if t["code"] == "Ok")
print("failover: writes acknowledged:", ", ".join(f"{k} ×{v}" for k, v in sorted(acked.items())))
for row in report["rpcs"]:
    for code, n in row["codes"].items():
        if code in ("Internal", "Unknown", "DataLoss"):
            bad.append(f"{row['rpc']} answered {code} ×{n}")
checks = {c["name"]: c for c in report["checks"]}
for name in ("acknowledged and lost", "no seat sold twice", "sold seats = successful payments",
             "every person's money accounted for"):
    c = checks[name]
    print(f"failover: {'ok  ' if c['ok'] else 'FAIL'} {name}: {c['detail']}")
    if not c["ok"]:
        bad.append(f"{name}: {c['examples']}")
for c in report["checks"]:
    if not c["ok"]:
        print(f"failover: (rush check not held: {c['name']}: {c['detail']}; e.g. {c['examples'][:2]})")
print(f"failover: seats sold {report['seats_sold']} of {report['seats']}")
if bad:
    sys.exit("failover: FAIL: " + "; ".join(bad))
PY

await_settled "$out/reconcile.txt" 90 ||
  { cat "$out/reconcile.txt"; echo "failover: FAIL: not reconciled and settled within 90 s" >&2; exit 1; }
cat "$out/reconcile.txt"
"$ctl" audit
echo "failover: passed"
