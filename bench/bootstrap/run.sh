#!/usr/bin/env bash
# Bootstrap benchmark: how long does it take to install the instrumentations a
# Flask + requests + SQLAlchemy venv needs, with `otel-run bootstrap` (pip, then
# uv) and with the anchor `opentelemetry-bootstrap -a install`, and does it work?
#
# Each run starts from a copy of the same venv (hyperfine --prepare), with a warm
# pip/uv cache (one warm-up run per command), so the rows compare the tools, not
# the network. The anchor's venv also has opentelemetry-distro, which is how a
# user gets `opentelemetry-bootstrap` in the first place.
#
# Usage: bench/bootstrap/run.sh [RUNS]     (default 5; env BENCH_RUNS)
# Output: results/bootstrap.json (hyperfine), results/summary.md
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=../lib.sh
source "$SCRIPT_DIR/../lib.sh"

RUNS=${1:-${BENCH_RUNS:-5}}
APP_LIBRARIES=(flask==3.1.3 requests==2.32.5 sqlalchemy==2.0.44)
RESULTS="$SCRIPT_DIR/results"
WORK="$RESULTS/work"
mkdir -p "$WORK"

command -v hyperfine >/dev/null || apt_install hyperfine
command -v python3 >/dev/null || die "python3 is needed"
find_otel_run
log "uv from PyPI (the tools venv of .ci/python)"
UV_DIR="$(dirname "$(bash "$REPO_ROOT/.ci/python/venv.sh" tools | tail -n 1)")"
[[ -x "$UV_DIR/uv" ]] || die "no uv in $UV_DIR"

log "template venvs: ${APP_LIBRARIES[*]} (and + opentelemetry-distro for the anchor)"
rm -rf "$WORK/app" "$WORK/anchor"
python3 -m venv "$WORK/app"
"$WORK/app/bin/python" -m pip install -q --disable-pip-version-check "${APP_LIBRARIES[@]}"
python3 -m venv "$WORK/anchor"
"$WORK/anchor/bin/python" -m pip install -q --disable-pip-version-check "${APP_LIBRARIES[@]}" opentelemetry-distro

V="$WORK/v"
BASE_PATH=/usr/local/bin:/usr/bin:/bin
OURS_PIP="env PATH=$BASE_PATH $OTEL_RUN_BIN bootstrap --python $V/bin/python"
OURS_UV="env PATH=$UV_DIR:$BASE_PATH $OTEL_RUN_BIN bootstrap --python $V/bin/python"
# The console script's shebang names the template, so call its entry point
# with the copy's interpreter.
ANCHOR="$V/bin/python -c 'import sys; from opentelemetry.instrumentation.bootstrap import run; sys.argv = [\"opentelemetry-bootstrap\", \"-a\", \"install\"]; run()'"

log "hyperfine: $RUNS runs each ($(uptime | sed 's/.*load/load/'))"
hyperfine --runs "$RUNS" --warmup 1 --ignore-failure --style basic \
  --export-json "$RESULTS/bootstrap.json" \
  --prepare "rm -rf $V && cp -a $WORK/app $V" -n "otel-run bootstrap (pip)" "$OURS_PIP >/dev/null 2>&1" \
  --prepare "rm -rf $V && cp -a $WORK/app $V" -n "otel-run bootstrap (uv)" "$OURS_UV >/dev/null 2>&1" \
  --prepare "rm -rf $V && cp -a $WORK/anchor $V" -n "opentelemetry-bootstrap -a install" "$ANCHOR >/dev/null 2>&1"

# One more run of each, to see whether it worked: exit code, pip check, and
# how many instrumentation packages ended up installed.
outcome() {
  local template=$1 command=$2 code
  rm -rf "$V" && cp -a "$WORK/$template" "$V"
  set +e
  bash -c "$command" >"$RESULTS/last.out" 2>&1
  code=$?
  set -e
  local check count
  check=$("$V/bin/python" -m pip check >/dev/null 2>&1 && echo clean || echo broken)
  count=$("$V/bin/python" -m pip list --format freeze 2>/dev/null | grep -c '^opentelemetry-instrumentation-' || true)
  # The anchor goes on after a package fails (one pip call per package) and
  # still exits 0: count the packages it could not install.
  local failed
  failed=$(grep -c 'No matching distribution found for' "$RESULTS/last.out" || true)
  local why
  why=$(grep -oE 'No matching distribution found for [^ ]+' "$RESULTS/last.out" | sed 's/.*for //' | head -n 4 | paste -sd, - || true)
  printf '%s|%s|%s|%s|%s\n' "$code" "$check" "$count" "$failed" "$why"
}
log "checking each tool's result once more"
R_PIP=$(outcome app "$OURS_PIP")
R_UV=$(outcome app "$OURS_UV")
R_ANCHOR=$(outcome anchor "$ANCHOR")

python3 - "$RESULTS/bootstrap.json" "$R_PIP" "$R_UV" "$R_ANCHOR" "$(uptime | sed 's/.*load/load/')" <<'PY' | tee "$RESULTS/summary.md"
import json, sys
results = json.load(open(sys.argv[1]))["results"]
outcomes = sys.argv[2:5]
print("# bootstrap: a Flask + requests + SQLAlchemy venv (%s)\n" % sys.argv[5])
print("| command | mean s | min s | exit | pip check | instrumentations installed | not installed |")
print("| --- | ---: | ---: | ---: | --- | ---: | --- |")
for r, o in zip(results, outcomes):
    code, check, count, failed, why = o.split("|", 4)
    missing = "%s (%s, ...)" % (failed, why) if failed != "0" else "0"
    print("| %s | %.2f ± %.2f | %.2f | %s | %s | %s | %s |" % (
        r["command"], r["mean"], r["stddev"] or 0, r["min"], code, check, count, missing))
anchor = results[2]["mean"]
for r in results[:2]:
    print("\n%s / anchor: %.2f of its time" % (r["command"], r["mean"] / anchor), end="")
print()
PY
