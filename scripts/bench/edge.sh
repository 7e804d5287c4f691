#!/usr/bin/env bash
# The cost of the public edge's checks on the request path, alternated in one run
# (scripts/bench/io.sh): the gateway open, against the same gateway with an API key file
# and a per-key rate limit high enough never to refuse (every request hashes its key,
# looks it up and takes a token from its bucket). Every request presents the key; the open
# gateway ignores it.
#
#   scripts/bench/edge.sh                 # 6 rounds, io_uring
#   ROUNDS=10 IO=epoll scripts/bench/edge.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
BIN=$(ensure_bin)
export BIN
IO=${IO:-uring}
workdir
key=ig_bench0000000000000000000000000000000000000000000000000000000000
printf '%s\n' "$key" | "$BIN" hash-key --name bench --scopes predict,admin --key-stdin >"$WORK/api_keys"
limits="INFERGATE_RATE_LIMIT__PER_KEY_RPS=1000000+INFERGATE_RATE_LIMIT__PER_KEY_BURST=1000000"
HEADER="authorization: Bearer $key" \
    VARIANTS="open:$IO keys+limits:$IO:INFERGATE_AUTH__KEYS_PATH=$WORK/api_keys+$limits" \
    scripts/bench/io.sh
