#!/usr/bin/env bash
# Runs the whole otel_rtc test suite (installs what it needs first). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/bootstrap.sh
# The real collector, Prometheus and auto-instrumentation tests must run, not skip.
export OTEL_RTC_REQUIRE_REAL_COMPONENTS=1
exec .venv/bin/python -m pytest "$@"
