#!/usr/bin/env bash
# Viewer benchmark: memory per stored span, ingest rate and search time of
# `otel-run agent --ui`, against Jaeger all-in-one's memory store in the same run.
#
# Usage: bench/viewer/run.sh [-r|--rounds N] [-n|--spans N] [-h|--help]
# See bench/viewer/README.md for details.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/viewer/run.sh [OPTIONS]

Sends the same pre-encoded OTLP/HTTP protobuf requests (10-span traces, 8
attributes a span, 1000 spans a request) to `otel-run agent --ui` and to
Jaeger v2 all-in-one (memory store), in interleaved rounds, each server fresh:
  ingest   spans/s from the first request to the last trace being queryable
  memory   (RSS after - RSS before) / spans, bytes per stored span
  search   time to answer /api/traces?service=bench&limit=20 with all spans stored

Options:
  -r, --rounds N   rounds per server (default: 5)
  -n, --spans N    spans per round (default: 100000)
  -h, --help       show this help

Environment:
  OTEL_RUN   otel-run binary to measure (default: <repo>/target/release/otel-run, built if missing)
  JAEGER     Jaeger binary (default: the one `.ci/jaeger/build.sh` builds)

Results go to bench/viewer/results/ (gitignored).
USAGE
}

ROUNDS=5
SPANS=100000
while [[ $# -gt 0 ]]; do
  case "$1" in
    -r|--rounds) ROUNDS="${2:?--rounds needs a value}"; shift 2 ;;
    -n|--spans)  SPANS="${2:?--spans needs a value}"; shift 2 ;;
    -h|--help)   usage; exit 0 ;;
    *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/../lib.sh"
RESULTS_DIR="$SCRIPT_DIR/results"

find_otel_run
JAEGER_BIN="${JAEGER:-$(bash "$REPO_ROOT/.ci/jaeger/build.sh" | tail -n1)}"
[[ -x "$JAEGER_BIN" ]] || die "no Jaeger binary at $JAEGER_BIN"
# The OpenTelemetry protobuf classes build the requests.
PYTHON="$(bash "$REPO_ROOT/.ci/python/venv.sh" sdk | tail -n1)"
# Nothing inherited may point otel-run at a real backend.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^OTEL_' || true)

mkdir -p "$RESULTS_DIR"
log "measuring $OTEL_RUN_BIN against $JAEGER_BIN"
"$PYTHON" "$SCRIPT_DIR/bench.py" "$OTEL_RUN_BIN" "$JAEGER_BIN" "$ROUNDS" "$SPANS" \
  "$REPO_ROOT/tests/fixtures/jaeger.yaml" "$RESULTS_DIR/viewer.tsv" "$(otel_run_identity)"
