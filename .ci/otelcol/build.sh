#!/usr/bin/env bash
# Build the minimal OpenTelemetry Collector (otelcol-test) used by otel-run's
# integration tests, with the OpenTelemetry Collector Builder (ocb), from the
# Go module proxy. Idempotent: if the binary is already in the cache, it only
# prints its path.
#
# stdout: exactly one line, the absolute path of the collector binary.
# stderr: progress and diagnostics.
#
# Env:
#   OTEL_RUN_CACHE   cache root (default: $HOME/.cache/otel-run-ci)
#   OTELCOL_GOFLAGS  GOFLAGS for the builder's go commands (default: -buildvcs=false)
#
# A cold build (module download + compile) takes ~6 minutes on 2 cores (the
# loadbalancing exporter is most of it);
# later runs return at once.
set -euo pipefail

# Keep stdout clean for the final path: everything else goes to stderr.
exec 3>&1 1>&2

die() { echo "build.sh: error: $*" >&2; exit 1; }
log() { echo "build.sh: $*" >&2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
manifest=$here/builder-config.yaml
[[ -f $manifest ]] || die "manifest not found: $manifest"

# The builder must match the core component versions: take it from the
# otlpreceiver (core) line of the manifest.
version=$(sed -n 's|^[[:space:]]*-[[:space:]]*gomod:[[:space:]]*go\.opentelemetry\.io/collector/receiver/otlpreceiver[[:space:]]\{1,\}v\([0-9][0-9.]*\)[[:space:]]*$|\1|p' "$manifest" | head -n1)
[[ -n $version ]] || die "could not read the otlpreceiver version from $manifest"

cache_root=${OTEL_RUN_CACHE:-${HOME:?HOME is not set and OTEL_RUN_CACHE is empty}/.cache/otel-run-ci}
mkdir -p "$cache_root"
cache_root=$(cd "$cache_root" && pwd -P)
# The manifest's hash is in the name: a component added to it makes a new build.
dest_dir=$cache_root/otelcol-$version-$(sha256sum "$manifest" | cut -c1-12)
bin=$dest_dir/otelcol-test

# shellcheck source=../go/cached.sh
source "$here/../go/cached.sh"
cached_or_lock "$dest_dir" "$bin"

# No surprising user GOFLAGS (e.g. -mod=vendor) leaking into ocb's go mod/go build.
export GOFLAGS=${OTELCOL_GOFLAGS:--buildvcs=false}
export GOBIN=$dest_dir/bin

start=$(date +%s)
log "collector version $version -> $bin ($(go version))"

ocb=$GOBIN/builder
if [[ ! -x $ocb ]]; then
  log "installing go.opentelemetry.io/collector/cmd/builder@v$version into $GOBIN"
  go install "go.opentelemetry.io/collector/cmd/builder@v$version"
fi
[[ -x $ocb ]] || die "builder not found at $ocb after go install"

# ocb resolves the manifest's relative output_path against the working dir.
work=$dest_dir/work
rm -rf "$work"
mkdir -p "$work"
log "running ocb (module download + compile; several minutes on 2 cores)"
(cd "$work" && "$ocb" --config "$manifest")

built=$work/_build/otelcol-test
[[ -x $built ]] || die "ocb finished but $built is missing"
"$built" --version >&2 || die "built collector does not run"

# Atomic publish: rename within the same directory.
mv -f "$built" "$bin.tmp.$$"
mv -f "$bin.tmp.$$" "$bin"
rm -rf "$work"

log "built in $(( $(date +%s) - start ))s"
echo "$bin" >&3
