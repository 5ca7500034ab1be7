#!/usr/bin/env bash
# Builds the viewer's web UI (ui/src/*.ts and ui/static/) into ui/dist/, the
# files src/agent/viewer/assets.rs embeds in the binary. The bundle is
# committed, so building otel-run needs no node; run this after editing ui/.
#
#   bash ui/build.sh              # rebuild ui/dist/
#   bash ui/build.sh --out DIR    # build into DIR instead (the check that
#                                 # ui/dist/ is what its sources give)
#
# Reproducible: the TypeScript compiler is pinned by ui/package-lock.json
# (installed with `npm ci`), its output depends only on the sources, and the
# static files are copied as they are; two builds give the same bytes.
#
# stdout: nothing. stderr: what it does.
set -euo pipefail

log() { printf 'ui/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

ui=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$ui/dist
case ${1:-} in
  --out) [[ -n ${2:-} ]] || die "--out needs a directory"; mkdir -p "$2"; out=$(cd "$2" && pwd) ;;
  '') ;;
  *) die "unknown argument '$1' (usage: build.sh [--out DIR])" ;;
esac

command -v node >/dev/null 2>&1 || die "node not found in PATH"
command -v npm >/dev/null 2>&1 || die "npm not found in PATH"

# The compiler, installed once per package-lock.json (sha256 in the marker).
marker=$ui/node_modules/.otel-run-installed
lock_sum=$(sha256sum <"$ui/package-lock.json" | cut -d' ' -f1)
if [[ ! -f $marker || $(cat "$marker") != "$lock_sum" ]]; then
  log "installing the pinned TypeScript compiler (npm ci)"
  rm -f "$marker"
  (cd "$ui" && npm ci --no-audit --no-fund --ignore-scripts --no-progress) >&2 || die "npm ci failed"
  echo "$lock_sum" >"$marker"
fi

# Built aside, then swapped in: a failed build leaves the old bundle whole.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$ui" && node node_modules/typescript/bin/tsc -p tsconfig.json --outDir "$work") >&2 ||
  die "tsc failed"
cp "$ui"/static/* "$work"/
mkdir -p "$out"
find "$out" -mindepth 1 -maxdepth 1 -delete
cp "$work"/* "$out"/
log "built $(find "$out" -type f | wc -l) files, $(cat "$out"/* | wc -c) bytes, into ${out#"$ui"/}"
