"""What the Rotel processor appends to a ``ResourceMetrics``, built as ``rotel_sdk`` objects.

:mod:`otel_rtc.collector.processor` reads the points and keeps the state; this module
turns what it derived into ``rotel_sdk`` metrics: the derived gauges
(:func:`to_metrics`), the per-resource problem counters (:func:`problem_metrics`), and
the ``otel_rtc.collector`` scope that carries them (:func:`append_scope`).

Like the processor, it runs in Rotel's embedded interpreter: only the stdlib, otel_rtc's
pure core and ``rotel_sdk`` (imported on first use by :class:`RotelSdk`, so the module
imports, and is unit-tested, without the agent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from otel_rtc.core import names
from otel_rtc.core.derived import ANOMALIES_DESC, ANOMALIES_UNIT, ATTR_ANOMALY, DerivedGroups

SCOPE_NAME = "otel_rtc.collector"
"""Scope of everything the collector processor appends."""

ProblemCounts = Mapping[tuple[str, str, str], int]
"""``(metric, component, reason) -> count`` of one resource."""


class RotelSdk:
    """The ``rotel_sdk`` types, imported on first use."""

    def __init__(self) -> None:
        from rotel_sdk.open_telemetry.common.v1 import AnyValue, InstrumentationScope, KeyValue
        from rotel_sdk.open_telemetry.metrics.v1 import (
            AggregationTemporality,
            Gauge,
            Metric,
            MetricData,
            NumberDataPoint,
            NumberDataPointValue,
            ScopeMetrics,
            Sum,
        )

        self.AnyValue = AnyValue
        self.KeyValue = KeyValue
        self.InstrumentationScope = InstrumentationScope
        self.AggregationTemporality = AggregationTemporality
        self.Gauge = Gauge
        self.Metric = Metric
        self.MetricData = MetricData
        self.NumberDataPoint = NumberDataPoint
        self.NumberDataPointValue = NumberDataPointValue
        self.ScopeMetrics = ScopeMetrics
        self.Sum = Sum

        def generic(k: str, v: object) -> Any:
            return KeyValue(k, AnyValue(v))

        # KeyValue's typed constructors build a KeyValue in one call across pyo3, about
        # twice as fast as KeyValue(k, AnyValue(v)); same result.
        self.kv_by_type = {t: getattr(KeyValue, f"new_{n}_value", generic) for t, n in (
            (str, "string"), (bool, "bool"), (int, "int"), (float, "double"))}
        self.kv_generic = generic


def append_scope(sdk: RotelSdk, rm: Any, metrics: list[Any]) -> None:
    """Append ``metrics`` to ``rm`` under the ``otel_rtc.collector`` scope."""
    scope = sdk.InstrumentationScope()
    scope.name = SCOPE_NAME
    try:
        from otel_rtc.version import __version__

        scope.version = __version__
    except Exception:
        pass
    sm = sdk.ScopeMetrics()
    sm.scope = scope
    sm.metrics = metrics
    sms = list(rm.scope_metrics or ())
    sms.append(sm)
    rm.scope_metrics = sms


def _kv(sdk: RotelSdk, k: str, v: object) -> Any:
    if v is None:
        v = ""
    elif not isinstance(v, (str, bool, int, float)):
        v = str(v)
    make = sdk.kv_by_type.get(type(v))
    return make(k, v) if make is not None else sdk.kv_generic(k, v)


def to_metrics(sdk: RotelSdk, groups: DerivedGroups) -> list[Any]:
    """``rotel_sdk`` gauges of ``groups``: one data point object and one setter per field.

    New KeyValue objects for every point: a KeyValue handed to one point cannot be handed
    to another (the agent moves its contents on conversion and panics on the second use;
    tried), so the only saving left is the typed one-call constructors.
    """
    by_type = sdk.kv_by_type
    out = []
    ndp, as_double = sdk.NumberDataPoint, sdk.NumberDataPointValue.AsDouble
    for name, (unit, desc, pts) in groups.items():
        if not pts:
            continue
        dps = []
        for a, v, start, t in pts:
            dp = ndp()
            try:
                dp.attributes = [by_type[type(x)](k, x) for k, x in a]
            except KeyError:  # a value of another type (or None): the generic path
                dp.attributes = [_kv(sdk, k, x) for k, x in a]
            dp.start_time_unix_nano = start
            dp.time_unix_nano = t
            dp.value = as_double(float(v))
            dps.append(dp)
        g = sdk.Gauge()
        g.data_points = dps
        m = sdk.Metric()
        m.name = name
        m.unit = unit
        m.description = desc
        m.data = sdk.MetricData.Gauge(g)
        out.append(m)
    return out


_PROBLEM_META = {
    names.TELEMETRY_DROPPED: (names.ATTR_DROP_REASON, "{item}",
                              "Telemetry input rejected by otel_rtc (invalid, over a cap, ...)."),
    names.INTERNAL_ERRORS: (names.ATTR_ERROR_TYPE, "{error}",
                            "Errors inside otel_rtc that were contained instead of raised."),
}


def problem_metrics(sdk: RotelSdk, problems: ProblemCounts | None,
                    start_ns: int, now_ns: int) -> list[Any]:
    """Cumulative sums of one resource's problem counts (none when it has none).

    ``otel_rtc.telemetry.dropped``, ``otel_rtc.internal.errors`` and
    ``otel_rtc.rates.anomalies`` points over ``[start_ns, now_ns]``, one per
    ``(component, reason)``.
    """
    if not problems:
        return []
    by_metric: dict[str, list[Any]] = {}
    for (metric, component, reason), n in sorted(problems.items()):
        label = _PROBLEM_META[metric][0] if metric in _PROBLEM_META else ATTR_ANOMALY
        dp = sdk.NumberDataPoint()
        dp.attributes = [_kv(sdk, names.ATTR_COMPONENT, component), _kv(sdk, label, reason)]
        dp.start_time_unix_nano = start_ns
        dp.time_unix_nano = now_ns
        dp.value = sdk.NumberDataPointValue.AsInt(n)
        by_metric.setdefault(metric, []).append(dp)
    out = []
    for metric, dps in by_metric.items():
        s = sdk.Sum()
        s.aggregation_temporality = sdk.AggregationTemporality.Cumulative
        s.is_monotonic = True
        s.data_points = dps
        m = sdk.Metric()
        m.name = metric
        _label, m.unit, m.description = _PROBLEM_META.get(
            metric, ("", ANOMALIES_UNIT, ANOMALIES_DESC))
        m.data = sdk.MetricData.Sum(s)
        out.append(m)
    return out
