"""otel_rtc: OpenTelemetry instrumentation for real-time messaging and media systems.

The names here are what an application needs: :func:`configure` the SDK, instrument
message handlers, buffers, bursts, pub/sub, sessions and traffic, and add the metric
processors (true rates, traffic load) to an export. Everything else lives in the
subpackages, one per layer (see ``docs/architecture.md``):

* :mod:`otel_rtc.core`: the pure, stdlib-only core (bursts, rates, traffic load, clocks,
  switches, metric names); it also runs inside a collector;
* :mod:`otel_rtc.instrumentation`: the instrumentations (OpenTelemetry API and wrapt);
* :mod:`otel_rtc.sdk`: ``configure()``, the export stage, processors, Prometheus reader,
  the ``opentelemetry-instrument`` instrumentor;
* :mod:`otel_rtc.collector`: the Rotel processor and launcher;
* :mod:`otel_rtc.testing`: in-memory pipelines and counters for tests.

Names are loaded lazily (PEP 562): ``import otel_rtc`` is cheap, and a name whose extra
is not installed (``RtcInstrumentor``: ``instrument``; ``RtcPrometheusMetricReader``:
``prometheus``) still resolves, but raises an ``ImportError`` naming the extra when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from otel_rtc.version import __version__

# public name -> the module that defines it (the two names that need an extra come
# from otel_rtc.sdk, which resolves them to a placeholder when the extra is missing)
_EXPORTS: dict[str, str] = {
    "burst_switches": "core.switch",
    "RateConfig": "core.rates",
    "TrafficLoadConfig": "core.load",
    "BoundedBuffer": "instrumentation.buffers",
    "InstrumentedAsyncQueue": "instrumentation.buffers",
    "InstrumentedQueue": "instrumentation.buffers",
    "BurstMonitor": "instrumentation.bursts",
    "MessageHandler": "instrumentation.handler",
    "PubSubTelemetry": "instrumentation.pubsub",
    "SessionRegistry": "instrumentation.sessions",
    "TrafficAccounting": "instrumentation.traffic",
    "Telemetry": "sdk.configure",
    "configure": "sdk.configure",
    "default_processors": "sdk.defaults",
    "MetricsProcessor": "sdk.export",
    "RtcWrappingMetricExporter": "sdk.export",
    "TrafficLoadProcessor": "sdk.processors",
    "WindowRateProcessor": "sdk.processors",
    "register_sample_source": "core.sample_sources",
    "SampleColumns": "core.sample_sources",
    "RtcInstrumentor": "sdk",
    "RtcPrometheusMetricReader": "sdk",
    "RotelCollector": "collector.rotel",
}

__all__ = [
    "BoundedBuffer",
    "BurstMonitor",
    "InstrumentedAsyncQueue",
    "InstrumentedQueue",
    "MessageHandler",
    "MetricsProcessor",
    "PubSubTelemetry",
    "RateConfig",
    "RotelCollector",
    "RtcInstrumentor",
    "RtcPrometheusMetricReader",
    "RtcWrappingMetricExporter",
    "SampleColumns",
    "SessionRegistry",
    "Telemetry",
    "TrafficAccounting",
    "TrafficLoadConfig",
    "TrafficLoadProcessor",
    "WindowRateProcessor",
    "__version__",
    "burst_switches",
    "configure",
    "default_processors",
    "register_sample_source",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from otel_rtc.collector.rotel import RotelCollector
    from otel_rtc.core.load import TrafficLoadConfig
    from otel_rtc.core.rates import RateConfig
    from otel_rtc.core.sample_sources import SampleColumns, register_sample_source
    from otel_rtc.core.switch import burst_switches
    from otel_rtc.instrumentation.buffers import (
        BoundedBuffer,
        InstrumentedAsyncQueue,
        InstrumentedQueue,
    )
    from otel_rtc.instrumentation.bursts import BurstMonitor
    from otel_rtc.instrumentation.handler import MessageHandler
    from otel_rtc.instrumentation.pubsub import PubSubTelemetry
    from otel_rtc.instrumentation.sessions import SessionRegistry
    from otel_rtc.instrumentation.traffic import TrafficAccounting
    from otel_rtc.sdk.configure import Telemetry, configure
    from otel_rtc.sdk.defaults import default_processors
    from otel_rtc.sdk.export import MetricsProcessor, RtcWrappingMetricExporter
    from otel_rtc.sdk.instrumentor import RtcInstrumentor
    from otel_rtc.sdk.processors import TrafficLoadProcessor, WindowRateProcessor
    from otel_rtc.sdk.prometheus import RtcPrometheusMetricReader


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_rtc' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"otel_rtc.{module}"), name)
    if not getattr(value, "missing_extra", None):  # keep a placeholder out of the cache
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
