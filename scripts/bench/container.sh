#!/usr/bin/env bash
# The gateway image: its size, the time from `docker run` to the first answered
# prediction (container start, model load, TLS, the answer), and the container's memory
# idle and after a short load. Embedded defaults: no Redis, no PostgreSQL.
#
#   scripts/bench/container.sh [IMAGE]      (default infergate:dev; RUNS=5)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
image=${1:-infergate:dev}
runs=${RUNS:-5}
body='{"features":[5.1,3.5,1.4,0.2]}'
echo "image $image: $(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec)"
times=()
for _ in $(seq "$runs"); do
    port=$(free_port)
    start=$(date +%s%N)
    id=$(docker run -d --read-only --cap-drop ALL -p "127.0.0.1:$port:8443" "$image" serve)
    until curl -ksf -o /dev/null -H 'content-type: application/json' -d "$body" \
        "https://127.0.0.1:$port/predict"; do sleep 0.01; done
    times+=($((($(date +%s%N) - start) / 1000000)))
    last=$id
    [ "${#times[@]}" = "$runs" ] || docker rm -f "$id" >/dev/null
done
printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "docker run -> first prediction, %d runs: min %d ms, median %d ms, max %d ms\n", NR, a[1], a[int((NR + 1) / 2)], a[NR] }'
mem() { docker stats --no-stream --format '{{.MemUsage}}' "$last" | awk '{ print $1 }'; }
echo "memory idle: $(mem)"
for i in $(seq 200); do
    curl -ks -o /dev/null -H 'content-type: application/json' \
        -d "{\"features\":[5.$((i % 10)),3.$((i % 7)),1.4,0.2]}" "https://127.0.0.1:$port/predict"
done
curl -ks -o /dev/null -F file=@tests/fixtures/images/bike.jpg "https://127.0.0.1:$port/predict"
echo "memory after 200 tabular + 1 image prediction: $(mem)"
docker rm -f "$last" >/dev/null
