#!/usr/bin/env bash
# Proxy throughput, latency and CPU, side by side: wrk straight to a cheap upstream,
# through hookcast, and through nginx proxy_pass (keepalive upstream) to the same
# upstream. The upstream is nginx answering `return 200` (one worker), so that its
# own cost does not mask the proxy's; UPSTREAM=hyper uses `bench-upstream` (hyper,
# one thread) instead. Every server (upstream, hookcast, proxy nginx with one
# worker) is pinned to CPU 0 and wrk to CPU 1. Targets alternate run by run
# (RUNS rounds) and each figure is the median of its runs. CPU per request is the
# proxy process's user+sys time over a run (from /proc) divided by its requests:
# less sensitive than requests/s to other load on the machine.
# Writes bench/results/proxy.md.
#
#   bench/proxy.sh                      # 3 rounds of 10 s per target, 64 connections
#   DURATION=3 RUNS=3 bench/proxy.sh    # a short run
#   UPSTREAM=hyper bench/proxy.sh       # the hyper upstream of earlier runs
#
# Needs wrk and nginx (Debian packages; installed with apt-get when missing and root).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
RUNS=${RUNS:-3}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
UPSTREAM=${UPSTREAM:-nginx}
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

case "$UPSTREAM" in
  nginx) cargo build --release --quiet -p hookcast --bin hookcast ;;
  hyper) cargo build --release --quiet -p hookcast --bin hookcast -p hookcast-load --bin bench-upstream ;;
  *) echo "bench/proxy.sh: UPSTREAM is nginx or hyper, not $UPSTREAM" >&2; exit 2 ;;
esac

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

# An nginx with one worker, started pinned to CPU $SERVER_CPU: `start_nginx NAME HTTP_BLOCK`.
start_nginx() {
  local dir="$work/$1"
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
user root;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  # hookcast closes no keep-alive connection after N requests; nor does nginx here.
  keepalive_requests 1000000;
  keepalive_timeout 75s;
$2
}
NGINX
  taskset -c "$SERVER_CPU" "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
  pids+=($!)
}

if [ "$UPSTREAM" = nginx ]; then
  start_nginx upstream "  server {
    listen 127.0.0.1:$UP_PORT;
    default_type text/plain;
    location / { return 200 'hello, world\n'; }
  }"
  UP_DESC='nginx `return 200` (one worker, 200 with a 13-byte body)'
else
  taskset -c "$SERVER_CPU" target/release/bench-upstream "127.0.0.1:$UP_PORT" 2>/dev/null &
  pids+=($!)
  UP_DESC='`bench-upstream` (hyper, one thread, 200 with a 13-byte body)'
fi

cat >"$work/hookcast.yaml" <<YAML
listen: "127.0.0.1:$HC_PORT"
log: { level: warn }
upstream:
  url: "http://127.0.0.1:$UP_PORT"
  pool_max_idle_per_host: 1024
YAML
taskset -c "$SERVER_CPU" target/release/hookcast --config "$work/hookcast.yaml" &
pids+=($!)

hookcast_pid=$!

start_nginx proxy "  upstream app {
    server 127.0.0.1:$UP_PORT;
    keepalive 1024;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NGX_PORT;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host;
    }
  }"
proxy_master=$!

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

# CPU time (user+sys) of a process and its children that ended, in clock ticks.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# One run against port $1 while process $2 (or none) serves it:
# "rps p50_ms p99_ms cpu_us_per_request" (cpu "-" without a process).
run() {
  local out before after
  [ -n "$2" ] && before=$(ticks "$2")
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$1/")
  [ -n "$2" ] && after=$(ticks "$2")
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
    echo "bench/proxy.sh: errors from port $1:" >&2
    echo "$out" >&2
    exit 1
  fi
  local rps p50 p99 requests cpu=-
  rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
  p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
  p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
  requests=$(awk '/requests in/ { print $1 }' <<<"$out")
  if [ -n "$2" ]; then
    cpu=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
      'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
  fi
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $cpu"
}

# nginx's worker, the process that does the proxying.
proxy_worker=$(pgrep -P "$proxy_master" | head -1)
[ -n "$proxy_worker" ] || { echo "bench/proxy.sh: no nginx worker" >&2; exit 1; }

NAMES=("upstream directly" "hookcast" "nginx proxy_pass")
declare -A PORT=(["upstream directly"]=$UP_PORT [hookcast]=$HC_PORT ["nginx proxy_pass"]=$NGX_PORT)
declare -A PROC=(["upstream directly"]="" [hookcast]=$hookcast_pid ["nginx proxy_pass"]=$proxy_worker)
declare -A RESULTS
for name in "${NAMES[@]}"; do
  # Warm up: connections, pools, caches.
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d1s "http://127.0.0.1:${PORT[$name]}/" >/dev/null
done
# Round by round, so that a slow spell of the machine hits every target alike.
for i in $(seq "$RUNS"); do
  for name in "${NAMES[@]}"; do
    r=$(run "${PORT[$name]}" "${PROC[$name]}")
    echo "$name run $i: $r (req/s p50_ms p99_ms cpu_us/req)" >&2
    RESULTS[$name]+="$r"$'\n'
  done
done

med() { printf '%s' "${RESULTS[$1]}" | awk -v c="$2" 'NF { print $c }' | median; }

{
  echo "# Proxy benchmark"
  echo
  echo "\`bench/proxy.sh\` on $(date -u +%Y-%m-%d), $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
  echo "wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }'), $("$NGINX" -v 2>&1 | sed 's/.*: //'), hookcast $(target/release/hookcast --version | awk '{ print $2 }') (release build)."
  echo "Upstream: $UP_DESC. Servers pinned to CPU $SERVER_CPU"
  echo "(upstream, hookcast, and the proxying nginx with one worker share it), wrk to CPU $CLIENT_CPU:"
  echo "\`wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency\`, GET /, keep-alive. Targets alternate run by run;"
  echo "median of $RUNS runs each. CPU per request: the proxy's user+sys time over a run"
  echo "(hookcast's process, nginx's worker) divided by the requests wrk counted."
  echo
  echo "| target | requests/s | p50 latency | p99 latency | proxy CPU per request |"
  echo "|---|---:|---:|---:|---:|"
  for name in "${NAMES[@]}"; do
    cpu=$(med "$name" 4)
    [ "$cpu" = "-" ] || [ -z "$cpu" ] && cpu="" || cpu="$cpu µs"
    printf '| %s | %.0f | %s ms | %s ms | %s |\n' "$name" "$(med "$name" 1)" "$(med "$name" 2)" "$(med "$name" 3)" "$cpu"
  done
  echo
  echo "Runs (requests/s, p50 ms, p99 ms, CPU µs per request):"
  echo
  for name in "${NAMES[@]}"; do
    echo "- $name: $(printf '%s' "${RESULTS[$name]}" | awk 'NF { printf "%s%s", sep, $0; sep = "; " }')"
  done
} >"$OUT"
cat "$OUT"
