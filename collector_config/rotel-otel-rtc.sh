#!/usr/bin/env bash
# Start the Rotel collector with otel_rtc's metric processor, configured by rotel.env.
#
#   collector_config/rotel-otel-rtc.sh                   # uses ./rotel.env
#   ROTEL_ENV_FILE=my.env collector_config/rotel-otel-rtc.sh
#   ROTEL_OTLP_EXPORTER_ENDPOINT=http://127.0.0.1:4318 collector_config/rotel-otel-rtc.sh
#
# PYTHON: the interpreter otel_rtc is installed in (default: .venv/bin/python of this
# checkout if present, else python3). OTEL_RTC_NO_PROCESSOR=1 runs Rotel without it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
default_py=python3
[ -x "$here/../.venv/bin/python" ] && default_py="$here/../.venv/bin/python"
PY="${PYTHON:-$default_py}"
env_file="${ROTEL_ENV_FILE:-$here/rotel.env}"

# Load the file; variables already in the environment win.
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in ''|\#*) continue ;; esac
  key="${line%%=*}"
  value="${line#*=}"
  if [ -z "${!key+x}" ]; then export "$key=$value"; fi
done < "$env_file"

# Where are rotel-agent, the processor module and the otel_rtc package?
eval "$("$PY" - <<'PYEOF'
import shlex
from otel_rtc.collector.rotel import PACKAGE_PARENT, find_rotel, processor_path
b = find_rotel()
print(f"ROTEL_BIN={shlex.quote(str(b) if b else '')}")
p = processor_path()
print(f"PROCESSOR={shlex.quote(str(p) if p.exists() else '')}")
print(f"PKG_PARENT={shlex.quote(PACKAGE_PARENT)}")
PYEOF
)"
if [ -z "$ROTEL_BIN" ]; then
  echo "rotel-agent not found: pip install 'otel-rtc[collector]'" >&2
  exit 1
fi
if [ "${OTEL_RTC_NO_PROCESSOR:-0}" != "1" ]; then
  if [ -n "$PROCESSOR" ]; then
    export ROTEL_OTLP_WITH_METRICS_PROCESSOR="${ROTEL_OTLP_WITH_METRICS_PROCESSOR:-$PROCESSOR}"
  else
    echo "warning: otel_rtc/collector/processor.py not found; running without it" >&2
  fi
fi
# rotel-agent's embedded Python must be able to `import otel_rtc`.
export PYTHONPATH="$PKG_PARENT${PYTHONPATH:+:$PYTHONPATH}"
exec "$ROTEL_BIN" start "$@"
