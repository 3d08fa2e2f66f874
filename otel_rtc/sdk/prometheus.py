"""A Prometheus pull reader with otel_rtc's export stage applied on every scrape.

The SDK's :class:`opentelemetry.exporter.prometheus.PrometheusMetricReader` serves what
the SDK instruments hold. otel_rtc's hot-path instrumentations record into a local
aggregation registry that only an export stage merges in, and the derived rates and
traffic load are added by the export stage's processors. A plain Prometheus reader
therefore misses both; this one applies the same stage on each scrape.

Needs the ``prometheus`` extra (``opentelemetry-exporter-prometheus``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
except ImportError as _exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("RtcPrometheusMetricReader needs the 'prometheus' extra: "
                      "pip install 'otel-rtc[prometheus]'") from _exc

from otel_rtc.sdk.aggregation import LocalAggregationRegistry
from otel_rtc.sdk.export import MetricsProcessor, apply_export_stage, close_export_stage
from otel_rtc.sdk.recording_backend import bind_registry

__all__ = ["RtcPrometheusMetricReader"]


class RtcPrometheusMetricReader(PrometheusMetricReader):  # type: ignore[misc]
    """``PrometheusMetricReader`` plus otel_rtc's local aggregates and derived metrics.

    Example:
        >>> from opentelemetry.sdk.metrics import MeterProvider
        >>> from prometheus_client import start_http_server
        >>> reader = RtcPrometheusMetricReader()
        >>> provider = MeterProvider(metric_readers=[reader])
        >>> reader.bind(provider)           # otel_rtc instruments now feed this reader
        >>> start_http_server(9464, addr="127.0.0.1")

    Args:
        registry: Local aggregation registry to merge (a new one by default). It must be
            bound to the meter provider: :meth:`bind` does it.
        processors: Metric processors applied on each scrape; default
            :func:`otel_rtc.sdk.defaults.default_processors` (window rates, traffic load).
        prometheus_registry: The ``prometheus_client`` registry to serve from (the SDK
            reader's ``registry`` argument); default the global ``REGISTRY``.
        **kwargs: Other ``PrometheusMetricReader`` arguments (``prefix``,
            ``disable_target_info``, ...).

    Raises:
        ValueError: A processor is not a :class:`~otel_rtc.MetricsProcessor`.
    """

    def __init__(self, registry: LocalAggregationRegistry | None = None,
                 processors: Sequence[MetricsProcessor] | None = None,
                 *, prometheus_registry: Any = None, **kwargs: Any) -> None:
        if processors is None:
            from otel_rtc.sdk.defaults import default_processors

            processors = default_processors()
        for p in processors:
            if not isinstance(p, MetricsProcessor):
                raise ValueError(f"processors must be MetricsProcessor, got {type(p).__name__}")
        if prometheus_registry is not None:
            kwargs["registry"] = prometheus_registry
        super().__init__(**kwargs)
        self.rtc_registry = registry if registry is not None else LocalAggregationRegistry()
        self.processors: list[MetricsProcessor] = list(processors)

    def bind(self, meter_provider: Any) -> None:
        """Route otel_rtc's hot-path recorders of ``meter_provider`` to this reader."""
        bind_registry(meter_provider, self.rtc_registry)

    def _receive_metrics(self, metrics_data: Any, timeout_millis: float = 10_000,
                         **kwargs: Any) -> None:
        data = apply_export_stage(metrics_data, self.rtc_registry, self.processors,
                                  self._instrument_class_temporality, "prometheus_reader")
        super()._receive_metrics(data, timeout_millis=timeout_millis, **kwargs)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Stop the processors' samplers, then the reader."""
        close_export_stage(self.rtc_registry, self.processors, "prometheus_reader")
        super().shutdown(timeout_millis=timeout_millis, **kwargs)
