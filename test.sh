#!/usr/bin/env bash
# Runs the whole otel_rtc test suite (installs what it needs first). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/bootstrap.sh
# The OpenTelemetry Collector distribution otelcol-rtc and Jaeger, from Go modules, into
# build/otelcol/ (cached: rebuilt only when their sources change), and the Go tests of
# otel_rtc's native rate processor (the shared rate vectors included).
./scripts/build_otelcol.sh
(cd otelcol-rtc && PATH="$PATH:/usr/local/go/bin" GOFLAGS="${GOFLAGS:--buildvcs=false}" \
   nice -n 10 go test ./...)
# The real collectors, Prometheus, Jaeger and auto-instrumentation tests must run, not skip.
export OTEL_RTC_REQUIRE_REAL_COMPONENTS=1
exec .venv/bin/python -m pytest "$@"
