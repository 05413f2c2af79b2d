#!/usr/bin/env bash
# Scale-out benchmark: two hookcast replicas sharing one Redis, and two sharing one
# NATS JetStream server, publishing at one and subscribing at the other, next to one
# node with each broker, on the same machine in the same run.
#
#   bench/redis.sh            # 3 runs per scenario (median), writes bench/results/redis.md
#   bench/redis.sh --runs 5
#   bench/redis.sh --quick    # small counts, one run: checks the script, measures little
#
# Starts its own redis-server on a free port (no persistence), emptied before each
# run, and a nats-server -js with a fresh store per run; every hookcast is started
# fresh per run. Raw JSON lands in bench/results/redis/.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=3
QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --quick) QUICK=1; RUNS=1; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "redis.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

log() { printf '[redis.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v redis-server >/dev/null || { echo "redis.sh: redis-server is needed (apt-get install redis-server)" >&2; exit 1; }
command -v nats-server >/dev/null || { echo "redis.sh: nats-server is needed (apt-get install nats-server)" >&2; exit 1; }
command -v curl >/dev/null || { echo "redis.sh: curl is needed" >&2; exit 1; }

log "building (release)"
(cd "$ROOT" && cargo build --release --quiet -p hookcast --bin hookcast && cargo build --release --quiet -p hookcast-load --bin hookcast-load)
HOOKCAST=$ROOT/target/release/hookcast
LOAD=$ROOT/target/release/hookcast-load

OUT=$ROOT/bench/results/redis
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
REDIS_PID=$!
until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do sleep 0.05; done
NATS_PORT=$(free_port)
NATS_PID=
nats_fresh() { # a nats-server with an empty store
    # SIGKILL: a nats-server here has been seen to sit through SIGTERM.
    if [ -n "$NATS_PID" ]; then kill -KILL "$NATS_PID" 2>/dev/null || true; wait "$NATS_PID" 2>/dev/null || true; fi
    rm -rf "$WORK/nats"
    nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
    NATS_PID=$!
    PIDS+=("$NATS_PID")
    until (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null; do sleep 0.05; done
}

config() { # port broker
    cat <<EOF
listen: "127.0.0.1:$1"
sse:
  heartbeat: 15s
  subscriber_queue: 4096
log:
  level: warn
routes:
  - name: bench
    match:
      path: "/hooks/{topic}"
    publish:
      topic: "{path:topic}"
EOF
    if [ "$2" = redis ]; then
        printf 'broker:\n  kind: redis\n  url: "redis://127.0.0.1:%s/0"\n' "$REDIS_PORT"
    elif [ "$2" = nats ]; then
        printf 'broker:\n  kind: nats\n  url: "nats://127.0.0.1:%s"\n' "$NATS_PORT"
    fi
}

start() { # name port broker -> sets STARTED_PID
    config "$2" "$3" >"$WORK/$1.yaml"
    "$HOOKCAST" --config "$WORK/$1.yaml" 2>"$WORK/$1.log" &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    # Ready when a stream opens and stays open (a replica not yet reading Redis says "try later").
    for _ in $(seq 1 200); do
        # curl ends by its timeout on an open stream, so its status says nothing.
        got=$(curl -s -m 0.5 -N "http://127.0.0.1:$2/events?topic=probe" 2>/dev/null || true)
        case $got in *': hookcast'*) return 0 ;; esac
        sleep 0.05
    done
    echo "redis.sh: $1 did not become ready; its log:" >&2
    cat "$WORK/$1.log" >&2
    exit 1
}

stop() { for p in "$@"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }

if [ "$QUICK" = 1 ]; then
    LAT_SUBS=50; LAT_EVENTS=50; LAT_RATE=50
    THR_SUBS=10; THR_EVENTS=500
else
    LAT_SUBS=1000; LAT_EVENTS=1000; LAT_RATE=100
    THR_SUBS=100; THR_EVENTS=20000
fi
TOPICS=10

# scenario: name subscribers events rate pub_concurrency
SCENARIOS=(
    "latency $LAT_SUBS $LAT_EVENTS $LAT_RATE 1"
    "throughput $THR_SUBS $THR_EVENTS max 8"
)
# setups: memory (one node), redis-1 / nats-1 (one node on that broker),
# redis-2 / nats-2 (publish at A, subscribe at B)
SETUPS=(memory redis-1 redis-2 nats-1 nats-2)

for run in $(seq 1 "$RUNS"); do
    for sc in "${SCENARIOS[@]}"; do
        read -r name subs events rate conc <<<"$sc"
        for setup in "${SETUPS[@]}"; do
            redis-cli -p "$REDIS_PORT" flushall >/dev/null
            pa=$(free_port)
            case $setup in
                memory) start a "$pa" memory; servers=("$STARTED_PID"); pb=$pa ;;
                redis-1) start a "$pa" redis; servers=("$STARTED_PID"); pb=$pa ;;
                redis-2)
                    start a "$pa" redis; servers=("$STARTED_PID")
                    pb=$(free_port); start b "$pb" redis; servers+=("$STARTED_PID") ;;
                nats-1) nats_fresh; start a "$pa" nats; servers=("$STARTED_PID"); pb=$pa ;;
                nats-2)
                    nats_fresh; start a "$pa" nats; servers=("$STARTED_PID")
                    pb=$(free_port); start b "$pb" nats; servers+=("$STARTED_PID") ;;
            esac
            pid_args=()
            for p in "${servers[@]}"; do pid_args+=(--server-pid "$p"); done
            case $setup in
                nats-*) pid_args+=(--server-pid "$NATS_PID") ;;
                *) pid_args+=(--server-pid "$REDIS_PID") ;;
            esac
            log "run $run: $name / $setup"
            "$LOAD" --quiet \
                --sub-url "http://127.0.0.1:$pb/events?topic={topic}" \
                --pub-url "http://127.0.0.1:$pa/hooks/{topic}" \
                --subscribers "$subs" --topics "$TOPICS" \
                --events "$events" --rate "$rate" --pub-concurrency "$conc" \
                --drain 5s "${pid_args[@]}" >"$OUT/$name-$setup-$run.json"
            stop "${servers[@]}"
        done
    done
done

python3 - "$OUT" "$RUNS" "$ROOT/bench/results/redis.md" <<'PY'
import json, os, statistics, sys, platform, subprocess, datetime
out, runs, md = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = []
labels = {
    "memory": "one node, memory broker",
    "redis-1": "one node, Redis broker",
    "redis-2": "two replicas on Redis: publish at A, subscribe at B",
    "nats-1": "one node, NATS broker",
    "nats-2": "two replicas on NATS: publish at A, subscribe at B",
}
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
for name in ["latency", "throughput"]:
    for setup in ["memory", "redis-1", "redis-2", "nats-1", "nats-2"]:
        docs = []
        for r in range(1, runs + 1):
            p = os.path.join(out, f"{name}-{setup}-{r}.json")
            if os.path.exists(p):
                docs.append(json.load(open(p)))
        if not docs:
            continue
        d0 = docs[0]["config"]
        lat = lambda d, k: (d.get("latency_us") or {}).get(k)
        wl = lambda d, k: (d["webhooks"].get("latency_us") or {}).get(k)
        rows.append({
            "scenario": name, "setup": labels[setup],
            "shape": f'{d0["subscribers"]} subs / {d0["topics"]} topics, {d0["events"]} events at {d0["rate"]}/s, {d0["pub_concurrency"]} publisher conn.',
            "accepted_s": med([d["webhooks"]["accepted_per_s"] for d in docs]),
            "wh_p50": med([wl(d, "p50") for d in docs]), "wh_p99": med([wl(d, "p99") for d in docs]),
            "deliv_s": med([d["deliveries"]["per_s"] for d in docs]),
            "p50": med([lat(d, "p50") for d in docs]), "p99": med([lat(d, "p99") for d in docs]),
            "lost": sum(d["deliveries"]["lost"] for d in docs),
            "reordered": sum(d["deliveries"]["reordered"] for d in docs),
            "dup": sum(d["deliveries"]["duplicates"] for d in docs),
            "expected": sum(d["deliveries"]["expected"] for d in docs),
            "count": sum(d["deliveries"]["count"] for d in docs),
        })
def ms(us): return "–" if us is None else f"{us/1000:.2f} ms"
def n(x): return "–" if x is None else f"{x:,.0f}"
cpu = "?"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip(); break
except OSError:
    pass
redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
nats_v = subprocess.run(["nats-server", "--version"], capture_output=True, text=True).stdout.split()[-1]
with open(md, "w") as f:
    f.write("# Scale-out benchmark: replicas sharing Redis or NATS JetStream\n\n")
    f.write(f"`bench/redis.sh` on {datetime.date.today()}, {os.cpu_count()} CPUs ({cpu}), Redis {redis_v.removeprefix('v=')} "
            f"(local, no persistence), nats-server {nats_v} (local, JetStream file store, one node), hookcast release build. Median of {runs} run(s); loss, reorder and duplicate "
            "counts are summed over the runs. hookcast, Redis and the load tool share the same CPUs, unpinned.\n\n")
    f.write("Latency is publish-to-delivery: from just before the webhook is written to the event's arrival at the "
            "subscriber, so it includes the webhook's round trip (with Redis: the `XADD` script; with NATS: the "
            "JetStream publish and its ack) and, across replicas, the other replica's read (`XREAD`, or a JetStream pull). Deliveries/s counts every subscriber's copy.\n\n")
    for name in ["latency", "throughput"]:
        sel = [r for r in rows if r["scenario"] == name]
        if not sel: continue
        f.write(f"## {name.capitalize()}: {sel[0]['shape']}\n\n")
        f.write("| setup | webhooks accepted/s | webhook p50 | webhook p99 | deliveries/s | delivery p50 | delivery p99 | delivered / expected | lost | reordered | duplicates |\n")
        f.write("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
        for r in sel:
            f.write(f"| {r['setup']} | {n(r['accepted_s'])} | {ms(r['wh_p50'])} | {ms(r['wh_p99'])} | {n(r['deliv_s'])} | "
                    f"{ms(r['p50'])} | {ms(r['p99'])} | {r['count']} / {r['expected']} | {r['lost']} | {r['reordered']} | {r['dup']} |\n")
        f.write("\n")
    f.write("Reordered (throughput only): the load tool numbers each topic's events when it sends them, and 8 connections publish concurrently, so two webhooks on one topic in flight together may be accepted in the other order; hookcast orders events by acceptance (a 202 before the next is sent), which the tests check. With one publisher connection (latency) nothing is reordered. The machine was shared with another build, so absolute figures are noisy; the comparison within one run is the point.\n")
print(md)
PY
log "wrote bench/results/redis.md"
