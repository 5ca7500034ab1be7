#!/usr/bin/env bash
# Bootstrap benchmark: how long does it take to install the instrumentations a
# Flask + requests + SQLAlchemy venv needs, with `otel-run bootstrap` (pip, then
# uv) and with the anchor `opentelemetry-bootstrap -a install`, and does it work?
#
# Each run starts from a copy of the same venv, with a warm pip/uv cache (one
# warm-up round), so the rows compare the tools, not the network; the rows take
# turns in RUNS interleaved rounds. The anchor's venv also has opentelemetry-distro, which is how a
# user gets `opentelemetry-bootstrap` in the first place.
#
# Usage: bench/bootstrap/run.sh [RUNS]     (rounds, default 5; env BENCH_RUNS)
# Output: results/rounds.tsv (seconds per row and round), results/summary.md
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=../lib.sh
source "$SCRIPT_DIR/../lib.sh"

RUNS=${1:-${BENCH_RUNS:-5}}
APP_LIBRARIES=(flask==3.1.3 requests==2.32.5 sqlalchemy==2.0.44)
RESULTS="$SCRIPT_DIR/results"
WORK="$RESULTS/work"
mkdir -p "$WORK"

command -v bc >/dev/null || apt_install bc
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

NAMES=("otel-run bootstrap (pip)" "otel-run bootstrap (uv)" "opentelemetry-bootstrap -a install")
TEMPLATES=(app app anchor)
COMMANDS=("$OURS_PIP" "$OURS_UV" "$ANCHOR")
ROUNDS_TSV="$RESULTS/rounds.tsv"
printf 'round\trow\tmetric\tvalue\n' > "$ROUNDS_TSV"
one_bootstrap() {  # one_bootstrap INDEX ROUND: a fresh copy of the row's template, one timed install
  local start end
  rm -rf "$V" && cp -a "$WORK/${TEMPLATES[$1]}" "$V"
  start=$(date +%s.%N)
  bash -c "${COMMANDS[$1]}" >/dev/null 2>&1 || true
  end=$(date +%s.%N)
  (( $2 == 0 )) || printf '%s\t%s\tseconds\t%s\n' "$2" "${NAMES[$1]}" "$(echo "$end - $start" | bc)" >> "$ROUNDS_TSV"
}
LOAD_BEFORE="$(load_average)"
log "one warm-up round (pip's and uv's caches), then $RUNS interleaved rounds"
for i in "${!NAMES[@]}"; do one_bootstrap "$i" 0; done
interleave_rounds "$RUNS" one_bootstrap "${!NAMES[@]}"
LOAD_AFTER="$(load_average)"

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

{
  echo "# bootstrap: a Flask + requests + SQLAlchemy venv"
  echo
  echo "- otel-run: $(otel_run_identity)"
  echo "- load average (1, 5, 15 min): $LOAD_BEFORE before, $LOAD_AFTER after"
  echo
  echo "| command | exit | pip check | instrumentations installed | not installed |"
  echo "| --- | ---: | --- | ---: | --- |"
  for o in "$R_PIP|${NAMES[0]}" "$R_UV|${NAMES[1]}" "$R_ANCHOR|${NAMES[2]}"; do
    IFS='|' read -r code check count failed why name <<<"$o"
    missing=0; [[ $failed == 0 ]] || missing="$failed ($why, ...)"
    echo "| $name | $code | $check | $count | $missing |"
  done
  echo
  rounds_report "$ROUNDS_TSV" "${NAMES[2]}"
} | tee "$RESULTS/summary.md"
