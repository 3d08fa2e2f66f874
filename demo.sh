#!/usr/bin/env bash
# Runs the main demo on the embedded default (no collector needed). Extra args go to the demo.
set -euo pipefail
cd "$(dirname "$0")"
OTEL_RTC_SKIP_PROMETHEUS_INSTALL=1 OTEL_RTC_SKIP_CHROMIUM_INSTALL=1 ./scripts/bootstrap.sh
exec .venv/bin/python -m examples.demo "$@"
