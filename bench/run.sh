#!/usr/bin/env bash
# Side-by-side benchmark: hookcast and nginx+nchan on the same cores, same run.
#
#   bench/run.sh                 # all scenarios, 3 runs each, writes BENCHMARKS.md tables
#   bench/run.sh --runs 5        # more runs (the median is reported)
#   bench/run.sh --only S2,S2L   # some scenarios (the report keeps the others' last results)
#                                # P is the reverse-proxy comparison (bench/proxy.sh)
# Scale-out with Redis has its own script, bench/redis.sh (bench/results/redis.md);
# the report includes its last results.
#   bench/run.sh --quick         # small counts, one run: checks the script, measures nothing
#   bench/run.sh --floor         # also runs bench-floor-server (one write per delivery and
#                                # nothing else) in S2, S2L, S3 and S4: what the load tool
#                                # measures at the system calls' own cost
#
# Each server runs pinned to CPU 0 and the load tool to CPU 1. Every run of every
# scenario starts the server fresh (RSS figures need a clean heap) and alternates
# which server goes first. Raw results land in bench/results/latest/; the tables in
# BENCHMARKS.md are rewritten from them by bench/report.py.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=3
ONLY="S1,S2,S2L,S3,S4,P"
QUICK=0
FLOOR=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --quick) QUICK=1; RUNS=1; shift ;;
        --floor) FLOOR=1; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

log() { printf '[run.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- tools ---------------------------------------------------------------------------
need_apt=()
command -v nginx >/dev/null || need_apt+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_nchan_module.so ] || need_apt+=(libnginx-mod-nchan)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v taskset >/dev/null || need_apt+=(util-linux)
command -v python3 >/dev/null || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "run.sh: needs 2 CPUs (server on CPU 0, load tool on CPU 1)" >&2
    exit 1
fi

log "building (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p hookcast -p hookcast-load
HOOKCAST=$ROOT/target/release/hookcast
LOAD=$ROOT/target/release/hookcast-load
FLOOR_SERVER=$ROOT/target/release/bench-floor-server

# A quick run checks the script only: it never touches the published results.
if [ "$QUICK" = 1 ]; then OUT=$ROOT/bench/results/quick; REPORT=$OUT/BENCHMARKS.md
else OUT=$ROOT/bench/results/latest; REPORT=$ROOT/BENCHMARKS.md; fi
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/hookcast-bench.XXXXXX)
SERVER_PID=
cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT

HOOKCAST_PORT=18080
NCHAN_PORT=18081
FLOOR_PORT=18082
# nginx workers. The server gets one CPU, so one worker is nchan at its best: with two
# on one CPU, a publish reaching a worker that does not own the channel crosses to the
# other worker over nchan's IPC, and the two workers take turns on the CPU (S3 left
# the server CPU a third idle, latency-bound). Set NCHAN_WORKERS=2 to compare.
NCHAN_WORKERS=${NCHAN_WORKERS:-1}

# --- servers -------------------------------------------------------------------------
# Equivalent settings: 1,000 events kept per channel, a 15 s keep-alive comment,
# webhook body = event data, no access log on either.
cat >"$WORK/hookcast.yaml" <<EOF
listen: "127.0.0.1:$HOOKCAST_PORT"
sse:
  path: /sub
  heartbeat: 15s
  history: 1000
  max_subscribers: 1000000
log:
  level: warn
routes:
  - name: pub
    match: { path: "/pub/{topic}" }
    publish: { topic: "{path:topic}" }
EOF

mkdir -p "$WORK/nginx/logs"
cat >"$WORK/nginx/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_nchan_module.so;
user root;
worker_processes $NCHAN_WORKERS;
worker_rlimit_nofile 20000;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 19900; multi_accept on; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    nchan_message_buffer_length 1000;
    # S3 keeps its 200,000 messages (a few hundred bytes each in shared memory) for
    # the hour: the 128 MiB default would be too close.
    nchan_shared_memory_size 512M;
    nchan_message_timeout 1h;
    server {
        listen 127.0.0.1:$NCHAN_PORT backlog=4096;
        location ~ ^/sub/(\w+)$ {
            nchan_subscriber eventsource;
            nchan_channel_id \$1;
            nchan_eventsource_ping_interval 15;
        }
        location ~ ^/pub/(\w+)$ {
            nchan_publisher;
            nchan_channel_id \$1;
        }
    }
}
EOF

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "run.sh: nothing listens on port $1" >&2
    return 1
}

start_server() {
    case "$1" in
        hookcast)
            taskset -c 0 "$HOOKCAST" --config "$WORK/hookcast.yaml" 2>>"$WORK/hookcast.log" &
            SERVER_PID=$!
            wait_port $HOOKCAST_PORT ;;
        nchan)
            taskset -c 0 nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
            SERVER_PID=$!
            wait_port $NCHAN_PORT ;;
        floor)
            taskset -c 0 "$FLOOR_SERVER" $FLOOR_PORT 2>>"$WORK/floor.log" &
            SERVER_PID=$!
            wait_port $FLOOR_PORT ;;
    esac
    sleep 0.3
}

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
    # Sockets of the last run linger in TIME_WAIT; give the kernel a moment.
    sleep 1
}

sub_url() {
    case "$1" in
        hookcast) echo "http://127.0.0.1:$HOOKCAST_PORT/sub?topic={topic}" ;;
        nchan) echo "http://127.0.0.1:$NCHAN_PORT/sub/{topic}" ;;
        floor) echo "http://127.0.0.1:$FLOOR_PORT/sub/{topic}" ;;
    esac
}
pub_url() {
    case "$1" in
        hookcast) echo "http://127.0.0.1:$HOOKCAST_PORT/pub/{topic}" ;;
        nchan) echo "http://127.0.0.1:$NCHAN_PORT/pub/{topic}" ;;
        floor) echo "http://127.0.0.1:$FLOOR_PORT/pub/{topic}" ;;
    esac
}

# load SERVER NAME ARGS...: one hookcast-load run against a fresh server.
load() {
    local server=$1 name=$2
    shift 2
    start_server "$server"
    log "$name $server"
    taskset -c 1 "$LOAD" --quiet --topic-template 'bench{i}' \
        --sub-url "$(sub_url "$server")" --server-pid "$SERVER_PID" "$@" \
        >"$OUT/$name-$server.json" 2>>"$WORK/load.log" || {
        log "hookcast-load failed; see below"
        tail -20 "$WORK/load.log" >&2
    }
    stop_server
}

# User+system CPU ticks of the server and its children (nginx's worker) so far.
server_ticks() {
    local total=0 p stat
    for p in $SERVER_PID $(pgrep -P "$SERVER_PID"); do
        stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        # Fields after the command name's closing parenthesis: utime is the 12th, stime the 13th.
        set -- ${stat##*) }
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

wrk_run() {
    local server=$1 name=$2
    start_server "$server"
    log "$name $server"
    cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"seq":1,"ts_ns":0,"topic":"bench0","text":"a webhook of ordinary size"}'
wrk.headers["Content-Type"] = "application/json"
EOF
    local url before
    url=$(pub_url "$server")
    before=$(server_ticks)
    # wrk's own CPU goes in the report: near 1 core, wrk and not the server is the limit.
    local TIMEFORMAT='wrk cpu: %U user %S sys %R real'
    { time taskset -c 1 wrk -t1 -c64 -d"$WRK_DURATION" --latency -s "$WORK/post.lua" \
        "${url/\{topic\}/bench0}" >"$OUT/$name-$server.txt"; } 2>>"$OUT/$name-$server.txt"
    # The server's own CPU over the run: per request, a figure no load tool's limit moves.
    echo "server cpu ticks: $(($(server_ticks) - before)) of $(getconf CLK_TCK)/s" >>"$OUT/$name-$server.txt"
    stop_server
}

if [ "$QUICK" = 1 ]; then
    S1_SIZES="200 1000"; S2_SUBS=500; S3_TOPICS=50; S3_EVENTS=1000; WRK_DURATION=2s
else
    # S3: 200,000 webhooks, several seconds at either server's rate, so start-up
    # (connections, first allocations) does not weigh in the rate or the p99.
    S1_SIZES="1000 10000 19000 19500"; S2_SUBS=10000; S3_TOPICS=1000; S3_EVENTS=200000; WRK_DURATION=10s
fi

scenario() {
    local s=$1 server=$2 run=$3
    case "$s" in
        S1)
            for n in $S1_SIZES; do
                local procs=1
                [ "$n" -gt 10000 ] && procs=2
                # Idle figures are sampled before any event; the 50 events after
                # that measure how publish cost grows with the subscriber count.
                load "$server" "S1-$n-r$run" --subscribers "$n" --procs "$procs" --settle 2s \
                    --events 50 --rate 10 --pub-url "$(pub_url "$server")" --drain 10s
            done ;;
        # Paced publishers send on schedule whether or not the previous webhook
        # was answered: nchan answers a publish only after its fan-out, so with one
        # publisher connection each slow answer delayed the next event and the rate
        # offered fell to 6-10/s instead of 20/s.
        S2)
            load "$server" "S2-r$run" --subscribers "$S2_SUBS" --events 100 --rate 20 \
                --pub-concurrency 4 --pub-url "$(pub_url "$server")" --drain 10s ;;
        S2L)
            load "$server" "S2L-r$run" --subscribers "$S2_SUBS" --events 50 --rate 5 \
                --pub-concurrency 4 --pub-url "$(pub_url "$server")" --drain 10s ;;
        S3)
            load "$server" "S3-r$run" --subscribers "$S3_TOPICS" --topics "$S3_TOPICS" \
                --events "$S3_EVENTS" --rate max --pub-concurrency 64 \
                --pub-url "$(pub_url "$server")" --drain 10s ;;
        S4)
            wrk_run "$server" "S4-r$run" ;;
    esac
}

for s in ${ONLY//,/ }; do rm -f "$OUT/$s-"*; done
if [[ ",$ONLY," == *,P,* ]]; then
    # Its own script: it runs its targets in turn, RUNS times each.
    log "P: reverse proxy (bench/proxy.sh)"
    PROXY_OUT="$OUT/proxy.md" RUNS=$RUNS DURATION=${WRK_DURATION%s} bash "$ROOT/bench/proxy.sh" >&2
    ONLY=${ONLY//P/}
fi
for run in $(seq 1 "$RUNS"); do
    # Alternate which server goes first, so neither always meets a warmer machine.
    if [ $((run % 2)) = 1 ]; then order="hookcast nchan"; else order="nchan hookcast"; fi
    for s in ${ONLY//,/ }; do
        servers=$order
        # The floor server has no idle-memory story to tell (S1).
        [ "$FLOOR" = 1 ] && [ "$s" != S1 ] && servers="$servers floor"
        for server in $servers; do
            scenario "$s" "$server" "$run"
        done
    done
done

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "runs: $RUNS"
    echo "quick: $QUICK"
    echo "hookcast: $("$HOOKCAST" --version) ($(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo '+changes'))"
    echo "nginx: $(nginx -v 2>&1 | sed 's/.*nginx\///')"
    echo "nchan workers: $NCHAN_WORKERS"
    echo "nchan: $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null)"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "cpus: $(nproc)"
    echo "memory: $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "nofile: $(ulimit -Hn)"
} >"$OUT/machine.txt"

python3 "$ROOT/bench/report.py" "$OUT" "$REPORT"
log "done: $REPORT rewritten from $OUT"
