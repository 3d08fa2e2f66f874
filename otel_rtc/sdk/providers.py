"""The tracer, meter and logger providers configure() creates, and the global ones.

:func:`~otel_rtc.sdk.configure.configure` builds each provider with otel_rtc's export
path: bounded batch processors for spans and log records, the export stage
(:class:`~otel_rtc.sdk.export.RtcWrappingMetricExporter`) for metrics. The OpenTelemetry
API lets a process set each global provider once (until then it hands out proxies):
``configure()`` installs its providers where no one did before it, and the instrumentor
asks whether a configurator already did.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from otel_rtc.instrumentation.self_telemetry import report_error
from otel_rtc.sdk.aggregation import LocalAggregationRegistry
from otel_rtc.sdk.batching import RtcBatchLogRecordProcessor, RtcBatchSpanProcessor
from otel_rtc.sdk.export import MetricsProcessor
from otel_rtc.sdk.recording_backend import bind_registry

__all__ = [
    "SPAN_QUEUE_SIZE",
    "install_globals",
    "logger_provider",
    "meter_provider",
    "meter_provider_set",
    "sdk_providers_installed",
    "tracer_provider",
]

_logger = logging.getLogger("otel_rtc")

SPAN_QUEUE_SIZE = 2048
"""Spans (and log records) held while the exporter is slow or absent; new ones are
dropped, and counted, beyond this."""


# -- the providers configure() creates ---------------------------------------------------
# configure() shuts them down itself, by one deadline (its exit hook): the SDK's own exit
# hooks (shutdown_on_exit) would each wait on their own.


def tracer_provider(resource: Any, span_exporter: Any
                    ) -> tuple[Any, RtcBatchSpanProcessor | None]:
    """A tracer provider exporting through a bounded batch processor (``None``: no exporter).

    Returns:
        The provider and its batch processor (``None`` without an exporter).
    """
    from opentelemetry.sdk.trace import TracerProvider

    tp = TracerProvider(resource=resource, shutdown_on_exit=False)
    if span_exporter is None:
        return tp, None
    bsp = RtcBatchSpanProcessor(span_exporter, "export.traces", max_queue_size=SPAN_QUEUE_SIZE)
    tp.add_span_processor(bsp)
    return tp, bsp


def meter_provider(resource: Any, metric_exporter: Any, registry: LocalAggregationRegistry,
                   processors: Sequence[MetricsProcessor] | None, interval_s: float,
                   timeout_s: float) -> tuple[Any, bool]:
    """A meter provider exporting periodically through the export stage.

    Args:
        resource: The provider's resource.
        metric_exporter: The inner exporter; ``None``: no reader, nothing exported.
        registry: The local aggregation merged into each export (bound to the provider).
        processors: The stage's metric processors; ``None``: the default ones.
        interval_s: Export period.
        timeout_s: Export timeout.

    Returns:
        The provider, and whether ``registry`` was bound to it (only with an exporter).
    """
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from otel_rtc.sdk.export import RtcWrappingMetricExporter

    readers = []
    if metric_exporter is not None:
        if processors is None:
            from otel_rtc.sdk.defaults import default_processors

            procs: Sequence[MetricsProcessor] = default_processors()
        else:
            procs = list(processors)
        rtc = RtcWrappingMetricExporter(metric_exporter, registry=registry, processors=procs)
        readers.append(PeriodicExportingMetricReader(
            rtc, export_interval_millis=interval_s * 1000,
            export_timeout_millis=timeout_s * 1000))
    mp = MeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)
    if readers:
        bind_registry(mp, registry)
    return mp, bool(readers)


def logger_provider(resource: Any, log_exporter: Any
                    ) -> tuple[Any, RtcBatchLogRecordProcessor | None]:
    """A logger provider exporting through a bounded batch processor (``None``: no exporter).

    Returns:
        The provider and its batch processor (``None`` without an exporter).
    """
    from opentelemetry.sdk._logs import LoggerProvider

    lp = LoggerProvider(resource=resource, shutdown_on_exit=False)
    if log_exporter is None:
        return lp, None
    blp = RtcBatchLogRecordProcessor(log_exporter, "export.logs", max_queue_size=SPAN_QUEUE_SIZE)
    lp.add_log_record_processor(blp)
    return lp, blp


# -- the global providers ----------------------------------------------------------------


def _tracer_provider_set() -> bool:
    from opentelemetry import trace

    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def meter_provider_set() -> bool:
    """Whether a global meter provider is set (the API's is a proxy until then)."""
    from opentelemetry import metrics

    try:
        from opentelemetry.metrics._internal import _ProxyMeterProvider
    except ImportError:  # pragma: no cover - older API layout
        return False
    return not isinstance(metrics.get_meter_provider(), _ProxyMeterProvider)


def _logger_provider_set() -> bool:
    from opentelemetry import _logs

    try:
        from opentelemetry._logs._internal import ProxyLoggerProvider
    except ImportError:  # pragma: no cover - older API layout
        return False
    return not isinstance(_logs.get_logger_provider(), ProxyLoggerProvider)


def sdk_providers_installed() -> bool:
    """Whether a global tracer or meter provider is already installed (e.g. by a configurator)."""
    return _tracer_provider_set() or meter_provider_set()


def install_globals(tp: Any, mp: Any, lp: Any, calls: int) -> bool:
    """Set the global providers that are still unset; warn about the others.

    Args:
        tp: Tracer provider.
        mp: Meter provider.
        lp: Logger provider.
        calls: The number of this ``configure()`` call, for the warning.

    Returns:
        Whether all three globals are now these providers.
    """
    from opentelemetry import _logs, metrics, trace

    kept = []
    installed = True
    for what, is_set, getter, setter, provider in (
        ("tracer", _tracer_provider_set, trace.get_tracer_provider,
         trace.set_tracer_provider, tp),
        ("meter", meter_provider_set, metrics.get_meter_provider,
         metrics.set_meter_provider, mp),
        ("logger", _logger_provider_set, _logs.get_logger_provider,
         _logs.set_logger_provider, lp),
    ):
        if is_set():
            if getter() is not provider:
                kept.append(what)
                installed = False
            continue
        try:
            setter(provider)
        except Exception as exc:
            report_error("configure", exc)
            installed = False
    if kept:
        _logger.warning(
            "otel_rtc: configure() call #%d: global %s provider(s) already set (the "
            "OpenTelemetry API allows setting them once per process); keeping them. The "
            "returned handle's providers apply only where you pass them explicitly.",
            calls, "/".join(kept))
    return installed
