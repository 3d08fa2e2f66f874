"""The Python blocks of the docs run as written (against a loopback OTLP receiver)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _blocks(page: str) -> list[str]:
    return BLOCK.findall((ROOT / "docs" / page).read_text())


@pytest.mark.parametrize("index", range(len(_blocks("processor.md"))))
def test_processor_page_blocks_run(index, tmp_path, otlp_receiver):
    code = _blocks("processor.md")[index]
    script = tmp_path / "snippet.py"
    script.write_text(code + "\nimport opentelemetry.metrics as m\n"
                      "getattr(m.get_meter_provider(), 'force_flush', lambda: None)()\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint}
    res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    assert otlp_receiver.wait_for(lambda r: r.metric_requests(), timeout=10)
