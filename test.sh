#!/usr/bin/env bash
# Runs the whole otel_rtc test suite (installs what it needs first). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
