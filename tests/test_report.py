"""``otel-rtc report``: the reader, the command's errors, and the page in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from otel_rtc.report import analysis as a
from otel_rtc.report import data as d
from tests import _chromium

ROOT = Path(__file__).resolve().parents[1]
OTEL_RTC = Path(sys.executable).parent / "otel-rtc"
CHARTS = ("latency", "bursts", "rates", "load", "drops")
S = 1_000_000_000
T0 = 1_800_000_000 * S

requires_chromium = pytest.mark.skipif(_chromium.CHROMIUM is None,
                                       reason="chromium not installed")


# -- the reader, on hand-made OTLP JSON ---------------------------------------------------


def _attrs(**kv):
    return [{"key": k.replace("__", "."), "value": {"stringValue": v}} for k, v in kv.items()]


def _sum_doc(name, points, temporality=2, instance="a"):
    return {"resourceMetrics": [{
        "resource": {"attributes": _attrs(service__instance__id=instance)},
        "scopeMetrics": [{"scope": {"name": "t"}, "metrics": [{
            "name": name, "unit": "1",
            "sum": {"dataPoints": points, "aggregationTemporality": temporality,
                    "isMonotonic": True}}]}]}]}


def _pt(value, t_s, start_s=0, **attrs):
    return {"attributes": _attrs(**attrs), "startTimeUnixNano": str(T0 + start_s * S),
            "timeUnixNano": str(T0 + t_s * S), "asInt": str(value)}


def _write(folder: Path, name: str, docs) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(json.dumps(doc) + "\n" for doc in docs))


def test_counters_add_up_across_restarts_and_deltas(tmp_path):
    _write(tmp_path, "metrics.jsonl", [
        _sum_doc("otel_rtc.buffer.dropped", [_pt(5, 1, otel_rtc__drop__reason="full")]),
        _sum_doc("otel_rtc.buffer.dropped", [_pt(9, 2, otel_rtc__drop__reason="full")]),
        # the process restarted: a new run whose total adds to the first one's
        _sum_doc("otel_rtc.buffer.dropped", [_pt(3, 4, 3, otel_rtc__drop__reason="full")],
                 instance="b"),
        _sum_doc("otel_rtc.telemetry.dropped", [
            _pt(2, 2, otel_rtc__component="export.traces", otel_rtc__drop__reason="queue_full"),
            _pt(7, 2, otel_rtc__component="buffer", otel_rtc__drop__reason="full")],
            temporality=1),
        _sum_doc("otel_rtc.telemetry.dropped", [
            _pt(1, 3, 2, otel_rtc__component="export.traces",
                otel_rtc__drop__reason="queue_full")], temporality=1),
    ])
    data = d.load(tmp_path)
    assert a.counter_totals(data, "otel_rtc.buffer.dropped") == {None: 12.0}
    drops = a.drops_over_time(data)
    # from 0 at the counter's start, then the running total at each export
    assert [v for _, v in drops[("buffer", "otel_rtc.buffer.dropped: full")]] == [
        0.0, 5.0, 9.0, 12.0]
    assert [v for _, v in drops[("exporter", "export.traces: queue_full")]] == [2.0, 3.0]
    # the buffer's drops repeated in otel_rtc.telemetry.dropped are not counted twice
    assert all(label != "buffer: full" for _, label in drops)
    assert not a.kernel_measured(data)
    # since_ns skips what an earlier run appended
    assert a.counter_totals(d.load(tmp_path, since_ns=T0 + 3 * S),
                            "otel_rtc.buffer.dropped") == {None: 3.0}


def test_kernel_drops_are_recognised_when_a_counter_reports_them(tmp_path):
    _write(tmp_path, "metrics.jsonl", [
        _sum_doc("otel_rtc.buffer.dropped", [_pt(4, 1, otel_rtc__drop__reason="full")]),
        _sum_doc("example.socket.rxq_overflow.dropped", [_pt(6, 1)]),
        _sum_doc("chat.udp.receive_buffer.dropped", [_pt(3, 1)]),  # examples/message_server
    ])
    data = d.load(tmp_path)
    assert a.kernel_measured(data)
    drops = a.drops_over_time(data)
    assert drops[("kernel", "example.socket.rxq_overflow.dropped")][-1][1] == 6.0
    assert drops[("kernel", "chat.udp.receive_buffer.dropped")][-1][1] == 3.0
    assert drops[("buffer", "otel_rtc.buffer.dropped: full")][-1][1] == 4.0
    # through the telemetry.dropped counter, by component
    (tmp_path / "metrics.jsonl").write_text(json.dumps(_sum_doc(
        "otel_rtc.telemetry.dropped",
        [_pt(2, 1, otel_rtc__component="socket", otel_rtc__drop__reason="rxq_overflow")]))
        + "\n")
    data = d.load(tmp_path)
    assert a.kernel_measured(data)
    assert list(a.drops_over_time(data)) == [("kernel", "socket: rxq_overflow")]


def test_histograms_merge_by_attempt_and_quantiles_stay_inside_min_max(tmp_path):
    def hist(count, counts, t_s, attempt):
        return {"resourceMetrics": [{"resource": {}, "scopeMetrics": [{"metrics": [{
            "name": "messaging.process.duration", "unit": "s", "histogram": {
                "aggregationTemporality": 2, "dataPoints": [{
                    "attributes": _attrs(otel_rtc__attempt=attempt),
                    "startTimeUnixNano": str(T0), "timeUnixNano": str(T0 + t_s * S),
                    "count": str(count), "sum": 0.01 * count, "min": 0.002, "max": 0.03,
                    "bucketCounts": [str(c) for c in counts],
                    "explicitBounds": [0.005, 0.01, 0.05]}]}}]}]}]}

    _write(tmp_path, "metrics.jsonl", [hist(4, [1, 3, 0, 0], 1, "first"),
                                       hist(10, [2, 6, 2, 0], 2, "first"),
                                       hist(2, [0, 0, 2, 0], 2, "retry")])
    by = a.histograms_by(d.load(tmp_path), "messaging.process.duration", "otel_rtc.attempt")
    assert by["first"].count == 10 and by["first"].counts == (2, 6, 2, 0)  # the last point
    assert by["first"].mean == pytest.approx(0.01)
    assert 0.005 <= a.quantile(by["first"], 0.5) <= 0.01
    assert a.quantile(by["retry"], 0.99) <= 0.03  # the recorded max, not the bucket's 0.05


# -- the command, through the installed console script ----------------------------------


def _report(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OTEL_RTC), "report", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def _one_line_error(res: subprocess.CompletedProcess[str], *words: str) -> None:
    assert res.returncode != 0, res.stdout
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("otel-rtc report: "), res.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


GOOD_LINE = json.dumps(_sum_doc("otel_rtc.buffer.dropped", [_pt(1, 1)]))


@pytest.mark.parametrize(("name", "content", "words"), [
    ("metrics.jsonl", GOOD_LINE + "\n{\"resourceMetrics\": [", ("metrics.jsonl:2", "not JSON")),
    ("metrics.jsonl", "[1, 2]\n", ("metrics.jsonl:1", "not an OTLP JSON export")),
    ("metrics.jsonl", '{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "x", '
                      '"sum": {"dataPoints": [{"asInt": "zz", "timeUnixNano": "1"}]}}]}]}]}\n',
     ("metrics.jsonl:1", "not an OTLP JSON metrics export")),
    ("traces.jsonl", '{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x"}]}]}]}\n',
     ("traces.jsonl:1", "not an OTLP JSON traces export")),
    ("logs.jsonl", '{"something": "else"}\n', ("logs.jsonl:1", "resourceLogs")),
    ("metrics.jsonl", "\x00\xff binary", ("metrics.jsonl:1", "not JSON")),
    ("metrics.jsonl", "\n\n", ("hold no data",)),
])
def test_corrupt_folder_gives_one_line_error(tmp_path, name, content, words):
    (tmp_path / name).write_text(content, encoding="latin-1")
    _one_line_error(_report(str(tmp_path), cwd=tmp_path), *words)
    assert not (tmp_path / "report.html").exists()


def test_missing_and_empty_folders_give_one_line_errors(tmp_path):
    _one_line_error(_report(str(tmp_path / "nope"), cwd=tmp_path), "no such folder")
    _one_line_error(_report(str(tmp_path), cwd=tmp_path), "no telemetry files",
                    "metrics.jsonl")
    (tmp_path / "file").write_text("x")
    _one_line_error(_report(str(tmp_path / "file"), cwd=tmp_path), "not a folder")
    (tmp_path / "metrics.jsonl").write_text("")
    _one_line_error(_report(str(tmp_path), cwd=tmp_path), "hold no data")
    (tmp_path / "metrics.jsonl").write_text(GOOD_LINE + "\n")
    _one_line_error(_report(str(tmp_path), "-o", str(tmp_path / "file" / "r.html"),
                            cwd=tmp_path), "cannot write the report")


def test_without_the_extra_it_names_the_extra(tmp_path):
    _write(tmp_path, "metrics.jsonl", [json.loads(GOOD_LINE)])
    # plotly made unimportable, as in an install without the 'report' extra
    code = ("import sys; sys.modules['plotly'] = None; from otel_rtc.cli import main; "
            f"sys.exit(main(['report', {str(tmp_path)!r}]))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    _one_line_error(res, "pip install 'otel-rtc[report]'")
    assert res.returncode == 3


def test_report_of_partial_telemetry_says_what_is_missing(tmp_path):
    _write(tmp_path, "metrics.jsonl", [json.loads(GOOD_LINE)])
    res = _report(str(tmp_path), "-o", "r.html", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    page = Path(res.stdout.strip())
    assert page == tmp_path / "r.html" and page.exists()  # relative to where it ran
    html = page.read_text()
    assert "No burst spans in traces.jsonl" in html and "kernel: not measured" in html


# -- the page, rendered by a real browser ------------------------------------------------


def _chart_check(dom: str) -> dict:
    m = re.search(r'<pre id="otel-rtc-chart-check">([^<]*)</pre>', dom)
    assert m, dom[-2000:]
    return json.loads(m.group(1))


@requires_chromium
def test_demo_report_renders_every_chart_with_data_in_chromium(default_demo, tmp_path):
    page = default_demo.run_dir / "report.html"
    html = page.read_text()
    # self-contained: no external script, style or font; plotly.js is inline
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html)
    assert "plotly.js v" in html
    # the CLI rebuilds the same page from the same folder
    res = _report(str(default_demo.run_dir), "-o", str(tmp_path / "again.html"),
                  cwd=tmp_path)
    assert res.returncode == 0 and Path(res.stdout.strip()) == tmp_path / "again.html"

    dom = _chromium.dump_dom(page)
    check = _chart_check(dom)
    assert set(check) == set(CHARTS), check
    for key, c in check.items():
        assert c["points"] > 0 and c["drawn"] > 0, (key, check)
    assert re.search(r"<title>[^<]*\[charts ok\]</title>", dom)

    png = _chromium.screenshot(page, tmp_path / "report.png")
    keep = ROOT / "build" / "report-screenshot.png"  # gitignored: to look at after a run
    keep.parent.mkdir(exist_ok=True)
    shutil.copyfile(png, keep)
    from PIL import Image  # pillow comes with matplotlib (dev extra)

    with Image.open(png) as im:
        assert im.size == (1280, 3900)
        # charts drew: many colours, and a good share of non-white pixels
        small = im.convert("RGB").resize((320, 975))
        colours = small.getcolors(maxcolors=1 << 16) or []
        non_white = sum(n for n, rgb in colours if sum(rgb) < 720)
        assert len(colours) > 200 and non_white > 0.08 * 320 * 975, (len(colours), non_white)


@requires_chromium
def test_page_check_reports_an_empty_chart(default_demo, tmp_path):
    # Without traces.jsonl there are no burst spans: the page's own check must say so.
    folder = tmp_path / "no-traces"
    folder.mkdir()
    for name in ("metrics.jsonl", "logs.jsonl"):
        shutil.copyfile(default_demo.run_dir / name, folder / name)
    res = _report(str(folder), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    check = _chart_check(_chromium.dump_dom(folder / "report.html"))
    assert check["bursts"] == {"points": 0, "drawn": 0}
    assert all(check[k]["points"] > 0 for k in CHARTS if k != "bursts")
