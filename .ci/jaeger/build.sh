#!/usr/bin/env bash
# Build Jaeger v2 (the all-in-one binary users run as their backend) from the
# Go module proxy, for otel-run's integration tests. Idempotent: if the binary
# is in the cache, it only prints its path.
#
# Jaeger is built as a tool of a scratch module; its dependency tree needs
# sarama pinned to v1.33.0 to build. The query API works; the UI's assets are
# not in the module, so the UI is not served.
#
# stdout: exactly one line, the absolute path of the jaeger binary.
# stderr: progress and diagnostics.
#
# Env:
#   OTEL_RUN_CACHE   cache root (default: $HOME/.cache/otel-run-ci)
#
# A cold build takes ~5 minutes on 2 cores; later runs return at once.
set -euo pipefail

exec 3>&1 1>&2

die() { echo "jaeger/build.sh: error: $*" >&2; exit 1; }
log() { echo "jaeger/build.sh: $*" >&2; }

version=v1.76.0
sarama=v1.33.0

cache_root=${OTEL_RUN_CACHE:-${HOME:?HOME is not set and OTEL_RUN_CACHE is empty}/.cache/otel-run-ci}
mkdir -p "$cache_root"
cache_root=$(cd "$cache_root" && pwd -P)
dest_dir=$cache_root/jaeger-$version
bin=$dest_dir/jaeger

if [[ -x $bin ]]; then
  echo "$bin" >&3
  exit 0
fi
mkdir -p "$dest_dir"

# Serialize concurrent builds (flock is in util-linux).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$dest_dir/.lock"
  flock 9
  if [[ -x $bin ]]; then
    echo "$bin" >&3
    exit 0
  fi
fi

if ! command -v go >/dev/null 2>&1; then
  if [[ -x /usr/local/go/bin/go ]]; then
    export PATH=/usr/local/go/bin:$PATH
  else
    die "go not found in PATH nor at /usr/local/go/bin/go"
  fi
fi
export GOWORK=off
export GOFLAGS=-buildvcs=false

start=$(date +%s)
work=$dest_dir/work
rm -rf "$work"
mkdir -p "$work"
cd "$work"
log "jaeger $version -> $bin ($(go version))"
go mod init otel-run.test/jaeger >&2
go mod edit -replace "github.com/Shopify/sarama=github.com/Shopify/sarama@$sarama"
go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$version"
go build -o "$bin.tmp.$$" github.com/jaegertracing/jaeger/cmd/jaeger
"$bin.tmp.$$" version >&2 || die "built jaeger does not run"
mv -f "$bin.tmp.$$" "$bin"
cd "$dest_dir" && rm -rf "$work"
log "built in $(( $(date +%s) - start ))s"
echo "$bin" >&3
