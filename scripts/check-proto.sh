#!/usr/bin/env bash
# The gRPC contracts: `buf lint` (STANDARD rules, buf.yaml) and `buf breaking` (FILE rules)
# against the previous commit, so a change that would break a deployed client or a peer
# replica still on the old contract (rolling deploys) fails CI. buf comes from npm
# (@bufbuild/buf, pinned in web/package.json), installed with the page's packages.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ -x web/node_modules/.bin/buf ] || (cd web && npm ci --silent --no-audit --no-fund)
buf=web/node_modules/.bin/buf
"$buf" lint
echo "proto: buf lint (STANDARD) passes"
if git rev-parse -q --verify HEAD~1 >/dev/null; then
  "$buf" breaking proto --against '.git#ref=HEAD~1,subdir=proto'
  echo "proto: no breaking change against $(git rev-parse --short HEAD~1) (buf breaking, FILE)"
else
  echo "proto: no previous commit to compare with; buf breaking skipped"
fi
