"""The export stage: a ``MetricExporter`` that adds otel_rtc's metrics to any exporter.

:class:`RtcWrappingMetricExporter` wraps an inner exporter (OTLP/HTTP by default). On every
export it

1. merges the hot-path aggregates of a
   :class:`~otel_rtc.sdk.aggregation.LocalAggregationRegistry` into the batch, and
2. runs each :class:`MetricsProcessor` (window rates, traffic load, ...) over the batch,

then hands the result to the inner exporter. It follows the inner exporter's preferred
temporality and aggregation. A failure in either step is contained: it is counted in
``otel_rtc.internal.errors`` and the batch is exported without that step's additions.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Sequence

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)

from otel_rtc.instrumentation.self_telemetry import count_drop, report_error
from otel_rtc.sdk.aggregation import LocalAggregationRegistry
from otel_rtc.sdk.recording_backend import (
    bind_registry,
    default_registry,
    invalidate_recorders,
)


class MetricsProcessor(abc.ABC):
    """Transforms a batch of metrics before export (one job: derive, filter, ...)."""

    @abc.abstractmethod
    def process(self, metrics_data: MetricsData) -> MetricsData:
        """Return the batch to export; must pass unknown metrics through unchanged."""

    def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, samplers)."""


def apply_export_stage(metrics_data: MetricsData, registry: LocalAggregationRegistry,
                       processors: Sequence[MetricsProcessor],
                       preferred_temporality: dict[type, AggregationTemporality],
                       component: str) -> MetricsData:
    """Merge ``registry``'s aggregates into ``metrics_data``, then run ``processors``.

    Shared by every consumer of a collection (push exporter, Prometheus pull reader).
    Never raises: a failing step is reported under ``component`` and skipped.
    """
    data = metrics_data
    try:
        merged = registry.merge_into(data, preferred_temporality)
        if merged is not None:
            data = merged
    except Exception as exc:
        report_error(f"{component}.merge", exc)
    for processor in processors:
        try:
            data = processor.process(data)
        except Exception as exc:
            report_error(f"{component}.{type(processor).__name__}", exc)
    return data


def close_export_stage(registry: LocalAggregationRegistry,
                       processors: Sequence[MetricsProcessor], component: str) -> None:
    """Shut down ``processors`` and retire ``registry``: the end of an export stage.

    Shared by the push exporter and the Prometheus pull reader. Never raises: a failing
    processor is reported under ``component`` and the others are still shut down.
    """
    for processor in processors:
        try:
            processor.shutdown()
        except Exception as exc:
            report_error(f"{component}.{type(processor).__name__}", exc)
    registry.active = False


class RtcWrappingMetricExporter(MetricExporter):
    """Wraps any ``inner`` exporter and adds otel_rtc's aggregates and derived metrics.

    Use it in your own SDK set-up (``configure()`` builds one for you). Without ``inner``
    it wraps OTLP/HTTP; ``processors`` default to none.

    Args:
        inner: The exporter that actually sends data. Defaults to the OTLP/HTTP exporter
            configured from ``OTEL_EXPORTER_OTLP_*`` environment variables.
        registry: Hot-path aggregates to merge. Defaults to the process-wide registry,
            which global-provider instrumentations record into once this exporter exists.
        processors: Batch processors run in order after the merge.
    """

    def __init__(
        self,
        inner: MetricExporter | None = None,
        *,
        registry: LocalAggregationRegistry | None = None,
        processors: Sequence[MetricsProcessor] = (),
    ) -> None:
        if inner is None:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )

            inner = OTLPMetricExporter()
        if not isinstance(inner, MetricExporter):
            raise ValueError(f"inner must be a MetricExporter, got {type(inner).__name__}")
        for p in processors:
            if not isinstance(p, MetricsProcessor):
                raise ValueError(f"processors must be MetricsProcessor, got {type(p).__name__}")
        super().__init__(
            preferred_temporality=dict(inner._preferred_temporality or {}),
            preferred_aggregation=dict(inner._preferred_aggregation or {}),
        )
        self.inner = inner
        self.registry = registry if registry is not None else default_registry()
        self.processors: list[MetricsProcessor] = list(processors)
        self._lock = threading.Lock()
        self._in_flight = 0  # data points of the export under way
        self._in_flight_counted = False
        self.registry.active = True
        invalidate_recorders()

    def bind(self, meter_provider: object) -> None:
        """Route otel_rtc's hot-path recorders of ``meter_provider`` to this exporter.

        Call it once the provider that reads through this exporter exists: otel_rtc's
        instruments of that provider then buffer into :attr:`registry`, which every
        export merges.
        """
        bind_registry(meter_provider, self.registry)

    def transform(self, metrics_data: MetricsData) -> MetricsData:
        """Apply the merge and the processors; never raises."""
        return apply_export_stage(metrics_data, self.registry, self.processors,
                                  self._preferred_temporality, "exporter")

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object
    ) -> MetricExportResult:
        """Export ``metrics_data`` plus otel_rtc's additions through the inner exporter.

        A failed export is counted: its data points in
        ``otel_rtc.telemetry.dropped{otel_rtc.drop.reason="export_failed"}`` (cumulative
        series recover their totals at the next success; delta ones lose them). An export
        still running when :meth:`shutdown` is called counts as ``shutdown_timeout``.
        """
        data = self.transform(metrics_data)
        try:
            n = sum(len(m.data.data_points) for rm in data.resource_metrics
                    for sm in rm.scope_metrics for m in sm.metrics)
        except Exception as exc:
            report_error("exporter", exc)
            n = 0
        with self._lock:
            self._in_flight, self._in_flight_counted = n, False
        try:
            result = self.inner.export(data, timeout_millis=timeout_millis)
        except Exception as exc:
            report_error("exporter", exc)
            result = MetricExportResult.FAILURE
        with self._lock:
            counted = self._in_flight_counted
            self._in_flight = 0
        if result is not MetricExportResult.SUCCESS and not counted:
            count_drop("export.metrics", "export_failed", n)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Flush the inner exporter."""
        return self.inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        """Shut down processors and the inner exporter; later events use the SDK path.

        The SDK's reader calls this at its shutdown deadline even while its last export
        is still retrying: those points are counted as abandoned (``shutdown_timeout``)
        and the inner exporter's shutdown interrupts the retries.
        """
        with self._lock:
            if self._in_flight and not self._in_flight_counted:
                self._in_flight_counted = True
                count_drop("export.metrics", "shutdown_timeout", self._in_flight)
        close_export_stage(self.registry, self.processors, "exporter")
        invalidate_recorders()
        self.inner.shutdown(timeout_millis=timeout_millis)


class RtcEnvConfiguredMetricExporter(RtcWrappingMetricExporter):
    """The exporter that ``OTEL_METRICS_EXPORTER=otel_rtc`` selects; takes no arguments.

    Configured entirely from the environment: OTLP/HTTP from ``OTEL_EXPORTER_OTLP_*``, the
    default processors from ``OTEL_RTC_*`` (see :func:`otel_rtc.default_processors`).
    """

    def __init__(self) -> None:
        from otel_rtc.sdk.defaults import default_processors

        super().__init__(processors=default_processors())
