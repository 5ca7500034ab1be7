"""Serves GET requests to a WSGI app in this process, without a server: what
instructions.sh counts, per request, under bare Python, otel-run and
opentelemetry-instrument. No sockets, no server, no load generator: only the
app, its instrumentations and what records and exports their telemetry.

Usage: python wsgi_loop.py MODULE:APP PATH REQUESTS
  MODULE is imported from the current directory (the fixture app's).
  Before the counted REQUESTS, WSGI_LOOP_WARMUP (default 100) requests are served
  and are not told apart from them: instructions.sh subtracts a run with fewer.
"""

import importlib
import io
import os
import sys

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


for _ in range(int(os.environ.get("WSGI_LOOP_WARMUP", "100")) + requests):
    body = app(environ(), start_response)
    for _chunk in body:
        pass
    close = getattr(body, "close", None)
    if close is not None:
        close()
bad = [s for s in statuses if not s.startswith("200")]
if bad:
    sys.exit("wsgi_loop.py: %d of %d requests answered %s" % (len(bad), len(statuses), bad[0]))
# Exit: the providers' exit flush exports what is still queued, in every row.
