#!/bin/sh
# A small "build" with three steps. Run it under otel-run and every step becomes
# a span under the build's span, in one trace:
#
#   otel-run --traces-exporter console -- sh examples/quickstart.sh
#
# Each nested otel-run finds its parent in TRACEPARENT and sends its span to the
# outer otel-run's agent, which prints them all.
set -e
otel-run --span-name compile -- sleep 0.1
otel-run --span-name test -- sh -c 'echo "3 tests passed"'
otel-run --span-name package -- true
