#!/usr/bin/env bash
# Build Prometheus (the server: the real scraper) from the Go module proxy, for
# otel-run's integration tests of its scrape endpoint. Idempotent: if the binary
# is in the cache, it only prints its path.
#
# Prometheus is built as a tool of a scratch module; the web UI's assets are not
# in the module (the API and scraping work without them).
#
# stdout: exactly one line, the absolute path of the prometheus binary.
# stderr: progress and diagnostics.
#
# Env:
#   OTEL_RUN_CACHE   cache root (default: $HOME/.cache/otel-run-ci)
set -euo pipefail

exec 3>&1 1>&2

die() { echo "prometheus/build.sh: error: $*" >&2; exit 1; }
log() { echo "prometheus/build.sh: $*" >&2; }

version=v0.316.0

cache_root=${OTEL_RUN_CACHE:-${HOME:?HOME is not set and OTEL_RUN_CACHE is empty}/.cache/otel-run-ci}
mkdir -p "$cache_root"
cache_root=$(cd "$cache_root" && pwd -P)
dest_dir=$cache_root/prometheus-$version
bin=$dest_dir/prometheus

if [[ -x $bin ]]; then
  echo "$bin" >&3
  exit 0
fi
mkdir -p "$dest_dir"

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
log "prometheus $version -> $bin ($(go version))"
go mod init otel-run.test/prometheus >&2
go get -tool "github.com/prometheus/prometheus/cmd/prometheus@$version"
go build -o "$bin.tmp.$$" github.com/prometheus/prometheus/cmd/prometheus
"$bin.tmp.$$" --version >&2 || die "built prometheus does not run"
mv -f "$bin.tmp.$$" "$bin"
cd "$dest_dir" && rm -rf "$work"
log "built in $(( $(date +%s) - start ))s"
echo "$bin" >&3
