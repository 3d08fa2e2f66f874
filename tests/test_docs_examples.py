"""Every Python block of the README and of ``docs/*.md`` runs, as written.

A page's blocks run in order, each in a fresh interpreter, in one scratch directory
(a later block may read what an earlier one wrote, e.g. ``telemetry-out/``). The info
string of a block says how it runs:

* ```` ```python ````: no OTLP endpoint is set, so ``configure()`` writes OTLP JSON
  files into the scratch directory;
* ```` ```python otlp ````: ``OTEL_EXPORTER_OTLP_ENDPOINT`` points at a loopback OTLP
  receiver, which must receive metrics;
* ```` ```python skip: <reason> ````: not run; the reason is shown in the test report.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.S | re.M)


def _blocks(page: Path) -> list[tuple[int, str, str]]:
    """``(line, info, code)`` of every Python block of ``page``."""
    text = page.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1).strip(), m.group(2))
            for m in BLOCK.finditer(text)]


def _run(code: str, cwd: Path, endpoint: str | None) -> subprocess.CompletedProcess[str]:
    script = cwd / "snippet.py"
    script.write_text(code + "\nimport opentelemetry.metrics as m\n"
                      "getattr(m.get_meter_provider(), 'force_flush', lambda: None)()\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    if endpoint is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    return subprocess.run([sys.executable, str(script)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=90)


PAGES_WITH_BLOCKS = [p for p in PAGES if _blocks(p)]


@pytest.mark.parametrize("page", PAGES_WITH_BLOCKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_block_runs(page, tmp_path, otlp_receiver):
    skipped = []
    for line, info, code in _blocks(page):
        where = f"{page.relative_to(ROOT)}:{line}"
        if info.startswith("skip:") and info[5:].strip():
            skipped.append(f"{where}: {info[5:].strip()}")
            continue
        assert info in ("", "otlp"), f"{where}: unknown info string {info!r}"
        res = _run(code, tmp_path, otlp_receiver.endpoint if info == "otlp" else None)
        assert res.returncode == 0, f"{where}\n{res.stdout}{res.stderr}"
        assert "Traceback" not in res.stderr, f"{where}\n{res.stderr}"
        if info == "otlp":
            assert otlp_receiver.wait_for(lambda r: r.metric_requests(), timeout=10), where
    if skipped:
        pytest.skip("; ".join(skipped))


def test_the_blocks_are_found():
    # The README's "Use" block and the getting-started page must be among them, or the
    # test above would pass on nothing.
    assert _blocks(ROOT / "README.md")
    assert len(_blocks(ROOT / "docs" / "getting-started.md")) >= 2


def _metric_names(out: Path) -> set[str]:
    names = set()
    for line in (out / "metrics.jsonl").read_text().splitlines():
        for rm in json.loads(line)["resourceMetrics"]:
            for sm in rm["scopeMetrics"]:
                names.update(m["name"] for m in sm["metrics"])
    return names


def test_readme_use_block_records_what_it_shows(tmp_path):
    ((_, info, code),) = _blocks(ROOT / "README.md")
    assert info == ""
    res = _run(code, tmp_path, None)
    assert res.returncode == 0, res.stdout + res.stderr
    names = _metric_names(tmp_path / "telemetry-out")
    # handler metrics, the bursts it switches on, and the two drops of the full inbox
    assert {"messaging.process.duration", "otel_rtc.message.queue_wait.duration",
            "otel_rtc.burst.duration", "otel_rtc.burst.messages",
            "otel_rtc.buffer.dropped"} <= names, sorted(names)
    spans = [json.loads(line) for line in
             (tmp_path / "telemetry-out" / "traces.jsonl").read_text().splitlines()]
    span_names = {s["name"] for t in spans for rs in t["resourceSpans"]
                  for ss in rs["scopeSpans"] for s in ss["spans"]}
    assert "burst inbox" in span_names and any("chat" in n for n in span_names), span_names
