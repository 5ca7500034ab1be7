#!/usr/bin/env bash
# Prometheus, the real scraper of the `prometheus` exporter's tests, built from
# the Go module proxy and cached (see ../go/tool.sh). The web UI's assets are
# not in the module; scraping and the query API work without them. A cold build
# takes ~10 minutes on 2 cores.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/../go/tool.sh" prometheus \
  github.com/prometheus/prometheus/cmd/prometheus v0.316.0
