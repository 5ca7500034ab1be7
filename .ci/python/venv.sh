#!/usr/bin/env bash
# Creates (once) a Python venv for otel-run's integration tests from one pinned
# requirements set beside this script, and prints its python:
#
#   bash .ci/python/venv.sh sdk     # the OpenTelemetry SDK and OTLP exporters (sdk.txt)
#   bash .ci/python/venv.sh apps    # web frameworks, clients, opentelemetry-distro and
#                                   # instrumentations (apps.txt)
#   bash .ci/python/venv.sh tools   # uv and poetry (tools.txt)
#   bash .ci/python/venv.sh grpc    # Django, httpx, requests, the SDK with only the gRPC
#                                   # OTLP exporter, opentelemetry-distro (grpc.txt)
#
#   venv dir : ${OTEL_RUN_CACHE:-$HOME/.cache/otel-run-ci}/py-NAME-<sha256(NAME.txt)[:16]>
#   python   : ${OTEL_RUN_PYTHON:-python3} is used to create it
#
# Idempotent: if the venv exists with its completion marker (and its python still
# runs), nothing is installed. A venv is complete once every pinned distribution
# is installed at its pin and `pip check` passes. The LAST line on stdout is the
# absolute path of the venv's python; all diagnostics go to stderr.
set -euo pipefail

name="${1:-sdk}"
log() { printf 'venv.sh %s: %s\n' "$name" "$*" >&2; }

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$script_dir/$name.txt"
[[ -f "$req" ]] || { log "no requirements set $req"; exit 1; }

hash="$(sha256sum "$req" | cut -c1-16)"
cache="${OTEL_RUN_CACHE:-$HOME/.cache/otel-run-ci}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
venv="$cache/py-$name-$hash"
py="$venv/bin/python"
marker="$venv/.otel-run-complete"

is_complete() {
    [[ -f "$marker" ]] && [[ -x "$py" ]] && "$py" -c 'pass' >/dev/null 2>&1
}

if is_complete; then
    printf '%s\n' "$py"
    exit 0
fi

# Serialise concurrent callers on a lock file.
exec 9>"$venv.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
# Another caller may have finished while we waited for the lock.
if is_complete; then
    printf '%s\n' "$py"
    exit 0
fi

base_python="${OTEL_RUN_PYTHON:-python3}"
command -v "$base_python" >/dev/null 2>&1 || { log "no '$base_python' on PATH"; exit 1; }

start=$SECONDS
if [[ -e "$venv" ]]; then
    log "removing incomplete venv $venv"
    rm -rf "$venv"
fi
log "creating $venv with $("$base_python" --version 2>&1)"
"$base_python" -m venv "$venv" >&2
log "installing $(grep -cv '^\s*\(#\|$\)' "$req") pinned packages in one resolve"
"$py" -m pip install --disable-pip-version-check --no-input --quiet \
    --require-virtualenv -r "$req" 1>&2
"$py" -m pip check --disable-pip-version-check >&2 || { log "pip check failed: the pins in $req do not fit together"; exit 1; }
"$py" - "$req" >&2 <<'PY'
import importlib.metadata as md
import re
import sys

wrong = []
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, version = re.split(r"==", line, maxsplit=1)
    try:
        installed = md.version(name.strip())
    except md.PackageNotFoundError:
        installed = None
    if installed != version.strip():
        wrong.append(f"{name.strip()}: pinned {version.strip()}, installed {installed}")
if wrong:
    sys.exit("venv.sh: " + "; ".join(wrong))
PY
printf 'requirements-sha256=%s\n' "$(sha256sum "$req" | cut -d' ' -f1)" > "$marker.tmp"
mv "$marker.tmp" "$marker"
log "ready in $((SECONDS - start))s"
printf '%s\n' "$py"
