"""otel_rtc: OpenTelemetry instrumentation for real-time messaging and media systems.

Public names are loaded lazily (PEP 562): ``import otel_rtc`` is cheap, and the pure
core modules (``otel_rtc.core.bursts``, ``otel_rtc.core.rates``, ...) can be imported inside a
collector's embedded interpreter without the OpenTelemetry SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from otel_rtc.version import __version__

# public name -> private module that defines it
_EXPORTS: dict[str, str] = {
    "AttrSet": "instrumentation.attributes",
    "intern_attrs": "instrumentation.attributes",
    "BoundedBuffer": "instrumentation.buffers",
    "InstrumentedAsyncQueue": "instrumentation.buffers",
    "InstrumentedQueue": "instrumentation.buffers",
    "last_enqueue_ns": "instrumentation.buffers",
    "BurstRecord": "core.bursts",
    "BurstTracker": "core.bursts",
    "FrameStats": "core.bursts",
    "BurstMonitor": "instrumentation.bursts",
    "get_burst_monitor": "instrumentation.bursts",
    "Clock": "core.clock",
    "ManualClock": "core.clock",
    "wall_clock_ns": "core.clock",
    "Telemetry": "sdk.configure",
    "configure": "sdk.configure",
    "MetricsProcessor": "sdk.export",
    "RtcMetricExporter": "sdk.export",
    "RtcOTLPMetricExporter": "sdk.export",
    "MessageHandler": "instrumentation.handler",
    "MessageScope": "instrumentation.handler",
    "RtcInstrumentor": "sdk.instrumentor",
    "CounterSpec": "sdk.aggregation",
    "HistogramSpec": "sdk.aggregation",
    "LocalAggregationRegistry": "sdk.aggregation",
    "bind_registry": "sdk.aggregation",
    "default_registry": "sdk.aggregation",
    "PubSubTelemetry": "instrumentation.pubsub",
    "Publication": "instrumentation.pubsub",
    "Subscription": "instrumentation.pubsub",
    "CounterSampler": "sdk.processors",
    "TrafficLoadProcessor": "sdk.processors",
    "WindowRateProcessor": "sdk.processors",
    "register_sample_source": "sdk.processors",
    "unregister_sample_source": "sdk.processors",
    "RateConfig": "core.rates",
    "RateEngine": "core.rates",
    "SeriesRates": "core.rates",
    "RtcPrometheusMetricReader": "sdk.prometheus",
    "RotelCollector": "collector.rotel",
    "RotelError": "collector.rotel",
    "RotelNotInstalledError": "collector.rotel",
    "find_rotel": "collector.rotel",
    "default_processors": "sdk.defaults",
    "drop_count": "instrumentation.self_telemetry",
    "error_count": "instrumentation.self_telemetry",
    "Session": "instrumentation.sessions",
    "SessionEvent": "instrumentation.sessions",
    "SessionRegistry": "instrumentation.sessions",
    "BurstSwitches": "core.switch",
    "get_switches": "core.switch",
    "set_burst_enabled": "core.switch",
    "set_burst_log_data": "core.switch",
    "set_burst_log_stats": "core.switch",
    "set_config_file": "core.switch",
    "TrafficAccounting": "instrumentation.traffic",
    "LoadWeights": "core.load",
    "ParticipantLoad": "core.load",
    "RoomLoad": "core.load",
    "TrafficLoadCalculator": "core.load",
    "TrafficLoadConfig": "core.load",
}

__all__ = [
    "AttrSet",
    "BoundedBuffer",
    "BurstMonitor",
    "BurstRecord",
    "BurstSwitches",
    "BurstTracker",
    "Clock",
    "CounterSampler",
    "CounterSpec",
    "FrameStats",
    "HistogramSpec",
    "InstrumentedAsyncQueue",
    "InstrumentedQueue",
    "LoadWeights",
    "LocalAggregationRegistry",
    "ManualClock",
    "MessageHandler",
    "MessageScope",
    "MetricsProcessor",
    "ParticipantLoad",
    "PubSubTelemetry",
    "Publication",
    "RateConfig",
    "RateEngine",
    "RoomLoad",
    "RotelCollector",
    "RotelError",
    "RotelNotInstalledError",
    "RtcInstrumentor",
    "RtcMetricExporter",
    "RtcOTLPMetricExporter",
    "RtcPrometheusMetricReader",
    "SeriesRates",
    "Session",
    "SessionEvent",
    "SessionRegistry",
    "Subscription",
    "Telemetry",
    "TrafficAccounting",
    "TrafficLoadCalculator",
    "TrafficLoadConfig",
    "TrafficLoadProcessor",
    "WindowRateProcessor",
    "__version__",
    "bind_registry",
    "configure",
    "default_processors",
    "default_registry",
    "drop_count",
    "error_count",
    "find_rotel",
    "get_burst_monitor",
    "get_switches",
    "intern_attrs",
    "last_enqueue_ns",
    "register_sample_source",
    "set_burst_enabled",
    "set_burst_log_data",
    "set_burst_log_stats",
    "set_config_file",
    "unregister_sample_source",
    "wall_clock_ns",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from otel_rtc.collector.rotel import (
        RotelCollector,
        RotelError,
        RotelNotInstalledError,
        find_rotel,
    )
    from otel_rtc.core.bursts import BurstRecord, BurstTracker, FrameStats
    from otel_rtc.core.clock import Clock, ManualClock, wall_clock_ns
    from otel_rtc.core.load import (
        LoadWeights,
        ParticipantLoad,
        RoomLoad,
        TrafficLoadCalculator,
        TrafficLoadConfig,
    )
    from otel_rtc.core.rates import RateConfig, RateEngine, SeriesRates
    from otel_rtc.core.switch import (
        BurstSwitches,
        get_switches,
        set_burst_enabled,
        set_burst_log_data,
        set_burst_log_stats,
        set_config_file,
    )
    from otel_rtc.instrumentation.attributes import AttrSet, intern_attrs
    from otel_rtc.instrumentation.buffers import (
        BoundedBuffer,
        InstrumentedAsyncQueue,
        InstrumentedQueue,
        last_enqueue_ns,
    )
    from otel_rtc.instrumentation.bursts import BurstMonitor, get_burst_monitor
    from otel_rtc.instrumentation.handler import MessageHandler, MessageScope
    from otel_rtc.instrumentation.pubsub import Publication, PubSubTelemetry, Subscription
    from otel_rtc.instrumentation.self_telemetry import drop_count, error_count
    from otel_rtc.instrumentation.sessions import Session, SessionEvent, SessionRegistry
    from otel_rtc.instrumentation.traffic import TrafficAccounting
    from otel_rtc.sdk.aggregation import (
        CounterSpec,
        HistogramSpec,
        LocalAggregationRegistry,
        bind_registry,
        default_registry,
    )
    from otel_rtc.sdk.configure import Telemetry, configure
    from otel_rtc.sdk.defaults import default_processors
    from otel_rtc.sdk.export import MetricsProcessor, RtcMetricExporter, RtcOTLPMetricExporter
    from otel_rtc.sdk.instrumentor import RtcInstrumentor
    from otel_rtc.sdk.processors import (
        CounterSampler,
        TrafficLoadProcessor,
        WindowRateProcessor,
        register_sample_source,
        unregister_sample_source,
    )
    from otel_rtc.sdk.prometheus import RtcPrometheusMetricReader


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_rtc' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"otel_rtc.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
