"""Shared fixtures: a loopback OTLP receiver and a factory of real Rotel collectors."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from otel_rtc.collector.rotel import RotelCollector, find_rotel
from tests._otlp_receiver import OtlpReceiver

ROTEL_BINARY = find_rotel()
requires_rotel = pytest.mark.skipif(ROTEL_BINARY is None, reason="rotel-agent not installed")

ROOT = Path(__file__).resolve().parents[1]
OTELCOL_RTC = ROOT / "build" / "otelcol" / "otelcol-rtc"
"""The OpenTelemetry Collector built from otelcol-rtc/ (scripts/build_otelcol.sh)."""
JAEGER = ROOT / "build" / "otelcol" / "jaeger"
"""Jaeger v2 built from its Go module (scripts/build_otelcol.sh)."""

REQUIRE_REAL = "OTEL_RTC_REQUIRE_REAL_COMPONENTS"
"""Set by ``./test.sh`` (and so by CI): the real components that some tests skip without
must be there, so the README's test command can never pass by skipping them."""


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(REQUIRE_REAL) != "1":
        return
    missing = []
    if ROTEL_BINARY is None:
        missing.append("the rotel-agent collector (pip: rotel)")
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        missing.append("prometheus and promtool (Debian: prometheus)")
    if importlib.util.find_spec("opentelemetry.distro") is None:
        missing.append("opentelemetry-distro (pip)")
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "opentelemetry-instrument").exists():
        missing.append("opentelemetry-instrument (pip: opentelemetry-instrumentation)")
    for binary in (OTELCOL_RTC, JAEGER):
        if not os.access(binary, os.X_OK):
            missing.append(f"{binary.relative_to(ROOT)} (scripts/build_otelcol.sh builds it)")
    if shutil.which("chromium") is None:
        missing.append("chromium (Debian: chromium)")
    if importlib.util.find_spec("plotly") is None:
        missing.append("plotly (pip: otel-rtc[report])")
    if missing:
        pytest.exit(f"{REQUIRE_REAL}=1 but missing: {'; '.join(missing)}. "
                    "scripts/bootstrap.sh installs them.", returncode=4)


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A fresh OTLP/HTTP receiver on 127.0.0.1 (``.endpoint``, ``.wait_for(...)``)."""
    recv = OtlpReceiver()
    try:
        yield recv
    finally:
        recv.close()


@pytest.fixture
def rotel_collector() -> Iterator[Callable[..., RotelCollector]]:
    """Factory: ``rotel_collector(exporter_endpoint=..., metrics_processor=..., ...)``.

    Starts a real ``rotel-agent`` (keyword arguments as for
    :class:`otel_rtc.collector.rotel.RotelCollector`), waits until it is ready and stops it at
    teardown. Skips the test when the binary is not installed.
    """
    if ROTEL_BINARY is None:
        pytest.skip("rotel-agent not installed")
    started: list[RotelCollector] = []

    def make(**kwargs: Any) -> RotelCollector:
        col = RotelCollector(**kwargs)
        started.append(col)
        return col.start()

    try:
        yield make
    finally:
        for col in started:
            col.stop()


@pytest.fixture
def fresh_self_telemetry() -> Iterator[None]:
    """Zeroed self-telemetry counters and no buffer enqueue stamp left in this context."""
    from otel_rtc.instrumentation import self_telemetry as _self_telemetry
    from otel_rtc.instrumentation.buffer_telemetry import enqueue_stamp

    _self_telemetry._reset_for_tests()
    token = enqueue_stamp.set(None)
    yield
    enqueue_stamp.reset(token)
    _self_telemetry._reset_for_tests()


@pytest.fixture
def pipe() -> Iterator[Any]:
    """An in-memory pipeline (:func:`otel_rtc.testing.make_test_pipeline`), shut down after."""
    from otel_rtc.testing import make_test_pipeline

    p = make_test_pipeline()
    yield p
    p.tracer_provider.shutdown()
    p.meter_provider.shutdown()


@dataclass(frozen=True)
class DemoRun:
    """One finished demo run: what it printed and the folder it wrote."""

    stdout: str
    run_dir: Path


def demo_env() -> dict[str, str]:
    """The environment minus anything that would send the demo's telemetry elsewhere."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("OTEL_EXPORTER_OTLP", "OTEL_RTC_", "OTEL_SDK_DISABLED"))}


@pytest.fixture(scope="session")
def default_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """``./demo.sh`` exactly as a user runs it (defaults: 20 s), once per test session."""
    out = tmp_path_factory.mktemp("default-demo") / "telemetry-out"
    res = subprocess.run([str(ROOT / "demo.sh"), "--output-dir", str(out)],
                         capture_output=True, text=True, timeout=300, env=demo_env(),
                         check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run_dirs = sorted(out.glob("demo-*"))
    assert len(run_dirs) == 1, run_dirs
    return DemoRun(res.stdout, run_dirs[0])
