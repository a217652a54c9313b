#!/usr/bin/env bash
# Stops the services started by scripts/run-suite.sh (SIGTERM: they drain and exit).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
for f in "$ROOT"/.run/pids/*.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null && echo "stopped $(basename "$f" .pid) ($pid)"
  rm -f "$f"
done
