#!/usr/bin/env bash
# Build examples/uprobe-go, the Go program the uprobe tests probe, with the
# machine's Go (Go's build cache makes a rebuild of unchanged sources quick).
#
# stdout: exactly one line, the absolute path of the binary.
# stderr: progress and diagnostics.
set -euo pipefail

exec 3>&1 1>&2

if ! command -v go >/dev/null 2>&1; then
  if [[ -x /usr/local/go/bin/go ]]; then
    export PATH=/usr/local/go/bin:$PATH
  else
    echo "go/uprobe-example.sh: error: go not found in PATH nor at /usr/local/go/bin/go" >&2
    exit 1
  fi
fi
export GOWORK=off GOFLAGS=-buildvcs=false

dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../examples/uprobe-go" && pwd -P)
mkdir -p "$dir/build"
(cd "$dir" && go build -o build/uprobe-go .)
echo "go/uprobe-example.sh: built with $(go version)" >&2
echo "$dir/build/uprobe-go" >&3
