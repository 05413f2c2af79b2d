#!/usr/bin/env bash
# S1 (idle subscribers) on a stream route beside `sse.path`: the same hookcast, the
# same subscriber count, once on /sub?topic=benchI and once on the stream route
# /feeds/benchI (topics: ["{path:room}"]), to show that a stream route costs the
# same memory per idle connection as /events (both are served by src/fast/).
#
#   bench/streams.sh                     # 10,000 subscribers, 3 runs each, alternating
#   SUBS=1000 RUNS=1 bench/streams.sh    # smaller
#
# Prints a Markdown table (RSS growth per connection, median of the runs); raw
# results go to bench/results/latest/streams-*.json. RSS only: no timing figure
# is claimed, the machine may be busy.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUBS=${SUBS:-10000}
RUNS=${RUNS:-3}
PORT=18090
OUT=$ROOT/bench/results/latest
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/hookcast-streams.XXXXXX)
SERVER_PID=

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p hookcast -p hookcast-load
HOOKCAST=$ROOT/target/release/hookcast
LOAD=$ROOT/target/release/hookcast-load

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap 'stop_server; rm -rf "$WORK"' EXIT

cat >"$WORK/hookcast.yaml" <<EOF
listen: "127.0.0.1:$PORT"
sse:
  path: /sub
  heartbeat: 15s
  max_subscribers: 1000000
log:
  level: warn
routes:
  - name: pub
    match: { path: "/pub/{topic}" }
    publish: { topic: "{path:topic}" }
streams:
  - name: feeds
    path: "/feeds/{room}"
    topics: ["{path:room}"]
EOF

run() {
    local name=$1 url=$2
    taskset -c 0 "$HOOKCAST" --config "$WORK/hookcast.yaml" 2>>"$WORK/hookcast.log" &
    SERVER_PID=$!
    for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done
    sleep 0.3
    local procs=1
    [ "$SUBS" -gt 10000 ] && procs=2
    taskset -c 1 "$LOAD" --quiet --topic-template 'bench{i}' --sub-url "$url" \
        --server-pid "$SERVER_PID" --subscribers "$SUBS" --procs "$procs" --settle 2s \
        >"$OUT/streams-$name.json"
    stop_server
    sleep 1
}

for r in $(seq 1 "$RUNS"); do
    # Alternate which goes first, so a warmer machine does not favour one.
    if [ $((r % 2)) = 1 ]; then order="events route"; else order="route events"; fi
    for which in $order; do
        case $which in
            events) run "events-r$r" "http://127.0.0.1:$PORT/sub?topic={topic}" ;;
            route) run "route-r$r" "http://127.0.0.1:$PORT/feeds/{topic}" ;;
        esac
    done
done

python3 - "$OUT" "$SUBS" "$RUNS" <<'EOF'
import json, statistics, sys
out, subs, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def runs_of(name):
    return [json.load(open(f"{out}/streams-{name}-r{r}.json")) for r in range(1, runs + 1)]

print("| path | subscribers held | RSS per idle connection (median) | min – max |")
print("|---|---|---|---|")
for label, name in [("`/sub?topic=benchI` (sse.path)", "events"), ("`/feeds/benchI` (stream route)", "route")]:
    rs = runs_of(name)
    kib = [r["server"]["rss_per_connection_bytes"] / 1024 for r in rs]
    held = min(r["subscribers"]["connected"] for r in rs)
    print(f"| {label} | {held:,} / {subs:,} | {statistics.median(kib):.2f} KiB | {min(kib):.2f} – {max(kib):.2f} KiB |")
EOF
