#!/usr/bin/env bash
# How long otel-run takes to exit after its command, per backend state.
#
#   bash bench/exit/run.sh [-r|--rounds N] [OTEL_RUN_BINARY]
#
# The command is `true`; otel-run exports its process span over OTLP to a backend
# that does not resolve, refuses, never answers, answers 503 or answers 429
# (bench/exit/backends.py), once with the default timeout and once with
# OTEL_EXPORTER_OTLP_TIMEOUT=2000, over http/protobuf and gRPC. Prints the
# seconds from start to exit (the command itself takes milliseconds), per
# round and as the median and range over the interleaved rounds.
set -euo pipefail
ROUNDS="${BENCH_ROUNDS:-3}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    -r|--rounds) ROUNDS="${2:?--rounds needs a value}"; shift 2 ;;
    --rounds=*)  ROUNDS="${1#*=}"; shift ;;
    -h|--help)   sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option: $1" >&2; exit 2 ;;
    *)  OTEL_RUN="$1"; shift ;;
  esac
done
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 ]] || { echo "run.sh: --rounds must be >= 1" >&2; exit 2; }

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/../lib.sh"
find_otel_run

ports=$(mktemp)
rounds_tsv=$(mktemp)
python3 "$SCRIPT_DIR/backends.py" "$ports" &
backends=$!
trap 'kill $backends 2>/dev/null; rm -f "$ports" "$rounds_tsv"' EXIT
for _ in $(seq 50); do [[ -s $ports ]] && break; sleep 0.1; done
port() { awk -v n="$1" '$1 == n { print $2 }' "$ports"; }

# The rows: timeout protocol backend. gRPC against the HTTP/1.1 stand-ins would
# fail as a protocol error, not as the backend state the row names.
ROWS=()
for timeout in default 2000; do
  for protocol in http/protobuf grpc; do
    for backend in unresolvable closed silent busy limited; do
      if [[ $protocol == grpc && $backend != unresolvable && $backend != closed && $backend != silent ]]; then
        continue
      fi
      ROWS+=("$backend $protocol $timeout")
    done
  done
done

one_exit() {  # one_exit "BACKEND PROTOCOL TIMEOUT" ROUND
  local backend protocol timeout endpoint start end code seconds
  read -r backend protocol timeout <<<"$1"
  case $backend in
    unresolvable) endpoint=http://collector.invalid:4318 ;;
    *) endpoint=http://127.0.0.1:$(port "$backend") ;;
  esac
  local env=(OTEL_TRACES_EXPORTER=otlp OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none
             OTEL_EXPORTER_OTLP_PROTOCOL="$protocol" OTEL_EXPORTER_OTLP_ENDPOINT="$endpoint")
  [[ $timeout == default ]] || env+=(OTEL_EXPORTER_OTLP_TIMEOUT="$timeout")
  start=$(date +%s.%N)
  set +e
  env "${env[@]}" "$OTEL_RUN_BIN" -- true 2>/dev/null
  code=$?
  set -e
  end=$(date +%s.%N)
  seconds=$(echo "$end - $start" | bc)
  printf '| %s | %s | %s | %s | %.2f | %s |\n' "$2" "$backend" "$protocol" "$timeout" "$seconds" "$code"
  printf '%s\t%s\t%s\n' "$2" "$1" "$seconds" >> "$rounds_tsv"
}

printf 'otel-run: %s\n' "$(otel_run_identity)"
printf 'load average before: %s\n\n' "$(load_average)"
printf '| round | backend | protocol | timeout | seconds to exit | exit code |\n|---:|---|---|---|---:|---:|\n'
interleave_rounds "$ROUNDS" one_exit "${ROWS[@]}"
printf '\nload average after: %s\n\n' "$(load_average)"
awk -F'\t' 'BEGIN { OFS = FS; print "round", "row", "metric", "value" } { print $1, $2, "seconds to exit", $3 }' \
  "$rounds_tsv" > "$rounds_tsv.report"
mv "$rounds_tsv.report" "$rounds_tsv"
rounds_report "$rounds_tsv"
