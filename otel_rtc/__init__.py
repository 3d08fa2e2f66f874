"""otel_rtc: OpenTelemetry instrumentation for real-time messaging and media systems."""

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
from otel_rtc.version import __version__

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
