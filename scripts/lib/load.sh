# shellcheck shell=bash
# Load and the same-run reference, shared by scripts/bench.sh and scripts/bench/ (sourced
# after common.sh, with WORK made): wrk and h2load runs that print "req/s p50 p99", idle
# connections held open, and nginx `return 200` over TLS.

# wrk_run URL [LUA]: wrk -t2 -c$CONNS -d${DURATION}s; prints "req/s p50 p99"; errors the
# tool reports go to stderr.
wrk_run() {
    local args=(-t2 "-c$CONNS" "-d${DURATION}s" --latency)
    [ -n "${2:-}" ] && args+=(-s "$2")
    local out
    out=$(wrk "${args[@]}" "$1")
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
        echo "wrk saw errors on $1:" >&2
        grep -E 'Non-2xx|Socket errors' <<<"$out" >&2
    fi
    awk '/Requests\/sec/ {r=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2} END {print r, p50, p99}' <<<"$out"
}

# h2_run URL [CONTENT-TYPE BODY-FILE] [HEADER]: h2load -c$CONNS -m10 -t2 for DURATION s
# after a 1 s warm-up; prints "req/s p50 p99" (p50/p99 from its per-request log).
h2_run() {
    local args=(-c "$CONNS" -m 10 -t 2 -D "$DURATION" --warm-up-time 1 --log-file "$WORK/h2.log")
    [ -n "${2:-}" ] && args+=(-H "content-type: $2" -d "$3")
    [ -n "${4:-}" ] && args+=(-H "$4")
    local out
    out=$(h2load "${args[@]}" "$1")
    if ! grep -qE 'status codes: [0-9]+ 2xx, 0 3xx, 0 4xx, 0 5xx' <<<"$out"; then
        echo "h2load saw errors on $1:" >&2
        grep -E '^(requests|status codes):' <<<"$out" >&2
    fi
    # The log's third column: microseconds from request to the end of its answer.
    local pct
    pct=$(cut -f3 "$WORK/h2.log" | sort -n |
        awk '{a[NR] = $1} END {if (NR) printf "%.2fms %.2fms", a[int(NR * 0.5) + 1] / 1000, a[int(NR * 0.99) + 1] / 1000; else print "- -"}')
    rm -f "$WORK/h2.log"
    awk -v pct="$pct" '/^finished in/ {print $4, pct}' <<<"$out"
}

# wrk_post_lua NAME CONTENT-TYPE BODY-FILE [EXTRA-LUA-LINE]: writes $WORK/NAME.lua, a POST
# of that body for wrk.
wrk_post_lua() {
    cat >"$WORK/$1.lua" <<LUA
local f = io.open("$3", "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["content-type"] = "$2"
${4:-}
LUA
}

# hold PORT N PATH WAIT_S: N TLS connections to 127.0.0.1:PORT, each served `GET PATH` and
# then held idle (scripts/bench/hold-connections.py, in the background); waits up to WAIT_S
# for all to be open. Sets HOLD (its pid, for `stop`) and HELD (how many it holds); a
# client's failures go to stderr.
hold() {
    python3 scripts/bench/hold-connections.py 127.0.0.1 "$1" "$2" "$3" >"$WORK/hold.out" 2>&1 &
    HOLD=$!
    PIDS+=("$HOLD")
    for _ in $(seq 1 $(($4 * 10))); do grep -q '^held' "$WORK/hold.out" && break; sleep 0.1; done
    HELD=$(sed -n 's/^held //p' "$WORK/hold.out")
    HELD=${HELD:-0}
    if grep -q '^failed' "$WORK/hold.out"; then sed -n 's/^failed/  client: failed/p' "$WORK/hold.out" >&2; fi
}

# start_nginx WORKERS CONNECTIONS: nginx `return 200 'ok'` over TLS (HTTP/1.1 and h2, a
# P-256 certificate made once per WORK) on a free port, WORKERS worker processes with room
# for CONNECTIONS each; sets NG (its pid) and NPORT, and waits until it answers.
start_nginx() {
    NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
    NPORT=$(free_port)
    [ -f "$WORK/nginx-cert.pem" ] ||
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
            -subj /CN=localhost -keyout "$WORK/nginx-key.pem" -out "$WORK/nginx-cert.pem" 2>/dev/null
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx.conf" <<NGINX
worker_processes $1;
worker_rlimit_nofile $(($2 + 1000));
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
daemon off;
events { worker_connections $(($2 + 1000)); }
http {
    access_log off;
    client_body_temp_path $WORK/nginx;
    proxy_temp_path $WORK/nginx;
    fastcgi_temp_path $WORK/nginx;
    uwsgi_temp_path $WORK/nginx;
    scgi_temp_path $WORK/nginx;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
    server {
        # "listen … ssl http2" works on nginx 1.22 (Debian 12) and, deprecated, on newer.
        listen 127.0.0.1:$NPORT ssl http2;
        ssl_certificate $WORK/nginx-cert.pem;
        ssl_certificate_key $WORK/nginx-key.pem;
        location / { return 200 'ok'; }
    }
}
NGINX
    "$NGINX" -c "$WORK/nginx.conf" &
    NG=$!
    PIDS+=("$NG")
    wait_for "https://127.0.0.1:$NPORT/"
}

# nginx_version: "nginx/1.22.1", say.
nginx_version() { "${NGINX:-nginx}" -v 2>&1 | sed 's/^nginx version: //'; }
