#!/usr/bin/env bash
# Installs the node_modules of otel-run's Node.js test fixtures
# (tests/fixtures/node/*/) from their committed package-lock.json, with
# `npm ci`, so that the tests can run the apps with
# NODE_OPTIONS='--require/--import @opentelemetry/auto-instrumentations-node/register'.
#
#   bash .ci/node/install.sh            # every tests/fixtures/node/*/ with a package-lock.json
#   bash .ci/node/install.sh DIR...     # only these fixture dirs
#
# Idempotent: a fixture is (re)installed only when its node_modules is missing,
# or its completion marker (node_modules/.otel-run-installed, written after a
# successful `npm ci`) is missing or records the sha256 of another
# package-lock.json (content, not mtime: a fresh clone or a `touch` does not
# force a reinstall, and an edit within the same clock tick is still seen).
# Otherwise it is skipped, so a second run takes well under a second.
# Concurrent runs are serialized (flock). A cold install of all three fixtures
# (empty npm cache) took ~31 s on 2 cores, mostly unpacking ~17k files.
#
# stdout: nothing. stderr: what it does.
set -euo pipefail

log() { printf 'node/install.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
fixtures=$root/tests/fixtures/node

command -v node >/dev/null 2>&1 || die "node not found in PATH"
command -v npm >/dev/null 2>&1 || die "npm not found in PATH"

# The pinned OpenTelemetry packages need ^18.19.0 || >=20.6.0 (module.register
# for --import). Warn rather than fail: the no-otel fixture works anywhere.
node_version=$(node -p 'process.versions.node')
IFS=. read -r major minor _ <<<"$node_version"
if ! { ((major == 18 && minor >= 19)) || ((major == 20 && minor >= 6)) || ((major > 20)); }; then
  log "warning: node $node_version is older than the fixtures' OpenTelemetry packages support (^18.19.0 || >=20.6.0)"
fi

if (($#)); then
  dirs=("$@")
else
  dirs=()
  for lock in "$fixtures"/*/package-lock.json; do
    [[ -e $lock ]] && dirs+=("$(dirname "$lock")")
  done
  ((${#dirs[@]})) || die "no package-lock.json under $fixtures"
fi

# Serialize concurrent installs (tests may call this in parallel). The lock
# file lives in the CI cache, not in the work tree.
if command -v flock >/dev/null 2>&1; then
  cache_root=${OTEL_RUN_CACHE:-${HOME:-/tmp}/.cache/otel-run-ci}
  mkdir -p "$cache_root"
  exec 9>"$cache_root/node-install.lock"
  flock 9
fi

needs_install() { # DIR -> 0 if npm ci is needed (reason in $reason)
  local dir=$1 marker=$1/node_modules/.otel-run-installed
  if [[ ! -d $dir/node_modules ]]; then
    reason="node_modules is missing"
  elif [[ ! -f $marker ]]; then
    reason="node_modules is incomplete (no marker of a finished npm ci)"
  elif [[ $(cat "$marker") != "$(sha256sum <"$dir/package-lock.json" | cut -d' ' -f1)" ]]; then
    reason="package-lock.json changed since the last install"
  else
    return 1
  fi
  return 0
}

for dir in "${dirs[@]}"; do
  dir=$(cd "$dir" && pwd)
  name=${dir#"$root"/}
  [[ -f $dir/package-lock.json ]] || die "$name: no package-lock.json"
  reason=
  if ! needs_install "$dir"; then
    log "$name: up to date, skipped"
    continue
  fi
  log "$name: $reason: npm ci --no-audit --no-fund --ignore-scripts"
  start=$SECONDS
  rm -f "$dir/node_modules/.otel-run-installed"
  # --ignore-scripts: the only install script in the trees is protobufjs's
  # postinstall (a version check for its optional CLI), not needed here.
  (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --no-progress) >&2 ||
    die "$name: npm ci failed"
  sha256sum <"$dir/package-lock.json" | cut -d' ' -f1 >"$dir/node_modules/.otel-run-installed"
  log "$name: installed in $((SECONDS - start))s"
done
