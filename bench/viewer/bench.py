"""Ingest, memory and search of otel-run's viewer store against Jaeger's memory store.

Called by run.sh: bench.py OTEL_RUN JAEGER ROUNDS SPANS JAEGER_YAML OUT_TSV IDENTITY
(IDENTITY: bench/lib.sh's otel_run_identity, the binary's path, version and linking).
Rounds alternate between the two servers (otel-run, Jaeger, otel-run, ...), each
started fresh on free ports, so a busy moment of the machine falls on both.
"""
import http.client
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

otel_run, jaeger, rounds, total, jaeger_yaml, out, identity = sys.argv[1:8]
rounds, total = int(rounds), int(total)
SPANS_PER_TRACE, SPANS_PER_REQUEST = 10, 1000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def requests():
    """The requests, encoded once: the client must not be what is measured."""
    now = time.time_ns()
    rng = random.Random(1)
    bodies, last_trace = [], None
    for first in range(0, total, SPANS_PER_REQUEST):
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        for k, v in [("service.name", "bench"), ("host.name", "laptop"), ("telemetry.sdk.language", "python")]:
            rs.resource.attributes.append(KeyValue(key=k, value=AnyValue(string_value=v)))
        ss = rs.scope_spans.add()
        ss.scope.name = "bench"
        for i in range(first, min(first + SPANS_PER_REQUEST, total)):
            t = i // SPANS_PER_TRACE
            trace_id = t.to_bytes(16, "big")
            span = ss.spans.add()
            span.trace_id = trace_id
            span.span_id = (i + 1).to_bytes(8, "big")
            if i % SPANS_PER_TRACE:
                span.parent_span_id = (i - i % SPANS_PER_TRACE + 1).to_bytes(8, "big")
            span.name = f"GET /items/{{id}} {i % 7}"
            span.kind = Span.SPAN_KIND_SERVER
            span.start_time_unix_nano = now + i * 1000
            span.end_time_unix_nano = now + i * 1000 + rng.randrange(1_000, 50_000_000)
            for k, v in [
                ("http.request.method", "GET"),
                ("url.path", f"/items/{i}"),
                ("http.route", "/items/{id}"),
                ("server.address", "127.0.0.1"),
                ("user_agent.original", "bench/1.0"),
                ("network.protocol.version", "1.1"),
            ]:
                span.attributes.append(KeyValue(key=k, value=AnyValue(string_value=v)))
            span.attributes.append(KeyValue(key="http.response.status_code", value=AnyValue(int_value=200)))
            span.attributes.append(KeyValue(key="server.port", value=AnyValue(int_value=8000)))
            last_trace = trace_id.hex()
        bodies.append(req.SerializeToString())
    return bodies, last_trace


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_port(port, proc, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def start(kind, tmp):
    if kind == "otel-run":
        otlp, query = free_port(), free_port()
        cmd = [otel_run, "agent", "--ui", "--listen", f"127.0.0.1:{otlp}", "--ui-listen", f"127.0.0.1:{query}",
               "--max-spans", str(total), "--bsp-max-queue-size", "65536", "--bsp-max-export-batch-size", "8192"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "otel-run.log"), "w"))
        wait_port(query, proc)
        wait_port(otlp, proc)
        return proc, otlp, query
    ports = {n: free_port() for n in ["QUERY_GRPC_PORT", "QUERY_PORT", "GRPC_PORT", "HTTP_PORT", "ZIPKIN_PORT"]}
    config = open(jaeger_yaml).read().replace("max_traces: 10000", f"max_traces: {total}")
    for name, port in ports.items():
        config = config.replace(name, str(port))
    path = os.path.join(tmp, "jaeger.yaml")
    open(path, "w").write(config)
    proc = subprocess.Popen([jaeger, "--config", path], stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "jaeger.log"), "w"))
    for port in ports.values():
        wait_port(port, proc)
    return proc, ports["HTTP_PORT"], ports["QUERY_PORT"]


def one_round(kind, bodies, last_trace):
    with tempfile.TemporaryDirectory() as tmp:
        proc, otlp, query = start(kind, tmp)
        try:
            time.sleep(1)
            before = rss_kib(proc.pid)
            conn = http.client.HTTPConnection("127.0.0.1", otlp, timeout=60)
            retries = 0
            t0 = time.perf_counter()
            for body in bodies:
                while True:
                    conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
                    r = conn.getresponse()
                    r.read()
                    if r.status == 200:
                        break
                    if r.status not in (429, 503):
                        raise SystemExit(f"{kind}: HTTP {r.status}")
                    retries += 1
                    time.sleep(0.05)
            # Ingested: the last trace is found, whole.
            while True:
                status, body = get(query, f"/api/traces/{last_trace}")
                if status == 200 and body.count(b'"spanID"') >= SPANS_PER_TRACE:
                    break
                time.sleep(0.01)
            elapsed = time.perf_counter() - t0
            time.sleep(1)
            after = rss_kib(proc.pid)
            searches = []
            for _ in range(7):
                s0 = time.perf_counter()
                status, _ = get(query, "/api/traces?service=bench&limit=20")
                searches.append(time.perf_counter() - s0)
                assert status == 200, status
            return {
                "ingest": total / elapsed,
                "bytes_per_span": (after - before) * 1024 / total,
                "search_ms": statistics.median(searches) * 1000,
                "retries": retries,
            }
        finally:
            proc.terminate()
            proc.wait(30)


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
    except Exception as e:  # noqa: BLE001 - a version is informative only
        return f"unknown ({e})"


bodies, last_trace = requests()
print(f"otel-run: {identity}")
print(f"jaeger:   {jaeger} ({version([jaeger, 'version'])})")
print(f"{total} spans a round in {len(bodies)} requests, {rounds} rounds each, interleaved")
load_before = loadavg()
results = {"otel-run": [], "jaeger": []}
for r in range(rounds):
    for kind in ("otel-run", "jaeger"):
        res = one_round(kind, bodies, last_trace)
        results[kind].append(res)
        print(f"round {r + 1} {kind:8}: {res['ingest']:9.0f} spans/s  {res['bytes_per_span']:7.0f} B/span  "
              f"search {res['search_ms']:7.1f} ms  retries {res['retries']}", flush=True)
load_after = loadavg()
print(f"load average before: {' '.join(load_before)}  after: {' '.join(load_after)}")
with open(out, "w") as f:
    f.write("server\tmetric\tmedian\tmin\tmax\n")
    for kind, rows in results.items():
        for metric in ("ingest", "bytes_per_span", "search_ms"):
            values = [row[metric] for row in rows]
            line = f"{kind}\t{metric}\t{statistics.median(values):.1f}\t{min(values):.1f}\t{max(values):.1f}"
            f.write(line + "\n")
            print(line.replace("\t", "  "))
print(f"results in {out}")
