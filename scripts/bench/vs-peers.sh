#!/usr/bin/env bash
# infergate beside its peers, the model servers a team would otherwise deploy, on this
# machine, in one run, serving the same models to the same requests:
#
# - MLServer (Seldon) with its scikit-learn and XGBoost runtimes: the Iris StandardScaler +
#   LogisticRegression and the XGBoost Iris classifier that scripts/models/export-onnx.py
#   fits, MLServer from the fitted models themselves (joblib, XGBoost's JSON: export-onnx.py
#   --native), infergate from their ONNX exports (tract), both on the Open Inference
#   Protocol: POST /v2/models/<name>/infer, the same [1, 4] FP32 input `features`.
# - BentoML: torchvision's ResNet-18 exported as ONNX (scripts/models/export-torch.sh),
#   BentoML as its users write a service (scripts/bench/peers/bento_resnet.py: Pillow and
#   numpy for torchvision's ImageNet preprocessing, ONNX Runtime on the CPU, the top-5),
#   infergate from the same file (tract; the same preprocessing, from its manifest): the
#   same multipart upload of tests/fixtures/images/bike.jpg, field `file`, on /predict.
#
# Not here: TorchServe (0.12.0, its last release; the project is archived). Its Python
# worker imports torch at start even for a handler that never uses it, so serving this ONNX
# file would need PyTorch's Linux wheels from PyPI (the CUDA build, about 4 GB) in one
# more venv.
#
# Each server runs as it ships (defaults; infergate with an empty --config-dir, so with
# its two bundled models too), natively on loopback, beside infergate in its own phase:
# the tabular pair, then the image pair, so a phase's load never shares the cores with the
# other's servers. infergate is HTTPS only (TLS, its self-signed development certificate);
# the peers are plain HTTP, as they serve without a proxy in front. Before timing, each
# pair must answer alike (status 200, the same top class). Everything it starts, it stops.
#
#   scripts/bench/vs-peers.sh                    # DURATION=10 s per run
#   DURATION=3 scripts/bench/vs-peers.sh         # a smoke run
#
# Environment: DURATION (10, seconds per wrk run), CONNS (32, tabular connections),
# IMAGE_CONNS (4, image connections), MLSERVER_CACHE (1: also time MLServer with its
# response cache on, which is off by default; 0: not), OUT (bench-results), BIN (an
# infergate binary to measure instead of building target/release/infergate).
#
# Measured per (model, server): req/s and wrk's p50/p99 at a fixed concurrency (wrk -t2),
# uncached (infergate: every request a new input, `Cache-Control: no-cache`; images: new
# bytes after the JPEG's end, so no two uploads are alike and none is coalesced) and cached
# (infergate: one identical body, an in-process L1 hit). The peers keep no answers (except
# MLServer's opt-in cache, its own row), so they are measured once, with the changing
# inputs. infergate's adaptive admission (on by default) answers work that would queue with
# 503 overloaded and a Retry-After, which wrk ignores, so the table has 2xx/s beside req/s,
# and the image once more with admission off (INFERGATE_ADMISSION__ADAPTIVE=false: it
# queues, as the peers do). RSS after the runs: the process and its children (tree_rss_kib).
#
# First run: the Python venvs target/pypeers-mlserver, target/pypeers-bentoml and
# target/pyonnx (scripts/lib/venv.sh: pinned, hash-checked; about 1.5 GB), and
# target/onnx-torch (scripts/models/export-torch.sh: PyTorch, a large download) when absent.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
IMAGE_CONNS=${IMAGE_CONNS:-4}
MLSERVER_CACHE=${MLSERVER_CACHE:-1}
OUT=${OUT:-bench-results}
IMAGE=tests/fixtures/images/bike.jpg
TABULAR=(sklearn-iris-logreg xgboost-iris)
RESNET=target/onnx-torch/resnet18/1
mkdir -p "$OUT"

need wrk curl python3-venv
step "the peers' Python environments"
scripts/lib/venv.sh scripts/requirements/peers-mlserver.txt
scripts/lib/venv.sh scripts/requirements/peers-bentoml.txt
scripts/lib/venv.sh scripts/requirements/onnx.txt
MLS_PY=target/pypeers-mlserver/bin/python
BENTO_PY=target/pypeers-bentoml/bin/python
step "the ResNet-18 ONNX export (scripts/models/export-torch.sh)"
scripts/models/export-torch.sh
step "the infergate binary"
BIN=$(ensure_bin)

workdir
# On a failure, the end of every server's log first: their own words on what went wrong.
cleanup() {
    local rc=$? log
    if [ "$rc" != 0 ]; then
        for log in "$WORK"/*.log; do
            [ -f "$log" ] && { echo "--- $log" >&2; tail -15 "$log" >&2; }
        done
    fi
    # What is still up (a failure mid-phase), stopped as the phases stop theirs: a server
    # that ignores SIGTERM must not outlive the run.
    if [ "$BASHPID" = "$WORK_OWNER" ] && [ ${#PIDS[@]} -gt 0 ]; then stop_all "${PIDS[@]}"; fi
    cleanup_workdir
}
trap cleanup EXIT

# --- the models ----------------------------------------------------------------------------
# The fitted Iris models in their own formats, beside the ONNX export of the same fit (into
# WORK: the work tree is left alone). The exports are those committed in tests/fixtures/onnx/
# unless the pins changed since.
step "the Iris models: fitted, exported, saved natively (export-onnx.py --native)"
target/pyonnx/bin/python scripts/models/export-onnx.py --out "$WORK/onnx" --native "$WORK/native" >/dev/null
for m in "${TABULAR[@]}"; do
    cmp -s "$WORK/onnx/$m/model.onnx" "tests/fixtures/onnx/$m/model.onnx" ||
        echo "note: $m's export differs from tests/fixtures/onnx/$m (other pins?); both servers get the new fit" >&2
done
# infergate: a repository per phase, <model>/1/model.onnx.
for m in "${TABULAR[@]}"; do
    mkdir -p "$WORK/ig-tabular/$m/1"
    cp "$WORK/native/$m/model.onnx" "$WORK/ig-tabular/$m/1/"
done
mkdir -p "$WORK/ig-image/resnet18"
cp -r "$RESNET" "$WORK/ig-image/resnet18/1"
# MLServer: a model repository, one directory per model with its model-settings.json.
mls_repo() { # DIR CACHE(true|false): MLServer's settings.json and the two models in DIR
    local dir=$1 cache=$2
    mkdir -p "$dir"
    cat >"$dir/settings.json" <<JSON
{"host": "127.0.0.1", "http_port": $(free_port), "grpc_port": $(free_port),
 "metrics_port": $(free_port), "cache_enabled": $cache}
JSON
    mkdir -p "$dir/sklearn-iris-logreg" "$dir/xgboost-iris"
    cp "$WORK/native/sklearn-iris-logreg/model.joblib" "$dir/sklearn-iris-logreg/"
    cp "$WORK/native/xgboost-iris/model.json" "$dir/xgboost-iris/"
    cat >"$dir/sklearn-iris-logreg/model-settings.json" <<JSON
{"name": "sklearn-iris-logreg", "implementation": "mlserver_sklearn.SKLearnModel",
 "parameters": {"uri": "./model.joblib"}, "cache_enabled": $cache}
JSON
    cat >"$dir/xgboost-iris/model-settings.json" <<JSON
{"name": "xgboost-iris", "implementation": "mlserver_xgboost.XGBoostModel",
 "parameters": {"uri": "./model.json"}, "cache_enabled": $cache}
JSON
}

# --- servers -------------------------------------------------------------------------------
READY_MS=0
CHECKED_DELTA=""
declare -A LOG_OF=() # server: its log
ready_ms_since() { READY_MS=$((($(date +%s%N) - $1) / 1000000)); }
start_infergate() { # NAME REPOSITORY [VAR=VALUE...]: starts it, sets IG_PID and IG (its URL), READY_MS
    local port start
    port=$(free_port)
    start=$(date +%s%N)
    env INFERGATE_REPOSITORY__PATH="$2" "${@:3}" \
        "$BIN" --config-dir "$WORK/none" --listen "127.0.0.1:$port" --log-format json \
        >"$WORK/$1.log" 2>&1 &
    IG_PID=$!
    LOG_OF[infergate]=$WORK/$1.log
    PIDS+=("$IG_PID")
    IG="https://127.0.0.1:$port"
    wait_for "$IG/ready" 60
    ready_ms_since "$start"
}
start_mlserver() { # NAME DIR: sets MLS_PID and MLS, READY_MS
    local start
    start=$(date +%s%N)
    target/pypeers-mlserver/bin/mlserver start "$2" >"$WORK/$1.log" 2>&1 &
    MLS_PID=$!
    LOG_OF[MLServer]=$WORK/$1.log
    PIDS+=("$MLS_PID")
    MLS="http://127.0.0.1:$("$MLS_PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["http_port"])' "$2/settings.json")"
    wait_for "$MLS/v2/health/ready" 120
    local m
    for m in "${TABULAR[@]}"; do wait_for "$MLS/v2/models/$m/ready" 60; done
    ready_ms_since "$start"
}
start_bentoml() { # sets BENTO_PID and BENTO, READY_MS
    local port start
    port=$(free_port)
    start=$(date +%s%N)
    env BENTOML_HOME="$WORK/bentoml" BENTOML_DO_NOT_TRACK=true \
        BENCH_RESNET_DIR="$PWD/$RESNET" \
        target/pypeers-bentoml/bin/bentoml serve bento_resnet:ResNet18 \
        --working-dir scripts/bench/peers --host 127.0.0.1 --port "$port" \
        >"$WORK/bentoml.log" 2>&1 &
    BENTO_PID=$!
    LOG_OF[BentoML]=$WORK/bentoml.log
    PIDS+=("$BENTO_PID")
    BENTO="http://127.0.0.1:$port"
    wait_for "$BENTO/readyz" 120
    ready_ms_since "$start"
}

# stop_all PID...: SIGTERM to each, up to 15 s for them to go, then SIGKILL to what is left
# and its children (MLServer 1.7.1 may hang in its shutdown after a load: "Waiting for
# background tasks to complete"), then stop (common.sh) to reap them and drop them from PIDS.
stop_all() {
    local pid i
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 150; i++)); do
        alive "$@" || break
        sleep 0.1
    done
    for pid in "$@"; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "  (pid $pid still up 15 s after SIGTERM: SIGKILL)" >&2
            for i in $(pgrep -P "$pid"); do kill -KILL "$i" 2>/dev/null || true; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    stop "$@"
}

# --- the requests (wrk Lua scripts) --------------------------------------------------------
# An OIP request for a [1, 4] FP32 `features`: HEAD, the four numbers, then TAIL (infergate)
# or MLS_TAIL, which adds MLServer's name for the probabilities (`predict_proba`; unasked, its
# runtimes answer `predict`, the class; infergate answers `probabilities` unasked).
HEAD='{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":'
IRIS='[5.1,3.5,1.4,0.2]'
TAIL='}]}'
MLS_TAIL='}],"outputs":[{"name":"predict_proba"}]}'
# tabular_lua FILE fresh|same TAIL: fresh: random features every request, with
# Cache-Control: no-cache (which the peers ignore); same: one body, the Iris row above.
tabular_lua() {
    local nocache=''
    [ "$2" = fresh ] && nocache='wrk.headers["cache-control"] = "no-cache"'
    cat >"$1" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
$nocache
local head = '$HEAD'
local tail = '$3'
wrk.body = head .. '$IRIS' .. tail
LUA
    [ "$2" = fresh ] && cat >>"$1" <<'LUA'
local n = 0
function setup(thread) n = n + 1; thread:set("id", n) end
function init() math.randomseed(os.time() * 1000 + id) end
function request()
    local f = string.format('[%.6f,%.6f,%.6f,%.6f]', 4 + 4 * math.random(),
        2 + 2 * math.random(), 1 + 6 * math.random(), 2 * math.random())
    return wrk.format(nil, nil, nil, head .. f .. tail)
end
LUA
    return 0
}
# A multipart upload as curl -F file=@bike.jpg sends it: infergate's /predict and the
# BentoML service both take the field `file`.
{
    printf -- '--XB\r\nContent-Disposition: form-data; name="file"; filename="bike.jpg"\r\n'
    printf 'Content-Type: image/jpeg\r\n\r\n'
    cat "$IMAGE"
    printf '\r\n--XB--\r\n'
} >"$WORK/upload.bin"
MULTIPART='multipart/form-data; boundary=XB'
cat >"$WORK/upload.lua" <<LUA
local f = io.open("$WORK/upload.bin", "rb")
wrk.method = "POST"
wrk.headers["content-type"] = "$MULTIPART"
wrk.body = f:read("*a")
f:close()
LUA
# Every upload new bytes: random bytes after the JPEG's end-of-image marker, which decoders
# ignore, so the picture (and its answer) stays the same while the bytes, infergate's cache
# and coalescing key, do not; and Cache-Control: no-cache.
cat >"$WORK/upload-fresh.lua" <<LUA
local f = io.open("$IMAGE", "rb")
local jpeg = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["content-type"] = "$MULTIPART"
wrk.headers["cache-control"] = "no-cache"
local head = '--XB\r\nContent-Disposition: form-data; name="file"; filename="bike.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
local n = 0
function setup(thread) n = n + 1; thread:set("id", n) end
function init() math.randomseed(os.time() * 1000 + id) end
function request()
    local tail = string.format("%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
    return wrk.format(nil, nil, nil, head .. jpeg .. tail .. '\r\n--XB--\r\n')
end
LUA

# --- timing --------------------------------------------------------------------------------
# wrk_run conns url lua: "req/s 2xx/s p50 p99 non2xx requests": all answers a second, the
# 2xx ones a second (what was served, not refused), wrk's percentiles (of all answers).
wrk_run() {
    local out
    out=$(wrk -t2 "-c$1" "-d${DURATION}s" --timeout 30s --latency -s "$3" "$2")
    awk '/Requests\/sec/ {r=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2} /Non-2xx/ {e=$5}
         /Socket errors/ {s=1}
         / requests in / {n=$1}
         END {printf "%s %.2f %s %s %d%s %d\n", r, (n > 0 ? r * (n - e) / n : 0), p50, p99, e,
                     (s ? "+socket-errors" : ""), n}' <<<"$out"
}
ROWS=()
measure() { # model server mode conns url lua
    local r
    r=$(wrk_run "$4" "$5" "$6")
    ROWS+=("$1|$2|$3|$4|$r")
    echo "  $1, $2, $3: $r (req/s 2xx/s p50 p99 non-2xx requests)" >&2
    local err
    read -r _ _ _ _ err _ <<<"$r"
    if [ "$err" != 0 ]; then
        echo "WARNING: $2 answered $err of them with a non-2xx status; the end of its log:" >&2
        tail -3 "${LOG_OF[$2]}" >&2
    fi
}
# metric_sum NAME [MATCH]: the sum of infergate's /metrics samples of NAME (those whose
# labels contain MATCH).
metric_sum() {
    curl -ks "$IG/metrics" | awk -v n="$1" -v m="${2:-}" \
        'index($1, n) == 1 && (substr($1, length(n) + 1, 1) ~ /^[{]?$/) && index($1, m) {s += $NF}
         END {printf "%d", s}'
}
# uncached_run model conns url lua [answers]: measure (answers: "uncached"), and what
# infergate's /metrics saw meanwhile: the requests that bypassed the cache, those coalesced
# onto another's computation, those shed (503 overloaded), the rows its model ran and in how
# many forward passes (distinct requests together are one batch).
UNCACHED=()
uncached_run() {
    local before after mode=${5:-uncached}
    before=$(uncached_counts "$1")
    measure "$1" infergate "$mode" "$2" "$3" "$4"
    after=$(uncached_counts "$1")
    local -a b a
    read -ra b <<<"$before"
    read -ra a <<<"$after"
    local requests
    requests=$(IFS='|' read -r _ _ _ _ r <<<"${ROWS[-1]}" && read -r _ _ _ _ _ n <<<"$r" && echo "$n")
    UNCACHED+=("$1 $mode: $requests requests completed, $((a[0] - b[0])) bypassed the cache, $((a[1] - b[1])) coalesced, $((a[4] - b[4])) shed, $((a[2] - b[2])) rows in $((a[3] - b[3])) forward passes")
}
uncached_counts() { # model: "bypassed coalesced rows forwards shed" so far
    echo "$(metric_sum infergate_cache_requests_total 'result="bypass"')" \
        "$(metric_sum infergate_coalesced_total)" \
        "$(metric_sum infergate_batch_size_sum "model=\"$1\"")" \
        "$(metric_sum infergate_model_forwards_total "model=\"$1\"")" \
        "$(metric_sum infergate_shed_total "model=\"$1\"")"
}
MEM=()
remember_rss() { # label pid idle-kib ready-ms
    MEM+=("$1|$(($3 / 1024))|$(($(tree_rss_kib "$2") / 1024))|$4")
}

# --- phase 1: the Iris models, infergate and MLServer --------------------------------------
step "phase 1: the Iris models, infergate (tract) and MLServer $("$MLS_PY" -c 'import mlserver; print(mlserver.__version__)')"
start_infergate infergate-tabular "$WORK/ig-tabular"
ig_ready=$READY_MS
mls_repo "$WORK/mlserver" false
start_mlserver mlserver "$WORK/mlserver"
mls_ready=$READY_MS
answers_200() { # url body: exits unless url answers the body 200
    local code
    code=$(curl -ks -o "$WORK/answer.json" -w '%{http_code}' -H 'content-type: application/json' \
        -d "$2" "$1")
    [ "$code" = 200 ] || { echo "FAIL: $1 answered $code: $(head -c 300 "$WORK/answer.json")" >&2; exit 1; }
}
for m in "${TABULAR[@]}"; do
    answers_200 "$IG/v2/models/$m/infer" "$HEAD$IRIS$TAIL"
    answers_200 "$MLS/v2/models/$m/infer" "$HEAD$IRIS$MLS_TAIL"
    checked=$(python3 scripts/bench/peers/check_oip.py "$m" "$WORK/onnx/$m/inputs.json" \
        "$IG/v2/models/$m/infer" "$MLS/v2/models/$m/infer")
    echo "$checked" >&2
    CHECKED_DELTA+="${CHECKED_DELTA:+, }${checked##* } ($m)"
done
sleep 1
ig_idle=$(tree_rss_kib "$IG_PID")
mls_idle=$(tree_rss_kib "$MLS_PID")
tabular_lua "$WORK/ig-fresh.lua" fresh "$TAIL"
tabular_lua "$WORK/ig-same.lua" same "$TAIL"
tabular_lua "$WORK/mls-fresh.lua" fresh "$MLS_TAIL"
tabular_lua "$WORK/mls-same.lua" same "$MLS_TAIL"
for m in "${TABULAR[@]}"; do
    uncached_run "$m" "$CONNS" "$IG/v2/models/$m/infer" "$WORK/ig-fresh.lua"
    measure "$m" infergate cached "$CONNS" "$IG/v2/models/$m/infer" "$WORK/ig-same.lua"
done
for m in "${TABULAR[@]}"; do
    measure "$m" MLServer "no cache" "$CONNS" "$MLS/v2/models/$m/infer" "$WORK/mls-fresh.lua"
done
remember_rss "infergate: the two Iris models (and its two bundled ones)" "$IG_PID" "$ig_idle" "$ig_ready"
remember_rss "MLServer: the two Iris models (1 inference worker, its default)" "$MLS_PID" "$mls_idle" "$mls_ready"
stop_all "$MLS_PID" "$IG_PID"
if [ "$MLSERVER_CACHE" = 1 ]; then
    step "phase 1b: MLServer with its response cache on (cache_enabled, server and models)"
    mls_repo "$WORK/mlserver-cache" true
    start_mlserver mlserver-cache "$WORK/mlserver-cache"
    mls_ready=$READY_MS
    sleep 1
    mls_idle=$(tree_rss_kib "$MLS_PID")
    for m in "${TABULAR[@]}"; do
        measure "$m" MLServer "its cache on, cached" "$CONNS" "$MLS/v2/models/$m/infer" "$WORK/mls-same.lua"
    done
    remember_rss "MLServer, its cache on: the two Iris models" "$MLS_PID" "$mls_idle" "$mls_ready"
    stop_all "$MLS_PID"
fi

# --- phase 2: ResNet-18, infergate and BentoML ---------------------------------------------
step "phase 2: ResNet-18 (ONNX), infergate (tract) and BentoML $("$BENTO_PY" -c 'import bentoml; print(bentoml.__version__)') + ONNX Runtime"
start_infergate infergate-image "$WORK/ig-image"
ig_ready=$READY_MS
start_bentoml
bento_ready=$READY_MS
top_class() { # url: the top class id and label of the bike photo, "id label"
    local code
    code=$(curl -ks -o "$WORK/answer.json" -w '%{http_code}' -F "file=@$IMAGE" "$1")
    [ "$code" = 200 ] || { echo "FAIL: $1 answered $code: $(head -c 300 "$WORK/answer.json")" >&2; exit 1; }
    python3 -c 'import json, sys; p = json.load(open(sys.argv[1]))["predictions"][0]; print(p["class_id"], p["label"])' "$WORK/answer.json"
}
ig_top=$(top_class "$IG/predict?model=resnet18")
bento_top=$(top_class "$BENTO/predict")
if [ "${ig_top%% *}" != "${bento_top%% *}" ]; then
    echo "FAIL: the bike photo's top class differs: infergate $ig_top, BentoML $bento_top" >&2
    exit 1
fi
echo "==> the bike photo's top class is ${ig_top} on both" >&2
sleep 1
ig_idle=$(tree_rss_kib "$IG_PID")
bento_idle=$(tree_rss_kib "$BENTO_PID")
uncached_run resnet18 "$IMAGE_CONNS" "$IG/predict?model=resnet18" "$WORK/upload-fresh.lua"
measure resnet18 infergate cached "$IMAGE_CONNS" "$IG/predict?model=resnet18" "$WORK/upload.lua"
measure resnet18 BentoML "no cache" "$IMAGE_CONNS" "$BENTO/predict" "$WORK/upload-fresh.lua"
remember_rss "infergate: ResNet-18 (and its two bundled models)" "$IG_PID" "$ig_idle" "$ig_ready"
remember_rss "BentoML: ResNet-18 (1 worker, its default)" "$BENTO_PID" "$bento_idle" "$bento_ready"
stop_all "$BENTO_PID" "$IG_PID"
# infergate's adaptive admission sheds model work that would queue (503 overloaded, with a
# Retry-After, which wrk does not honour: it asks again at once, and 2xx/s is what was
# served). Once more with it off, so infergate queues as the peers do.
start_infergate infergate-image-queued "$WORK/ig-image" INFERGATE_ADMISSION__ADAPTIVE=false
uncached_run resnet18 "$IMAGE_CONNS" "$IG/predict?model=resnet18" "$WORK/upload-fresh.lua" \
    "uncached, adaptive admission off"
stop_all "$IG_PID"
# ONNX Runtime's default uses every core for one forward pass; infergate's runs one
# compute thread a pass (compute.intra_op_threads = 1). Once more with as many as ORT
# (admission off, as the row above: what the forward pass's threads buy).
start_infergate infergate-image-intra "$WORK/ig-image" INFERGATE_ADMISSION__ADAPTIVE=false \
    INFERGATE_COMPUTE__INTRA_OP_THREADS="$(nproc)"
uncached_run resnet18 "$IMAGE_CONNS" "$IG/predict?model=resnet18" "$WORK/upload-fresh.lua" \
    "uncached, admission off, compute.intra_op_threads = $(nproc)"
stop_all "$IG_PID"

# --- the table -----------------------------------------------------------------------------
versions=$("$MLS_PY" -c 'import mlserver, sklearn, xgboost; print(f"MLServer {mlserver.__version__} (scikit-learn {sklearn.__version__}, XGBoost {xgboost.__version__})")')
versions+=", $("$BENTO_PY" -c 'import bentoml, onnxruntime; print(f"BentoML {bentoml.__version__} (ONNX Runtime {onnxruntime.__version__}, CPU)")')"
results="$OUT/bench-vs-peers-$(date +%Y%m%d-%H%M%S).md"
{
    echo "# scripts/bench/vs-peers.sh, $(date -u +%FT%TZ)"
    echo
    echo "- machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1)," \
        "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
    echo "- infergate $(git rev-parse --short HEAD 2>/dev/null || echo '?') (its defaults: an empty --config-dir; one row with its adaptive admission off), **HTTPS** (TLS, self-signed dev cert); the peers **plain HTTP**: $versions, each on its defaults"
    echo "- load: wrk -t2 -d${DURATION}s --timeout 30s --latency, HTTP/1.1 keep-alive; Iris -c$CONNS, ResNet-18 -c$IMAGE_CONNS; load generator and servers share the cores"
    echo "- Iris: POST /v2/models/<model>/infer (OIP REST), a [1, 4] FP32 input \`features\` on both; MLServer is asked for \`outputs: predict_proba\` (its runtimes' name for the probabilities; unasked they answer \`predict\`, the class), infergate answers \`probabilities\` unasked. MLServer runs the fitted scikit-learn / XGBoost models (joblib, XGBoost JSON), infergate their ONNX exports (tract). Checked first on 30 rows each (export-onnx.py's inputs.json): the same top class, probabilities within $CHECKED_DELTA"
    echo "- ResNet-18: torchvision's architecture, seeded weights (no pretrained download here), its ONNX export, for both; POST a multipart upload (field \`file\`) of $IMAGE ($(stat -c %s "$IMAGE") bytes): infergate /predict?model=resnet18, BentoML /predict (Pillow + numpy preprocessing, ONNX Runtime); top class ${ig_top} on both"
    echo "- uncached: infergate gets every request a new input (random features; random bytes after the JPEG's end) with \`Cache-Control: no-cache\`; cached: one identical body, an L1 hit. The peers keep no answers by default, so they run once, on the changing inputs (\"no cache\"); MLServer's opt-in response cache (\`cache_enabled\`) has its own rows where measured"
    echo "- infergate's /metrics over each uncached run (wrk counts the requests completed, not those still in flight at its end): $(printf '%s; ' "${UNCACHED[@]}" | sed 's/; $//')"
    echo
    echo "req/s: all answers; 2xx/s: the answers served (a 503 shed is an answer too); p50/p99: wrk's, of all answers; infergate ÷ peer: of 2xx/s, against the peer's one run."
    echo
    echo "| model | server | answers | conns | req/s | 2xx/s | p50 | p99 | non-2xx | infergate ÷ peer |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
    declare -A peer_ok=()
    for row in "${ROWS[@]}"; do
        IFS='|' read -r model server mode conns r <<<"$row"
        read -r _ ok _ <<<"$r"
        [ "$server" != infergate ] && [ "$mode" = "no cache" ] && peer_ok[$model]=$ok
    done
    for row in "${ROWS[@]}"; do
        IFS='|' read -r model server mode conns r <<<"$row"
        read -r rps ok p50 p99 err _ <<<"$r"
        ratio=""
        if [ "$server" = infergate ] && [ -n "${peer_ok[$model]:-}" ]; then
            ratio=$(awk "BEGIN {printf \"**%.1f×**\", $ok / (${peer_ok[$model]} > 0 ? ${peer_ok[$model]} : 1)}")
        fi
        echo "| $model | $server | $mode | $conns | $rps | $ok | $p50 | $p99 | $err | $ratio |"
    done
    echo
    echo "| server (process tree) | start to ready | RSS idle | RSS after the runs |"
    echo "|---|---:|---:|---:|"
    for row in "${MEM[@]}"; do
        IFS='|' read -r label idle loaded ms <<<"$row"
        echo "| $label | $ms ms | $idle MiB | $loaded MiB |"
    done
} | tee "$results"
echo
echo "results written to $results"
