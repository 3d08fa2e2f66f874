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
from tests.conftest import demo_env

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


def _names(metrics_path: Path) -> set[str]:
    return {m["name"] for doc in _jsonl(metrics_path) for rm in doc["resourceMetrics"]
            for sm in rm["scopeMetrics"] for m in sm["metrics"]}


def _log_bodies(path: Path) -> list[str]:
    return [r["body"]["stringValue"] for doc in _jsonl(path) for rl in doc["resourceLogs"]
            for sl in rl["scopeLogs"] for r in sl["logRecords"]]


def _section(out: str, start: str, end: str) -> str:
    return out[out.index(start):out.index(end, out.index(start))]


def test_default_demo_shows_every_item(default_demo):
    """./demo.sh as is: every item of the summary is there, with numbers, not excuses."""
    out, run_dir = default_demo.stdout, default_demo.run_dir
    # live summary: one line per tick in a pipe, ending at 100 %
    ticks = [line for line in out.splitlines() if line.startswith("[")]
    assert len(ticks) >= 10 and "100%" in ticks[-1], out
    summary = _section(out, "Summary (20 s of load; simulated SFU 20 s beside it)", "Legend")
    # the counters, with numbers that add up
    m = re.search(r"sent (\d+) · received (\d+) · processed (\d+) · resends (\d+) · lost (\d+)",
                  summary)
    assert m, summary
    sent, received, processed, resends, _lost = map(int, m.groups())
    assert sent > 0 and resends > 0 and received == sent + resends
    # latency percentiles, first attempts and retries side by side, with sample counts
    for label in ("queue wait", "processing", "receive→finish"):
        rows = re.findall(rf"{label}\s+first\s+([\d.]+\s+){{4}}(\d+)\n\s+retry"
                          rf"\s+([\d.]+\s+){{4}}(\d+)", summary)
        assert rows, (label, summary)
        assert int(rows[0][1]) > 0 and int(rows[0][3]) > 0
    # the last frame's burst stats line, exactly as logged, with the worst-case bound
    line = next(x.strip() for x in summary.splitlines() if "logMessageBurstStats {" in x)
    assert line in _log_bodies(run_dir / "logs.jsonl")
    assert re.search(r"last frame\s+\(as logged; worst-case latency bound [\d.]+ ms\)",
                     summary)
    assert re.search(r"bursts\s+\d+ bursts; longest [\d.]+ ms = the worst-case", summary)
    # subscription timings by attempt kind
    for kind in ("first", "retry", "resume", "migration"):
        assert re.search(rf"\n\s+{kind}\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+", summary), kind
    # the busiest stream: true rate and 1 s peak, next to the naive rate
    assert re.search(r"rates\s+busiest stream room-\d/\w+ (up|down) \w+, highest of any "
                     r"export:\n\s+true rate [\d.]+ Mbit/s · 1 s peak [\d.]+ Mbit/s", summary)
    assert re.search(r"naive \(bytes since the previous export ÷ 2 s\): [\d.]+ Mbit/s",
                     summary)
    assert "needs ~" not in summary  # the default run is long enough for every item
    # the top rooms by traffic load, with their top participants
    assert "room load        at the busiest export (" in summary
    assert len(re.findall(r"room-\d: score [\d.]+ M/s \(\d+ participants; top \w+ \d+%",
                          summary)) == 3
    # drops by where they happened; the kernel's honestly
    drops = re.search(r"drops\s+buffer (\d+) .*· (kernel not measured|kernel \d+.*) · "
                      r"exporter (\d+)", summary)
    assert drops and int(drops.group(1)) == received - processed, summary
    # a legend line for every counter shown
    legend = out[out.index("Legend"):out.index("Telemetry written")]
    for name in ("sent", "received", "processed", "resends", "lost", "n", "bursts", "buffer",
                 "kernel", "exporter", "other"):
        assert re.search(rf"\n  {name}\s+\S", legend), name
    # every hint names absolute paths; the report was written and is named absolutely
    assert f"telemetry -> files in {run_dir}" in out
    for path in re.findall(r"(\S*(?:\.jsonl|\.html|\.md)\b)", out):  # anywhere in the output
        assert path.lstrip('["(').startswith("/"), path
    report = re.search(r"Report: (\S+)", out)
    assert report and Path(report.group(1)) == run_dir / "report.html"
    assert (run_dir / "report.html").stat().st_size > 1_000_000  # plotly.js is inside

    names = _names(run_dir / "metrics.jsonl")
    for name in ("messaging.process.duration", "otel_rtc.message.queue_wait.duration",
                 "otel_rtc.burst.duration", "messaging.client.consumed.messages",
                 "otel_rtc.subscription.duration",
                 # the SFU runs in real time beside the server, so the default processors
                 # derive true rates, sampled peaks and the per-participant load
                 "otel_rtc.traffic.bytes.rate", "otel_rtc.traffic.bytes.rate.peak",
                 "otel_rtc.traffic.load.score", "otel_rtc.traffic.load.share"):
        assert name in names, name
    spans = [s for doc in _jsonl(run_dir / "traces.jsonl") for rs in doc["resourceSpans"]
             for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert any(s.get("kind") == SPAN_KIND_CONSUMER and s["name"].startswith("process ")
               for s in spans)
    assert any(s["name"].startswith("burst ") for s in spans)
    res_attrs = {a["key"]: a["value"] for a in _jsonl(run_dir / "metrics.jsonl")[-1]
                 ["resourceMetrics"][0]["resource"]["attributes"]}
    assert res_attrs["service.name"] == {"stringValue": "otel-rtc-demo"}


def _short_run(cwd: Path, *extra: str, export_s: str = "1") -> str:
    env = {**demo_env(), "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--duration", "1.5", "--sfu-seconds", "2",
         "--export-interval", export_s, "--output-dir", "out", *extra],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_short_run_explains_what_it_cannot_show_and_each_run_gets_a_fresh_folder(tmp_path):
    first = _short_run(tmp_path, export_s="5")
    summary = _section(first, "Summary (1.5 s of load", "Legend")
    # 2 s of SFU traffic and the first export only at its end: no 1 s peak (and, as the
    # final flushes fall, maybe no rate at all); the summary says why and what to do
    # instead of leaving the line out
    assert re.search(r"(rates\s+no rate yet|1 s peak): needs ~8 s of traffic \(first export "
                     r"at 5 s .*this run had 2 s: use --duration 8 or a lower "
                     r"--export-interval", summary), summary
    second = _short_run(tmp_path, "--no-sfu")
    assert "rates            skipped (--no-sfu)" in second
    dirs = sorted((tmp_path / "out").glob("demo-*"))
    assert len(dirs) == 2 and all((d / "metrics.jsonl").exists() for d in dirs)
    # relative --output-dir, printed absolutely
    for out, d in zip((first, second), dirs, strict=True):
        assert f"files in {d}" in out and f"Report: {d / 'report.html'}" in out
    # --append keeps the old behaviour: the files directly in the folder grow
    _short_run(tmp_path, "--no-sfu", "--append")
    size = (tmp_path / "out" / "metrics.jsonl").stat().st_size
    third = _short_run(tmp_path, "--no-sfu", "--append")
    assert "(appending)" in third
    assert (tmp_path / "out" / "metrics.jsonl").stat().st_size > size
    assert len(list((tmp_path / "out").glob("demo-*"))) == 2
    # the summary reads only this run's part of an appended folder
    summary = _section(third, "Summary (", "Legend")
    counts = re.search(r"received (\d+) · processed (\d+)", summary)
    buffer = re.search(r"drops\s+buffer (\d+)", summary)
    assert counts and buffer, summary
    assert int(buffer.group(1)) == int(counts.group(1)) - int(counts.group(2))


def _doc_python_block(section: str) -> str:
    text = (ROOT / "docs" / "getting-started.md").read_text()
    part = text[text.index(section):]
    start = part.index("```python\n") + len("```python\n")
    return part[start:part.index("```", start)]


def _doc_bash_lines(section: str) -> list[str]:
    text = (ROOT / "docs" / "getting-started.md").read_text()
    part = text[text.index(section):]
    start = part.index("```bash\n") + len("```bash\n")
    return part[start:part.index("```", start)].splitlines()


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
    # and the report command of section 4, as written
    command = next(line for line in _doc_bash_lines("## 4. Open what was written")
                   if line.startswith("otel-rtc report"))
    res = subprocess.run([str(Path(sys.executable).parent / "otel-rtc"),
                          *command.split("#")[0].split()[1:]], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert Path(res.stdout.strip()) == tmp_path / "telemetry-out" / "report.html"


def test_demo_rejects_bad_duration():
    for flag, value in (("--duration", "0"), ("--sfu-seconds", "-1"),
                        ("--export-interval", "0")):
        res = subprocess.run([sys.executable, "-m", "examples.demo", flag, value],
                             cwd=ROOT, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert res.returncode == 2 and flag in res.stderr, (flag, res.stderr)
