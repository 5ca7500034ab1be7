#!/usr/bin/env bash
# Regenerates table.json, the library-to-instrumentation table otel-run ships for
# environments that have no opentelemetry-instrumentation yet. It is read from
# the package's own generated table (bootstrap_gen) of the release given, by the
# same inspect.py that reads it from a target environment.
#
#   bash src/bootstrap/python/generate-table.sh 0.66b2
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=${1:?usage: generate-table.sh OPENTELEMETRY_INSTRUMENTATION_VERSION}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
# --no-deps: only the table is read; nothing of the package is imported but it.
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
  "opentelemetry-instrumentation==$version" "opentelemetry-api" >&2
"$work/venv/bin/python" "$here/inspect.py" --table-only |
  python3 -c 'import json, sys; json.dump(json.load(sys.stdin), sys.stdout, indent=1); print()' \
  >"$here/table.json"
echo "wrote $here/table.json from opentelemetry-instrumentation $version" >&2
