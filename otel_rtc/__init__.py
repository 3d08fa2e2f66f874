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
    "Clock": "_clock",
    "ManualClock": "_clock",
    "wall_clock_ns": "_clock",
    "MetricsProcessor": "_exporter",
    "RtcMetricExporter": "_exporter",
    "RtcOTLPMetricExporter": "_exporter",
    "CounterSpec": "_local_aggregation",
    "HistogramSpec": "_local_aggregation",
    "LocalAggregationRegistry": "_local_aggregation",
    "bind_registry": "_local_aggregation",
    "default_registry": "_local_aggregation",
}

__all__ = [
    "AttrSet",
    "Clock",
    "CounterSpec",
    "HistogramSpec",
    "LocalAggregationRegistry",
    "ManualClock",
    "MetricsProcessor",
    "RtcMetricExporter",
    "RtcOTLPMetricExporter",
    "__version__",
    "bind_registry",
    "default_registry",
    "intern_attrs",
    "wall_clock_ns",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from otel_rtc._attributes import AttrSet, intern_attrs
    from otel_rtc._clock import Clock, ManualClock, wall_clock_ns
    from otel_rtc._exporter import MetricsProcessor, RtcMetricExporter, RtcOTLPMetricExporter
    from otel_rtc._local_aggregation import (
        CounterSpec,
        HistogramSpec,
        LocalAggregationRegistry,
        bind_registry,
        default_registry,
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
