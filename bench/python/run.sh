#!/usr/bin/env bash
# Python benchmark: what does `otel-run` cost a Python program, compared with
# running it bare and with the Python anchor `opentelemetry-instrument`?
#   A. start-up:   python -c pass, bare / under otel-run / under opentelemetry-instrument
#   B. throughput: a Flask or Django app under gunicorn, bare / otel-run / opentelemetry-instrument,
#                  driven by wrk, both instrumented rows exporting spans to a real collector
#   C. instructions (--only instructions): the same app's WSGI callable called in one
#                  process, the instructions per request counted by callgrind, same rows
#
# Usage: bench/python/run.sh [OPTIONS]   (see --help and bench/python/README.md)
# shellcheck disable=SC2034  # A_CMD_* / B_PREFIX_* are read through `declare -n`
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/python/run.sh [OPTIONS]

A. start-up, in interleaved rounds, one hyperfine run per row and round (python = the venv's python):
     python -c pass
     otel-run --exporter-otlp-endpoint http://127.0.0.1:GRPC -- python -c pass
     opentelemetry-instrument --exporter_otlp_endpoint http://127.0.0.1:GRPC python -c pass
B. throughput, in interleaved rounds (each round runs every row once, one after
   another), wrk against GET /users/7 of the Flask fixture app (--app django: GET /
   of the Django fixture site, gunicorn running mysite.wsgi:application):
     gunicorn -w 2 -b 127.0.0.1:PORT flask_app:app
     otel-run --service-name bench --exporter-otlp-endpoint http://127.0.0.1:GRPC -- gunicorn ...
     opentelemetry-instrument --service_name bench --exporter_otlp_endpoint http://127.0.0.1:GRPC gunicorn ...
   GRPC is a local OpenTelemetry Collector (otlp receiver -> file exporter) started by
   this script; the spans it receives are counted per configuration.
C. instructions (only with --only instructions), in interleaved rounds: the rows of B
   with `python wsgi_loop.py APP PATH N` (bench/python/wsgi_loop.py: the app's WSGI
   callable called N times in one process, no server, no load generator) in place of
   gunicorn, python run under valgrind's callgrind. Each row runs twice, with 200 and
   200 + REQUESTS requests; the difference / REQUESTS is the instructions per request
   of the whole process (every thread: the export's too), which a shared host does not
   move as it moves time. Slow: about a minute per row and round.

Options:
  -n, --rounds N        interleaved rounds of the rows (A and B)  (env BENCH_ROUNDS,      default 5)
  -r, --runs N          hyperfine runs per row and round (A)      (env BENCH_RUNS,        default 10)
  -w, --warmup N        hyperfine warm-up runs per row and round (A) (env BENCH_WARMUP,   default 2)
  -d, --duration D      measured wrk run per row and round (B)    (env BENCH_DURATION,    default 10s)
      --wrk-warmup D    wrk warm-up run before it, not reported   (env BENCH_WRK_WARMUP,  default 3s)
  -t, --threads N       wrk threads                               (env BENCH_THREADS,     default 2)
  -c, --connections N   wrk connections                           (env BENCH_CONNECTIONS, default 32)
      --workers N       gunicorn workers                          (env BENCH_WORKERS,     default 2)
      --app APP         `flask` or `django` (B)                   (env BENCH_APP,         default flask)
      --path PATH       URL path to load         (env BENCH_PATH, default /users/7 for flask, / for django)
      --requests N      requests counted per row and round (C)    (env BENCH_REQUESTS,    default 1000)
      --only PART       run only `startup` (A), `throughput` (B) or `instructions` (C)
                                                                  (env BENCH_ONLY, default A and B)
  -h, --help            show this help
  Durations are wrk durations: 15s, 1m, ...

Environment:
  OTEL_RUN        otel-run binary (default: ${CARGO_TARGET_DIR:-<repo>/target}/release/otel-run,
                  built with `cargo build-installed` at the repo root if missing)
  BENCH_VENV      venv with flask, django, gunicorn, opentelemetry-distro and the instrumentations
                  (default: the one .ci/python/venv.sh apps creates)
  BENCH_APP_DIR   directory holding flask_app.py, or for --app django mysite/
                  (default: <repo>/tests/fixtures/python, or its django_site/)
  OTELCOL         collector binary with the otlp receiver and file exporter
                  (default: the one .ci/otelcol/build.sh builds)
  OTEL_RUN_CACHE  cache dir passed on to venv.sh apps and build.sh (default: $HOME/.cache/otel-run-ci)

Results go to bench/python/results/ (gitignored).
USAGE
}

RUNS="${BENCH_RUNS:-10}"
WARMUP="${BENCH_WARMUP:-2}"
ROUNDS="${BENCH_ROUNDS:-5}"
DURATION="${BENCH_DURATION:-10s}"
WRK_WARMUP="${BENCH_WRK_WARMUP:-3s}"
THREADS="${BENCH_THREADS:-2}"
CONNECTIONS="${BENCH_CONNECTIONS:-32}"
WORKERS="${BENCH_WORKERS:-2}"
APP="${BENCH_APP:-flask}"
URL_PATH="${BENCH_PATH:-}"
ONLY="${BENCH_ONLY:-}"
REQUESTS="${BENCH_REQUESTS:-1000}"

while [[ $# -gt 0 ]]; do
  case "$1" in
    -r|--runs)        RUNS="${2:?--runs needs a value}"; shift 2 ;;
    --runs=*)         RUNS="${1#*=}"; shift ;;
    -w|--warmup)      WARMUP="${2:?--warmup needs a value}"; shift 2 ;;
    --warmup=*)       WARMUP="${1#*=}"; shift ;;
    -n|--rounds)      ROUNDS="${2:?--rounds needs a value}"; shift 2 ;;
    --rounds=*)       ROUNDS="${1#*=}"; shift ;;
    -d|--duration)    DURATION="${2:?--duration needs a value}"; shift 2 ;;
    --duration=*)     DURATION="${1#*=}"; shift ;;
    --wrk-warmup)     WRK_WARMUP="${2:?--wrk-warmup needs a value}"; shift 2 ;;
    --wrk-warmup=*)   WRK_WARMUP="${1#*=}"; shift ;;
    -t|--threads)     THREADS="${2:?--threads needs a value}"; shift 2 ;;
    --threads=*)      THREADS="${1#*=}"; shift ;;
    -c|--connections) CONNECTIONS="${2:?--connections needs a value}"; shift 2 ;;
    --connections=*)  CONNECTIONS="${1#*=}"; shift ;;
    --workers)        WORKERS="${2:?--workers needs a value}"; shift 2 ;;
    --workers=*)      WORKERS="${1#*=}"; shift ;;
    --app)            APP="${2:?--app needs a value}"; shift 2 ;;
    --app=*)          APP="${1#*=}"; shift ;;
    --path)           URL_PATH="${2:?--path needs a value}"; shift 2 ;;
    --path=*)         URL_PATH="${1#*=}"; shift ;;
    --requests)       REQUESTS="${2:?--requests needs a value}"; shift 2 ;;
    --requests=*)     REQUESTS="${1#*=}"; shift ;;
    --only)           ONLY="${2:?--only needs a value}"; shift 2 ;;
    --only=*)         ONLY="${1#*=}"; shift ;;
    -h|--help)        usage; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in RUNS WARMUP ROUNDS THREADS CONNECTIONS WORKERS REQUESTS; do
  if ! [[ "${!v}" =~ ^[0-9]+$ ]]; then
    echo "run.sh: $v must be a non-negative integer, got '${!v}'" >&2; exit 2
  fi
done
for v in DURATION WRK_WARMUP; do
  if ! [[ "${!v}" =~ ^[0-9]+[smh]?$ ]]; then
    echo "run.sh: $v must be a wrk duration such as 15s or 1m, got '${!v}'" >&2; exit 2
  fi
done
if (( RUNS < 2 || ROUNDS < 1 || THREADS < 1 || WORKERS < 1 || CONNECTIONS < THREADS || REQUESTS < 1 )); then
  echo "run.sh: need --runs >= 2, --rounds >= 1, --threads >= 1, --workers >= 1, --connections >= --threads, --requests >= 1" >&2; exit 2
fi
# Each app's module for gunicorn, the file that shows the directory holds it, and
# the path loaded: Django's index, as /articles/N/ writes to one SQLite file that
# both workers share, which measures SQLite's locking more than the tools.
case "$APP" in
  flask)  APP_MODULE=flask_app:app; APP_FILE=flask_app.py; DEFAULT_PATH=/users/7 ;;
  django) APP_MODULE=mysite.wsgi:application; APP_FILE=mysite/wsgi.py; DEFAULT_PATH=/ ;;
  *) echo "run.sh: --app must be flask or django, got '$APP'" >&2; exit 2 ;;
esac
URL_PATH="${URL_PATH:-$DEFAULT_PATH}"
[[ "$URL_PATH" == /* ]] || { echo "run.sh: --path must start with /" >&2; exit 2; }
case "$ONLY" in
  "")           DO_A=1; DO_B=1; DO_C=0 ;;
  startup)      DO_A=1; DO_B=0; DO_C=0 ;;
  throughput)   DO_A=0; DO_B=1; DO_C=0 ;;
  instructions) DO_A=0; DO_B=0; DO_C=1 ;;
  *) echo "run.sh: --only must be startup, throughput or instructions, got '$ONLY'" >&2; exit 2 ;;
esac


# --- locations ---------------------------------------------------------------
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/../lib.sh"
RESULTS_DIR="$SCRIPT_DIR/results"
APP_DIR="${BENCH_APP_DIR:-$REPO_ROOT/tests/fixtures/python}"
[[ -n "${BENCH_APP_DIR:-}" || "$APP" != django ]] || APP_DIR="$APP_DIR/django_site"

# --- tools -------------------------------------------------------------------

missing=()
if (( DO_A )); then command -v hyperfine >/dev/null || missing+=(hyperfine); fi
if (( DO_B )); then command -v wrk >/dev/null || missing+=(wrk); fi
if (( DO_C )); then command -v valgrind >/dev/null || missing+=(valgrind); fi
command -v setsid >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
if (( DO_A )); then
  hyperfine --help 2>/dev/null | grep -q -- '--shell' || die "hyperfine too old (need -N/--shell=none, hyperfine >= 1.13)"
fi

# --- otel-run binary ---------------------------------------------------------
find_otel_run
OTEL_RUN_IDENTITY="$(otel_run_identity)"
log "measuring $OTEL_RUN_IDENTITY"

# --- the venv (python, gunicorn, opentelemetry-instrument) --------------------------
if [[ -n "${BENCH_VENV:-}" ]]; then
  VENV="$BENCH_VENV"
else
  VENV_SH="$REPO_ROOT/.ci/python/venv.sh"
  [[ -f "$VENV_SH" ]] || die "$VENV_SH not found (or set BENCH_VENV to a venv)"
  log "venv: bash .ci/python/venv.sh apps"
  VENV_PY_OUT="$(bash "$VENV_SH" apps | tail -n1)" || die "venv.sh apps failed"
  [[ -n "$VENV_PY_OUT" ]] || die "venv.sh apps printed no python path"
  VENV="$(dirname "$(dirname "$VENV_PY_OUT")")"
fi
[[ -d "$VENV/bin" ]] || die "venv $VENV has no bin/ directory"
VENV="$(cd "$VENV" && pwd -P)"
VENV_BIN="$VENV/bin"            # not resolved further: bin/python is a symlink that must stay one
VENV_PY="$VENV_BIN/python"
OTEL_INSTRUMENT="$VENV_BIN/opentelemetry-instrument"
GUNICORN="$VENV_BIN/gunicorn"
for f in "$VENV_PY" "$OTEL_INSTRUMENT" "$GUNICORN"; do
  [[ -x "$f" ]] || die "$f missing: the venv needs python, opentelemetry-distro and gunicorn"
done
if (( DO_B || DO_C )); then
  [[ -f "$APP_DIR/$APP_FILE" ]] || die "$APP_DIR/$APP_FILE not found (set BENCH_APP_DIR)"
  APP_DIR="$(cd "$APP_DIR" && pwd -P)"
fi

# --- the collector -------------------------------------------------------------------
if [[ -n "${OTELCOL:-}" ]]; then
  OTELCOL_BIN="$OTELCOL"
else
  log "collector: bash .ci/otelcol/build.sh"
  OTELCOL_BIN="$(bash "$REPO_ROOT/.ci/otelcol/build.sh" | tail -n1)" || die "otelcol build.sh failed"
fi
[[ -x "$OTELCOL_BIN" ]] || die "collector $OTELCOL_BIN is not an executable file"

# --- clean environment ----------------------------------------------------------------
# Nothing inherited may change either tool's behaviour or point it elsewhere: drop
# every OTEL_* variable (OTEL_RUN and OTEL_RUN_CACHE have been read), PYTHONPATH/
# PYTHONHOME and gunicorn's own environment settings. The venv's bin/ goes first
# on PATH, as if it were activated.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^OTEL_' || true)
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP GUNICORN_CMD_ARGS WEB_CONCURRENCY VIRTUAL_ENV
export PATH="$VENV_BIN:$PATH"
# Django's instrumentation (under either tool) instruments only a process that
# names its settings before the site is imported, as its documentation asks.
if [[ "$APP" == django ]]; then export DJANGO_SETTINGS_MODULE=mysite.settings; fi

# --- scratch dir, background processes, cleanup ---------------------------------------------
WORK_DIR="$(mktemp -d -t otel-run-bench-python.XXXXXX)"
BG_PIDS=()            # process-group leaders we started (setsid), stopped on exit
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${BG_PIDS[@]}"; do stop_bg "$pid" 10 || true; done
  rm -rf "$WORK_DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

alive() {  # alive PID: running (not gone, not a zombie)
  local stat
  { read -r stat < "/proc/$1/stat"; } 2>/dev/null || return 1
  stat="${stat##*) }"
  [[ "${stat%% *}" != Z ]]
}

start_bg() {  # start_bg DIR LOG CMD... -> BG_PID; CMD leads its own process group, logs appended
  local dir="$1" logf="$2"; shift 2
  ( cd "$dir" && exec setsid "$@" ) </dev/null >>"$logf" 2>&1 &
  BG_PID=$!
  BG_PIDS+=("$BG_PID")
}

stop_bg() {  # stop_bg PID TIMEOUT_S: SIGTERM, wait, then SIGKILL the whole group
  local pid="$1" timeout="$2" i
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      log "WARNING: pid $pid still running ${timeout}s after SIGTERM: SIGKILL"
    fi
  fi
  # Whatever is left of the group (the leader, or children it left behind) goes now.
  for ((i = 0; i < 20; i++)); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local keep=() p
  for p in "${BG_PIDS[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
  BG_PIDS=("${keep[@]}")
}

free_ports() {  # free_ports N: N distinct free loopback TCP ports, one per line
  "$VENV_PY" -I -c '
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print("\n".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

port_open() {  # port_open PORT
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

http_status() {  # http_status PORT PATH: prints the status code of one GET (HTTP/1.0)
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
    IFS=' ' read -r -t 10 _ code _ <&3 || exit 1
    printf '%s\n' "$code"
  ) 2>/dev/null
}

wait_for() {  # wait_for WHAT PID LOG TIMEOUT_S CHECK...: poll CHECK until it succeeds
  local what="$1" pid="$2" logf="$3" timeout="$4" i; shift 4
  for ((i = 0; i < timeout * 10; i++)); do
    if "$@"; then return 0; fi
    if ! alive "$pid"; then
      tail -n 30 "$logf" >&2 || true
      die "$what exited before it was ready (log: $logf)"
    fi
    sleep 0.1
  done
  tail -n 30 "$logf" >&2 || true
  die "$what not ready after ${timeout}s (log: $logf)"
}

PROBE_STATUS=""
http_probe() {  # http_probe PORT PATH: true once the server answers at all (status in PROBE_STATUS)
  PROBE_STATUS="$(http_status "$1" "$2" || true)"
  [[ -n "$PROBE_STATUS" ]]
}

SPANS_FILE="$WORK_DIR/collector-out.jsonl"
file_size() { stat -c %s "$SPANS_FILE" 2>/dev/null || echo 0; }
settle_spans() {  # wait until the collector's output stops growing (1 s quiet, 30 s max)
  local prev=-1 cur quiet=0 i
  for ((i = 0; i < 300 && quiet < 10; i++)); do
    cur="$(file_size)"
    if [[ "$cur" == "$prev" ]]; then quiet=$((quiet + 1)); else quiet=0; prev="$cur"; fi
    sleep 0.1
  done
  (( quiet >= 10 )) || log "WARNING: collector output still growing after 30s"
}

mkdir -p "$RESULTS_DIR"
rm -f "$RESULTS_DIR"/{hyperfine-*.json,wrk-*.json,wrk-*.txt,server-*.log,callgrind-*,collector.log,segments.tsv,rounds-*.tsv,summary.md,summary.json}
"$VENV_PY" -m pip freeze --disable-pip-version-check > "$RESULTS_DIR/venv-freeze.txt" 2>/dev/null || true

LOAD_BEFORE="$(load_average)"
LOAD1="${LOAD_BEFORE%% *}"
if awk -v l="$LOAD1" -v n="$(nproc)" 'BEGIN { exit !(l > 0.5 * n) }'; then
  log "WARNING: 1-minute load average is $LOAD1 on $(nproc) CPUs: expect noisy numbers"
fi

# --- collector: OTLP gRPC + HTTP on loopback -> one OTLP/JSON-lines file ---------------------
mapfile -t PORTS < <(free_ports 2)
GRPC_PORT="${PORTS[0]}"; HTTP_PORT="${PORTS[1]}"
ENDPOINT="http://127.0.0.1:$GRPC_PORT"
cat > "$WORK_DIR/otelcol.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$GRPC_PORT
      http:
        endpoint: 127.0.0.1:$HTTP_PORT
exporters:
  file:
    path: $SPANS_FILE
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
    metrics:
      receivers: [otlp]
      exporters: [file]
    logs:
      receivers: [otlp]
      exporters: [file]
YAML
log "collector $OTELCOL_BIN: OTLP gRPC 127.0.0.1:$GRPC_PORT, HTTP 127.0.0.1:$HTTP_PORT"
start_bg "$WORK_DIR" "$RESULTS_DIR/collector.log" "$OTELCOL_BIN" --config "file:$WORK_DIR/otelcol.yaml"
COLLECTOR_PID="$BG_PID"
wait_for collector "$COLLECTOR_PID" "$RESULTS_DIR/collector.log" 30 port_open "$GRPC_PORT"
wait_for collector "$COLLECTOR_PID" "$RESULTS_DIR/collector.log" 30 port_open "$HTTP_PORT"

SEGMENTS="$RESULTS_DIR/segments.tsv"   # which bytes of the collector output each row produced
printf 'part\tindex\tround\tname\tstart\tend\n' > "$SEGMENTS"

cmd_string() {  # quote an argv for hyperfine -N (POSIX shell-words splitting)
  local out="" a
  for a in "$@"; do out+="$(printf '%q' "$a") "; done
  printf '%s' "${out% }"
}

# --- A. start-up ---------------------------------------------------------------------------------
A_NAMES=(
  "python -c pass"
  "otel-run -- python -c pass"
  "opentelemetry-instrument python -c pass"
)
A_CMD_0=("$VENV_PY" -c pass)
A_CMD_1=("$OTEL_RUN_BIN" --exporter-otlp-endpoint "$ENDPOINT" -- "$VENV_PY" -c pass)
A_CMD_2=("$OTEL_INSTRUMENT" --exporter_otlp_endpoint "$ENDPOINT" "$VENV_PY" -c pass)

a_row() {  # a_row INDEX ROUND: one row of A, once: a hyperfine run of its command
  declare -n cmd="A_CMD_$1"
  hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --style none \
    --export-json "$RESULTS_DIR/hyperfine-$1-r$2.json" \
    --command-name "${A_NAMES[$1]}" "$(cmd_string "${cmd[@]}")" >/dev/null
  unset -n cmd
}

if (( DO_A )); then
  # Sanity: every command must succeed before we time it.
  for i in "${!A_NAMES[@]}"; do
    declare -n cmd="A_CMD_$i"
    "${cmd[@]}" </dev/null >/dev/null || die "'${A_NAMES[$i]}' failed (exit $?)"
    unset -n cmd
  done
  settle_spans
  seg_start="$(file_size)"
  log "A. start-up: $ROUNDS interleaved rounds, hyperfine $WARMUP warm-up + $RUNS runs per row"
  interleave_rounds "$ROUNDS" a_row "${!A_NAMES[@]}"
  settle_spans
  printf 'A\t0\t1\t%s\t%s\t%s\n' "hyperfine (all rows and rounds)" "$seg_start" "$(file_size)" >> "$SEGMENTS"
fi

# --- B. throughput ---------------------------------------------------------------------------------
B_NAMES=(
  "gunicorn (bare)"
  "otel-run --service-name bench -- gunicorn"
  "opentelemetry-instrument --service_name bench gunicorn"
  "opentelemetry-instrument, no SDK (the API's no-op providers) gunicorn"
)
B_PREFIX_0=()
B_PREFIX_1=("$OTEL_RUN_BIN" --service-name bench --exporter-otlp-endpoint "$ENDPOINT" --)
B_PREFIX_2=("$OTEL_INSTRUMENT" --service_name bench --exporter_otlp_endpoint "$ENDPOINT")
# The ceiling: the same instrumentations with no SDK behind the API. Naming a
# configurator that does not exist keeps opentelemetry-instrument from loading
# the SDK's, so every tracer and meter is the API's no-op one: the instrumentations
# run, nothing is recorded or exported. No tool that keeps these instrumentations
# can serve more than this row.
B_PREFIX_3=(env OTEL_PYTHON_CONFIGURATOR=bench-no-sdk "$OTEL_INSTRUMENT" --service_name bench)

cat > "$WORK_DIR/report.lua" <<'LUA'
-- Writes wrk's summary as JSON to $WRK_REPORT (latencies in microseconds).
done = function(summary, latency, requests)
  local e = summary.errors
  local f = assert(io.open(os.getenv("WRK_REPORT"), "w"))
  f:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "stdev": %.1f, "min": %d, "max": %d, ' ..
    '"p50": %d, "p75": %d, "p90": %d, "p99": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.min, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99)))
  f:close()
end
LUA

# gunicorn >= 25 opens a control socket at ~/.gunicorn/gunicorn.ctl by default: one
# path shared by every gunicorn on the machine. Not needed here, so off when supported.
GUNICORN_EXTRA=()
if (( DO_B )) && "$GUNICORN" --help 2>/dev/null | grep -q -- '--no-control-socket'; then
  GUNICORN_EXTRA=(--no-control-socket)
fi

tree_ticks() {  # tree_ticks PID: CPU clock ticks (user + system) of PID and all its descendants
  "$VENV_PY" -I -c '
import os, sys
children = {}
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append((int(entry), int(fields[11]) + int(fields[12])))
total, todo = 0, [int(sys.argv[1])]
try:
    with open("/proc/%s/stat" % sys.argv[1]) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    total = int(fields[11]) + int(fields[12])
except OSError:
    pass
while todo:
    for pid, ticks in children.get(todo.pop(), ()):
        total += ticks
        todo.append(pid)
print(total)' "$1"
}

b_row() {  # b_row INDEX ROUND: one row of B, once: its own server, a wrk warm-up, the measured run
  local i="$1" round="$2" port server server_log url pid seg
  declare -n prefix="B_PREFIX_$i"
  port="$(free_ports 1)"
  server=("${prefix[@]}" "$GUNICORN" -w "$WORKERS" -b "127.0.0.1:$port" "${GUNICORN_EXTRA[@]}" "$APP_MODULE")
  unset -n prefix
  server_log="$RESULTS_DIR/server-$i-r$round.log"
  settle_spans
  seg="$(file_size)"
  log "B$i. ${B_NAMES[$i]} on 127.0.0.1:$port"
  printf '$ cd %q && %s\n' "$APP_DIR" "$(cmd_string "${server[@]}")" > "$server_log"
  start_bg "$APP_DIR" "$server_log" "${server[@]}"
  pid="$BG_PID"
  wait_for "server '${B_NAMES[$i]}'" "$pid" "$server_log" 60 http_probe "$port" "$URL_PATH"
  [[ "$PROBE_STATUS" == 200 ]] || die "GET $URL_PATH answered '$PROBE_STATUS', not 200 (log: $server_log)"
  url="http://127.0.0.1:$port$URL_PATH"
  WRK_REPORT="$RESULTS_DIR/wrk-$i-r$round-warmup.json" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WRK_WARMUP" -s "$WORK_DIR/report.lua" "$url" >/dev/null
  alive "$pid" || die "server '${B_NAMES[$i]}' died during the warm-up (log: $server_log)"
  local row0 col0
  row0="$(tree_ticks "$pid")"; col0="$(tree_ticks "$COLLECTOR_PID")"
  WRK_REPORT="$RESULTS_DIR/wrk-$i-r$round.json" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK_DIR/report.lua" "$url" \
    > "$RESULTS_DIR/wrk-$i-r$round.txt"
  alive "$pid" || die "server '${B_NAMES[$i]}' died during the run (log: $server_log)"
  # What the row's processes (the tool, gunicorn, its workers) and the collector
  # spent during the measured run, in clock ticks.
  printf '{"row_ticks": %s, "collector_ticks": %s, "ticks_per_s": %s}\n' \
    "$(( $(tree_ticks "$pid") - row0 ))" "$(( $(tree_ticks "$COLLECTOR_PID") - col0 ))" "$(getconf CLK_TCK)" \
    > "$RESULTS_DIR/cpu-$i-r$round.json"
  stop_bg "$pid" 60
  settle_spans
  printf 'B\t%s\t%s\t%s\t%s\t%s\n' "$i" "$round" "${B_NAMES[$i]}" "$seg" "$(file_size)" >> "$SEGMENTS"
}

if (( DO_B )); then
  log "B. throughput: $ROUNDS interleaved rounds, wrk -t$THREADS -c$CONNECTIONS, $WRK_WARMUP warm-up + $DURATION per row, gunicorn -w $WORKERS"
  interleave_rounds "$ROUNDS" b_row "${!B_NAMES[@]}"
fi

# --- C. instructions -------------------------------------------------------------------------------
# python, as each row's command: under callgrind for the loop itself, plain for
# anything else (otel-run and the distro look at the interpreter first). The name
# stays `python`, which is how otel-run knows what it runs.
C_PYTHON="$WORK_DIR/c/python"
C_NAMES=()   # B's rows, each running the loop where B runs gunicorn
for name in "${B_NAMES[@]}"; do C_NAMES+=("${name//gunicorn/python wsgi_loop.py}"); done
C_TSV="$RESULTS_DIR/rounds-instructions.tsv"
if (( DO_C )); then
  mkdir -p "$WORK_DIR/c"
  cat > "$C_PYTHON" <<SH
#!/bin/sh
case "\$1" in
  */wsgi_loop.py) exec valgrind --tool=callgrind --callgrind-out-file=/dev/null --log-file="\$C_LOG" "$VENV_PY" "\$@" ;;
esac
exec "$VENV_PY" "\$@"
SH
  chmod +x "$C_PYTHON"
  printf 'round\trow\tmetric\tvalue\n' > "$C_TSV"
fi

c_instructions() {  # c_instructions INDEX ROUND REQUESTS: the loop's instructions, all threads
  local i="$1" round="$2" n="$3" c_log count
  declare -n prefix="B_PREFIX_$i"
  c_log="$RESULTS_DIR/callgrind-$i-r$round-$n.log"
  ( cd "$APP_DIR" && C_LOG="$c_log" WSGI_LOOP_WARMUP=100 \
      "${prefix[@]}" "$C_PYTHON" "$SCRIPT_DIR/wsgi_loop.py" "$APP_MODULE" "$URL_PATH" "$n" ) \
    > "$RESULTS_DIR/callgrind-$i-r$round-$n.out" 2>&1 \
    || die "C$i (${C_NAMES[$i]}) failed (log: $RESULTS_DIR/callgrind-$i-r$round-$n.out)"
  unset -n prefix
  count="$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$c_log" | tail -n1)"
  [[ -n "$count" ]] || die "C$i: callgrind reported no count (log: $c_log)"
  printf '%s\n' "$count"
}

c_row() {  # c_row INDEX ROUND: one row of C, once
  local i="$1" round="$2" base more
  log "C$i. ${C_NAMES[$i]}: $((200 + REQUESTS)) and 200 requests under callgrind"
  more="$(c_instructions "$i" "$round" $((200 + REQUESTS)))"
  base="$(c_instructions "$i" "$round" 200)"
  printf '%s\t%s\tthousand instructions per request\t%s.%s\n' "$round" "${C_NAMES[$i]}" \
    $(((more - base) / REQUESTS / 1000)) $(((more - base) / REQUESTS / 100 % 10)) >> "$C_TSV"
}

if (( DO_C )); then
  log "C. instructions: $ROUNDS interleaved rounds, $REQUESTS requests per row, GET $URL_PATH of $APP_MODULE"
  interleave_rounds "$ROUNDS" c_row "${!B_NAMES[@]}"
fi

# --- summary ------------------------------------------------------------------------------------------
LOAD_AFTER="$(load_average)"
OTELCOL_VERSION="$("$OTELCOL_BIN" --version 2>/dev/null | head -n1 || true)"
"$VENV_PY" -I - "$RESULTS_DIR" "$SPANS_FILE" "$OTEL_RUN_IDENTITY" "$VENV" \
  "${OTELCOL_VERSION:-?}" "$LOAD_BEFORE" "$LOAD_AFTER" "$DO_A" "$DO_B" "$ROUNDS" \
  "wrk -t$THREADS -c$CONNECTIONS -d$DURATION (after $WRK_WARMUP warm-up), gunicorn -w $WORKERS $APP_MODULE, GET $URL_PATH" \
  "${A_NAMES[@]}" "${B_NAMES[@]}" <<'PY'
import csv, json, os, platform, statistics, sys
from importlib import metadata

(results_dir, spans_file, otel_run, venv, otelcol_version,
 load_before, load_after, do_a, do_b, rounds, wrk_desc) = sys.argv[1:12]
a_names, b_names = sys.argv[12:15], sys.argv[15:19]
do_a, do_b, rounds = do_a == "1", do_b == "1", int(rounds)

def ratio(a, b):
    return a / b if b else float("nan")

def count_segment(start, end):
    """Spans (per service.name), metric points and log records in bytes [start, end)."""
    spans, metric_points, logs = {}, 0, 0
    with open(spans_file, "rb") as f:
        f.seek(start)
        data = f.read(end - start) if end > start else b""
    for line in data.splitlines():
        if not line.strip():
            continue
        doc = json.loads(line)
        for rs in doc.get("resourceSpans", []):
            svc = next((a["value"].get("stringValue", "?") for a in rs.get("resource", {}).get("attributes", [])
                        if a.get("key") == "service.name"), "?")
            n = sum(len(ss.get("spans", [])) for ss in rs.get("scopeSpans", []))
            spans[svc] = spans.get(svc, 0) + n
        for rm in doc.get("resourceMetrics", []):
            for sm in rm.get("scopeMetrics", []):
                for m in sm.get("metrics", []):
                    for kind in ("gauge", "sum", "histogram", "exponentialHistogram", "summary"):
                        metric_points += len(m.get(kind, {}).get("dataPoints", []))
        for rl in doc.get("resourceLogs", []):
            logs += sum(len(sl.get("logRecords", [])) for sl in rl.get("scopeLogs", []))
    return spans, metric_points, logs

segments = {}
with open(os.path.join(results_dir, "segments.tsv")) as f:
    for row in csv.DictReader(f, delimiter="\t"):
        segments[(row["part"], int(row["index"]), int(row["round"]))] = count_segment(int(row["start"]), int(row["end"]))

def fmt_spans(seg):
    spans, points, logs = seg
    total = sum(spans.values())
    by = ", ".join(f"{k}: {v}" for k, v in sorted(spans.items()))
    return total, (f"{total}" + (f" ({by})" if by else "")), points, logs

def version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"

summary = {"otel_run": otel_run, "venv": venv, "collector": otelcol_version,
           "load_before": load_before, "load_after": load_after}
out = ["# Python benchmark summary\n"]
out.append(f"- otel-run: `{otel_run}`")
out.append(f"- venv: `{venv}` (python {platform.python_version()}, "
           + ", ".join(f"{d} {version(d)}" for d in
                       ("opentelemetry-instrumentation", "opentelemetry-sdk", "flask", "django", "gunicorn"))
           + ")")
out.append(f"- collector: {otelcol_version} (OTLP gRPC receiver -> file exporter)")
out.append(f"- host: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}")
out.append(f"- load average (1, 5, 15 min): {load_before} before, {load_after} after\n")

if do_a:
    rows = []          # one per row and round
    for r in range(1, rounds + 1):
        for i, name in enumerate(a_names):
            with open(os.path.join(results_dir, f"hyperfine-{i}-r{r}.json")) as f:
                hf = json.load(f)["results"][0]
            rows.append({"command": name, "index": i, "round": r, "mean_ms": hf["mean"] * 1e3,
                         "stddev_ms": (hf["stddev"] or 0.0) * 1e3, "median_ms": hf["median"] * 1e3,
                         "min_ms": hf["min"] * 1e3, "runs": len(hf["times"])})
    with open(os.path.join(results_dir, "rounds-startup.tsv"), "w") as f:
        f.write("round\trow\tmetric\tvalue\n")
        for r in rows:
            for metric, key in (("mean (ms)", "mean_ms"), ("median (ms)", "median_ms"), ("min (ms)", "min_ms")):
                f.write(f"{r['round']}\t{r['command']}\t{metric}\t{r[key]}\n")
    by = {(r["index"], r["round"]): r for r in rows}
    per_round = [ratio(by[(1, k)]["mean_ms"], by[(2, k)]["mean_ms"]) for k in range(1, rounds + 1)]
    r_mean = statistics.median(per_round)
    total, _, _, _ = fmt_spans(segments[("A", 0, 1)])
    out.append(f"## A. Start-up ({rounds} interleaved rounds of hyperfine -N, {rows[0]['runs']} runs per row and round)\n")
    w = max(len(r["command"]) for r in rows)
    out.append(f"| round | {'command':<{w}} | mean ± σ (ms)     | median (ms) | min (ms) |")
    out.append(f"|-------|{'-' * (w + 2)}|-------------------|-------------|----------|")
    for r in rows:
        ms = f"{r['mean_ms']:8.2f} ± {r['stddev_ms']:6.2f}"
        out.append(f"| {r['round']:5d} | {r['command']:<{w}} | {ms:<17} | {r['median_ms']:11.2f} | {r['min_ms']:8.2f} |")
    held = sum(x <= 0.2 for x in per_round)
    out.append("")
    out.append(f"- **otel-run / opentelemetry-instrument (mean): median {r_mean:.3f} "
               f"(range {min(per_round):.3f}–{max(per_round):.3f} over {rounds} rounds)**; "
               f"target <= 0.200 {'met' if r_mean <= 0.2 else 'NOT met'} at the median, in {held} of {rounds} rounds")
    out.append(f"- spans the collector received during the hyperfine runs (all rows and rounds): {total}\n")
    summary["startup"] = {"rounds": rounds, "rows": rows, "spans": total,
                          "otel_run_over_anchor": {"median": r_mean, "per_round": per_round}}

if do_b:
    rows = []          # one per row and round
    for r in range(1, rounds + 1):
        for i, name in enumerate(b_names):
            with open(os.path.join(results_dir, f"wrk-{i}-r{r}.json")) as f:
                wrk = json.load(f)
            with open(os.path.join(results_dir, f"wrk-{i}-r{r}-warmup.json")) as f:
                warm = json.load(f)
            with open(os.path.join(results_dir, f"cpu-{i}-r{r}.json")) as f:
                cpu = json.load(f)
            total, spans_txt, points, logs = fmt_spans(segments[("B", i, r)])
            served = wrk["requests"] + warm["requests"] + 1        # + the readiness probe
            rows.append({"config": name, "index": i, "round": r,
                         "rps": wrk["requests"] / (wrk["duration_us"] / 1e6),
                         "requests": wrk["requests"], "errors": wrk["errors"],
                         "error_count": sum(wrk["errors"].values()),
                         "p50_ms": wrk["latency_us"]["p50"] / 1e3, "p99_ms": wrk["latency_us"]["p99"] / 1e3,
                         "mean_ms": wrk["latency_us"]["mean"] / 1e3,
                         "spans": total, "spans_text": spans_txt, "metric_points": points,
                         "log_records": logs, "requests_incl_warmup": served,
                         "spans_per_request": ratio(total, served),
                         "cpu_us": cpu["row_ticks"] / cpu["ticks_per_s"] * 1e6 / max(wrk["requests"], 1),
                         "collector_cpu_us": cpu["collector_ticks"] / cpu["ticks_per_s"] * 1e6
                         / max(wrk["requests"], 1)})
    # The statistics over rounds come from bench/lib.sh's rounds_report, appended below.
    with open(os.path.join(results_dir, "rounds-throughput.tsv"), "w") as f:
        f.write("round\trow\tmetric\tvalue\n")
        for r in rows:
            for metric, key in (("req/s", "rps"), ("p50 (ms)", "p50_ms"), ("p99 (ms)", "p99_ms"),
                                ("CPU µs/request", "cpu_us"), ("collector CPU µs/request", "collector_cpu_us")):
                f.write(f"{r['round']}\t{r['config']}\t{metric}\t{r[key]}\n")
    by = {(r["index"], r["round"]): r for r in rows}
    per_round = [ratio(by[(1, k)]["rps"], by[(2, k)]["rps"]) for k in range(1, rounds + 1)]
    p99_round = [ratio(by[(1, k)]["p99_ms"], by[(2, k)]["p99_ms"]) for k in range(1, rounds + 1)]
    rr, p99r = statistics.median(per_round), statistics.median(p99_round)
    out.append(f"## B. Throughput ({rounds} interleaved rounds; {wrk_desc})\n")
    out.append("Each round runs every row once, in this order. Per row and round:\n")
    w = max(len(r["config"]) for r in rows)
    out.append(f"| round | {'configuration':<{w}} | req/s    | p50 (ms) | p99 (ms) | errors | spans received (by service.name) | spans/request |")
    out.append(f"|-------|{'-' * (w + 2)}|----------|----------|----------|--------|----------------------------------|---------------|")
    for r in rows:
        out.append(f"| {r['round']:5d} | {r['config']:<{w}} | {r['rps']:8.1f} | {r['p50_ms']:8.2f} | {r['p99_ms']:8.2f} "
                   f"| {r['error_count']:6d} | {r['spans_text']:<32} | {r['spans_per_request']:13.3f} |")
    out.append("")
    held = sum(x >= 1.0 for x in per_round)
    out.append(f"- **otel-run rps / opentelemetry-instrument rps: median {rr:.3f} "
               f"(range {min(per_round):.3f}–{max(per_round):.3f} over {rounds} rounds)**; "
               f"goal >= 1.0 {'met' if rr >= 1.0 else 'NOT met'} at the median, in {held} of {rounds} rounds; "
               f"aim 1.3 {'met' if rr >= 1.3 else 'not yet'}")
    out.append(f"- otel-run p99 / opentelemetry-instrument p99: median {p99r:.3f} "
               f"(range {min(p99_round):.3f}–{max(p99_round):.3f})")
    ceiling = [ratio(by[(3, k)]["rps"], by[(2, k)]["rps"]) for k in range(1, rounds + 1)]
    bare = [ratio(by[(0, k)]["rps"], by[(2, k)]["rps"]) for k in range(1, rounds + 1)]
    cr = statistics.median(ceiling)
    out.append(f"- ceiling: the instrumentations with no SDK behind them / opentelemetry-instrument rps: "
               f"median {cr:.3f} (range {min(ceiling):.3f}–{max(ceiling):.3f}); no tool that keeps these "
               f"instrumentations serves more. Bare / opentelemetry-instrument: median "
               f"{statistics.median(bare):.3f} (range {min(bare):.3f}–{max(bare):.3f})")
    out.append(f"- spans/request counts every request served in the segment (warm-up + measured + 1 probe; "
               f"wrk does not count the <= connections requests still in flight when it stops, so a "
               f"little above 1.0 is normal). Metric points / log records received: "
               + "; ".join(f"{r['config']} (round {r['round']}): {r['metric_points']} / {r['log_records']}"
                           for r in rows if r["index"] in (1, 2) and r["round"] == 1))
    for r in rows:
        if r["index"] in (0, 3):       # bare, and the ceiling: nothing is exported by design
            continue
        if r["spans_per_request"] < 0.5:
            out.append(f"- NOTE: `{r['config']}` (round {r['round']}) exported almost no request spans: the "
                       f"app was NOT instrumented, so its throughput is that of an uninstrumented server.")
        elif r["spans_per_request"] < 0.98:
            out.append(f"- NOTE: `{r['config']}` (round {r['round']}) exported only {r['spans_per_request']:.2f} "
                       f"spans per request: spans were dropped (e.g. a full batch-processor queue), so part "
                       f"of the export cost was not paid.")
    for r in rows:
        if r["error_count"]:
            out.append(f"- WARNING: `{r['config']}` (round {r['round']}) had wrk errors {r['errors']}")
    out.append("")
    summary["throughput"] = {"wrk": wrk_desc, "rounds": rounds, "rows": rows,
                             "ceiling_over_anchor_rps": {"median": cr, "per_round": ceiling},
                             "otel_run_over_anchor_rps": {"median": rr, "per_round": per_round},
                             "otel_run_over_anchor_p99": {"median": p99r, "per_round": p99_round}}

text = "\n".join(out) + "\n"
with open(os.path.join(results_dir, "summary.md"), "w") as f:
    f.write(text)
with open(os.path.join(results_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
PY
# Medians, spreads and ratios per round, by the helper every bench shares.
if (( DO_A )); then
  { echo "## A. Start-up over rounds"; echo; rounds_report "$RESULTS_DIR/rounds-startup.tsv" "${A_NAMES[2]}"; echo; } \
    >> "$RESULTS_DIR/summary.md"
fi
if (( DO_B )); then
  { echo "## B. Throughput over rounds"; echo; rounds_report "$RESULTS_DIR/rounds-throughput.tsv" "${B_NAMES[2]}"; } \
    >> "$RESULTS_DIR/summary.md"
fi
if (( DO_C )); then
  { echo "## C. Instructions per request (callgrind, $REQUESTS requests of GET $URL_PATH, $APP_MODULE in one process)"
    echo; rounds_report "$C_TSV" "${C_NAMES[2]}"; } >> "$RESULTS_DIR/summary.md"
fi
echo
cat "$RESULTS_DIR/summary.md"
log "results in $RESULTS_DIR (summary.md, summary.json, rounds-*.tsv, hyperfine-*.json, wrk-*.json/txt, server-*.log, collector.log)"
