#!/usr/bin/env python3
"""Validates the custom resources of a rendered Kustomize overlay (stdin) against the CRDs
vendored under k8s/vendor/ (their OpenAPI v3 schemas, as the API server would), strictly:
a field a schema does not name is an error, as `kubernetes-validate --strict` treats the
built-in kinds (which it knows; it only warns about custom kinds). Exits 1 naming each
error, or a custom kind no vendored CRD defines.
"""
import copy
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILT_IN_GROUPS = {"", "apps", "batch", "autoscaling", "policy", "networking.k8s.io", "rbac.authorization.k8s.io"}


def strict(schema):
    """Rejects unknown fields wherever the schema lists properties and does not keep unknown ones."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node \
                    and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def load_crds():
    crds = {}
    for path in sorted((ROOT / "k8s/vendor").glob("*/*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = strict(version["schema"]["openAPIV3Schema"])
            # metadata is the API server's ObjectMeta, not the CRD's to describe.
            schema.setdefault("properties", {})["metadata"] = {"type": "object"}
            crds[(f"{group}/{version['name']}", kind)] = (schema, path.parent.name)
    return crds


def main():
    overlay = sys.argv[1] if len(sys.argv) > 1 else "overlay"
    crds = load_crds()
    errors, checked = [], []
    for doc in yaml.safe_load_all(sys.stdin):
        if not doc:
            continue
        api, kind, name = doc["apiVersion"], doc["kind"], doc["metadata"]["name"]
        group = api.rsplit("/", 1)[0] if "/" in api else ""
        if group in BUILT_IN_GROUPS or group.endswith(".k8s.io"):
            continue
        if (api, kind) not in crds:
            errors.append(f"{kind} {name}: no vendored CRD defines {api} {kind}")
            continue
        schema, source = crds[(api, kind)]
        found = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
        errors += [f"{kind} {name}: {'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in found]
        checked.append(f"{kind} {name} ({source})")
    for e in errors:
        print(f"crds {overlay}: {e}", file=sys.stderr)
    if checked and not errors:
        print(f"crds {overlay}: {', '.join(checked)} valid against the vendored CRDs")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
