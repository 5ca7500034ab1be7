#!/usr/bin/env bash
# Validates examples/kubernetes/ offline: the manifests with kubeconform (built
# from the Go module proxy) against JSON schemas generated from k8s.io/api's Go
# types by ./main.go (kubeconform would download its schemas, which cannot be
# done here), and each collector config they carry with the collector's own
# `validate` subcommand (the collector of ../otelcol/build.sh, given as $1).
# Cached under $OTEL_RUN_CACHE (default ~/.cache/otel-run-ci); a warm run takes
# about a second.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
otelcol=${1:?usage: validate.sh OTELCOL}
kubeconform_version=v0.8.0

log() { echo "validate.sh: $*" >&2; }
command -v go >/dev/null || export PATH=/usr/local/go/bin:$PATH
export GOWORK=off GOFLAGS=-buildvcs=false

cache=${OTEL_RUN_CACHE:-$HOME/.cache/otel-run-ci}
kubeconform=$cache/kubeconform-$kubeconform_version/kubeconform
if [[ ! -x $kubeconform ]]; then
  log "building kubeconform $kubeconform_version"
  GOBIN=$(dirname "$kubeconform") go install "github.com/yannh/kubeconform/cmd/kubeconform@$kubeconform_version"
fi
schemas=$cache/k8s-schemas-$(cat "$here/main.go" "$here/go.sum" | sha256sum | cut -c1-12)
if [[ ! -d $schemas ]]; then
  log "generating the Kubernetes JSON schemas from k8s.io/api"
  (cd "$here" && go run . schemas "$schemas.tmp.$$")
  mv "$schemas.tmp.$$" "$schemas"
fi

check() {
  "$kubeconform" -strict -summary -schema-location "$schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$@"
}
check "$repo"/examples/kubernetes/*.yaml
# A manifest with an unknown field, a wrong type and a missing field must fail:
# the schemas are strict and were read.
if out=$(check "$repo/tests/fixtures/kubernetes/invalid.yaml" 2>&1); then
  log "error: tests/fixtures/kubernetes/invalid.yaml was accepted"; exit 1
fi
for expected in "additional properties 'readinessProb' not allowed" "got string, want integer" "missing property 'name'"; do
  grep -qF "$expected" <<<"$out" || { log "error: the invalid manifest was not rejected for: $expected"; echo "$out" >&2; exit 1; }
done

configs=$(mktemp -d)
trap 'rm -rf "$configs"' EXIT
(cd "$here" && go run . configs "$configs" "$repo"/examples/kubernetes/*.yaml) >/dev/null
count=0
for config in "$configs"/*.yaml; do
  POD_IP=127.0.0.1 "$otelcol" validate --config "$config" || { log "error: $(basename "$config") is not a valid collector config"; exit 1; }
  count=$((count + 1))
done
((count == 3)) || { log "error: expected 3 collector configs, found $count"; exit 1; }
log "manifests and $count collector configs are valid"
