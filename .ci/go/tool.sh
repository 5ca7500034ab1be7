#!/usr/bin/env bash
# Build one Go command from the Go module proxy as a tool of a scratch module,
# cached: the test suite's real peers (Jaeger, Prometheus). Idempotent: if the
# binary is in the cache, it only prints its path.
#
# usage: tool.sh NAME PACKAGE VERSION [REPLACE...]
#   NAME     the binary's name and the cache folder's (NAME-VERSION)
#   PACKAGE  the command's package, e.g. github.com/jaegertracing/jaeger/cmd/jaeger
#   REPLACE  `module=module@version` pins the scratch module's go.mod needs to build
#
# stdout: exactly one line, the absolute path of the binary.
# stderr: progress and diagnostics.
# Env: OTEL_RUN_CACHE, the cache root (default: $HOME/.cache/otel-run-ci).
set -euo pipefail

exec 3>&1 1>&2

name=${1:?usage: tool.sh NAME PACKAGE VERSION [REPLACE...]}
package=${2:?usage: tool.sh NAME PACKAGE VERSION [REPLACE...]}
version=${3:?usage: tool.sh NAME PACKAGE VERSION [REPLACE...]}
shift 3

die() { echo "go/tool.sh ($name): error: $*" >&2; exit 1; }
log() { echo "go/tool.sh ($name): $*" >&2; }

cache_root=${OTEL_RUN_CACHE:-${HOME:?HOME is not set and OTEL_RUN_CACHE is empty}/.cache/otel-run-ci}
mkdir -p "$cache_root"
cache_root=$(cd "$cache_root" && pwd -P)
dest_dir=$cache_root/$name-$version
bin=$dest_dir/$name

# shellcheck source=cached.sh
source "$(dirname "${BASH_SOURCE[0]}")/cached.sh"
cached_or_lock "$dest_dir" "$bin"
export GOFLAGS=-buildvcs=false

start=$(date +%s)
work=$dest_dir/work
rm -rf "$work"
mkdir -p "$work"
cd "$work"
log "$package@$version -> $bin ($(go version))"
go mod init "otel-run.test/$name" >&2
for pin in "$@"; do
  go mod edit -replace "$pin"
done
go get -tool "$package@$version"
go build -o "$bin.tmp.$$" "$package"
"$bin.tmp.$$" --version >&2 || "$bin.tmp.$$" version >&2 || die "the built $name does not run"
mv -f "$bin.tmp.$$" "$bin"
cd "$dest_dir" && rm -rf "$work"
log "built in $(( $(date +%s) - start ))s"
echo "$bin" >&3
