#!/usr/bin/env bash
# Forwarding benchmark: `otel-run agent` and the OpenTelemetry Collector as
# forwarders of OTLP/protobuf spans, CPU per span, drops and memory.
#
# Usage: bench/forward/run.sh [-r|--rounds N] [-n|--requests N] [-h|--help]
# See bench/forward/README.md for details.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/forward/run.sh [OPTIONS]

Posts the same pre-encoded OTLP/protobuf request of 512 spans (10 attributes
each, as an HTTP server's instrumentation makes them) to each forwarder's
OTLP/HTTP receiver, from 2 connections, and forwards over OTLP/gRPC to a sink
(a collector with the debug exporter, which counts what arrives). Rows, in
interleaved rounds:
  otel-run    `otel-run agent --listen ...` exporting OTLP/gRPC to the sink
  baseline    the same with $OTEL_RUN_BASELINE (only when it is set)
  collector   the OpenTelemetry Collector (.ci/otelcol/build.sh): otlp receiver
              -> otlp exporter (compression none, as otel-run's default)
Per row and round: CPU seconds per span (utime+stime of /proc/PID/stat while
the requests are sent and forwarded), spans received by the sink minus spans
sent (drops), answers to retry, peak RSS (VmHWM). Then, on a smaller run under
valgrind's callgrind (counters zeroed once the agent listens, dumped once the
sink has every span), the instructions per forwarded span of each otel-run.

Options:
  -r, --rounds N     interleaved rounds (env BENCH_ROUNDS, default 5)
  -n, --requests N   requests of 512 spans per row and round (default 200)
  --callgrind N      requests of the callgrind run (default 20; 0 skips it)
  -h, --help         show this help

Environment:
  OTEL_RUN           otel-run binary to measure (default: <repo>/target/release/otel-run,
                     built with `cargo build-installed` if missing)
  OTEL_RUN_BASELINE  another otel-run binary measured alike, e.g. a build of main

Results go to bench/forward/results/ (gitignored).
USAGE
}

ROUNDS="${BENCH_ROUNDS:-5}"
REQUESTS=200
CALLGRIND=20
while [[ $# -gt 0 ]]; do
  case "$1" in
    -r|--rounds) ROUNDS="${2:?--rounds needs a value}"; shift 2 ;;
    -n|--requests) REQUESTS="${2:?--requests needs a value}"; shift 2 ;;
    --callgrind) CALLGRIND="${2:?--callgrind needs a value}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
for n in "$ROUNDS" "$REQUESTS" "$CALLGRIND"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "run.sh: counts are whole numbers, not $n" >&2; exit 2; }
done
(( ROUNDS >= 1 && REQUESTS >= 1 )) || { echo "run.sh: --rounds and --requests must be >= 1" >&2; exit 2; }

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/../lib.sh"
RESULTS_DIR="$SCRIPT_DIR/results"

command -v python3 >/dev/null || apt_install python3
(( CALLGRIND == 0 )) || command -v valgrind >/dev/null || apt_install valgrind
find_otel_run
BASELINE_BIN=""
if [[ -n "${OTEL_RUN_BASELINE:-}" ]]; then
  [[ -x "$OTEL_RUN_BASELINE" ]] || die "OTEL_RUN_BASELINE=$OTEL_RUN_BASELINE is not an executable file"
  BASELINE_BIN="$(cd "$(dirname "$OTEL_RUN_BASELINE")" && pwd -P)/$(basename "$OTEL_RUN_BASELINE")"
fi
log "building the collector (cached): .ci/otelcol/build.sh"
OTELCOL="$(bash "$REPO_ROOT/.ci/otelcol/build.sh" | tail -n1)"
[[ -x "$OTELCOL" ]] || die "no collector from .ci/otelcol/build.sh"
log "the Python SDK's venv (cached): .ci/python/venv.sh sdk"
SDK_PYTHON="$(bash "$REPO_ROOT/.ci/python/venv.sh" sdk | tail -n1)"
# Nothing inherited may point a forwarder at a real backend.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^OTEL_' || true)

mkdir -p "$RESULTS_DIR"
REQUEST="$RESULTS_DIR/request-512.pb"
"$SDK_PYTHON" - "$REQUEST" <<'PY'
# One ExportTraceServiceRequest of 512 spans, built with the SDK's protobuf
# classes: a Flask server's spans, 10 attributes each.
import os, sys
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

def kv(key, value):
    v = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    return KeyValue(key=key, value=v)

resource = Resource(attributes=[kv(k, v) for k, v in {
    "service.name": "shop-frontend", "service.version": "2.4.1",
    "deployment.environment.name": "production", "host.name": "web-7f9c4d-x2v8q",
    "process.pid": 4242, "process.runtime.name": "cpython",
    "telemetry.sdk.name": "opentelemetry", "telemetry.sdk.language": "python",
    "telemetry.sdk.version": "1.38.0"}.items()])
spans = []
for i in range(512):
    start = 1_760_000_000_000_000_000 + i * 1_000_000
    spans.append(Span(
        trace_id=os.urandom(16), span_id=os.urandom(8), parent_span_id=os.urandom(8),
        name="GET /api/users/<int:user_id>", kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start, end_time_unix_nano=start + 3_141_592, flags=0x301,
        attributes=[kv(k, v) for k, v in {
            "http.request.method": "GET", "url.scheme": "http",
            "url.path": f"/api/users/{1000 + i}", "http.route": "/api/users/<int:user_id>",
            "http.response.status_code": 200, "server.address": "shop.example.com",
            "server.port": 8080, "network.protocol.version": "1.1",
            "client.address": f"10.0.{i // 256}.{i % 256}",
            "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0"}.items()],
        status=Status()))
request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
    resource=resource,
    scope_spans=[ScopeSpans(scope=InstrumentationScope(
        name="opentelemetry.instrumentation.flask", version="0.59b0"), spans=spans)])])
with open(sys.argv[1], "wb") as f:
    f.write(request.SerializeToString())
PY
log "request: $(stat -c %s "$REQUEST") bytes, 512 spans"

# The forwarding run: sink, forwarder, client; its measurements on stdout as
# `metric value` lines. Used by the rounds and by the callgrind run.
FORWARD_PY="$RESULTS_DIR/forward.py"
cat > "$FORWARD_PY" <<'PY'
import http.client, os, re, signal, socket, subprocess, sys, tempfile, threading, time

row, binary, otelcol, request_path, requests = sys.argv[1:6]
callgrind = sys.argv[6] if len(sys.argv) > 6 else ""
requests = int(requests)
body = open(request_path, "rb").read()
SPANS = 512
tmp = tempfile.mkdtemp()

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def wait_listening(port, proc, what, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited: {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port}")

def collector(config, name):
    path = os.path.join(tmp, f"{name}.yaml")
    open(path, "w").write(config)
    log = open(os.path.join(tmp, f"{name}.log"), "w")
    return subprocess.Popen([otelcol, "--config", path], stdout=log, stderr=subprocess.STDOUT)

# The sink: counts what arrives (the debug exporter logs each batch's spans).
sink_port = free_port()
sink = collector(f"""
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{sink_port}
exporters:
  debug:
    verbosity: basic
service:
  telemetry:
    metrics:
      level: none
    # A line for every batch: by default the collector samples its log.
    logs:
      sampling:
        enabled: false
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
""", "sink")
wait_listening(sink_port, sink, "the sink")

def received():
    text = open(os.path.join(tmp, "sink.log")).read()
    return sum(int(n) for n in re.findall(r'"spans": (\d+)', text))

port = free_port()
env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
if row == "collector":
    forwarder = collector(f"""
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
exporters:
  otlp:
    endpoint: 127.0.0.1:{sink_port}
    compression: none
    tls:
      insecure: true
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
""", "forwarder")
else:
    argv = [binary, "agent", "--listen", f"127.0.0.1:{port}",
            "--exporter-otlp-protocol", "grpc",
            "--exporter-otlp-endpoint", f"http://127.0.0.1:{sink_port}"]
    if callgrind:
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={callgrind}",
                "--dump-instr=no", *argv]
    forwarder = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(tmp, "forwarder.log"), "w"))
wait_listening(port, forwarder, row, 600 if callgrind else 120)
if callgrind:
    subprocess.run(["callgrind_control", "--zero", str(forwarder.pid)], check=True,
                   stdout=subprocess.DEVNULL)

def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def peak_rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

lock = threading.Lock()
next_request, accepted, retried = [0], [0], [0]

def client():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while True:
        with lock:
            if next_request[0] >= requests:
                break
            next_request[0] += 1
        while True:
            try:
                conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
                answer = conn.getresponse()
                answer.read()
                status = answer.status
            except (ConnectionError, http.client.HTTPException):
                # Refused before its body was read (a full queue), the
                # connection is closed: a new one, and the request again.
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                status = 503
            if status == 200:
                with lock:
                    accepted[0] += 1
                break
            if status not in (429, 503):
                raise SystemExit(f"{row} answered {status}")
            # Told to come back: a short wait, not the advised second, so the
            # forwarder is kept busy; the answers are counted.
            with lock:
                retried[0] += 1
            time.sleep(0.05)
    conn.close()

cpu_before = cpu_seconds(forwarder.pid)
started = time.time()
threads = [threading.Thread(target=client) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
sent = accepted[0] * SPANS
deadline = time.time() + (600 if callgrind else 60)
while received() < sent and time.time() < deadline:
    time.sleep(0.05)
elapsed = time.time() - started
time.sleep(0.3)       # anything more (a duplicate) would show
got = received()
cpu = cpu_seconds(forwarder.pid) - cpu_before
if callgrind:
    subprocess.run(["callgrind_control", "--dump", str(forwarder.pid)], check=True,
                   stdout=subprocess.DEVNULL)
peak = peak_rss_mib(forwarder.pid)
forwarder.send_signal(signal.SIGTERM)
forwarder.wait(120)
sink.send_signal(signal.SIGTERM)
sink.wait(60)
print(f"spans_sent {sent}")
print(f"dropped {sent - got}")
print(f"retry_answers {retried[0]}")
print(f"cpu_us_per_span {cpu / max(sent, 1) * 1e6:.3f}")
print(f"spans_per_s {sent / elapsed:.0f}")
print(f"peak_rss_mib {peak:.1f}")
PY

OTEL_RUN_IDENTITY="$(otel_run_identity)"
log "measuring $OTEL_RUN_IDENTITY"
[[ -z "$BASELINE_BIN" ]] || log "baseline $(otel_run_identity "$BASELINE_BIN")"
log "collector $OTELCOL"
TSV="$RESULTS_DIR/forward.tsv"
printf 'round\trow\tmetric\tvalue\n' > "$TSV"
binary_of() {
  case "$1" in
    otel-run) echo "$OTEL_RUN_BIN" ;;
    baseline) echo "$BASELINE_BIN" ;;
    *) echo - ;;
  esac
}
one_run() {  # one_run ROW ROUND: lines of $TSV
  local line metric value
  while read -r metric value; do
    printf '%s\t%s\t%s\t%s\n' "$2" "$1" "$metric" "$value" >> "$TSV"
    line+="$metric $value  "
  done < <(python3 "$FORWARD_PY" "$1" "$(binary_of "$1")" "$OTELCOL" "$REQUEST" "$REQUESTS")
  printf '%-10s %s\n' "$1" "$line" >&2
}
ROWS=(otel-run)
[[ -z "$BASELINE_BIN" ]] || ROWS+=(baseline)
ROWS+=(collector)
LOAD_BEFORE="$(load_average)"
interleave_rounds "$ROUNDS" one_run "${ROWS[@]}"
LOAD_AFTER="$(load_average)"

INSTRUCTIONS=()
if (( CALLGRIND > 0 )); then
  for row in "${ROWS[@]}"; do
    [[ "$row" != collector ]] || continue
    log "callgrind: $row, $CALLGRIND requests"
    out="$RESULTS_DIR/callgrind.$row.out"
    rm -f "$out"*
    sent="$(python3 "$FORWARD_PY" "$row" "$(binary_of "$row")" "$OTELCOL" "$REQUEST" "$CALLGRIND" "$out" \
      | awk '$1 == "spans_sent" { print $2 }')"
    # The dump made once every span arrived (the forwarding alone); the file
    # written at exit holds only what came after it.
    dump="$(ls "$out".* 2>/dev/null | head -n1)"
    [[ -n "$dump" ]] || die "callgrind wrote no dump for $row"
    total="$(awk '/^(summary|totals):/ { print $2; exit }' "$dump")"
    INSTRUCTIONS+=("- $row: $total instructions for $sent spans forwarded: $((total / sent)) per span")
  done
fi

REPORT="$RESULTS_DIR/forward.md"
{
  echo "# Forwarding benchmark"
  echo
  echo "- otel-run: $OTEL_RUN_IDENTITY"
  [[ -z "$BASELINE_BIN" ]] || echo "- baseline: $(otel_run_identity "$BASELINE_BIN")"
  echo "- collector: $OTELCOL"
  echo "- $REQUESTS requests of 512 spans ($(stat -c %s "$REQUEST") bytes each) per row and round, 2 connections"
  echo "- load average before: $LOAD_BEFORE; after: $LOAD_AFTER ($(nproc) CPUs)"
  echo
  rounds_report "$TSV" collector
  if (( ${#INSTRUCTIONS[@]} > 0 )); then
    echo
    echo "Instructions per forwarded span (callgrind, $CALLGRIND requests):"
    echo
    printf '%s\n' "${INSTRUCTIONS[@]}"
  fi
} | tee "$REPORT"
log "report: $REPORT"
