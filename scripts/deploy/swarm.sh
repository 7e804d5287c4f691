#!/usr/bin/env bash
# The Compose stack on Docker Swarm: the same compose files, rendered for `docker stack
# deploy` (scripts/deploy/swarm-render.py says what changes and why).
#
#   scripts/deploy/swarm.sh render     print the stack file (JSON, which is YAML)
#   scripts/deploy/swarm.sh deploy     deploy or update the stack; waits for the rollout
#   scripts/deploy/swarm.sh rm         remove the stack (volumes stay)
#
# A deploy after the first is a rolling update of the gateways: start-first, one task at a
# time, each new task healthy (/ready) before an old one drains; a task that never turns
# healthy, or fails within the monitor window, rolls the service back to the version before
# (exit 1, "rolled back"). Gateways run on the host network and share the port through
# SO_REUSEPORT; set net.ipv4.tcp_migrate_req=1 on every node so a draining gateway's queued
# connections move to the others.
#
# Environment: STACK (infergate), COMPOSE_FILES ("compose.yml compose.prod.yml"),
# SECRETS_DIR (secrets), GATEWAY_IMAGE, HTTPS_PORT (8443), GATEWAY_REPLICAS (2, or
# global), DATA_HOST (127.0.0.1: where gateways reach Redis and PostgreSQL), REDIS_PORT
# (6379), POSTGRES_PORT (5432), DATA_CONSTRAINT ("node.role == manager": the node holding
# their volumes), UPDATE_TIMEOUT (300 s).
set -euo pipefail
cd "$(dirname "$0")/../.."

STACK=${STACK:-infergate}
COMPOSE_FILES=${COMPOSE_FILES:-compose.yml compose.prod.yml}
HTTPS_PORT=${HTTPS_PORT:-8443}
GATEWAY_REPLICAS=${GATEWAY_REPLICAS:-2}
DATA_HOST=${DATA_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
POSTGRES_PORT=${POSTGRES_PORT:-5432}
DATA_CONSTRAINT=${DATA_CONSTRAINT:-node.role == manager}
UPDATE_TIMEOUT=${UPDATE_TIMEOUT:-300}
export SECRETS_DIR=${SECRETS_DIR:-secrets}

step() { printf '%s swarm: %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { printf '%s swarm: FAILED: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# The merged, interpolated compose configuration: Compose v2 prints JSON; docker-compose
# 1.29 prints YAML, read with the PyYAML its own Python has.
compose_config() {
    local files=() f
    for f in $COMPOSE_FILES; do files+=(-f "$f"); done
    if docker compose version >/dev/null 2>&1; then
        docker compose "${files[@]}" config --format json
    elif command -v docker-compose >/dev/null; then
        docker-compose "${files[@]}" config
    else
        fail "neither 'docker compose' nor 'docker-compose' is installed"
    fi
}

python_with_yaml() {
    local py
    for py in python3 "$(head -1 "$(command -v docker-compose 2>/dev/null || echo /dev/null)" | sed -n 's/^#! *//p')"; do
        [ -n "$py" ] && "$py" -c 'import yaml' 2>/dev/null && { echo "$py"; return; }
    done
    echo python3 # Compose v2's JSON needs no PyYAML
}

render() {
    compose_config | "$(python_with_yaml)" scripts/deploy/swarm-render.py \
        --https-port "$HTTPS_PORT" --replicas "$GATEWAY_REPLICAS" --data-host "$DATA_HOST" \
        --redis-port "$REDIS_PORT" --postgres-port "$POSTGRES_PORT" \
        --data-constraint "$DATA_CONSTRAINT"
}

field() { docker service inspect -f "$2" "$1" 2>/dev/null || true; }

# wait_rollout SERVICE VERSION_BEFORE STARTED_BEFORE: until the update the deploy started
# is over; 0 when it completed, 1 when Swarm rolled it back or paused it.
wait_rollout() {
    local svc=$1 before=$2 started_before=$3 deadline=$((SECONDS + UPDATE_TIMEOUT)) state started
    if [ "$(field "$svc" '{{.Version.Index}}')" = "$before" ]; then
        step "$svc: unchanged"
        return 0
    fi
    while ((SECONDS < deadline)); do
        state=$(field "$svc" '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}')
        started=$(field "$svc" '{{if .UpdateStatus}}{{.UpdateStatus.StartedAt}}{{end}}')
        if [ -n "$state" ] && [ "$started" != "$started_before" ]; then
            case $state in
            completed) return 0 ;;
            rollback_completed | rollback_paused | paused)
                step "$svc: $state: $(field "$svc" '{{.UpdateStatus.Message}}')"
                return 1 ;;
            esac
        fi
        sleep 1
    done
    fail "$svc: the rollout did not finish in ${UPDATE_TIMEOUT}s (docker service ps $svc)"
}

# wait_running SERVICE: until every task the service wants runs (healthy: Swarm reports a
# task with a HEALTHCHECK running only once it is).
wait_running() {
    local svc=$1 deadline=$((SECONDS + UPDATE_TIMEOUT)) replicas
    while ((SECONDS < deadline)); do
        replicas=$(docker service ls --filter "name=$svc" --format '{{.Name}} {{.Replicas}}' |
            awk -v s="$svc" '$1 == s { print $2 }')
        if [[ $replicas =~ ^([0-9]+)/([0-9]+) ]] && ((BASH_REMATCH[2] > 0)) &&
            [ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ]; then
            step "$svc: $replicas running"
            return 0
        fi
        sleep 1
    done
    fail "$svc: not every task runs after ${UPDATE_TIMEOUT}s (docker service ps $svc)"
}

deploy() {
    [ "$(docker info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = active ] ||
        fail "this engine is not in a swarm (docker swarm init, or join one)"
    [ "$(docker info -f '{{.Swarm.ControlAvailable}}')" = true ] ||
        fail "stacks are deployed from a manager node"
    # A host setting of each node: only this machine's can be read from here, and only when
    # the engine is this machine's.
    if [ -n "${DOCKER_HOST:-}" ]; then
        step "note: set net.ipv4.tcp_migrate_req=1 on every node (not checked here: the engine is $DOCKER_HOST)"
    elif [ "$(sysctl -n net.ipv4.tcp_migrate_req 2>/dev/null || echo 0)" != 1 ]; then
        step "warning: net.ipv4.tcp_migrate_req is not 1 on this node: connections queued on a draining gateway are reset (set it on every node)"
    fi
    local stackfile gw=${STACK}_gateway before started_before
    stackfile=$(mktemp)
    trap 'rm -f "$stackfile"' RETURN
    render >"$stackfile"
    before=$(field "$gw" '{{.Version.Index}}')
    started_before=$(field "$gw" '{{if .UpdateStatus}}{{.UpdateStatus.StartedAt}}{{end}}')
    step "deploy: stack $STACK ($(docker stack ls --format '{{.Name}}' | grep -qx "$STACK" && echo update || echo new)), gateway image $(python3 -c 'import json,sys; print(json.load(sys.stdin)["services"]["gateway"]["image"])' <"$stackfile")"
    docker stack deploy --prune -c "$stackfile" "$STACK" 2>&1 | grep -v 'detach' | sed 's/^/    /'
    wait_running "${STACK}_redis"
    wait_running "${STACK}_postgres"
    if [ -n "$before" ]; then
        step "rollout: $gw, start-first, one task at a time"
        if ! wait_rollout "$gw" "$before" "$started_before"; then
            wait_running "$gw"
            fail "$gw rolled back: the previous version serves"
        fi
    fi
    wait_running "$gw"
    step "done: $(field "$gw" '{{.Spec.TaskTemplate.ContainerSpec.Image}}' | sed 's/@sha256:.*//') serving on :$HTTPS_PORT"
}

case ${1:-} in
render) render ;;
deploy) deploy ;;
rm) docker stack rm "$STACK" ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
