#!/usr/bin/env bash
# Writes .cargo/launch.order: the functions a launch runs, which the linker
# places side by side (`cargo build-installed`, .cargo/config.toml).
#
# Usage: bench/launch/order.sh   (OTEL_RUN=<binary> to read another build)
#
# A launch runs about 1 MiB of otel-run's code. Left where the linker puts it by
# default, that code is spread over the whole text (about 120 of its 64 KiB
# windows), and the kernel maps the 64 KiB around every page that runs: the
# launch's peak RSS was mostly those pages, and each was a page fault. Listed
# in this file, the functions are linked together, in a few windows.
#
# The names are the mangled symbols of this build: a function renamed or moved
# gets a new one and falls back to the default place until this script runs
# again (the bench reports how many are still found, and a test of the
# installed binary fails when too few are). Run it after a change of the Rust
# compiler or of the launch's path, on the binary `cargo build-installed` makes.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=bench/lib.sh
source "$SCRIPT_DIR/../lib.sh"
command -v valgrind >/dev/null || apt_install valgrind
find_otel_run
ORDER="$REPO_ROOT/.cargo/launch.order"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# Nothing inherited may change what a launch runs; 4317/4318 refuse, as in the bench.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^OTEL_' || true)
# The launches bench/launch/run.sh measures, and one that prints the span.
launches=(
  "--traces-exporter none -- true"
  "-- true"
  "--exporter-otlp-protocol http/protobuf -- true"
  "--traces-exporter none --metrics-exporter none --logs-exporter none -- true"
)
for i in "${!launches[@]}"; do
  # shellcheck disable=SC2086  # each entry is a list of arguments
  valgrind --tool=callgrind --demangle=no --callgrind-out-file="$WORK/cg.$i" \
    "$OTEL_RUN_BIN" ${launches[$i]} </dev/null >/dev/null 2>&1 \
    || die "otel-run ${launches[$i]} failed under callgrind"
done
# Every function callgrind saw run that is a symbol of the binary, sorted so
# that the file changes only where the launch does.
sed -n 's/^c\{0,1\}fn=([0-9]*) \(.*\)$/\1/p' "$WORK"/cg.* | sort -u > "$WORK/ran"
nm --demangle=none --defined-only "$OTEL_RUN_BIN" | awk '$2 ~ /^[tTwW]$/ { print $3 }' | sort -u > "$WORK/symbols"
comm -12 "$WORK/ran" "$WORK/symbols" > "$ORDER"
log "$(wc -l < "$ORDER") functions of $(otel_run_identity) written to $ORDER"
