#!/usr/bin/env bash
# Validates the deployment files offline: the Envoy edge config (a valid v3 Bootstrap whose
# routes expose exactly the public services of proto/), every Kustomize overlay rendered and
# checked against the Kubernetes 1.30 schemas and the database connection budget
# (scripts/check-connection-budget.py), and the compose file. The Python tools are installed into a venv
# under target/ from scripts/requirements-deploy-check.txt (PyPI). Only the Kubernetes render
# needs a tool that pip cannot bring (kubectl); without it that check is reported skipped.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
venv="${CARGO_TARGET_DIR:-$ROOT/target}/deploy-check-venv"
requirements=scripts/requirements-deploy-check.txt
if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
  echo "deploy: installing the checkers into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi

"$venv/bin/python" scripts/check-envoy.py

if command -v kubectl >/dev/null 2>&1; then
  for overlay in k8s/overlays/*/; do
    name=$(basename "$overlay")
    rendered=$(kubectl kustomize "$overlay")
    echo "k8s $name: kustomize renders $(grep -c '^kind:' <<<"$rendered") objects"
    "$venv/bin/kubernetes-validate" --quiet --strict -k 1.30 - <<<"$rendered"
    echo "k8s $name: schemas valid for 1.30"
    # Custom resources (the CloudNativePG Cluster, Pooler, ScheduledBackup) against the CRDs
    # vendored in k8s/vendor: kubernetes-validate only warns about kinds it does not know.
    "$venv/bin/python" scripts/check-crds.py "$name" <<<"$rendered"
    "$venv/bin/python" scripts/check-connection-budget.py "$name" <<<"$rendered"
  done
else
  echo "k8s: skipped (kubectl not installed: it renders the Kustomize overlays)"
fi

"$venv/bin/docker-compose" -f docker-compose.yml config -q
echo "compose: valid"
