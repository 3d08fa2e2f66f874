"""The recorders' backend: which registry each meter provider's recorders buffer into.

A :class:`~otel_rtc.instrumentation.recording.Recorder` asks the backend for a buffer.
When an export stage is bound to its meter provider (:func:`bind_registry`, called by
``configure()``, the Prometheus reader, the instrumentor and the export stage itself),
the answer is a :class:`~otel_rtc.sdk.aggregation.BufferedRecorder` of that stage's
:class:`~otel_rtc.sdk.aggregation.LocalAggregationRegistry`; otherwise ``None``, and the
recorder uses the SDK's instruments. The backend is installed by the first binding,
never at import time.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from opentelemetry import metrics as metrics_api

from otel_rtc.core import names
from otel_rtc.instrumentation import recording
from otel_rtc.instrumentation.recording import CounterSpec, HistogramSpec
from otel_rtc.instrumentation.self_telemetry import report_error
from otel_rtc.sdk.aggregation import BufferedRecorder, LocalAggregationRegistry
from otel_rtc.version import __version__

__all__ = [
    "bind_registry",
    "buffer_for",
    "default_registry",
    "invalidate_recorders",
    "unbind_registry",
]

_bindings: weakref.WeakKeyDictionary[Any, LocalAggregationRegistry] = weakref.WeakKeyDictionary()
_default_registry = LocalAggregationRegistry()


def default_registry() -> LocalAggregationRegistry:
    """The process-wide registry used by ``configure()`` and the entry-point exporter."""
    return _default_registry


def bind_registry(meter_provider: Any, registry: LocalAggregationRegistry) -> None:
    """Declare that ``registry`` is merged into the export of ``meter_provider``.

    Instrumentations using that provider then record through buffered recorders.
    """
    _bindings[meter_provider] = registry
    registry.active = True
    _ensure_always_collected(meter_provider, registry)
    recording.set_backend(_BACKEND)


def unbind_registry(meter_provider: Any) -> None:
    """Undo :func:`bind_registry`: that provider's instrumentations use SDK instruments."""
    _bindings.pop(meter_provider, None)
    recording.invalidate()


def invalidate_recorders() -> None:
    """Bindings or export stages changed: recorders re-resolve on their next event."""
    recording.invalidate()


_collected_providers: weakref.WeakKeyDictionary[Any, LocalAggregationRegistry] = (
    weakref.WeakKeyDictionary()
)


def _ensure_always_collected(meter_provider: Any, registry: LocalAggregationRegistry) -> None:
    """Give ``meter_provider`` an instrument that reports on every collection.

    The SDK calls a reader (and so the export stage that merges local aggregates) only
    when its own instruments produced at least one point. A process whose only metrics
    are otel_rtc's buffered ones would never export them. This observable gauge, the
    number of series the registry holds (its memory, worth watching anyway), always has
    a point; the self-telemetry counters are registered alongside.
    """
    try:
        if _collected_providers.get(meter_provider) is registry:
            return
        _collected_providers[meter_provider] = registry
        from otel_rtc.instrumentation.self_telemetry import register_self_metrics

        meter = meter_provider.get_meter("otel_rtc", __version__)
        ref = weakref.ref(registry)

        def observe(_options: metrics_api.CallbackOptions) -> list[metrics_api.Observation]:
            reg = ref()
            return [] if reg is None else [metrics_api.Observation(reg.series_count())]

        meter.create_observable_gauge(
            names.LOCAL_AGGREGATION_SERIES,
            callbacks=[observe],
            unit="{series}",
            description="Series held by otel_rtc's local aggregation for the export stage.",
        )
        register_self_metrics(meter)
    except Exception as exc:
        report_error("local_aggregation", exc)


def buffer_for(histograms: Sequence[HistogramSpec], counters: Sequence[CounterSpec],
               meter_provider: Any = None) -> BufferedRecorder | None:
    """The buffer for events meant for ``meter_provider`` (``None``: global), if any.

    A buffered recorder when an export stage is bound to that provider (or, for the
    global provider, when the default registry is active); ``None`` otherwise (the
    recorder then uses API instruments).

    Raises:
        ValueError: A metric name is already registered with a different spec.
    """
    try:
        mp = metrics_api.get_meter_provider() if meter_provider is None else meter_provider
        registry = _bindings.get(mp)
        if registry is None and meter_provider is None and _default_registry.active:
            registry = _default_registry
        if registry is None:
            return None
        _ensure_always_collected(mp, registry)
    except Exception as exc:  # e.g. an unhashable third-party provider
        report_error("local_aggregation", exc)
        return None
    return registry.recorder(histograms, counters)


class _Backend:
    """:class:`otel_rtc.instrumentation.recording.Backend` over this module's bindings."""

    def buffer(self, histograms: tuple[HistogramSpec, ...], counters: tuple[CounterSpec, ...],
               meter_provider: Any) -> BufferedRecorder | None:
        return buffer_for(histograms, counters, meter_provider)


_BACKEND = _Backend()
