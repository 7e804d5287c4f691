#!/usr/bin/env bash
# Production rollout of the gateway: what the seed's `docker-compose up -d; sleep 30;
# curl -f …/health || echo failed` pretended to be.
#
#   scripts/deploy.sh                 build this revision, roll it out
#   scripts/deploy.sh --image IMG     roll out an image that exists already
#   scripts/deploy.sh --rollback      roll back to the version before the current one
#   scripts/deploy.sh --dry-run       print every step, change nothing
#
# Steps: preflight (engine, compose, secrets present and not world-readable, the stack's
# own config checked by `infergate check-config` inside the new image) → build and tag by
# git revision → Redis and PostgreSQL up and healthy → migrate → the new gateway started in
# standby beside the old one → gate: /ready and a smoke prediction over the new
# container's check socket → activate the new one, drain the old one. A new version that
# fails the gate never serves a request: it is removed and the old one keeps serving (an
# automatic rollback; exit 1 with the reason).
#
# Mechanism, and why: every gateway joins the network namespace of the `edge` container
# (compose.yml), which owns the published port. Gateways listen with SO_REUSEPORT, so the
# old and the new one share the port: no proxy in front, no port switch, no DNS change.
# The new one binds the port only when activated (SIGUSR2), after its checks passed; the
# old one then gets SIGTERM: it stops accepting at once (the kernel moves the connections
# queued on its listener to the new one: net.ipv4.tcp_migrate_req=1 on the edge's
# namespace), answers what is in flight with `Connection: close`, and exits. Compose
# creates the second container (`up --scale gateway=2 --no-recreate`); Swarm's start-first
# update cannot gate on a smoke prediction and its routing mesh is unavailable here.
#
# Environment: COMPOSE_FILES ("compose.yml compose.prod.yml"), COMPOSE_PROJECT_NAME,
# SECRETS_DIR (secrets), IMAGE_REPO (infergate), BUILDER (source | host: see Dockerfile),
# READY_TIMEOUT (120 s), DRAIN_TIMEOUT (30 s), SMOKE_PATH (/predict), SMOKE_BODY (an Iris
# row), DEPLOY_STATE (.deploy: the history of rolled-out images).
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE_FILES=${COMPOSE_FILES:-compose.yml compose.prod.yml}
SECRETS_DIR=${SECRETS_DIR:-secrets}
IMAGE_REPO=${IMAGE_REPO:-infergate}
READY_TIMEOUT=${READY_TIMEOUT:-120}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-30}
SMOKE_PATH=${SMOKE_PATH:-/predict}
SMOKE_BODY=${SMOKE_BODY:-'{"features": [5.1, 3.5, 1.4, 0.2]}'}
DEPLOY_STATE=${DEPLOY_STATE:-.deploy}
SECRETS=(tls_cert tls_key database_password redis_password api_keys)
CHECK_SOCKET=/run/infergate/check.sock
GATEWAY_GID=10001

dry_run="" rollback="" image=""
while (($#)); do
    case $1 in
    --dry-run) dry_run=1 ;;
    --rollback) rollback=1 ;;
    --image) image=${2:?--image needs an image}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "deploy: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

started=$(date +%s.%N)
step() { printf '%s deploy: %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { printf '%s deploy: FAILED: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }
run() { # a command that changes something: printed, and skipped under --dry-run
    if [ -n "$dry_run" ]; then printf '    would run: %s\n' "$*"; else "$@"; fi
}

compose_cmd=()
compose() { "${compose_cmd[@]}" "$@"; }

# ---- preflight ---------------------------------------------------------------------------
preflight() {
    step "preflight: engine, compose, secrets"
    docker info >/dev/null 2>&1 || fail "no Docker engine answers (is dockerd running, may you use it?)"
    if docker compose version >/dev/null 2>&1; then
        compose_cmd=(docker compose)
    elif command -v docker-compose >/dev/null; then
        compose_cmd=(docker-compose)
    else
        fail "neither 'docker compose' nor 'docker-compose' is installed"
    fi
    local f
    for f in $COMPOSE_FILES; do
        [ -f "$f" ] || fail "compose file $f is missing"
        compose_cmd+=(-f "$f")
    done
    compose config -q || fail "the compose files do not validate"
    local name path mode
    for name in "${SECRETS[@]}"; do
        path="$SECRETS_DIR/$name"
        [ -s "$path" ] || fail "secret $path is missing or empty (scripts/deploy/gen-dev-secrets.sh makes dev ones; see secrets/README.md)"
        mode=$(stat -c %a "$path")
        if ((8#$mode & 8#007)); then
            fail "secret $path is readable by others (mode $mode): chmod 0640 $path"
        fi
        if [ "$(stat -c %u "$path")" != "$GATEWAY_GID" ] && [ "$(stat -c %g "$path")" != "$GATEWAY_GID" ]; then
            fail "secret $path is neither owned by uid $GATEWAY_GID nor group $GATEWAY_GID: the containers cannot read it (chgrp $GATEWAY_GID $path)"
        fi
        if [ "$(stat -c %u "$path")" != "$GATEWAY_GID" ] && ((!(8#$mode & 8#040))); then
            fail "secret $path is not group-readable (mode $mode): chmod 0640 $path"
        fi
    done
}

# ---- which image ---------------------------------------------------------------------------
history_file() { echo "$DEPLOY_STATE/history"; }

pick_image() {
    if [ -n "$rollback" ]; then
        [ -s "$(history_file)" ] || fail "--rollback: no deploy history in $(history_file)"
        local current
        current=$(running_image)
        image=$(awk -v cur="$current" '$2 != cur { last = $2 } END { print last }' "$(history_file)")
        [ -n "$image" ] || fail "--rollback: no earlier version than $current in $(history_file)"
        docker image inspect "$image" >/dev/null 2>&1 || fail "--rollback: image $image is gone"
        step "rollback: from ${current:-nothing} to $image"
        return
    fi
    if [ -n "$image" ]; then
        docker image inspect "$image" >/dev/null 2>&1 || fail "image $image does not exist"
        step "image: $image (given)"
        return
    fi
    local rev
    rev=$(git rev-parse --short=12 HEAD 2>/dev/null) || fail "not a git checkout: give --image"
    [ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || rev="$rev-dirty"
    image="$IMAGE_REPO:$rev"
    step "build: $image (BUILDER=${BUILDER:-source})"
    if [ "${BUILDER:-source}" = host ]; then
        run env GATEWAY_IMAGE="$image" REBUILD=1 scripts/deploy/images.sh gateway
    else
        run docker build -q -t "$image" . >/dev/null
    fi
}

# ---- containers --------------------------------------------------------------------------
gateway_containers() { # running gateway containers of this project, oldest first
    compose ps -q gateway 2>/dev/null |
        xargs -r docker inspect -f '{{.State.Running}} {{.Created}} {{.Id}}' |
        awk '$1 == "true"' | sort -k2 | awk '{ print $3 }'
}

running_image() {
    local newest
    newest=$(gateway_containers | tail -1)
    [ -n "$newest" ] && docker inspect -f '{{.Config.Image}}' "$newest"
    return 0
}

edge_container() { compose ps -q edge; }

secret_mounts() {
    local name
    for name in "${SECRETS[@]}"; do
        printf -- '-v\n%s:/run/secrets/%s:ro\n' "$(realpath "$SECRETS_DIR/$name")" "$name"
    done
}

# in_new_image NETWORK ARGS...: runs `infergate ARGS` in the new image, hardened as in
# production, with the secrets mounted as compose.prod.yml mounts them.
in_new_image() {
    local network=$1 mounts
    shift
    mapfile -t mounts < <(secret_mounts)
    run docker run --rm --network "$network" --read-only --cap-drop ALL "${mounts[@]}" \
        -e INFERGATE_DATABASE__PASSWORD= "$image" "$@"
}

check_config() {
    step "check-config: the compose profile and the secrets, inside $image"
    in_new_image none check-config --profile compose ||
        fail "infergate check-config refused the configuration in $image"
}

infra_up() {
    step "dependencies: edge, redis, postgres up and healthy"
    run compose up -d --no-recreate edge redis postgres >/dev/null 2>&1 ||
        fail "could not start edge, redis and postgres (compose up)"
    [ -n "$dry_run" ] && return
    local svc id deadline=$((SECONDS + READY_TIMEOUT))
    for svc in redis postgres; do
        id=$(compose ps -q "$svc")
        until [ "$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null)" = healthy ]; do
            ((SECONDS < deadline)) || fail "$svc is not healthy after ${READY_TIMEOUT}s"
            sleep 1
        done
    done
}

migrate() {
    step "migrate: the prediction log's schema"
    in_new_image "container:$(edge_container)" migrate --profile compose || fail "migrate failed"
}

in_container() { docker exec "$1" infergate healthcheck --socket "$CHECK_SOCKET" "${@:2}"; }

# Waits for /ready over the container's own check socket; fails early if it exits.
wait_ready() {
    local id=$1 deadline=$((SECONDS + READY_TIMEOUT))
    until in_container "$id" --url http://localhost/ready >/dev/null 2>&1; do
        [ "$(docker inspect -f '{{.State.Running}}' "$id" 2>/dev/null)" = true ] ||
            { docker logs --tail 20 "$id" >&2 2>&1 || true; return 1; }
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

abandon() { # the new container failed its gate: remove it, the old one keeps serving
    local id=$1 why=$2
    docker logs --tail 15 "$id" 2>&1 | sed 's/^/    new> /' >&2 || true
    docker rm -f "$id" >/dev/null 2>&1 || true
    fail "$why; rolled back: the new container was removed, ${old_image:-nothing} keeps serving"
}

rollout() {
    local old new count
    mapfile -t old < <(gateway_containers)
    old_image=$(running_image)
    count=${#old[@]}
    if ((count == 0)); then
        step "start: first gateway ($image)"
        run env GATEWAY_IMAGE="$image" GATEWAY_STANDBY=false \
            "${compose_cmd[@]}" up -d --no-deps gateway >/dev/null 2>&1 || fail "compose up gateway failed"
        [ -n "$dry_run" ] && return
        new=$(gateway_containers | tail -1)
        step "gate: /ready on $(short "$new")"
        wait_ready "$new" || abandon "$new" "not ready after ${READY_TIMEOUT}s"
        smoke "$new"
        return
    fi
    step "start: $image in standby beside ${count} running ($old_image)"
    run env GATEWAY_IMAGE="$image" GATEWAY_STANDBY=true "${compose_cmd[@]}" up -d --no-deps \
        --no-recreate --scale "gateway=$((count + 1))" gateway >/dev/null 2>&1 ||
        fail "compose could not start the new gateway"
    [ -n "$dry_run" ] && { step "would gate, activate the new one and drain ${old[*]}"; return; }
    new=$(gateway_containers | grep -vxF -f <(printf '%s\n' "${old[@]}") | tail -1)
    [ -n "$new" ] || fail "the new gateway container did not start"
    step "gate: /ready on $(short "$new") over its check socket"
    wait_ready "$new" || abandon "$new" "the new gateway did not become ready in ${READY_TIMEOUT}s"
    smoke "$new"
    step "activate: $(short "$new") binds the public port (SIGUSR2)"
    docker kill -s USR2 "$new" >/dev/null
    local deadline=$((SECONDS + 10))
    until grep -q 'activated: listening' <<<"$(docker logs "$new" 2>&1)"; do
        ((SECONDS < deadline)) || abandon "$new" "the new gateway did not start listening"
        sleep 0.2
    done
    local id
    for id in "${old[@]}"; do
        step "drain: $(short "$id") (SIGTERM; up to ${DRAIN_TIMEOUT}s)"
        docker stop -t "$DRAIN_TIMEOUT" "$id" >/dev/null
        docker rm "$id" >/dev/null
    done
}

smoke() {
    local id=$1 out
    step "gate: smoke prediction POST $SMOKE_PATH on $(short "$id")"
    out=$(in_container "$id" --url "http://localhost$SMOKE_PATH" --data "$SMOKE_BODY" 2>&1) ||
        abandon "$id" "smoke prediction failed: ${out//$'\n'/ }"
}

short() { echo "${1:0:12}"; }

record() {
    [ -n "$dry_run" ] && return
    mkdir -p "$DEPLOY_STATE"
    printf '%s %s\n' "$(date -u +%FT%TZ)" "$image" >>"$(history_file)"
}

preflight
pick_image
check_config
infra_up
migrate
rollout
record
step "done: $image serving; $(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')s"
