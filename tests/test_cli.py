"""``otel-rtc collector``, the Rotel launcher and the test OTLP receiver."""

import argparse
import gzip
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from otel_rtc import cli as _cli
from otel_rtc.collector import rotel as _rotel
from otel_rtc.collector.rotel import RotelCollector, RotelError, free_port, processor_path
from tests._otlp_receiver import OtlpReceiver

ROOT = Path(__file__).resolve().parents[1]


def test_print_command(capsys):
    if _rotel.find_rotel() is None:
        pytest.skip("rotel-agent not installed")
    assert _cli.main(["collector", "--http-port", "14318", "--grpc-port", "14317",
                      "--exporter-endpoint", "http://127.0.0.1:9", "--print-command"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"PYTHONPATH={_rotel.PACKAGE_PARENT} ")
    assert "--otlp-with-metrics-processor " + str(processor_path()) in out
    assert "--otlp-http-endpoint 127.0.0.1:14318" in out
    assert "--otlp-exporter-endpoint http://127.0.0.1:9" in out


def test_clear_error_when_rotel_is_missing(monkeypatch, capsys):
    monkeypatch.setattr(_rotel, "find_rotel", lambda: None)
    assert _cli.main(["collector", "--exporter", "blackhole"]) == 3
    err = capsys.readouterr().err
    assert "rotel-agent not found" in err and "otel-rtc[collector]" in err


def test_argument_errors(capsys):
    assert _cli.main(["collector"]) == 2
    assert "--exporter-endpoint is required" in capsys.readouterr().err
    assert _cli.main(["collector", "--exporter", "blackhole", "--http-port", "0"]) == 2
    with pytest.raises(SystemExit):
        _cli.main(["collector", "--exporter", "nope"])


def test_launcher_validation():
    if _rotel.find_rotel() is None:
        pytest.skip("rotel-agent not installed")
    with pytest.raises(ValueError):
        RotelCollector(exporter="kafka")
    with pytest.raises(ValueError):
        RotelCollector(exporter="otlp")
    with pytest.raises(ValueError):
        RotelCollector(exporter="blackhole", exporter_protocol="udp")
    with pytest.raises(_rotel.RotelNotInstalledError):
        RotelCollector(exporter="blackhole", binary="/nonexistent/rotel-agent")


def test_receiver_gzip_and_unknown_paths():
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    with OtlpReceiver() as recv:
        req = ExportMetricsServiceRequest()
        m = req.resource_metrics.add().scope_metrics.add().metrics.add()
        m.name = "x"
        p = m.gauge.data_points.add()
        p.as_double = 2.5
        body = gzip.compress(req.SerializeToString())
        r = urllib.request.Request(f"{recv.endpoint}/v1/metrics", data=body, method="POST",
                                   headers={"Content-Encoding": "gzip"})
        assert urllib.request.urlopen(r, timeout=5).status == 200
        assert recv.wait_for_metric("x", 5)
        assert recv.number_points("x")[0][:2] == ({}, 2.5)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(urllib.request.Request(
                f"{recv.endpoint}/v2/nope", data=b"", method="POST"), timeout=5)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(urllib.request.Request(
                f"{recv.endpoint}/v1/traces", data=b"\xff\xff", method="POST"), timeout=5)
        assert recv.rejected == 2
        assert not recv.wait_for(lambda r: False, timeout=0.01)


@pytest.mark.collector
def test_launcher_reports_an_agent_that_dies(tmp_path, rotel_collector):
    bad = tmp_path / "bad_processor.py"
    bad.write_text("raise ImportError('deliberately broken')\n")
    with pytest.raises(RotelError, match="deliberately broken"):
        rotel_collector(exporter="blackhole", metrics_processor=bad)


@pytest.mark.collector
def test_collector_command_end_to_end(otlp_receiver):
    if _rotel.find_rotel() is None:
        pytest.skip("rotel-agent not installed")
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from otel_rtc.instrumentation.traffic import TrafficAccounting

    http_port, grpc_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_rtc.cli", "collector", "--http-port", str(http_port),
         "--grpc-port", str(grpc_port), "--exporter-endpoint", otlp_receiver.endpoint],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OTEL_RTC_RATE_READING_SPAN": "0"})  # one export: read at once
    try:
        banner = proc.stdout.readline()
        assert f"127.0.0.1:{http_port}" in banner, proc.stderr.read()
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(f"http://127.0.0.1:{http_port}/v1/metrics"),
            export_interval_millis=3_600_000)
        mp = MeterProvider(metric_readers=[reader])
        acc = TrafficAccounting(meter_provider=mp)
        acc.add("r", "p", "up", "audio", 10, 1200)
        mp.force_flush()
        assert otlp_receiver.wait_for_metric("otel_rtc.traffic.bytes.rate", 15)
        mp.shutdown()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        deadline = time.monotonic() + 5
        while _rotel._port_open("127.0.0.1", http_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _rotel._port_open("127.0.0.1", http_port)  # the agent went with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# -- issue #11: a usable collector CLI -----------------------------------------------------


def _all_parsers():
    parser = _cli._parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [parser, *[p for s in subs for p in s.choices.values()]]


def test_help_says_what_each_option_does_in_plain_text(capsys):
    for parser in _all_parsers():
        for action in parser._actions:
            if action.option_strings:  # every option (sub-commands have their own help)
                assert action.help, f"{parser.prog}: {action.option_strings} has no help"
    for argv in (["--help"], ["collector", "--help"]):
        with pytest.raises(SystemExit) as exc:
            _cli.main(argv)
        assert exc.value.code == 0
        out = capsys.readouterr().out
        for markup in ("``", ":func:", ":mod:", ":class:", ":data:", ":meth:"):
            assert markup not in out, (argv, markup)
    assert "--log-file" in out and "--print-command" in out


@pytest.mark.parametrize("argv", [["--version"], ["collector", "--version"]])
def test_version(argv, capsys):
    from otel_rtc.version import __version__

    with pytest.raises(SystemExit) as exc:
        _cli.main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"otel-rtc {__version__} (rotel ")


@pytest.mark.parametrize("endpoint", ["127.0.0.1:4318", "ftp://127.0.0.1:21",
                                      "http://127.0.0.1", "http://:4318",
                                      "http://127.0.0.1:99999", "http://h:x"])
def test_bad_endpoint_is_a_clear_one_line_error(endpoint, capsys):
    assert _cli.main(["collector", "--exporter-endpoint", endpoint]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--exporter-endpoint must be http://HOST:PORT" in err
    assert repr(endpoint) in err


def test_same_port_twice_is_refused(capsys):
    assert _cli.main(["collector", "--exporter", "blackhole", "--http-port", "4000",
                      "--grpc-port", "4000"]) == 2
    assert "both 4000" in capsys.readouterr().err


def test_print_command_leaves_no_temp_folder(tmp_path, monkeypatch, capsys):
    if _rotel.find_rotel() is None:
        pytest.skip("rotel-agent not installed")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert _cli.main(["collector", "--exporter", "blackhole", "--print-command"]) == 0
    assert "--pid-file" not in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_log_summary_counts_repeats():
    import io

    now = [0.0]
    out = io.StringIO()
    s = _cli.LogSummary(out, interval_s=10, clock=lambda: now[0])
    line = ("\x1b[2m2026-12-02T11:29:14.096658Z\x1b[0m \x1b[32m INFO\x1b[0m Exporting failed, "
            "will retry again after delay. \x1b[3mattempt\x1b[0m=1 delay=1.2s\n")
    s.feed("\x1b[2m2026-12-02T11:29:11Z\x1b[0m INFO Starting Rotel. http_endpoint=x\n")
    s.feed(line * 3 + line[:20])  # a partial line stays for the next chunk
    s.feed(line[20:])
    assert out.getvalue().count("Exporting failed") == 1 and "\x1b" not in out.getvalue()
    now[0] = 11.0
    s.feed("")
    assert "rotel: (3 more in 11 s) INFO Exporting failed, will retry again after delay." \
        in out.getvalue()
    s.feed(line)  # a new interval shows the kind again
    assert out.getvalue().count("attempt=1") == 2


@pytest.mark.collector
def test_collector_log_is_summarised_kept_and_no_temp_left(tmp_path):
    """The real rotel-agent forwarding to a closed port: its "Exporting failed" lines are
    summarised on stderr, all kept in --log-file, and the temp folder is gone at exit."""
    if _rotel.find_rotel() is None:
        pytest.skip("rotel-agent not installed")
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    log_file = tmp_path / "rotel.log"
    http_port, grpc_port, dead = free_port(), free_port(), free_port()
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_rtc.cli", "collector", "--http-port", str(http_port),
         "--grpc-port", str(grpc_port), "--exporter-endpoint", f"http://127.0.0.1:{dead}",
         "--log-file", str(log_file)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        banner = proc.stdout.readline()
        assert f"127.0.0.1:{http_port}" in banner, proc.stderr.read()
        assert [p.name[:15] for p in tmp.iterdir()] == ["otel-rtc-rotel-"]
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(f"http://127.0.0.1:{http_port}/v1/metrics"),
            export_interval_millis=200)
        mp = MeterProvider(metric_readers=[reader])
        counter = mp.get_meter("t").create_counter("t.c")
        deadline = time.monotonic() + 30
        while log_file.read_text(errors="replace").count("Exporting failed") < 4:
            assert time.monotonic() < deadline, log_file.read_text(errors="replace")
            counter.add(1)
            time.sleep(0.2)
        mp.shutdown()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    full = log_file.read_text(errors="replace")
    failed = full.count("Exporting failed")
    assert failed >= 4
    assert err.count("rotel: ") >= 2 and "\x1b" not in err
    assert 1 <= err.count("Exporting failed") < failed  # summarised, not every line
    assert re.search(r"rotel: \(\d+ more in \d+ s\) .*Exporting failed", err), err
    assert f"complete log in {log_file}" in err
    assert list(tmp.iterdir()) == []  # nothing left in temp folders
