"""The demo runs bounded, prints a readable summary and writes OTLP JSON files."""

import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from examples.demo import LiveSummary, summary_lines

ROOT = Path(__file__).resolve().parents[1]
SPAN_KIND_CONSUMER = 5


@dataclass
class FakeStats:
    sent: int = 100
    received: int = 90
    processed: int = 88
    dropped: int = 10
    resends: int = 7
    lost: int = 1
    queue_wait: dict = field(default_factory=lambda: {"p50": 0.001, "p95": 0.02, "p99": 0.03})
    processing: dict = field(default_factory=lambda: {"p50": 0.002, "p95": 0.004,
                                                      "p99": 0.005})
    receive_to_finish: dict = field(default_factory=lambda: {"p50": 0.004, "p95": 0.025,
                                                             "p99": 0.04})
    bursts: int = 12
    max_burst_duration_s: float = 0.0456


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_summary_lines_show_everything():
    text = "\n".join(summary_lines(FakeStats(), 5.0, 20.0))
    assert "25%" in text and "5.0/20.0 s" in text
    assert "queue wait 1.00/20.0/30.0" in text
    assert "processing 2.00/4.00/5.00" in text
    assert "receive→finish 4.00/25.0/40.0" in text
    assert "bursts 12 (longest 45.6 ms" in text
    assert "dropped 10" in text and "resends 7" in text and "lost 1" in text


def test_summary_tolerates_missing_fields():
    text = "\n".join(summary_lines(object(), 1.0, 2.0))
    assert "50%" in text and "queue wait -/-/-" in text and "bursts -" in text


def test_live_summary_refreshes_about_once_a_second_without_tty():
    out = io.StringIO()
    clock = FakeClock()
    live = LiveSummary(10.0, out=out, clock=clock, tty=False)
    for _ in range(30):  # the server reports every 0.1 s
        clock.t += 0.1
        live.update(FakeStats())
    lines = out.getvalue().splitlines()
    assert 3 <= len(lines) <= 4 and live.ticks == len(lines)
    assert all("\x1b" not in line for line in lines)  # plain text in a pipe
    assert all("latency ms" in line and "bursts" in line for line in lines)


def test_live_summary_redraws_in_place_on_a_tty():
    out = io.StringIO()
    clock = FakeClock()
    live = LiveSummary(10.0, out=out, clock=clock, tty=True)
    live.update(FakeStats())
    clock.t = 1.5
    live.update(FakeStats(sent=200))
    text = out.getvalue()
    assert text.count("\x1b[3F") == 1  # moved up over the 3-line block once
    assert "sent 200" in text


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_demo_end_to_end(tmp_path):
    out_dir = tmp_path / "out"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--duration", "3", "--output-dir",
         str(out_dir), "--sfu-seconds", "5", "--export-interval", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    # live summary: one line per tick in a pipe, ending at 100 %
    ticks = [line for line in out.splitlines() if line.startswith("[")]
    assert len(ticks) >= 2, out
    assert "100%" in ticks[-1]
    for word in ("latency ms p50/p95/p99", "queue wait", "receive→finish", "bursts",
                 "dropped", "resends", "Final summary"):
        assert word in out, word
    # numbers, not placeholders, for the core counters
    m = re.search(r"sent (\d+), received (\d+), processed (\d+)", out)
    assert m and int(m.group(3)) > 0, out
    # where the telemetry went, and how to open it
    metrics_path = out_dir / "metrics.jsonl"
    assert str(metrics_path) in out and "otlpjsonfile" in out and "head -c 400" in out

    names = {m["name"] for doc in _jsonl(metrics_path) for rm in doc["resourceMetrics"]
             for sm in rm["scopeMetrics"] for m in sm["metrics"]}
    for name in ("messaging.process.duration", "otel_rtc.message.queue_wait.duration",
                 "otel_rtc.burst.duration", "messaging.client.consumed.messages",
                 "otel_rtc.subscription.duration",
                 # the SFU runs in real time beside the server, so the default processors
                 # derive true rates, sampled peaks and the per-participant load
                 "otel_rtc.traffic.bytes.rate", "otel_rtc.traffic.bytes.rate.peak",
                 "otel_rtc.traffic.load.score", "otel_rtc.traffic.load.share"):
        assert name in names, name
    assert "beside the server" in out and "otel_rtc.traffic.*.rate" in out
    spans = [s for doc in _jsonl(out_dir / "traces.jsonl") for rs in doc["resourceSpans"]
             for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert any(s.get("kind") == SPAN_KIND_CONSUMER and s["name"].startswith("process ")
               for s in spans)
    assert any(s["name"].startswith("burst ") for s in spans)
    # the burst stats lines of the reference, as OTel log records
    bodies = [r["body"]["stringValue"] for doc in _jsonl(out_dir / "logs.jsonl")
              for rl in doc["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]
    stats_lines = [b for b in bodies if b.startswith("logMessageBurstStats ")]
    assert stats_lines and '"total_message_count":' in stats_lines[0]
    res_attrs = {a["key"]: a["value"] for a in
                 _jsonl(metrics_path)[-1]["resourceMetrics"][0]["resource"]["attributes"]}
    assert res_attrs["service.name"] == {"stringValue": "otel-rtc-demo"}


def _doc_python_block(section: str) -> str:
    text = (ROOT / "docs" / "getting-started.md").read_text()
    part = text[text.index(section):]
    start = part.index("```python\n") + len("```python\n")
    return part[start:part.index("```", start)]


def test_getting_started_example_runs_as_written(tmp_path):
    script = tmp_path / "quickstart.py"
    script.write_text(_doc_python_block("## 3. Instrument a message handler"))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("file ")
    metrics_path = tmp_path / "telemetry-out" / "metrics.jsonl"
    names = {m["name"] for doc in _jsonl(metrics_path) for rm in doc["resourceMetrics"]
             for sm in rm["scopeMetrics"] for m in sm["metrics"]}
    assert {"messaging.process.duration", "otel_rtc.burst.duration",
            "otel_rtc.buffer.dropped"} <= names
    # the reading snippet of section 4 works on that file
    reader = _doc_python_block("In Python:")
    res = subprocess.run([sys.executable, "-c", reader], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "messaging.process.duration" in res.stdout


def test_demo_rejects_bad_duration():
    for flag, value in (("--duration", "0"), ("--sfu-seconds", "-1"),
                        ("--export-interval", "0")):
        res = subprocess.run([sys.executable, "-m", "examples.demo", flag, value],
                             cwd=ROOT, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert res.returncode == 2 and flag in res.stderr, (flag, res.stderr)
