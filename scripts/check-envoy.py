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
4. The limits of an internet-facing edge are there: the overload manager watches the heap
   (below the pod's memory limit in envoy-k8s.yaml, and refuses requests near it) and caps
   active downstream connections; HTTP/2 streams per connection are capped; request headers
   have a deadline; streams have an idle timeout, WatchQueue's route a longer one; the
   anonymous RPCs (ListConcerts, GetQueueStats) are rate limited; every JWT provider requires
   `exp`; access logs are JSON and name no header that carries a token.

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


ANONYMOUS = ("/concert.catalog.v1.CatalogService/ListConcerts", "/concert.queue.v1.QueueService/GetQueueStats")
WATCH = "/concert.queue.v1.QueueService/WatchQueue"
TOKEN_HEADERS = ("AUTHORIZATION", "X-QUEUE-TOKEN", "COOKIE")


def k8s_memory_limit_bytes() -> int | None:
    """The Envoy container's memory limit in deploy/envoy/envoy-k8s.yaml."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for doc in yaml.safe_load_all((ENVOY.parent / "envoy-k8s.yaml").read_text()):
        if doc and doc.get("kind") == "Deployment":
            for c in doc["spec"]["template"]["spec"]["containers"]:
                limit = str(c.get("resources", {}).get("limits", {}).get("memory", ""))
                for unit, factor in units.items():
                    if limit.endswith(unit):
                        return int(limit[: -len(unit)]) * factor
    return None


def edge_problems(bootstrap, hcms, routes) -> list[str]:
    from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
    from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
    from envoy.extensions.resource_monitors.fixed_heap.v3 import fixed_heap_pb2
    from envoy.extensions.access_loggers.stream.v3 import stream_pb2
    from google.protobuf import json_format as jf

    problems = []
    om = bootstrap.overload_manager
    monitors = {m.name: m for m in om.resource_monitors}
    heap = monitors.get("envoy.resource_monitors.fixed_heap")
    if heap is None:
        problems.append("overload manager: no fixed_heap monitor")
    else:
        config = fixed_heap_pb2.FixedHeapConfig()
        heap.typed_config.Unpack(config)
        limit = k8s_memory_limit_bytes()
        if limit is None or not 0 < config.max_heap_size_bytes < limit:
            problems.append(f"overload manager: max heap {config.max_heap_size_bytes} not below the pod limit {limit}")
    if "envoy.resource_monitors.global_downstream_max_connections" not in monitors:
        problems.append("overload manager: no cap on active downstream connections")
    refusing = [
        a for a in om.actions
        if a.name == "envoy.overload_actions.stop_accepting_requests"
        and any(t.name == "envoy.resource_monitors.fixed_heap" for t in a.triggers)
    ]
    if not refusing:
        problems.append("overload manager: nothing stops accepting requests when the heap is full")
    for hcm in hcms:
        if not 0 < hcm.http2_protocol_options.max_concurrent_streams.value <= 1000:
            problems.append("HTTP/2 max_concurrent_streams per downstream connection is not set (1..1000)")
        if hcm.request_headers_timeout.ToTimedelta().total_seconds() <= 0:
            problems.append("request_headers_timeout is not set")
        idle = hcm.stream_idle_timeout.ToTimedelta().total_seconds()
        if not 0 < idle <= 300:
            problems.append(f"stream_idle_timeout {idle}s: set it, at most 300 s")
        for log in hcm.access_log:
            config = stream_pb2.StdoutAccessLog()
            if not log.typed_config.Unpack(config) or not config.log_format.HasField("json_format"):
                problems.append(f"access log {log.name} is not JSON to stdout")
                continue
            text = jf.MessageToJson(config.log_format.json_format).upper()
            for header in TOKEN_HEADERS:
                if f"({header})" in text or f"({header}:" in text:
                    problems.append(f"access log {log.name} writes the {header.lower()} header (a token)")
        for f in hcm.http_filters:
            jwt = jwt_pb2.JwtAuthentication()
            if f.typed_config.Unpack(jwt):
                for name, provider in jwt.providers.items():
                    if not provider.require_expiration:
                        problems.append(f"jwt_authn provider {name} does not require exp")
    by_path = {r.match.path: r for r in routes if r.match.path}
    watch = by_path.get(WATCH)
    stream_idle = max((h.stream_idle_timeout.ToTimedelta().total_seconds() for h in hcms), default=0)
    if watch is None or watch.route.idle_timeout.ToTimedelta().total_seconds() <= stream_idle:
        problems.append("WatchQueue needs a route of its own with an idle timeout above the stream idle timeout")
    for path in ANONYMOUS:
        route = by_path.get(path)
        config = route and route.typed_per_filter_config.get("envoy.filters.http.local_ratelimit")
        limit = local_rate_limit_pb2.LocalRateLimit()
        if not config or not config.Unpack(limit) or not limit.HasField("token_bucket"):
            problems.append(f"the anonymous RPC {path} has no local rate limit")
        elif limit.filter_enforced.default_value.numerator != 100:
            problems.append(f"the rate limit of {path} is not enforced for every request")
    return problems


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
    problems += edge_problems(bootstrap, hcms, routes)

    for p in problems:
        print(f"envoy: {p}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"envoy: {ENVOY.relative_to(ROOT)} is a valid v3 Bootstrap; routes expose exactly the "
        f"{len(public)} public services of proto/ ({', '.join(sorted(public))}); everything else 404; "
        f"CORS headers as {CORS.relative_to(ROOT)}; overload manager, stream and header limits, "
        f"anonymous rate limits, exp required and token-free JSON logs in place"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
