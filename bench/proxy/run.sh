#!/usr/bin/env bash
# Proxy benchmark: what does otel-run's reverse proxy (tracing every request)
# add to a request, compared with no proxy and with nginx as a plain reverse proxy?
#
# Usage: bench/proxy/run.sh [-d|--duration D] [-r|--rounds N] [-c|--connections N] [-t|--threads N] [-p|--placement P] [-h|--help]
# See bench/proxy/README.md for details.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/proxy/run.sh [OPTIONS]

Loads one fast upstream (nginx answering a static 200) with wrk on loopback, three
ways in one run, the rows taking turns round after round:
  direct    wrk -> upstream
  otel-run  wrk -> otel-run --proxy (a SERVER span per request, exported over OTLP) -> upstream
  nginx     wrk -> nginx proxy_pass (no tracing) -> upstream
  otel-run-untraced  the otel-run proxy with every exporter `none` (the proxying alone)

Options:
  -d, --duration D      one wrk run of a row       (env BENCH_DURATION,    default 3s)
  -r, --rounds N        rounds, rows taking turns  (env BENCH_ROUNDS,      default 8)
  -c, --connections N   wrk connections            (env BENCH_CONNECTIONS, default 32)
  -t, --threads N       wrk threads                (env BENCH_THREADS,     default 1)
  -b, --export-batch N  spans per export to the collector (OTEL_BSP_MAX_EXPORT_BATCH_SIZE;
                                                 env BENCH_EXPORT_BATCH, default 512, otel-run's own)
  -p, --placement P     where the collector runs   (env BENCH_PLACEMENT,   default shared)
                          shared: every process may use every core
                          apart:  the collector alone on the last core, wrk, the
                                  upstream and the proxies on the others (the
                                  collector's own host, as in production)
  -h, --help            show this help

Environment:
  OTEL_RUN   otel-run binary to measure (default: <repo>/target/release/otel-run, built if missing)
  OTELCOL    an OpenTelemetry Collector binary to export to (default: the one
             .ci/otelcol/build.sh builds; without one, spans go to the console
             exporter writing to /dev/null)

Results go to bench/proxy/results/ (gitignored).
USAGE
}

DURATION="${BENCH_DURATION:-3s}"
ROUNDS="${BENCH_ROUNDS:-8}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
THREADS="${BENCH_THREADS:-1}"
PLACEMENT="${BENCH_PLACEMENT:-shared}"
EXPORT_BATCH="${BENCH_EXPORT_BATCH:-512}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    -d|--duration)    DURATION="${2:?--duration needs a value}"; shift 2 ;;
    -r|--rounds)      ROUNDS="${2:?--rounds needs a value}"; shift 2 ;;
    -c|--connections) CONNECTIONS="${2:?--connections needs a value}"; shift 2 ;;
    -t|--threads)     THREADS="${2:?--threads needs a value}"; shift 2 ;;
    -p|--placement)   PLACEMENT="${2:?--placement needs a value}"; shift 2 ;;
    -b|--export-batch) EXPORT_BATCH="${2:?--export-batch needs a value}"; shift 2 ;;
    -h|--help)        usage; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/../lib.sh"
RESULTS_DIR="$SCRIPT_DIR/results"
mkdir -p "$RESULTS_DIR"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk >/dev/null || apt_install wrk
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || apt_install nginx-light
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
find_otel_run

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "nothing listens on port $1"
}

UPSTREAM=$(free_port); OTEL_PORT=$(free_port); NGINX_PORT=$(free_port); BARE_PORT=$(free_port)

# Which cores the load (wrk, upstream, proxies) and the collector may use.
CORES=$(nproc)
case $PLACEMENT in
  shared) LOAD=(); COLLECTOR_ON=(); LOAD_CORES=$CORES ;;
  apart)
    (( CORES >= 2 )) || die "--placement apart needs two cores or more; this machine has $CORES"
    LOAD=(taskset -c "0-$((CORES - 2))"); COLLECTOR_ON=(taskset -c "$((CORES - 1))")
    LOAD_CORES=$((CORES - 1)) ;;
  *) die "--placement must be shared or apart, not '$PLACEMENT'" ;;
esac

# The upstream: nginx with one worker answering from memory, so it is not the
# bottleneck. The proxying nginx gets a worker per core the load may use, as
# otel-run's proxy has a thread per core, and keep-alive connections to the
# upstream, as otel-run keeps them.
nginx_conf() {
  # nginx_conf NAME WORKERS SERVER_BLOCK
  cat >"$RESULTS_DIR/nginx-$1.conf" <<CONF
daemon off;
worker_processes $2;
pid $WORK/nginx-$1.pid;
error_log $WORK/nginx-$1.error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/$1-body;
  proxy_temp_path $WORK/$1-proxy;
  fastcgi_temp_path $WORK/$1-fastcgi;
  uwsgi_temp_path $WORK/$1-uwsgi;
  scgi_temp_path $WORK/$1-scgi;
  keepalive_requests 1000000;
$3
}
CONF
}
nginx_conf upstream 1 "  server {
    listen 127.0.0.1:$UPSTREAM;
    location / { return 200 \"ok\\n\"; }
  }"
nginx_conf proxy "$LOAD_CORES" "  upstream app { server 127.0.0.1:$UPSTREAM; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
"${LOAD[@]}" "$NGINX" -c "$RESULTS_DIR/nginx-upstream.conf" & PIDS+=($!); UPSTREAM_PID=$!
wait_port "$UPSTREAM"

# Where otel-run's spans go: a local collector (debug exporter, basic verbosity),
# else the console exporter into /dev/null.
OTELCOL="${OTELCOL:-}"
if [[ -z "$OTELCOL" && -x "$REPO_ROOT/.ci/otelcol/build.sh" ]]; then
  OTELCOL="$(bash "$REPO_ROOT/.ci/otelcol/build.sh" 2>/dev/null | tail -n1 || true)"
fi
if [[ -n "$OTELCOL" && -x "$OTELCOL" ]]; then
  GRPC=$(free_port)
  cat >"$WORK/otelcol.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$GRPC
exporters:
  debug:
    verbosity: basic
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
    metrics:
      receivers: [otlp]
      exporters: [debug]
YAML
  "${COLLECTOR_ON[@]}" "$OTELCOL" --config "$WORK/otelcol.yaml" >"$WORK/otelcol.log" 2>&1 & PIDS+=($!); COLLECTOR_PID=$!
  wait_port "$GRPC"
  EXPORT=(--traces-exporter otlp --metrics-exporter otlp --exporter-otlp-endpoint "http://127.0.0.1:$GRPC")
  EXPORT_DESC="OTLP gRPC to a local collector (debug exporter)"
else
  [[ $PLACEMENT == shared ]] || die "--placement $PLACEMENT needs a collector (set OTELCOL)"
  EXPORT=(--traces-exporter console --console-output /dev/null --metrics-exporter none)
  EXPORT_DESC="console exporter into /dev/null"
fi

# Spans are exported, not dropped: a queue that holds a few seconds of them.
OTEL_BSP_MAX_QUEUE_SIZE=200000 OTEL_BSP_SCHEDULE_DELAY=200 OTEL_BSP_MAX_EXPORT_BATCH_SIZE=$EXPORT_BATCH \
  "${LOAD[@]}" "$OTEL_RUN_BIN" -v "${EXPORT[@]}" --service-name bench-proxy \
  --proxy "$OTEL_PORT=127.0.0.1:$UPSTREAM" -- sleep 100000 2>"$WORK/otel-run.err" & OTEL_PID=$!
wait_port "$OTEL_PORT"
# The same proxy with nothing exported: what the proxying alone costs.
"${LOAD[@]}" "$OTEL_RUN_BIN" --traces-exporter none --metrics-exporter none \
  --proxy "$BARE_PORT=127.0.0.1:$UPSTREAM" -- sleep 100000 & BARE_PID=$!
wait_port "$BARE_PORT"
"${LOAD[@]}" "$NGINX" -c "$RESULTS_DIR/nginx-proxy.conf" & PIDS+=($!); NGINX_PID=$!
wait_port "$NGINX_PORT"

# wrk's latency distribution in microseconds.
to_us() {
  awk '{ v=$1; if (v ~ /us$/) { sub(/us$/,"",v); print v }
         else if (v ~ /ms$/) { sub(/ms$/,"",v); print v*1000 }
         else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000000 } }'
}
# CPU time (clock ticks) of a process and its children, all threads.
ticks() {
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    [[ -r /proc/$p/stat ]] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
HZ=$(getconf CLK_TCK)
declare -A PORT=([direct]=$UPSTREAM [otel-run]=$OTEL_PORT [nginx]=$NGINX_PORT [otel-run-untraced]=$BARE_PORT)
declare -A PID=([direct]=$UPSTREAM_PID [otel-run]=$OTEL_PID [nginx]=$NGINX_PID [otel-run-untraced]=$BARE_PID)
ROWS=(direct otel-run nginx otel-run-untraced)
# One file of per-round figures: row round rps p50 p99 cpu_us_per_request collector_us_per_request
ROUNDS_FILE="$RESULTS_DIR/$STAMP-rounds.txt"
: >"$ROUNDS_FILE"
# What run_wrk measures: under load (-c CONNECTIONS) or at one connection.
WRK_CONNECTIONS=$CONNECTIONS WRK_THREADS=$THREADS WRK_TAG=""
run_wrk() {
  # run_wrk ROW ROUND
  local out="$RESULTS_DIR/$STAMP-$1$WRK_TAG-$2.wrk.txt" before after cbefore cafter n
  before=$(ticks "${PID[$1]}")
  cbefore=$( [[ -n "${COLLECTOR_PID:-}" ]] && ticks "$COLLECTOR_PID" || echo 0)
  "${LOAD[@]}" wrk -t"$WRK_THREADS" -c"$WRK_CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:${PORT[$1]}/" >"$out"
  after=$(ticks "${PID[$1]}")
  cafter=$( [[ -n "${COLLECTOR_PID:-}" ]] && ticks "$COLLECTOR_PID" || echo 0)
  n=$(awk '/requests in/ {print $1}' "$out")
  echo "$1 $2 $(awk '/^Requests\/sec/ {print $2}' "$out") \
$(awk '$1=="50%" {print $2}' "$out" | to_us) $(awk '$1=="99%" {print $2}' "$out" | to_us) \
$(awk -v t=$((after - before)) -v n="$n" -v hz="$HZ" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }') \
$(awk -v t=$((cafter - cbefore)) -v n="$n" -v hz="$HZ" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')" >>"$ROUNDS_FILE"
  awk '/Non-2xx|Socket errors/ {print}' "$out" | sed "s/^/$1 round $2: /" >>"$WORK/errors.txt"
}
# The median of column COL over the rounds of ROW.
median() {
  awk -v row="$1" -v col="$2" '$1 == row {print $col}' "$ROUNDS_FILE" | sort -g |
    awk '{v[NR] = $1} END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# The median over the rounds of ROW_A's column COL divided by ROW_B's, round by round.
median_ratio() {
  awk -v a="$1" -v b="$2" -v col="$3" '$1 == a {x[$2] = $col} $1 == b {y[$2] = $col}
    END { for (r in x) printf "%.3f\n", x[r] / y[r] }' "$ROUNDS_FILE" | sort -g |
    awk '{v[NR] = $1} END { if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# In how many rounds ROW_A served more requests per second than ROW_B.
rounds_ahead() {
  awk -v a="$1" -v b="$2" '$1 == a {x[$2] = $3} $1 == b {y[$2] = $3}
    END { n = 0; for (r in x) if (x[r] > y[r]) n++; print n }' "$ROUNDS_FILE"
}

LOAD_BEFORE="$(load_average)"
for row in "${ROWS[@]}"; do
  log "$row: 2s warm-up"
  "${LOAD[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "http://127.0.0.1:${PORT[$row]}/" >"$WORK/$row.warmup.txt"
done
# The rows take turns, round after round: the machine's speed drifts (other
# work, a shared host), and a row measured minutes after another would carry
# that drift into the ratio.
log "$ROUNDS rounds: wrk -t$THREADS -c$CONNECTIONS -d$DURATION per row"
interleave_rounds "$ROUNDS" run_wrk "${ROWS[@]}"
# Latency without queueing: one connection, one request at a time, the rows
# taking turns as well. A tail (the p99) comes and goes with the machine's
# load: one run per row would compare moments, not proxies.
log "$ROUNDS rounds at one connection: wrk -t1 -c1 -d$DURATION per row"
ROUNDS_FILE_MAIN=$ROUNDS_FILE
ROUNDS_FILE="$RESULTS_DIR/$STAMP-c1-rounds.txt"
: >"$ROUNDS_FILE"
WRK_CONNECTIONS=1 WRK_THREADS=1 WRK_TAG=".c1"
interleave_rounds "$ROUNDS" run_wrk "${ROWS[@]}"
ROUNDS_FILE_C1=$ROUNDS_FILE
declare -A P50_1 P99_1 CPU_1
for row in "${ROWS[@]}"; do
  P50_1[$row]=$(median "$row" 4); P99_1[$row]=$(median "$row" 5); CPU_1[$row]=$(median "$row" 6)
done
P99_RATIO_1=$(median_ratio otel-run nginx 5)
P99_RATIO_1_BARE=$(median_ratio otel-run-untraced nginx 5)
ROUNDS_FILE=$ROUNDS_FILE_MAIN
LOAD_AFTER="$(load_average)"
kill -TERM "$BARE_PID"

# Stop otel-run as a user would; it flushes and says what it exported.
kill -TERM "$OTEL_PID"
wait "$OTEL_PID" 2>/dev/null || true

# Every request through the traced proxy should be a span at the collector.
SERVED=$(cat "$RESULTS_DIR/$STAMP"-otel-run-[0-9]*.wrk.txt "$WORK/otel-run.warmup.txt" \
  "$RESULTS_DIR/$STAMP"-otel-run.c1-[0-9]*.wrk.txt | awk '/requests in/ {n += $1} END {print n}')
SPANS=$(awk '/spans exported/ {print $2}' "$WORK/otel-run.err")

minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", a - b }'; }
minus2() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }
declare -A RPS P50 P99 CPU
for row in "${ROWS[@]}"; do
  RPS[$row]=$(median "$row" 3); P50[$row]=$(median "$row" 4); P99[$row]=$(median "$row" 5)
  CPU[$row]=$(median "$row" 6)
done
COLLECTOR_CPU=$(median otel-run 7)
REPORT="$RESULTS_DIR/$STAMP.md"
{
  echo "# bench/proxy $STAMP"
  echo
  echo "- $ROUNDS rounds of wrk -t$THREADS -c$CONNECTIONS -d$DURATION per row, rows taking turns; loopback; upstream: nginx (1 worker) returning a static 200"
  echo "- otel-run: $(otel_run_identity), spans via $EXPORT_DESC, at most $EXPORT_BATCH per export (OTEL_BSP_MAX_EXPORT_BATCH_SIZE)"
  echo "- nginx: $("$NGINX" -v 2>&1 | sed 's/.*: //'), $LOAD_CORES workers, proxy_pass with upstream keep-alive"
  echo "- cores: $CORES; load average (1, 5, 15 min) before: $LOAD_BEFORE; after: $LOAD_AFTER"
  if [[ $PLACEMENT == apart ]]; then
    echo "- placement apart: the collector alone on core $((CORES - 1)); wrk, the upstream and the proxies on $LOAD_CORES core(s)"
  else
    echo "- placement shared: wrk, the upstream, the proxies and the collector on the same $CORES cores"
  fi
  echo
  echo "Medians over the rounds (each round's figures: \`$(basename "$ROUNDS_FILE")\`):"
  echo
  echo "| row | req/s | p50 µs | p99 µs | added p50 µs | CPU µs per request |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  for row in "${ROWS[@]}"; do
    echo "| $row | ${RPS[$row]} | ${P50[$row]} | ${P99[$row]} | $(minus "${P50[$row]}" "${P50[direct]}") | ${CPU[$row]} |"
  done
  echo
  echo "CPU per request is the process's own (all threads, user and system), for direct the upstream's."
  [[ -n "${COLLECTOR_PID:-}" ]] && echo "The collector spent a further ${COLLECTOR_CPU} µs per request receiving otel-run's spans."
  echo
  echo "One connection (\`wrk -t1 -c1 -d$DURATION\`, $ROUNDS interleaved rounds, medians; each round's figures: \`$(basename "$ROUNDS_FILE_C1")\`), no queueing:"
  echo
  echo "| row | p50 µs | p99 µs | added p50 µs | CPU µs per request |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  for row in "${ROWS[@]}"; do
    echo "| $row | ${P50_1[$row]} | ${P99_1[$row]} | $(minus "${P50_1[$row]}" "${P50_1[direct]}") | ${CPU_1[$row]} |"
  done
  echo
  echo "- added p50 at one connection: otel-run **$(minus "${P50_1[otel-run]}" "${P50_1[direct]}") µs** (target ≤ 100), nginx $(minus "${P50_1[nginx]}" "${P50_1[direct]}") µs"
  echo "- p99 at one connection otel-run / nginx, median of the rounds' ratios: **$P99_RATIO_1** (target ≤ 1.5); untraced: $P99_RATIO_1_BARE"
  echo "- what tracing costs otel-run, CPU µs per request (traced − untraced medians): **$(minus2 "${CPU[otel-run]}" "${CPU[otel-run-untraced]}")** under load (${CPU[otel-run]} − ${CPU[otel-run-untraced]}), $(minus2 "${CPU_1[otel-run]}" "${CPU_1[otel-run-untraced]}") at one connection (${CPU_1[otel-run]} − ${CPU_1[otel-run-untraced]})${COLLECTOR_PID:+; the collector receiving the spans: ${COLLECTOR_CPU} more}"
  echo "- throughput otel-run / nginx, median of the rounds' ratios: **$(median_ratio otel-run nginx 3)** (target ≥ 1.0); otel-run served more in $(rounds_ahead otel-run nginx) of $ROUNDS rounds"
  echo "- the proxy alone (no export) / nginx: $(median_ratio otel-run-untraced nginx 3); tracing keeps $(median_ratio otel-run otel-run-untraced 3) of its throughput"
  echo "- CPU per request otel-run / nginx: $(median_ratio otel-run nginx 6) (untraced: $(median_ratio otel-run-untraced nginx 6))"
  echo "- added p50 under load (-c$CONNECTIONS): otel-run $(minus "${P50[otel-run]}" "${P50[direct]}") µs, nginx $(minus "${P50[nginx]}" "${P50[direct]}") µs"
  echo
  echo "The spread over the rounds (median, min–max; ratios to nginx taken within each round):"
  echo
  awk 'BEGIN { OFS = "\t"; print "round", "row", "metric", "value" }
       { print $2, $1, "req/s", $3; print $2, $1, "p50 µs", $4; print $2, $1, "p99 µs", $5
         print $2, $1, "CPU µs per request", $6 }' "$ROUNDS_FILE" > "$WORK/rounds.tsv"
  rounds_report "$WORK/rounds.tsv" nginx
  echo
  echo "At one connection:"
  echo
  awk 'BEGIN { OFS = "\t"; print "round", "row", "metric", "value" }
       { print $2, $1, "p50 µs", $4; print $2, $1, "p99 µs", $5; print $2, $1, "CPU µs per request", $6 }' \
    "$ROUNDS_FILE_C1" > "$WORK/rounds-c1.tsv"
  rounds_report "$WORK/rounds-c1.tsv" nginx
  echo
  echo "- spans otel-run exported (its own count, \`-v\`): ${SPANS:-none}, for $SERVED requests (warm-up and one connection included)"
  if [[ -s "$WORK/errors.txt" ]]; then
    echo; echo "wrk reported errors:"; echo; sed 's/^/    /' "$WORK/errors.txt"
  fi
  echo
  echo "otel-run's own report:"
  echo
  echo '```'
  cat "$WORK/otel-run.err"
  echo '```'
} | tee "$REPORT"
log "report: $REPORT"
