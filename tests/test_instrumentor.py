"""RtcInstrumentor: `opentelemetry-instrument` enables otel_rtc's defaults and switches."""

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    PeriodicExportingMetricReader,
)

from otel_rtc.core import switch as _switch
from otel_rtc.instrumentation.recording import HistogramSpec, Recorder
from otel_rtc.sdk.aggregation import LocalAggregationRegistry
from otel_rtc.sdk.export import RtcWrappingMetricExporter
from otel_rtc.sdk.instrumentor import RtcInstrumentor, rtc_registry_of
from otel_rtc.testing import CapturingMetricExporter

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
INSTRUMENT = BIN / "opentelemetry-instrument"
HAS_DISTRO = importlib.util.find_spec("opentelemetry.distro") is not None
SPEC = HistogramSpec("test.instrumentor.h", "s", "test")


@pytest.fixture
def restore_switches(monkeypatch):
    for var in (_switch.ENV_ENABLED, _switch.ENV_CONFIG_FILE):
        monkeypatch.delenv(var, raising=False)
    sw = _switch.burst_switches()
    sw.poll()
    before = sw.snapshot()
    yield sw
    inst = RtcInstrumentor()
    if inst.is_instrumented_by_opentelemetry:
        inst.uninstrument()
    sw.stop_watcher()
    monkeypatch.delenv(_switch.ENV_CONFIG_FILE, raising=False)
    sw.poll()
    sw.set(**before)


def test_no_library_dependencies():
    assert tuple(RtcInstrumentor().instrumentation_dependencies()) == ()


def test_binds_rtc_stage_and_reverses(restore_switches, monkeypatch):
    registry = LocalAggregationRegistry()
    reader = PeriodicExportingMetricReader(
        RtcWrappingMetricExporter(CapturingMetricExporter(), registry=registry),
        export_interval_millis=3_600_000)
    mp = MeterProvider(metric_readers=[reader])
    try:
        assert rtc_registry_of(mp) is registry
        assert rtc_registry_of(MeterProvider()) is None
        assert not Recorder([SPEC], [], mp).buffered
        inst = RtcInstrumentor()
        monkeypatch.setenv(_switch.ENV_ENABLED, "true")  # the one env switch of bursts
        inst.instrument(meter_provider=mp, configure=False)
        assert inst.is_instrumented_by_opentelemetry
        assert Recorder([SPEC], [], mp).buffered
        assert restore_switches.enabled is True  # applied at instrument() time
        inst.uninstrument()
        assert not Recorder([SPEC], [], mp).buffered
    finally:
        mp.shutdown()


def test_plain_provider_is_left_alone(restore_switches):
    mp = MeterProvider()
    try:
        inst = RtcInstrumentor()
        inst.instrument(meter_provider=mp, configure=False)
        # not otel_rtc's exporter: instrumentations keep plain SDK record()
        assert not Recorder([SPEC], [], mp).buffered
        inst.uninstrument()
    finally:
        mp.shutdown()


def test_config_file_watcher(restore_switches, monkeypatch, tmp_path):
    cfg = tmp_path / "live.json"
    cfg.write_text(json.dumps({"bursts": {"enabled": True}}))
    monkeypatch.setenv(_switch.ENV_CONFIG_FILE, str(cfg))
    mp = MeterProvider()
    try:
        inst = RtcInstrumentor()
        inst.instrument(meter_provider=mp, configure=False)
        assert restore_switches.enabled is True
        assert restore_switches.watching
        inst.uninstrument()
        assert not restore_switches.watching
    finally:
        mp.shutdown()


# -- the real path: opentelemetry-instrument in a subprocess --------------------------

APP = textwrap.dedent("""
    import time
    from opentelemetry import metrics
    from otel_rtc.instrumentation.bursts import get_burst_monitor
    from otel_rtc.sdk.instrumentor import RtcInstrumentor

    mon = get_burst_monitor("auto-app", stats_interval_s=None)  # global providers
    print("ENABLED", mon.enabled, "INSTRUMENTED",
          RtcInstrumentor().is_instrumented_by_opentelemetry,
          "MP", type(metrics.get_meter_provider()).__name__, flush=True)
    if mon.enabled:
        t = time.time_ns()
        for _ in range(4):
            mon.processing_started(t)
            mon.buffer_empty(t + 2_000_000)
            t += 10_000_000
    # exit: the SDK's atexit hooks flush spans and metrics
""")


def _run_instrumented(tmp_path, env_extra):
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           "OTEL_LOGS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
           **env_extra}
    out = subprocess.run([str(INSTRUMENT), str(BIN / "python"), str(app)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _burst_count(recv):
    total = 0
    for m in recv.metrics().get("otel_rtc.burst.duration", []):
        for p in m.histogram.data_points:
            total = max(total, p.count)  # cumulative
    return total


PATHS = [
    pytest.param({}, id="sdk-configurator",
                 marks=pytest.mark.skipif(not HAS_DISTRO,
                                          reason="opentelemetry-distro not installed")),
    # No configurator ran: the instrumentor calls configure() itself.
    pytest.param({"OTEL_PYTHON_CONFIGURATOR": "none-installed"}, id="configure-fallback"),
]


@pytest.mark.skipif(not INSTRUMENT.exists(), reason="opentelemetry-instrumentation missing")
@pytest.mark.parametrize("path_env", PATHS)
def test_opentelemetry_instrument_real_path(tmp_path, otlp_receiver, path_env):
    stdout = _run_instrumented(tmp_path, {
        **path_env,
        "OTEL_METRICS_EXPORTER": "otel_rtc",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
        "OTEL_SERVICE_NAME": "auto-app",
        "OTEL_RTC_BURSTS_ENABLED": "true",
    })
    assert "ENABLED True INSTRUMENTED True MP MeterProvider" in stdout
    assert otlp_receiver.wait_for(
        lambda r: _burst_count(r) == 4
        and sum(s.name == "burst auto-app" for s in r.spans()) == 4, timeout=15)
    assert not (tmp_path / "telemetry-out").exists()  # an endpoint was configured


@pytest.mark.skipif(not INSTRUMENT.exists(), reason="opentelemetry-instrumentation missing")
def test_bursts_stay_off_without_the_env_switch(tmp_path, otlp_receiver):
    stdout = _run_instrumented(tmp_path, {
        "OTEL_PYTHON_CONFIGURATOR": "none-installed",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint,
    })
    assert "ENABLED False INSTRUMENTED True" in stdout
    otlp_receiver.wait_for(lambda r: r.metric_requests(), timeout=10)
    assert _burst_count(otlp_receiver) == 0
    assert not any(s.name == "burst auto-app" for s in otlp_receiver.spans())


@pytest.mark.skipif(not INSTRUMENT.exists(), reason="opentelemetry-instrumentation missing")
def test_fallback_writes_files_without_endpoint(tmp_path):
    stdout = _run_instrumented(tmp_path, {"OTEL_PYTHON_CONFIGURATOR": "none-installed",
                                          "OTEL_RTC_BURSTS_ENABLED": "1"})
    assert "ENABLED True" in stdout
    lines = (tmp_path / "telemetry-out" / "metrics.jsonl").read_text().splitlines()
    names = {m["name"] for line in lines for rm in json.loads(line)["resourceMetrics"]
             for sm in rm["scopeMetrics"] for m in sm["metrics"]}
    assert "otel_rtc.burst.duration" in names


@pytest.mark.skipif(not INSTRUMENT.exists(), reason="opentelemetry-instrumentation missing")
def test_auto_configure_can_be_switched_off(tmp_path):
    stdout = _run_instrumented(tmp_path, {"OTEL_PYTHON_CONFIGURATOR": "none-installed",
                                          "OTEL_RTC_AUTO_CONFIGURE": "false",
                                          "OTEL_RTC_BURSTS_ENABLED": "true"})
    assert "ENABLED True INSTRUMENTED True MP _ProxyMeterProvider" in stdout
    assert not (tmp_path / "telemetry-out").exists()
