#!/usr/bin/env bash
# Installs everything otel_rtc's demo and tests need, into this checkout only:
#   - a virtual env in .venv with the package (editable) and its dev extras;
#   - Debian's `prometheus` server, for the real-Prometheus tests (needs root or sudo);
#   - Debian's `chromium`, for the headless-browser test of `otel-rtc report` (same).
# Idempotent: re-running only reinstalls when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.otel_rtc-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing otel_rtc and dev dependencies into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  .venv/bin/python -c "import otel_rtc, opentelemetry.sdk, rotel" # fail loudly if it did not take
  echo "$want" > "$stamp"
fi

# Debian packages the tests need, each skippable (demo.sh needs neither).
apt_packages=()
if [ "${OTEL_RTC_SKIP_PROMETHEUS_INSTALL:-0}" != "1" ] && ! command -v prometheus >/dev/null 2>&1; then
  apt_packages+=(prometheus)   # the real-Prometheus tests
fi
if [ "${OTEL_RTC_SKIP_CHROMIUM_INSTALL:-0}" != "1" ] && ! command -v chromium >/dev/null 2>&1; then
  apt_packages+=(chromium)     # renders the `otel-rtc report` page headless in a test
fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
  echo "==> installing Debian's ${apt_packages[*]} (for the tests)"
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
  # The prometheus package starts a system service where systemd runs; tests start their own.
  ($SUDO systemctl stop prometheus prometheus-node-exporter 2>/dev/null || true)
fi
