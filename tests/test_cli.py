"""``otel-rtc collector``, the Rotel launcher and the test OTLP receiver."""

import gzip
import signal
import subprocess
import sys
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
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
