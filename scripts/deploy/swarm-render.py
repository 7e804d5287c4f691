#!/usr/bin/env python3
"""Renders the Compose stack (compose.yml + compose.prod.yml, merged and interpolated by
`docker-compose config` or `docker compose config --format json`, read on stdin) into a
stack file for `docker stack deploy`, written to stdout as JSON (which is YAML).

Why a rendering and not the files themselves: the stack loader refuses `depends_on`
conditions and ignores `network_mode: service:edge`, `restart`, `group_add`, `cpus`,
`mem_limit` and tmpfs options. What changes, service by service:

- edge: dropped. Gateways run on the host network instead, so every gateway on a node
  shares the port through SO_REUSEPORT, as they share the edge's namespace under Compose;
  the node needs net.ipv4.tcp_migrate_req=1 (a host sysctl now) for drains to lose nothing.
- gateway: `replicated` (GATEWAY_REPLICAS) or `global`; rolling updates start-first, one task
  at a time, rolled back automatically when a new task never turns healthy (its HEALTHCHECK
  asks /ready over the task's check socket) or fails within the monitor window. Redis and
  PostgreSQL are reached at DATA_HOST on their published ports.
- redis, postgres: placed by DATA_CONSTRAINT (their data lives on one node), ports published
  in `mode: host` (the routing mesh is not needed, nor available everywhere), secrets owned
  by their own uid (Swarm mounts secrets with uid/gid/mode; no group_add).
- everything: restart -> restart_policy, cpus/mem_limit -> deploy.resources.limits, tmpfs ->
  anonymous volumes (see scratch_mounts); depends_on, build, profiles, security_opt,
  pids_limit, shm_size dropped (Swarm has no equivalent: see README, "Swarm"); bridge
  driver_opts dropped; networks overlay.
  Services under a profile (Prometheus, Grafana) are left out.
"""

import argparse
import json
import sys

# Secrets are mounted owned by the uid that reads them (the images' users).
SERVICE_UID = {"gateway": 10001, "redis": 999, "postgres": 70}
# Options the stack loader has no field for; dropping them is said in the module doc.
UNSUPPORTED = ("build", "depends_on", "profiles", "security_opt", "pids_limit", "shm_size",
               "group_add", "network_mode", "sysctls", "container_name", "restart", "cpus",
               "mem_limit", "tmpfs")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--https-port", type=int, default=8443)
    p.add_argument("--data-host", default="127.0.0.1",
                   help="where gateways reach the published Redis and PostgreSQL ports")
    p.add_argument("--redis-port", type=int, default=6379)
    p.add_argument("--postgres-port", type=int, default=5432)
    p.add_argument("--replicas", default="2", help="gateway tasks, or 'global': one per node")
    p.add_argument("--data-constraint", default="node.role == manager")
    p.add_argument("--monitor", default="15s", help="how long a new task must stay up")
    return p.parse_args()


def load(text):
    try:
        return json.loads(text)
    except ValueError:
        import yaml  # docker-compose 1.29 prints YAML; its own Python has PyYAML

        return yaml.safe_load(text)


def scratch_mounts(entries):
    """`/path:size=16m,mode=1777,uid=…` -> an anonymous volume at /path. Swarm's tmpfs mounts
    take a size but no mode or owner (Engine 20.10's stack loader), and a root-owned 0755
    tmpfs is of no use to a non-root service; an anonymous volume starts as a copy of the
    image's directory, owner and mode included, and is removed with its task's container."""
    if isinstance(entries, str):
        entries = [entries]
    return [{"type": "volume", "target": entry.partition(":")[0]} for entry in entries or []]


def swarm_service(name, svc, args):
    out = {k: v for k, v in svc.items() if k not in UNSUPPORTED}
    deploy = out.setdefault("deploy", {})
    deploy["restart_policy"] = {"condition": "any", "delay": "2s"}
    limits = {}
    if "cpus" in svc:
        limits["cpus"] = str(svc["cpus"])
    if "mem_limit" in svc:
        limits["memory"] = str(svc["mem_limit"])
    if limits:
        deploy["resources"] = {"limits": limits}
    mounts = scratch_mounts(svc.get("tmpfs"))
    if mounts:
        out["volumes"] = list(out.get("volumes", [])) + mounts
    uid = SERVICE_UID.get(name)
    if "secrets" in svc:
        out["secrets"] = [
            {"source": s["source"] if isinstance(s, dict) else s,
             **({"uid": str(uid), "gid": str(uid), "mode": 0o400} if uid is not None else {})}
            for s in svc["secrets"]
        ]
    return out


def render(config, args):
    services = {}
    for name, svc in config.get("services", {}).items():
        if name == "edge" or svc.get("profiles"):
            continue
        services[name] = swarm_service(name, svc, args)

    gateway = services["gateway"]
    env = dict(gateway.get("environment") or {})
    env.update({
        "INFERGATE_SERVER__LISTEN": f"0.0.0.0:{args.https_port}",
        # No deploy.sh to activate a standby task: a task beside a serving one opens the
        # port once ready (the gateway's own rule), and Swarm's health-gated start-first
        # update decides when the old one stops.
        "INFERGATE_SERVER__STANDBY": "false",
        "INFERGATE_REDIS__URL": f"redis://{args.data_host}:{args.redis_port}/0",
        "INFERGATE_DATABASE__URL":
            f"postgres://infergate@{args.data_host}:{args.postgres_port}/infergate",
    })
    gateway["environment"] = env
    gateway["networks"] = {"hostnet": {}}
    gateway.pop("ports", None)
    deploy = gateway["deploy"]
    if args.replicas == "global":
        deploy["mode"] = "global"
    else:
        deploy["mode"] = "replicated"
        deploy["replicas"] = int(args.replicas)
    deploy["update_config"] = {"parallelism": 1, "order": "start-first", "delay": "2s",
                               "failure_action": "rollback", "monitor": args.monitor}
    deploy["rollback_config"] = {"parallelism": 1, "order": "start-first",
                                 "monitor": args.monitor}

    for name, port in (("redis", (6379, args.redis_port)), ("postgres", (5432, args.postgres_port))):
        svc = services[name]
        svc["ports"] = [{"target": port[0], "published": port[1], "protocol": "tcp",
                         "mode": "host"}]
        svc["deploy"]["placement"] = {"constraints": [args.data_constraint]}
        svc["deploy"]["mode"] = "replicated"
        svc["deploy"]["replicas"] = 1

    networks = {}
    for name, net in (config.get("networks") or {}).items():
        if any(name in (s.get("networks") or {}) for s in services.values()):
            networks[name] = {"driver": "overlay",
                              **({"internal": True} if net and net.get("internal") else {})}
    networks["hostnet"] = {"external": True, "name": "host"}
    # An internal overlay cannot publish ports: Redis and PostgreSQL must be reachable from
    # the gateways on the host network, so the backend is an ordinary overlay here.
    for net in networks.values():
        net.pop("internal", None)

    used_volumes = {v.split(":")[0] for s in services.values()
                    for v in s.get("volumes", []) if isinstance(v, str)}
    volumes = {k: v or {} for k, v in (config.get("volumes") or {}).items() if k in used_volumes}
    used_secrets = {s["source"] for svc in services.values() for s in svc.get("secrets", [])}
    secrets = {k: v for k, v in (config.get("secrets") or {}).items() if k in used_secrets}

    stack = {"version": "3.8", "services": services, "networks": networks, "volumes": volumes}
    if secrets:
        stack["secrets"] = secrets
    return stack


def main():
    args = parse_args()
    if args.replicas != "global" and not args.replicas.isdigit():
        raise SystemExit("render: --replicas takes a number or 'global'")
    config = load(sys.stdin.read())
    if "gateway" not in config.get("services", {}):
        raise SystemExit("render: no gateway service in the compose configuration")
    json.dump(render(config, args), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
