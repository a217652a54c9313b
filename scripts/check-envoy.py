#!/usr/bin/env python3
"""Validates deploy/envoy/envoy.yaml offline (there is no Envoy binary to run `--mode validate`).

1. The YAML parses into envoy.config.bootstrap.v3.Bootstrap (PyPI xds-protos, generated from
   envoyproxy/data-plane-api) with unknown fields refused, every `typed_config` resolved to its
   message type (all envoy.* modules are imported so each `@type` is known).
2. The edge exposes exactly the public services of proto/: every `concert.*` service whose name
   does not end in InternalService or AdminService has a route (path prefix `/<service>/`) to a
   cluster; no other service does; the last route answers every other path 404; each routed
   cluster points at that service's public port, never at an internal one. Services are read
   from the descriptor set that protoc (grpcio-tools) builds from proto/.
3. The CORS policy allows and exposes exactly the headers of deploy/grpc-web-cors.txt, the
   list the services' public ports use, so a browser may call either alike.

Usage: check-envoy.py [envoy.yaml] [proto dir]. Exits 1 with the reasons on any failure.
"""
import importlib
import pkgutil
import sys
import tempfile
from pathlib import Path

import yaml
from google.protobuf import descriptor_pb2, json_format

ROOT = Path(__file__).resolve().parent.parent
ENVOY = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "deploy/envoy/envoy.yaml"
PROTO = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "proto"
# Each service's public port (the services' DEFAULT_PUBLIC_ADDR); internal ports are 5006x.
PUBLIC_PORTS = {"queue": 50051, "catalog": 50052, "reservation": 50053, "wallet": 50054}
INTERNAL_SUFFIXES = ("InternalService", "AdminService")
CORS = ROOT / "deploy/grpc-web-cors.txt"


def shared_cors() -> dict[str, set[str]]:
    """`allow` and `expose` -> header names, from deploy/grpc-web-cors.txt."""
    lists = {}
    for line in CORS.read_text().splitlines():
        kind, sep, names = line.partition(":")
        if sep and kind in ("allow", "expose"):
            lists[kind] = {n.strip().lower() for n in names.split(",") if n.strip()}
    return lists


def cors_problems(hcms) -> list[str]:
    from envoy.extensions.filters.http.cors.v3 import cors_pb2

    want = shared_cors()
    problems, policies = [], 0
    for hcm in hcms:
        for vh in hcm.route_config.virtual_hosts:
            config = vh.typed_per_filter_config.get("envoy.filters.http.cors")
            policy = cors_pb2.CorsPolicy()
            if config is None or not config.Unpack(policy):
                problems.append(f"virtual host {vh.name} has no CORS policy")
                continue
            policies += 1
            for kind, have in (("allow", policy.allow_headers), ("expose", policy.expose_headers)):
                names = {n.strip().lower() for n in have.split(",") if n.strip()}
                if names != want.get(kind, set()):
                    problems.append(
                        f"CORS {kind}_headers of {vh.name} differ from {CORS.relative_to(ROOT)}: "
                        f"missing {sorted(want.get(kind, set()) - names)}, extra {sorted(names - want.get(kind, set()))}"
                    )
    return problems


def load_bootstrap(path: Path):
    import envoy  # noqa: F401  (xds-protos)

    for module in pkgutil.walk_packages(envoy.__path__, "envoy."):
        if module.name.endswith("_pb2"):
            importlib.import_module(module.name)
    from envoy.config.bootstrap.v3 import bootstrap_pb2

    bootstrap = bootstrap_pb2.Bootstrap()
    json_format.ParseDict(yaml.safe_load(path.read_text()), bootstrap, ignore_unknown_fields=False)
    return bootstrap


def services_in(proto_dir: Path) -> dict[str, bool]:
    """Fully qualified service name -> public?, from the descriptor set of proto_dir."""
    import grpc_tools
    from grpc_tools import protoc

    out = Path(tempfile.mkdtemp()) / "proto.desc"
    files = [str(p.relative_to(proto_dir)) for p in sorted(proto_dir.rglob("*.proto"))]
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = ["protoc", f"-I{proto_dir}", f"-I{include}", f"--descriptor_set_out={out}", *files]
    if protoc.main(args) != 0:
        raise SystemExit("protoc could not build the descriptor set of proto/")
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return {
        f"{f.package}.{s.name}": not s.name.endswith(INTERNAL_SUFFIXES) for f in fds.file for s in f.service
    }


def main() -> int:
    problems: list[str] = []
    bootstrap = load_bootstrap(ENVOY)
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2

    clusters = {c.name: c for c in bootstrap.static_resources.clusters}
    hcms = []
    for listener in bootstrap.static_resources.listeners:
        for chain in listener.filter_chains:
            for f in chain.filters:
                hcm = http_connection_manager_pb2.HttpConnectionManager()
                if f.typed_config.Unpack(hcm):
                    hcms.append(hcm)
    if len(hcms) != 1:
        problems.append(f"expected one HTTP connection manager, found {len(hcms)}")
    routes = [r for hcm in hcms for vh in hcm.route_config.virtual_hosts for r in vh.routes]

    services = services_in(PROTO)
    public = {name for name, is_public in services.items() if is_public}
    routed: dict[str, set[str]] = {}
    for r in routes:
        path = r.match.prefix or r.match.path
        if not r.HasField("route"):
            continue
        service = path.strip("/").split("/")[0]
        routed.setdefault(service, set()).add(r.route.cluster)
        if service not in services:
            problems.append(f"route {path} names no service of proto/")
        elif not services[service]:
            problems.append(f"route {path} exposes the internal service {service}")
        cluster = clusters.get(r.route.cluster)
        if cluster is None:
            problems.append(f"route {path} goes to the unknown cluster {r.route.cluster}")
            continue
        ports = {
            lb.endpoint.address.socket_address.port_value
            for e in cluster.load_assignment.endpoints
            for lb in e.lb_endpoints
        }
        want = PUBLIC_PORTS.get(r.route.cluster)
        if ports != {want}:
            problems.append(f"cluster {r.route.cluster} points at ports {sorted(ports)}, not the public port {want}")
        if not cluster.health_checks or not cluster.health_checks[0].HasField("grpc_health_check"):
            problems.append(f"cluster {r.route.cluster} has no gRPC health check")
    for service in sorted(public - routed.keys()):
        problems.append(f"public service {service} has no route")
    last = routes[-1] if routes else None
    if last is None or last.match.prefix != "/" or last.direct_response.status != 404:
        problems.append("the last route must answer every other path with 404")

    problems += cors_problems(hcms)

    for p in problems:
        print(f"envoy: {p}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"envoy: {ENVOY.relative_to(ROOT)} is a valid v3 Bootstrap; routes expose exactly the "
        f"{len(public)} public services of proto/ ({', '.join(sorted(public))}); everything else 404; "
        f"CORS headers as {CORS.relative_to(ROOT)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
