#!/usr/bin/env bash
# Builds otel-run as a machine without clang would (OTEL_RUN_CLANG names a
# compiler that does not exist) and checks that the build succeeds and that
# `--uprobe` then says once how to get probe support while the command still
# runs with its own exit code. Uses its own target directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

OTEL_RUN_CLANG=/nonexistent/clang cargo build --locked --quiet --target-dir target/no-clang
set +e
err=$(target/no-clang/debug/otel-run --uprobe ':work' --traces-exporter console \
  --console-output /dev/null -- sh -c 'echo child ran; exit 3' 2>&1 >/dev/null)
code=$?
set -e
fail() { printf 'without-clang: %s\n--- stderr:\n%s\n' "$1" "$err" >&2; exit 1; }
((code == 3)) || fail "the command's exit code 3 became $code"
[[ $(grep -c 'otel-run: warning:' <<<"$err") -eq 1 ]] || fail "expected exactly one warning"
grep -q 'built without clang' <<<"$err" || fail "the warning does not say why"
grep -q 'apt-get install clang libbpf-dev' <<<"$err" || fail "the hint does not say how to fix it"
echo "without-clang: the build succeeds and --uprobe explains itself" >&2
