"""Local aggregation: buffered events folded into exact histograms at collection.

The OpenTelemetry SDK's ``Histogram.record()`` costs microseconds per call (attribute
hashing, locks, exemplar filter). Instrumentation records through
:class:`otel_rtc.instrumentation.recording.Recorder`; when an export stage is bound to its
meter provider, this module is the recorder's backend: it hands out a
:class:`BufferedRecorder` (the recorder then costs one ``deque.append`` per event), and
the export stage (:class:`otel_rtc.RtcWrappingMetricExporter`) drains every buffer at collection
time, folds the events into exact explicit-bucket histograms and counters, and merges
them into the ``MetricsData`` it exports.

The backend is installed by :func:`bind_registry` (called by ``configure()``, the
Prometheus reader and the instrumentor), never at import time.
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Sequence
from itertools import groupby, repeat, starmap
from operator import itemgetter
from typing import Any

from opentelemetry import metrics as metrics_api
from opentelemetry.sdk.metrics import Counter as SdkCounter
from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

from otel_rtc.core import names
from otel_rtc.core.clock import wall_clock_ns
from otel_rtc.instrumentation import recording
from otel_rtc.instrumentation.attributes import AttrSet
from otel_rtc.instrumentation.recording import (
    MESSAGING_DURATION_BUCKETS,
    CounterSpec,
    Event,
    HistogramSpec,
)
from otel_rtc.instrumentation.self_telemetry import count_drop, report_error
from otel_rtc.version import __version__

__all__ = [
    "MESSAGING_DURATION_BUCKETS",
    "BufferedRecorder",
    "CounterSpec",
    "HistogramSpec",
    "LocalAggregationRegistry",
    "add_scope_metrics",
    "bind_registry",
    "buffer_for",
    "default_registry",
    "invalidate_recorders",
]

DEFAULT_PENDING_LIMIT = 50_000
"""Pending events per recorder before the recording thread folds them itself."""

_ATTRS = itemgetter(0)
_VALUES = itemgetter(1)
_CTX = itemgetter(2)


def _group_by_attrs(events: list[Event]) -> dict[AttrSet, list[Event]]:
    """Events grouped by attribute set, in event order within a group.

    Runs of one attribute set (the usual case: one handler, one set) cost one hash.
    """
    groups: dict[AttrSet, list[Event]] = {}
    for attrs, run in groupby(events, _ATTRS):
        group = groups.get(attrs)
        if group is None:
            groups[attrs] = list(run)
        else:
            group.extend(run)
    return groups


class _HistState:
    __slots__ = ("count", "counts", "exemplars", "max", "min", "start_ns", "sum")

    def __init__(self, n_buckets: int, start_ns: int) -> None:
        self.counts = [0] * n_buckets
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        self.start_ns = start_ns
        self.exemplars: dict[int, tuple[float, int, SpanContext]] = {}


def _histogram_point(st: _HistState, attrs: AttrSet, spec: HistogramSpec, now: int
                     ) -> HistogramDataPoint:
    exemplars = [Exemplar(filtered_attributes=None, value=v, time_unix_nano=t,
                          span_id=c.span_id, trace_id=c.trace_id)
                 for v, t, c in st.exemplars.values()]
    return HistogramDataPoint(
        attributes=dict(attrs.mapping), start_time_unix_nano=st.start_ns,
        time_unix_nano=now, count=st.count, sum=st.sum, bucket_counts=list(st.counts),
        explicit_bounds=list(spec.boundaries), min=st.min, max=st.max, exemplars=exemplars)


class _CountState:
    __slots__ = ("start_ns", "value")

    def __init__(self, start_ns: int) -> None:
        self.value = 0
        self.start_ns = start_ns


def _fold_column(st: _HistState, bounds: tuple[float, ...], col: list[Any],
                 evs: list[Event], with_ctx: list[int]) -> None:
    """Add one histogram's values of one attribute set (``None``: no value) to ``st``.

    Column-wise C-level passes (``sum``, ``min``, ``max``, ``bisect`` through ``map``)
    rather than a Python loop per value. A NaN lands in bucket 0 and is skipped by min
    and max, as ``<`` comparisons with it are false. A value that is not a number
    raises ``TypeError`` before ``st`` changes.
    """
    try:
        total = sum(col, st.sum)
        vals = col
    except TypeError:  # a None (no value), rarely: filter, then sum what is left
        vals = [v for v in col if v is not None]
        if not vals:
            return
        total = sum(vals, st.sum)  # still a TypeError: not a number
    ordered = vals if total == total else [v for v in vals if v == v]  # NaN: not ordered
    mn = min(ordered, default=st.min)
    mx = max(ordered, default=st.max)
    counts = st.counts
    if total == total:
        # Totally ordered: every value lies in buckets lo..hi, often one bucket (no
        # bisect at all) or a few (bisect over just their bounds).
        lo = bisect_left(bounds, mn)
        hi = bisect_left(bounds, mx)
        if lo == hi:
            counts[lo] += len(vals)
        else:
            for i, c in Counter(map(bisect_left, repeat(bounds[lo:hi]), vals)).items():
                counts[lo + i] += c
    else:
        for i, c in Counter(map(bisect_left, repeat(bounds), vals)).items():
            counts[i] += c
    st.count += len(vals)
    st.sum = total
    if mn < st.min:
        st.min = mn
    if mx > st.max:
        st.max = mx
    # Exemplars: per bucket, the value of the last event that has a span context.
    exemplars = st.exemplars
    for k in with_ctx:
        v = col[k]
        if v is not None:
            ev = evs[k]
            exemplars[bisect_left(bounds, v)] = (v, ev[3], ev[2])


class BufferedRecorder:
    """An :class:`~otel_rtc.instrumentation.recording.EventBuffer` folded by its registry.

    Filled through :meth:`otel_rtc.instrumentation.recording.Recorder.record`; tests may
    append events to :attr:`pending` directly.
    """

    __slots__ = ("__weakref__", "_registry", "counters", "histograms", "limit", "pending")

    def __init__(
        self,
        registry: LocalAggregationRegistry,
        histograms: Sequence[HistogramSpec],
        counters: Sequence[CounterSpec],
        limit: int = DEFAULT_PENDING_LIMIT,
    ) -> None:
        self._registry = registry
        self.histograms = tuple(histograms)
        self.counters = tuple(counters)
        self.pending: deque[Event] = deque()
        self.limit = limit
        # The registry holds recorders weakly. Events still pending when a recorder is
        # dropped (its owner closed, or replaced after a rebinding) are handed to the
        # registry for the next collection rather than lost.
        weakref.finalize(self, registry._adopt, self.pending, self.histograms,
                         self.counters)

    def fold_if_full(self) -> None:
        """Fold pending events now if another thread is not already doing it."""
        self._registry.fold(self, blocking=False)


class LocalAggregationRegistry:
    """Owns buffered recorders and the exact aggregates folded from them.

    One registry feeds one export stage (one consumer of collections).

    Args:
        resource: Resource used when the exported batch carries none of its own.
        clock: Clock for point timestamps.
    """

    def __init__(self, resource: Resource | None = None, clock: Callable[[], int] = wall_clock_ns
                 ) -> None:
        self.resource = resource if resource is not None else Resource.create()
        self.scope = InstrumentationScope("otel_rtc", __version__)
        self._clock = clock
        self._lock = threading.Lock()
        self._recorders: weakref.WeakSet[BufferedRecorder] = weakref.WeakSet()
        self._orphans: deque[tuple[deque[Event], tuple[HistogramSpec, ...],
                                   tuple[CounterSpec, ...]]] = deque()
        self._hist_specs: dict[str, HistogramSpec] = {}
        self._counter_specs: dict[str, CounterSpec] = {}
        self._hists: dict[tuple[str, AttrSet], _HistState] = {}
        self._counts: dict[tuple[str, AttrSet], _CountState] = {}
        self._last_collect_ns: int | None = None
        self.active = False

    def series_count(self) -> int:
        """Number of (metric, attribute set) series currently held."""
        return len(self._hists) + len(self._counts)

    # -- recorders -----------------------------------------------------------------
    def recorder(
        self,
        histograms: Sequence[HistogramSpec],
        counters: Sequence[CounterSpec] = (),
        limit: int | None = None,
    ) -> BufferedRecorder:
        """Create a recorder whose events are folded into this registry.

        ``limit`` defaults to :data:`DEFAULT_PENDING_LIMIT`.

        Raises:
            ValueError: a metric name is already registered with a different spec.
        """
        with self._lock:
            for h in histograms:
                known = self._hist_specs.setdefault(h.name, h)
                if known != h:
                    raise ValueError(f"histogram {h.name!r} already registered as {known}")
            for c in counters:
                known_c = self._counter_specs.setdefault(c.name, c)
                if known_c != c:
                    raise ValueError(f"counter {c.name!r} already registered as {known_c}")
            rec = BufferedRecorder(self, histograms, counters,
                                   DEFAULT_PENDING_LIMIT if limit is None else limit)
            self._recorders.add(rec)
            return rec

    def fold(self, recorder: BufferedRecorder, blocking: bool = True) -> None:
        """Drain ``recorder``'s pending events into the aggregates."""
        if not self._lock.acquire(blocking):
            return
        try:
            self._fold_events(recorder.pending, recorder.histograms, recorder.counters)
        finally:
            self._lock.release()

    def _adopt(self, pending: deque[Event], histograms: tuple[HistogramSpec, ...],
               counters: tuple[CounterSpec, ...]) -> None:
        """Keep a dropped recorder's pending events for the next collection.

        Runs as a finalizer, possibly inside the garbage collector while this thread
        holds the lock, so it takes no lock: ``deque.append`` is atomic.
        """
        if pending:
            self._orphans.append((pending, histograms, counters))

    def _fold_events(self, pending: deque[Event], specs: tuple[HistogramSpec, ...],
                     counters: tuple[CounterSpec, ...]) -> None:
        """Fold the events present in ``pending`` now into the aggregates (lock held).

        The events are grouped by attribute set (order kept within a group) and each
        group's values are folded one histogram at a time (:func:`_fold_column`). A
        group holding a value that is not a number is dropped and counted (reason
        ``invalid_value``); instrumentation only ever records numbers.
        """
        n = len(pending)
        if not n:
            return
        # Pop exactly the events present now; appends racing with us stay for next time.
        events = list(starmap(pending.popleft, repeat((), n)))
        start = self._last_collect_ns
        if start is None:
            start = self._clock()
        hists = self._hists
        counts = self._counts
        for attrs, evs in _group_by_attrs(events).items():
            if specs:
                rows = list(map(_VALUES, evs))
                ctxs = list(map(_CTX, evs))
                with_ctx = ([] if ctxs.count(None) == len(ctxs)
                            else [k for k, c in enumerate(ctxs) if c is not None])
                for j, spec in enumerate(specs):
                    try:
                        col = list(map(itemgetter(j), rows))
                    except IndexError:  # a short values tuple: no value for this histogram
                        col = [row[j] if len(row) > j else None for row in rows]
                    key = (spec.name, attrs)
                    st = hists.get(key)
                    if st is None:
                        st = _HistState(len(spec.boundaries) + 1, start)
                    try:
                        _fold_column(st, spec.boundaries, col, evs, with_ctx)
                    except TypeError:  # not a number: this histogram drops the group
                        count_drop("local_aggregation", "invalid_value",
                                   len(col) - col.count(None))
                        continue
                    if st.count:
                        hists[key] = st
            for c in counters:
                ckey = (c.name, attrs)
                cs = counts.get(ckey)
                if cs is None:
                    cs = counts[ckey] = _CountState(start)
                cs.value += len(evs)

    # -- collection ----------------------------------------------------------------
    def collect(
        self,
        histogram_temporality: AggregationTemporality = AggregationTemporality.CUMULATIVE,
        counter_temporality: AggregationTemporality = AggregationTemporality.CUMULATIVE,
    ) -> list[Metric]:
        """Fold every recorder and return the aggregates as SDK ``Metric`` objects.

        With DELTA temporality the aggregates are reset after being returned.
        """
        delta_h = histogram_temporality is AggregationTemporality.DELTA
        delta_c = counter_temporality is AggregationTemporality.DELTA
        with self._lock:
            for rec in list(self._recorders):
                self._fold_events(rec.pending, rec.histograms, rec.counters)
            orphans = self._orphans
            while orphans:
                self._fold_events(*orphans.popleft())
            now = self._clock()
            hist_points: dict[str, list[HistogramDataPoint]] = {}
            for (name, attrs), st in self._hists.items():
                if st.count:
                    hist_points.setdefault(name, []).append(
                        _histogram_point(st, attrs, self._hist_specs[name], now))
                st.exemplars = {}
            count_points: dict[str, list[NumberDataPoint]] = {}
            for (name, attrs), cs in self._counts.items():
                if cs.value or not delta_c:
                    count_points.setdefault(name, []).append(NumberDataPoint(
                        attributes=dict(attrs.mapping), start_time_unix_nano=cs.start_ns,
                        time_unix_nano=now, value=cs.value))
            if delta_h:
                self._hists.clear()
            if delta_c:
                self._counts.clear()
            self._last_collect_ns = now
        out = [Metric(name=name, description=self._hist_specs[name].description,
                      unit=self._hist_specs[name].unit,
                      data=Histogram(data_points=points,
                                     aggregation_temporality=histogram_temporality))
               for name, points in hist_points.items()]
        out.extend(Metric(name=name, description=self._counter_specs[name].description,
                          unit=self._counter_specs[name].unit,
                          data=Sum(data_points=points, is_monotonic=True,
                                   aggregation_temporality=counter_temporality))
                   for name, points in count_points.items())
        return out

    def merge_into(
        self,
        metrics_data: MetricsData | None,
        preferred_temporality: dict[type, AggregationTemporality] | None = None,
    ) -> MetricsData | None:
        """Return ``metrics_data`` with this registry's aggregates added.

        The aggregates join the first ``ResourceMetrics`` (the SDK produces one per
        provider); with none, a new one is made with :attr:`resource`.
        """
        pref = preferred_temporality or {}
        extra = self.collect(
            pref.get(SdkHistogram, AggregationTemporality.CUMULATIVE),
            pref.get(SdkCounter, AggregationTemporality.CUMULATIVE),
        )
        return add_scope_metrics(metrics_data, self.scope, extra, self.resource)


def add_scope_metrics(metrics_data: MetricsData | None, scope: InstrumentationScope,
                      metrics: Sequence[Metric], resource: Resource | None = None
                      ) -> MetricsData | None:
    """Return ``metrics_data`` with ``metrics`` added under ``scope``.

    They join the first ``ResourceMetrics`` (the SDK produces one per provider); with
    none, a new one is made with ``resource`` (default: ``Resource.create()``, built
    only then: it runs the resource detectors). A scope already present there is
    extended, never repeated: the OTLP protobuf encoder groups by scope, so a second
    ``ScopeMetrics`` equal to an SDK meter's scope (e.g. otel_rtc's own ``"otel_rtc"``
    meter) would replace that meter's metrics in the request.
    """
    if not metrics:
        return metrics_data
    if metrics_data is None or not metrics_data.resource_metrics:
        return MetricsData(resource_metrics=[ResourceMetrics(
            resource=resource if resource is not None else Resource.create(),
            scope_metrics=[ScopeMetrics(scope=scope, metrics=list(metrics), schema_url="")],
            schema_url="")])
    first, *rest = metrics_data.resource_metrics
    scopes = list(first.scope_metrics)
    for i, sm in enumerate(scopes):
        if sm.scope == scope:
            scopes[i] = ScopeMetrics(scope=sm.scope, metrics=[*sm.metrics, *metrics],
                                     schema_url=sm.schema_url)
            break
    else:
        scopes.append(ScopeMetrics(scope=scope, metrics=list(metrics), schema_url=""))
    merged_first = ResourceMetrics(resource=first.resource, scope_metrics=scopes,
                                   schema_url=first.schema_url)
    return MetricsData(resource_metrics=[merged_first, *rest])

# -- binding registries to meter providers: the recorders' backend --------------------

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
