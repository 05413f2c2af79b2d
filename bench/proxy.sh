#!/usr/bin/env bash
# Proxy throughput and latency, side by side: wrk straight to a tiny upstream,
# through hookcast, and through nginx proxy_pass (keepalive upstream) to the same
# upstream. Every server (upstream, hookcast, nginx with one worker) is pinned to
# CPU 0 and wrk to CPU 1; each target gets RUNS runs and the median is reported.
# Writes bench/results/proxy.md.
#
#   bench/proxy.sh                      # 3 runs of 10 s per target, 64 connections
#   DURATION=3 RUNS=3 bench/proxy.sh    # a short run
#
# Needs wrk and nginx (Debian packages; installed with apt-get when missing and root).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
RUNS=${RUNS:-3}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
UP_PORT=${UP_PORT:-19100}
HC_PORT=${HC_PORT:-19101}
NGX_PORT=${NGX_PORT:-19102}
OUT=${PROXY_OUT:-bench/results/proxy.md}

need() {
  command -v "$1" >/dev/null && return
  [ -x "/usr/sbin/$1" ] && return
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "bench/proxy.sh: installing $2" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
  else
    echo "bench/proxy.sh: $1 is missing; on Debian: sudo apt-get install $2" >&2
    exit 1
  fi
}
need wrk wrk
need nginx nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet -p hookcast --bin hookcast -p hookcast-load --bin bench-upstream

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench/proxy.sh: nothing listens on port $1" >&2
  exit 1
}

taskset -c "$SERVER_CPU" target/release/bench-upstream "127.0.0.1:$UP_PORT" 2>/dev/null &
pids+=($!)

cat >"$work/hookcast.yaml" <<YAML
listen: "127.0.0.1:$HC_PORT"
log: { level: warn }
upstream:
  url: "http://127.0.0.1:$UP_PORT"
  pool_max_idle_per_host: 1024
YAML
taskset -c "$SERVER_CPU" target/release/hookcast --config "$work/hookcast.yaml" &
pids+=($!)

mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
user root;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream app {
    server 127.0.0.1:$UP_PORT;
    keepalive 1024;
  }
  server {
    listen 127.0.0.1:$NGX_PORT;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host;
    }
  }
}
NGINX
taskset -c "$SERVER_CPU" "$NGINX" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" &
pids+=($!)

wait_port "$UP_PORT"
wait_port "$HC_PORT"
wait_port "$NGX_PORT"

# Latency as wrk prints it (123.45us, 1.20ms, 1.01s) in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    printf "%.3f", n }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# One run: "rps p50_ms p99_ms".
run() {
  local out
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$1/")
  if ! grep -q "Non-2xx" <<<"$out"; then :; else
    echo "bench/proxy.sh: non-2xx answers from port $1:" >&2
    echo "$out" >&2
    exit 1
  fi
  local rps p50 p99
  rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
  p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
  echo "$rps $(to_ms "$p50") $(to_ms "$p99")"
}

declare -A RPS P50 P99
for target in "upstream directly:$UP_PORT" "hookcast:$HC_PORT" "nginx proxy_pass:$NGX_PORT"; do
  name=${target%:*}
  port=${target##*:}
  # Warm up: connections, pools, caches.
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d1s "http://127.0.0.1:$port/" >/dev/null
  results=()
  for i in $(seq "$RUNS"); do
    r=$(run "$port")
    echo "$name run $i: $r (req/s p50_ms p99_ms)" >&2
    results+=("$r")
  done
  RPS[$name]=$(printf '%s\n' "${results[@]}" | awk '{ print $1 }' | median)
  P50[$name]=$(printf '%s\n' "${results[@]}" | awk '{ print $2 }' | median)
  P99[$name]=$(printf '%s\n' "${results[@]}" | awk '{ print $3 }' | median)
done

{
  echo "# Proxy benchmark"
  echo
  echo "\`bench/proxy.sh\` on $(date -u +%Y-%m-%d), $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo))."
  echo "wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }'), $("$NGINX" -v 2>&1 | sed 's/.*: //'), hookcast $(target/release/hookcast --version | awk '{ print $2 }') (release build)."
  echo "Upstream: \`bench-upstream\` (hyper, one thread, 200 with a 13-byte body). Servers pinned to CPU $SERVER_CPU"
  echo "(upstream, hookcast, and nginx with one worker share it), wrk to CPU $CLIENT_CPU:"
  echo "\`wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency\`, GET /, keep-alive. Median of $RUNS runs."
  echo
  echo "| target | requests/s | p50 latency | p99 latency |"
  echo "|---|---:|---:|---:|"
  for name in "upstream directly" "hookcast" "nginx proxy_pass"; do
    printf '| %s | %.0f | %s ms | %s ms |\n' "$name" "${RPS[$name]}" "${P50[$name]}" "${P99[$name]}"
  done
} >"$OUT"
cat "$OUT"
