#!/usr/bin/env bash
# Creates (once) a Python venv with real web frameworks (Flask, gunicorn, uvicorn,
# FastAPI, Django), HTTP/DB clients (requests, urllib3, httpx, SQLAlchemy) and the
# real OpenTelemetry zero-code stack (opentelemetry-distro, opentelemetry-instrument
# and instrumentations), all pinned in apps-requirements.txt beside this script,
# for otel-run's Python framework tests against tests/fixtures/python/.
#
#   venv dir : ${OTEL_RUN_CACHE:-$HOME/.cache/otel-run-ci}/py-apps-<sha256(apps-requirements.txt)[:16]>
#   python   : ${OTEL_RUN_PYTHON:-python3} is used to create it
#
# Idempotent: if the venv exists and its completion marker is present (and its
# python still runs and imports the stack), nothing is installed. The LAST line
# on stdout is the absolute path of the venv's python executable; all
# diagnostics go to stderr. After installing, `pip check` must pass.
set -euo pipefail

log() { printf 'apps-venv.sh: %s\n' "$*" >&2; }

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
req="$script_dir/apps-requirements.txt"
[[ -f "$req" ]] || { log "missing $req"; exit 1; }

hash="$(sha256sum "$req" | cut -c1-16)"
cache="${OTEL_RUN_CACHE:-$HOME/.cache/otel-run-ci}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
venv="$cache/py-apps-$hash"
py="$venv/bin/python"
marker="$venv/.otel-run-complete"

is_complete() {
    [[ -f "$marker" ]] && [[ -x "$py" ]] && [[ -x "$venv/bin/opentelemetry-instrument" ]] &&
        "$py" -c 'import flask, django, fastapi, opentelemetry.sdk, opentelemetry.instrumentation' \
            >/dev/null 2>&1
}

if is_complete; then
    printf '%s\n' "$py"
    exit 0
fi

# Serialise concurrent callers (e.g. parallel test binaries) on a lock file.
lock="$venv.lock"
exec 9>"$lock"
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
log "creating venv $venv with $("$base_python" --version 2>&1)"
"$base_python" -m venv "$venv" >&2
log "installing $(grep -cv '^\s*\(#\|$\)' "$req") pinned packages from $req"
"$py" -m pip install --disable-pip-version-check --no-input --quiet \
    --require-virtualenv -r "$req" 1>&2
log "pip check"
if ! "$py" -m pip check --disable-pip-version-check >&2; then
    log "pip check failed: the pins in $req do not fit together"
    exit 1
fi
"$py" - >&2 <<'PY'
import importlib.metadata as md
import django, fastapi, flask, gunicorn, httpx, requests, sqlalchemy, urllib3, uvicorn  # noqa: F401,E401
import opentelemetry.sdk.trace  # noqa: F401
import opentelemetry.instrumentation.auto_instrumentation  # noqa: F401
import opentelemetry.exporter.otlp.proto.grpc.trace_exporter  # noqa: F401
import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
for d in ("flask", "gunicorn", "uvicorn", "fastapi", "django", "opentelemetry-sdk",
          "opentelemetry-instrumentation"):
    print(f"apps-venv.sh:   {d}=={md.version(d)}")
PY
printf 'requirements-sha256=%s\n' "$(sha256sum "$req" | cut -d' ' -f1)" > "$marker.tmp"
mv "$marker.tmp" "$marker"
log "venv ready in $((SECONDS - start))s"
printf '%s\n' "$py"
