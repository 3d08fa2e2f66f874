"""otel_rtc: OpenTelemetry instrumentation for real-time messaging and media systems.

Public names are loaded lazily (PEP 562): ``import otel_rtc`` is cheap, and the pure
core modules (``otel_rtc._burst``, ``otel_rtc._rates``, ...) can be imported inside a
collector's embedded interpreter without the OpenTelemetry SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from otel_rtc.version import __version__

# public name -> private module that defines it
_EXPORTS: dict[str, str] = {
    "AttrSet": "_attributes",
    "intern_attrs": "_attributes",
    "BoundedBuffer": "_buffers",
    "InstrumentedAsyncQueue": "_buffers",
    "InstrumentedQueue": "_buffers",
    "last_enqueue_ns": "_buffers",
    "BurstRecord": "_burst",
    "BurstTracker": "_burst",
    "FrameStats": "_burst",
    "BurstMonitor": "_burst_telemetry",
    "get_burst_monitor": "_burst_telemetry",
    "Clock": "_clock",
    "ManualClock": "_clock",
    "wall_clock_ns": "_clock",
    "Telemetry": "_configure",
    "configure": "_configure",
    "MetricsProcessor": "_exporter",
    "RtcMetricExporter": "_exporter",
    "RtcOTLPMetricExporter": "_exporter",
    "MessageHandler": "_handler",
    "MessageScope": "_handler",
    "RtcInstrumentor": "_instrumentor",
    "CounterSpec": "_local_aggregation",
    "HistogramSpec": "_local_aggregation",
    "LocalAggregationRegistry": "_local_aggregation",
    "bind_registry": "_local_aggregation",
    "default_registry": "_local_aggregation",
    "PubSubTelemetry": "_pubsub",
    "Publication": "_pubsub",
    "Subscription": "_pubsub",
    "CounterSampler": "_rate_processor",
    "TrafficLoadProcessor": "_rate_processor",
    "WindowRateProcessor": "_rate_processor",
    "register_sample_source": "_rate_processor",
    "unregister_sample_source": "_rate_processor",
    "RateConfig": "_rates",
    "RateEngine": "_rates",
    "SeriesRates": "_rates",
    "RtcPrometheusMetricReader": "_prometheus_reader",
    "RotelCollector": "_rotel",
    "RotelError": "_rotel",
    "RotelNotInstalledError": "_rotel",
    "find_rotel": "_rotel",
    "default_processors": "_defaults",
    "drop_count": "_self_telemetry",
    "error_count": "_self_telemetry",
    "Session": "_sessions",
    "SessionEvent": "_sessions",
    "SessionRegistry": "_sessions",
    "BurstSwitches": "_switch",
    "get_switches": "_switch",
    "set_burst_enabled": "_switch",
    "set_burst_log_data": "_switch",
    "set_burst_log_stats": "_switch",
    "set_config_file": "_switch",
    "TrafficAccounting": "_traffic",
    "LoadWeights": "_traffic_load",
    "ParticipantLoad": "_traffic_load",
    "RoomLoad": "_traffic_load",
    "TrafficLoadCalculator": "_traffic_load",
    "TrafficLoadConfig": "_traffic_load",
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
    from otel_rtc._attributes import AttrSet, intern_attrs
    from otel_rtc._buffers import (
        BoundedBuffer,
        InstrumentedAsyncQueue,
        InstrumentedQueue,
        last_enqueue_ns,
    )
    from otel_rtc._burst import BurstRecord, BurstTracker, FrameStats
    from otel_rtc._burst_telemetry import BurstMonitor, get_burst_monitor
    from otel_rtc._clock import Clock, ManualClock, wall_clock_ns
    from otel_rtc._configure import Telemetry, configure
    from otel_rtc._defaults import default_processors
    from otel_rtc._exporter import MetricsProcessor, RtcMetricExporter, RtcOTLPMetricExporter
    from otel_rtc._handler import MessageHandler, MessageScope
    from otel_rtc._instrumentor import RtcInstrumentor
    from otel_rtc._local_aggregation import (
        CounterSpec,
        HistogramSpec,
        LocalAggregationRegistry,
        bind_registry,
        default_registry,
    )
    from otel_rtc._prometheus_reader import RtcPrometheusMetricReader
    from otel_rtc._pubsub import Publication, PubSubTelemetry, Subscription
    from otel_rtc._rate_processor import (
        CounterSampler,
        TrafficLoadProcessor,
        WindowRateProcessor,
        register_sample_source,
        unregister_sample_source,
    )
    from otel_rtc._rates import RateConfig, RateEngine, SeriesRates
    from otel_rtc._rotel import RotelCollector, RotelError, RotelNotInstalledError, find_rotel
    from otel_rtc._self_telemetry import drop_count, error_count
    from otel_rtc._sessions import Session, SessionEvent, SessionRegistry
    from otel_rtc._switch import (
        BurstSwitches,
        get_switches,
        set_burst_enabled,
        set_burst_log_data,
        set_burst_log_stats,
        set_config_file,
    )
    from otel_rtc._traffic import TrafficAccounting
    from otel_rtc._traffic_load import (
        LoadWeights,
        ParticipantLoad,
        RoomLoad,
        TrafficLoadCalculator,
        TrafficLoadConfig,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_rtc' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"otel_rtc.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
