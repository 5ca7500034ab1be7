#!/usr/bin/env bash
# How long otel-run takes to exit after its command, per backend state.
#
#   bash bench/exit/run.sh [OTEL_RUN_BINARY]
#
# The command is `true`; otel-run exports its process span over OTLP to a backend
# that does not resolve, refuses, never answers, answers 503 or answers 429
# (bench/exit/backends.py), once with the default timeout and once with
# OTEL_EXPORTER_OTLP_TIMEOUT=2000, over http/protobuf and gRPC. Prints the
# seconds from start to exit (the command itself takes milliseconds).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${1:-$here/../../target/release/otel-run}
ports=$(mktemp)
python3 "$here/backends.py" "$ports" &
backends=$!
trap 'kill $backends 2>/dev/null; rm -f "$ports"' EXIT
for _ in $(seq 50); do [[ -s $ports ]] && break; sleep 0.1; done
port() { awk -v n="$1" '$1 == n { print $2 }' "$ports"; }

printf 'load average: %s\n\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| backend | protocol | timeout | seconds to exit | exit code |\n|---|---|---|---:|---:|\n'
for timeout in default 2000; do
  for protocol in http/protobuf grpc; do
    for backend in unresolvable closed silent busy limited; do
      case $backend in
        unresolvable) endpoint=http://collector.invalid:4318 ;;
        *) endpoint=http://127.0.0.1:$(port "$backend") ;;
      esac
      # gRPC against the HTTP/1.1 stand-ins would fail as a protocol error,
      # not as the backend state the row names.
      if [[ $protocol == grpc && $backend != unresolvable && $backend != closed ]]; then
        [[ $backend == silent ]] || continue
      fi
      env=(OTEL_TRACES_EXPORTER=otlp OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none
           OTEL_EXPORTER_OTLP_PROTOCOL=$protocol OTEL_EXPORTER_OTLP_ENDPOINT=$endpoint)
      [[ $timeout == default ]] || env+=(OTEL_EXPORTER_OTLP_TIMEOUT=$timeout)
      start=$(date +%s.%N)
      set +e
      env "${env[@]}" "$bin" -- true 2>/dev/null
      code=$?
      set -e
      end=$(date +%s.%N)
      printf '| %s | %s | %s | %.2f | %s |\n' "$backend" "$protocol" "$timeout" \
        "$(echo "$end - $start" | bc)" "$code"
    done
  done
done
