"""Test helpers: in-memory pipelines with the otel_rtc export stage bound.

Also here: :class:`ManualClock` (drive time by hand), and :func:`drop_count` /
:func:`error_count`, the in-process totals behind ``otel_rtc.telemetry.dropped`` and
``otel_rtc.internal.errors``.

Example:
    >>> p = make_test_pipeline()
    >>> # ... exercise instrumented code with tracer_provider=p.tracer_provider ...
    >>> p.metrics()  # {metric name: [data points]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_rtc.core.clock import ManualClock
from otel_rtc.instrumentation.self_telemetry import drop_count, error_count
from otel_rtc.sdk.aggregation import LocalAggregationRegistry
from otel_rtc.sdk.export import MetricsProcessor, apply_export_stage
from otel_rtc.sdk.recording_backend import bind_registry

__all__ = ["CapturingMetricExporter", "ManualClock", "RtcInMemoryMetricReader", "TestPipeline",
           "drop_count", "error_count", "make_test_pipeline"]


class CapturingMetricExporter(MetricExporter):
    """A push exporter that keeps every batch it is given (``.batches``); always succeeds.

    For testing what an export stage (e.g. :class:`~otel_rtc.RtcWrappingMetricExporter`) hands
    to the exporter it wraps.
    """

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[MetricsData] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        """Keep ``metrics_data``."""
        self.batches.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Nothing to flush."""
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Nothing to release."""


class RtcInMemoryMetricReader(InMemoryMetricReader):
    """An ``InMemoryMetricReader`` with the otel_rtc export stage applied.

    It merges a local-aggregation registry and runs processors exactly as
    :class:`otel_rtc.RtcWrappingMetricExporter` does on export.
    """

    def __init__(
        self,
        registry: LocalAggregationRegistry,
        processors: list[MetricsProcessor] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.registry = registry
        self.processors = list(processors or [])

    def _receive_metrics(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> None:
        data = apply_export_stage(metrics_data, self.registry, self.processors,
                                  self._instrument_class_temporality, "test_reader")
        super()._receive_metrics(data, timeout_millis=timeout_millis, **kwargs)


@dataclass
class TestPipeline:
    """Providers and in-memory sinks for one test."""

    __test__ = False

    tracer_provider: TracerProvider
    span_exporter: InMemorySpanExporter
    meter_provider: MeterProvider
    metric_reader: InMemoryMetricReader
    registry: LocalAggregationRegistry | None
    _last: dict[str, list[Any]] = field(default_factory=dict)

    def spans(self) -> list[ReadableSpan]:
        """Finished spans so far."""
        return list(self.span_exporter.get_finished_spans())

    def metrics(self) -> dict[str, list[Any]]:
        """Collect now; return {metric name: data points} over all scopes."""
        data = self.metric_reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        if data is not None:
            for rm in data.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        out.setdefault(m.name, []).extend(m.data.data_points)
        self._last = out
        return out


def make_test_pipeline(*, local_aggregation: bool = True, **reader_kwargs: Any) -> TestPipeline:
    """Build in-memory tracer and meter providers for a test.

    Args:
        local_aggregation: Bind a fresh registry (hot-path aggregation). With ``False``
            instrumentations fall back to plain SDK instruments.
        **reader_kwargs: Passed to the metric reader (e.g. ``preferred_temporality``).
    """
    resource = Resource.create({"service.name": "otel-rtc-test"})
    span_exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    registry = LocalAggregationRegistry(resource=resource) if local_aggregation else None
    reader: InMemoryMetricReader
    if registry is not None:
        reader = RtcInMemoryMetricReader(registry, **reader_kwargs)
    else:
        reader = InMemoryMetricReader(**reader_kwargs)
    meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
    if registry is not None:
        bind_registry(meter_provider, registry)
    return TestPipeline(tracer_provider, span_exporter, meter_provider, reader, registry)
