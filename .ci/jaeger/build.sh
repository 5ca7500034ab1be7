#!/usr/bin/env bash
# Jaeger v2, the all-in-one backend of the users' documents, built from the Go
# module proxy and cached (see ../go/tool.sh). Its dependency tree needs sarama
# pinned to v1.33.0 to build. The query API works; the UI's assets are not in
# the module. A cold build takes ~5 minutes on 2 cores.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/../go/tool.sh" jaeger \
  github.com/jaegertracing/jaeger/cmd/jaeger v1.76.0 \
  github.com/Shopify/sarama=github.com/Shopify/sarama@v1.33.0
