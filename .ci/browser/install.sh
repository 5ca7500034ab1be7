#!/usr/bin/env bash
# What the browser tests of the viewer (tests/browser/, tests/it/viewer_browser.rs)
# and bench/viewer/ need: Debian's chromium (installed with apt when missing,
# as root) and playwright-core from npm, installed into tests/browser/node_modules
# from its committed package-lock.json with `npm ci`. playwright-core drives
# the system's chromium; it downloads no browser of its own.
#
#   bash .ci/browser/install.sh    # last line of stdout: the chromium to use
#
# Idempotent: npm ci runs only when node_modules is missing or its marker
# (node_modules/.otel-run-installed) records the sha256 of another
# package-lock.json; a second run takes well under a second. Concurrent runs
# are serialized (flock).
#
# stdout: the path of chromium. stderr: what it does.
set -euo pipefail

log() { printf 'browser/install.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=$root/tests/browser
chromium=/usr/bin/chromium

if [[ ! -x $chromium ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing chromium (apt)"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2 || die "apt-get install chromium failed"
  else
    die "missing $chromium; install Debian's chromium package and re-run"
  fi
fi
command -v node >/dev/null 2>&1 || die "node not found in PATH"
command -v npm >/dev/null 2>&1 || die "npm not found in PATH"

if command -v flock >/dev/null 2>&1; then
  cache_root=${OTEL_RUN_CACHE:-${HOME:-/tmp}/.cache/otel-run-ci}
  mkdir -p "$cache_root"
  exec 9>"$cache_root/browser-install.lock"
  flock 9
fi

marker=$dir/node_modules/.otel-run-installed
lock_sum=$(sha256sum <"$dir/package-lock.json" | cut -d' ' -f1)
if [[ -f $marker && $(cat "$marker") == "$lock_sum" ]]; then
  log "tests/browser: up to date, skipped"
else
  log "tests/browser: npm ci --no-audit --no-fund --ignore-scripts"
  rm -f "$marker"
  (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --no-progress) >&2 || die "npm ci failed"
  echo "$lock_sum" >"$marker"
fi
log "$("$chromium" --version 2>/dev/null || echo chromium)"
echo "$chromium"
