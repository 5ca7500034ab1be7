"""A Flask service with no OpenTelemetry code: otel-run, its entrypoint, traces it."""

import os

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return "ok\n"


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "8000")))
