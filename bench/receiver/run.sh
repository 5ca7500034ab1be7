#!/usr/bin/env bash
# Receiver benchmark: otel-run's peak memory (VmHWM) while hostile clients use
# its local OTLP receiver.
#
# Usage: bench/receiver/run.sh [-c|--cases LIST] [-r|--rounds N] [-h|--help]
# See bench/receiver/README.md for details.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/receiver/run.sh [OPTIONS]

Starts `otel-run --traces-exporter console --console-output /dev/null -- sleep`
once per case and round (the cases take turns, round after round), sends the
case's requests to its receiver, and reports the answers and otel-run's peak
resident memory (VmHWM of /proc/PID/status), its median and min–max over rounds:
  gzip-bomb     31 KB of gzip: 16 million empty spans (32 MB) once decompressed
  gzip-15mib    15 KB of gzip: 7.5 Mi empty spans (15 MiB), under the size limit
  plain-8mib    8 MiB of empty spans, not compressed
  json-12mib    4 Mi empty spans in OTLP/JSON (`{}` each)
  big-spans     30 requests of one span with an 8 MiB attribute; the backend
                does not answer (nothing listens), so the queue fills
  lying-bodies  40 connections announcing a 30 MB body and sending 10 bytes,
                and 10 announcing 15 MB and sending 14 MB, all left open

Options:
  -c, --cases LIST   comma-separated cases to run (default: all)
  -r, --rounds N     interleaved rounds (env BENCH_ROUNDS, default 3)
  -h, --help         show this help

Environment:
  OTEL_RUN   otel-run binary to measure (default: <repo>/target/release/otel-run,
             built with `cargo build-installed` if missing)

Results go to bench/receiver/results/ (gitignored).
USAGE
}

CASES="gzip-bomb,gzip-15mib,plain-8mib,json-12mib,big-spans,lying-bodies"
ROUNDS="${BENCH_ROUNDS:-3}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    -c|--cases) CASES="${2:?--cases needs a value}"; shift 2 ;;
    -r|--rounds) ROUNDS="${2:?--rounds needs a value}"; shift 2 ;;
    -h|--help)  usage; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 ]] || { echo "run.sh: --rounds must be >= 1" >&2; exit 2; }

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/../lib.sh"
RESULTS_DIR="$SCRIPT_DIR/results"

command -v python3 >/dev/null || apt_install python3
find_otel_run
# Nothing inherited may point otel-run at a real backend.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^OTEL_' || true)

mkdir -p "$RESULTS_DIR"
OTEL_RUN_IDENTITY="$(otel_run_identity)"
log "measuring $OTEL_RUN_IDENTITY"
TSV="$RESULTS_DIR/hostile.tsv"
printf 'round\tcase\tbody_bytes\tanswers\tpeak_rss_mib\n' > "$TSV"
one_case() {  # one_case CASE ROUND: one otel-run, one case's requests; a line of $TSV
python3 - "$OTEL_RUN_BIN" "$1" "$2" "$TSV" <<'PY'
import gzip, os, signal, socket, subprocess, sys, tempfile, time

otel_run, case, round_, out = sys.argv[1:5]

def field(number, payload):
    """A protobuf length-delimited field."""
    key, n, length = bytearray([number << 3 | 2]), len(payload), bytearray()
    while True:
        length.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not length[-1] & 0x80:
            break
    return bytes(key + length) + payload

def empty_spans(n):
    return field(1, field(2, b"\x12\x00" * n))

def span_with_attribute(size):
    value = field(1, b"x" * size)                      # AnyValue.string_value
    attribute = field(1, b"big") + field(2, value)     # KeyValue
    span = field(1, b"\x01" * 16) + field(2, b"\x02" * 8) + field(9, attribute)
    return field(1, field(2, field(2, span)))

def start(extra):
    tmp = tempfile.mkdtemp()
    endpoint = os.path.join(tmp, "endpoint")
    script = f"echo $OTEL_EXPORTER_OTLP_ENDPOINT > {endpoint}; exec sleep 600"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    child = subprocess.Popen([otel_run, *extra, "--", "sh", "-c", script], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(400):
        if os.path.exists(endpoint) and open(endpoint).read().endswith("\n"):
            return child, int(open(endpoint).read().strip().rsplit(":", 1)[1])
        time.sleep(0.05)
    raise SystemExit("otel-run did not start its command")

def vm_hwm_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024

def post(port, body, content_type="application/x-protobuf", gzip_encoded=False):
    head = (f"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n")
    if gzip_encoded:
        head += "Content-Encoding: gzip\r\n"
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(120)
        s.sendall(head.encode() + b"\r\n")
        try:
            s.sendall(body)
        except OSError:
            pass                                    # answered before reading it all
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer.split(b" ", 2)[1].decode() if answer else "none"

def lying_bodies(port):
    held = []
    for _ in range(40):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                  b"Content-Length: 30000000\r\n\r\n0123456789")
        held.append(s)
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                  b"Content-Length: 15000000\r\n\r\n")
        try:
            s.sendall(b"\0" * 14_000_000)
        except OSError:
            pass                                    # answered before reading it all
        held.append(s)
    time.sleep(2)
    statuses = []
    for s in held:
        s.settimeout(0.2)
        try:
            answer = s.recv(64)
            statuses.append(answer.split(b" ", 2)[1].decode() if answer else "closed")
        except (socket.timeout, BlockingIOError):
            statuses.append("open")
        except OSError:
            statuses.append("reset")
    return statuses, held

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

console = ["--traces-exporter", "console", "--console-output", "/dev/null"]
extra, held = console, []
if case == "big-spans":
    extra = ["--traces-exporter", "otlp", "--exporter-otlp-endpoint", f"http://127.0.0.1:{free_port()}"]
child, port = start(extra)
if case == "gzip-bomb":
    body = gzip.compress(empty_spans(16_000_000), 9)
    statuses = [post(port, body, gzip_encoded=True)]
elif case == "gzip-15mib":
    body = gzip.compress(empty_spans(15 << 19), 9)
    statuses = [post(port, body, gzip_encoded=True)]
elif case == "plain-8mib":
    body = empty_spans(4 << 20)
    statuses = [post(port, body)]
elif case == "json-12mib":
    body = ('{"resourceSpans":[{"scopeSpans":[{"spans":[' + ",".join(["{}"] * (4 << 20)) + "]}]}]}").encode()
    statuses = [post(port, body, "application/json")]
elif case == "big-spans":
    body = span_with_attribute(8 << 20)
    statuses = [post(port, body) for _ in range(30)]
elif case == "lying-bodies":
    body = b""
    statuses, held = lying_bodies(port)
else:
    raise SystemExit(f"unknown case {case}")
peak = vm_hwm_mib(child.pid)
for s in held:
    s.close()
child.send_signal(signal.SIGTERM)
child.wait(60)
summary = ",".join(f"{s}x{statuses.count(s)}" for s in dict.fromkeys(statuses))
print(f"{case:13} body {len(body):>10} B  answers {summary:28} peak RSS {peak:>6} MiB", flush=True)
with open(out, "a") as f:
    f.write("\t".join(map(str, (round_, case, len(body), summary, peak))) + "\n")
PY
}
LOAD_BEFORE="$(load_average)"
IFS=, read -r -a CASE_LIST <<<"$CASES"
interleave_rounds "$ROUNDS" one_case "${CASE_LIST[@]}"
LOAD_AFTER="$(load_average)"
{
  echo "# receiver benchmark: otel-run's peak RSS under hostile clients"
  echo
  echo "- otel-run: $OTEL_RUN_IDENTITY"
  echo "- load average (1, 5, 15 min): $LOAD_BEFORE before, $LOAD_AFTER after"
  echo
  awk -F'\t' 'BEGIN { OFS = FS; print "round", "row", "metric", "value" }
               NR > 1 { print $1, $2, "peak RSS (MiB)", $5 }' "$TSV" > "$RESULTS_DIR/rounds.tsv"
  rounds_report "$RESULTS_DIR/rounds.tsv"
} | tee "$RESULTS_DIR/summary.md"
log "results in $RESULTS_DIR (hostile.tsv, rounds.tsv, summary.md)"
