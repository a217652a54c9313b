#!/usr/bin/env python3
"""Checks a rendered Kustomize overlay (stdin) against PostgreSQL's connection budget.

Client connections: every service Deployment at its HPA maximum (else its replicas) ×
DATABASE_MAX_CONNECTIONS (its env, else the concert-config ConfigMap, else 16), plus for the
queue the internal lane's own pool, QUEUE_INTERNAL_CONNECTIONS (likewise, else 4), and for
reservation its LISTEN session (one per replica, for the live seat maps; always direct).
- Without PgBouncer they go straight to PostgreSQL: with the superuser reserve (3) they must
  fit the in-cluster PostgreSQL's max_connections (its `-c max_connections=N`, else 100).
- With PgBouncer they must fit its max_client_conn; its server connections
  (default_pool_size × databases × PgBouncer replicas) plus one migration connection per
  service replica starting at once, plus reservation's LISTEN sessions (direct, one per
  replica), plus the reserve, must fit the max_connections named by
  the PgBouncer Deployment's annotation concert.example/postgres-max-connections.
- With a CloudNativePG Pooler (prod) the same sums, from the Pooler's parameters and
  instances (one pool per service role: each connects as its own user to one database), must
  fit the Cluster's `postgresql.parameters.max_connections`.
Exits 1, saying which sum is too big, when the budget does not hold.
"""
import re
import sys

import yaml

RESERVED = 3  # superuser_reserved_connections' default


def main():
    overlay = sys.argv[1] if len(sys.argv) > 1 else "overlay"
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    config = next(
        (c.get("data", {}) for c in by_kind.get("ConfigMap", []) if c["metadata"]["name"].startswith("concert-config")),
        {},
    )
    hpa_max = {h["spec"]["scaleTargetRef"]["name"]: h["spec"]["maxReplicas"] for h in by_kind.get("HorizontalPodAutoscaler", [])}

    clients, replicas, listeners, lines = 0, 0, 0, []
    for dep in by_kind.get("Deployment", []):
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/component") != "service":
            continue
        name = dep["metadata"]["name"]
        n = hpa_max.get(name, dep["spec"].get("replicas", 1))
        env = {e["name"]: e.get("value") for c in dep["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
        per = int(env.get("DATABASE_MAX_CONNECTIONS") or config.get("DATABASE_MAX_CONNECTIONS") or 16)
        if name == "queue":
            per += int(env.get("QUEUE_INTERNAL_CONNECTIONS") or config.get("QUEUE_INTERNAL_CONNECTIONS") or 4)
        replicas += n
        if name == "reservation":
            # The LISTEN session of the seat feed (service/seat_feed.rs): its own direct
            # connection, never through PgBouncer.
            listeners += n
            lines.append(f"{name} {n} × ({per} + 1 LISTEN)")
        else:
            lines.append(f"{name} {n} × {per}")
        clients += n * per
    if not lines:
        print(f"budget {overlay}: no service Deployments found", file=sys.stderr)
        return 1

    bouncer = next((d for d in by_kind.get("Deployment", []) if d["metadata"]["name"] == "pgbouncer"), None)
    pooler = next((p for p in by_kind.get("Pooler", []) if p["spec"].get("type", "rw") == "rw"), None)
    if pooler is None and bouncer is None:
        pg = next((s for s in by_kind.get("StatefulSet", []) if s["metadata"]["name"] == "postgres"), None)
        if pg is None:
            print(f"budget {overlay}: neither PgBouncer nor an in-cluster PostgreSQL to check against", file=sys.stderr)
            return 1
        args = " ".join(a for c in pg["spec"]["template"]["spec"]["containers"] for a in c.get("args", []))
        m = re.search(r"max_connections=(\d+)", args)
        limit = int(m.group(1)) if m else 100
        ok = clients + listeners + RESERVED <= limit
        print(f"budget {overlay}: {' + '.join(lines)} = {clients + listeners} connections (+{RESERVED} reserved) "
              f"{'within' if ok else 'EXCEEDS'} PostgreSQL max_connections {limit}")
        return 0 if ok else 1

    # A pooler: the CloudNativePG Pooler (one pool per service role) or our PgBouncer (one per
    # database name). Each instance accepts max_client_conn; clients spread over the instances.
    if pooler is not None:
        cluster = next(c for c in by_kind["Cluster"] if c["metadata"]["name"] == pooler["spec"]["cluster"]["name"])
        params = pooler["spec"]["pgbouncer"].get("parameters", {})
        max_client, pool = int(params.get("max_client_conn", 1000)), int(params.get("default_pool_size", 20))
        bouncers, what = pooler["spec"].get("instances", 1), "Pooler instances"
        pools, per = len(lines), "roles"
        limit = int(cluster["spec"].get("postgresql", {}).get("parameters", {}).get("max_connections", 100))
        server_name = f"Cluster {cluster['metadata']['name']}"
    else:
        ini = next(c["data"]["pgbouncer.ini"] for c in by_kind["ConfigMap"] if c["metadata"]["name"].startswith("pgbouncer-config"))
        setting = lambda key: int(re.search(rf"^{key}\s*=\s*(\d+)", ini, re.M).group(1))
        max_client, pool = setting("max_client_conn"), setting("default_pool_size")
        bouncers, what = bouncer["spec"].get("replicas", 1), "PgBouncer"
        pools, per = len(re.findall(r"^\w+\s*=\s*host=", ini, re.M)), "databases"
        limit = int(bouncer["metadata"]["annotations"]["concert.example/postgres-max-connections"])
        server_name = "PostgreSQL"
    client_ok = clients <= max_client * bouncers
    server = pool * pools * bouncers + replicas + listeners
    server_ok = server + RESERVED <= limit
    ok = client_ok and server_ok
    print(f"budget {overlay}: {' + '.join(lines)} = {clients} client connections "
          f"{'within' if client_ok else 'EXCEED'} {bouncers} {what} × max_client_conn {max_client}; "
          f"server {pool} × {pools} {per} × {bouncers} + {replicas} migrating + {listeners} LISTEN = {server} (+{RESERVED} reserved) "
          f"{'within' if server_ok else 'EXCEEDS'} {server_name} max_connections {limit}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
