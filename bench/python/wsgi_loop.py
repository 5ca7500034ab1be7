"""Serves GET requests to a WSGI app in this process, without a server: what
instructions.sh counts, per request, under bare Python, otel-run and
opentelemetry-instrument. No sockets, no server, no load generator: only the
app, its instrumentations and what records and exports their telemetry.

Usage: python wsgi_loop.py MODULE:APP PATH REQUESTS
  MODULE is imported from the current directory (the fixture app's).
  Before the counted REQUESTS, WSGI_LOOP_WARMUP (default 100) requests are served
  and are not told apart from them: instructions.sh subtracts a run with fewer.
  With WSGI_LOOP_GC=1 it prints, for the REQUESTS after the warm-up, the time
  per request and the cyclic garbage collector's share of it, and how many
  collections of each generation ran (the collector's own callbacks).
"""

import gc
import importlib
import io
import os
import sys
import time

sys.path.insert(0, os.getcwd())
module_name, _, app_name = sys.argv[1].partition(":")
app = getattr(importlib.import_module(module_name), app_name or "app")
path, requests = sys.argv[2], int(sys.argv[3])


def environ():
    return {
        "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "wsgi_loop", "HTTP_ACCEPT": "*/*", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False,
    }


statuses = []


def start_response(status, headers, exc_info=None):
    statuses.append(status)


def serve(n):
    for _ in range(n):
        body = app(environ(), start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()


collecting = [0.0, None]


def timed(phase, info):
    if phase == "start":
        collecting[1] = time.perf_counter()
    elif collecting[1] is not None:
        collecting[0] += time.perf_counter() - collecting[1]


serve(int(os.environ.get("WSGI_LOOP_WARMUP", "100")))
if os.environ.get("WSGI_LOOP_GC") == "1":
    before = [s["collections"] for s in gc.get_stats()]
    gc.callbacks.append(timed)
    started = time.perf_counter()
    serve(requests)
    took = time.perf_counter() - started
    gc.callbacks.remove(timed)
    runs = [s["collections"] - b for s, b in zip(gc.get_stats(), before)]
    print("wsgi_loop.py: %d requests, %.1f us a request, of which %.1f us collecting garbage; "
          "collections by generation %s" % (requests, took / requests * 1e6, collecting[0] / requests * 1e6, runs))
else:
    serve(requests)
bad = [s for s in statuses if not s.startswith("200")]
if bad:
    sys.exit("wsgi_loop.py: %d of %d requests answered %s" % (len(bad), len(statuses), bad[0]))
# Exit: the providers' exit flush exports what is still queued, in every row.
