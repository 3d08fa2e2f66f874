"""Hot-path aggregation: one ``deque.append`` per event, exact histograms at collection.

The OpenTelemetry SDK's ``Histogram.record()`` costs microseconds per call (attribute
hashing, locks, exemplar filter). A message handler that wants to cost less than that
appends one tuple per message to a :class:`BufferedRecorder`; the export stage
(:class:`otel_rtc.RtcWrappingMetricExporter`) drains every recorder at collection time and folds
the events into exact explicit-bucket histograms and counters, which it merges into the
``MetricsData`` it exports.

When no export stage is bound to the meter provider in use (the user brought their own
pipeline), :func:`get_recorder` returns an :class:`SdkRecorder` with the same ``append``
interface that calls plain SDK ``record()``/``add()``.

An event is a 4-tuple ``(attrs, values, span_context, time_unix_nano)``:

* ``attrs``: an interned :class:`~otel_rtc.instrumentation.attributes.AttrSet`;
* ``values``: one entry per histogram of the recorder (``None`` skips that histogram);
* ``span_context``: the active span's context for an exemplar, or ``None``;
* ``time_unix_nano``: when the event happened (exemplar timestamp).

Every counter of a recorder counts events (one per ``append``).
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress, groupby, repeat, starmap
from operator import eq, is_not, itemgetter
from typing import Any

from opentelemetry import metrics as metrics_api
from opentelemetry.sdk.metrics import Counter as SdkCounter
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
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

from otel_rtc.core.clock import wall_clock_ns
from otel_rtc.instrumentation.attributes import AttrSet
from otel_rtc.instrumentation.self_telemetry import report_error
from otel_rtc.version import __version__

Event = tuple[AttrSet, tuple[float | None, ...], SpanContext | None, int]

DEFAULT_PENDING_LIMIT = 50_000
"""Pending events per recorder before the recording thread folds them itself."""

# The OTel messaging semantic conventions' advice for messaging.process.duration.
MESSAGING_DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)


@dataclass(frozen=True)
class HistogramSpec:
    """An explicit-bucket histogram produced by local aggregation.

    Attributes:
        name: Metric name.
        unit: UCUM unit.
        description: Metric description.
        boundaries: Strictly increasing bucket upper bounds.
    """

    name: str
    unit: str
    description: str
    boundaries: tuple[float, ...] = MESSAGING_DURATION_BUCKETS

    def __post_init__(self) -> None:
        b = self.boundaries
        if any(b[i] >= b[i + 1] for i in range(len(b) - 1)):
            raise ValueError(f"{self.name}: boundaries must be strictly increasing")


@dataclass(frozen=True)
class CounterSpec:
    """A monotonic counter of events produced by local aggregation."""

    name: str
    unit: str
    description: str


_ATTRS = itemgetter(0)
_VALUES = itemgetter(1)
_CTX = itemgetter(2)
_INF = float("inf")
_NEG_INF = float("-inf")
_COLUMN_MIN = 16
"""Groups with fewer events fold with a loop per value, cheaper than the columns' set-up."""

# (spec, (name, attrs), count, new sum, min, max, [(bucket, count)],
# {bucket: (value, time, span context)} for exemplars).
_HistPlan = tuple[HistogramSpec, tuple[str, AttrSet], int, float, float, float,
                  list[tuple[int, int]], dict[int, tuple[float, int, SpanContext]]]


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


def _plan_small(col: list[float | None], bounds: tuple[float, ...], total: float
                ) -> tuple[int, float, float, float, list[tuple[int, int]]] | None:
    """The per-value fold of one short column; ``None`` when it holds no value."""
    buckets: dict[int, int] = {}
    count = 0
    mn = _INF
    mx = _NEG_INF
    for v in col:
        if v is None:
            continue
        i = bisect_left(bounds, v)
        buckets[i] = buckets.get(i, 0) + 1
        count += 1
        total += v
        if v < mn:
            mn = v
        if v > mx:
            mx = v
    if not count:
        return None
    return count, total, mn, mx, list(buckets.items())


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


class _CountState:
    __slots__ = ("start_ns", "value")

    def __init__(self, start_ns: int) -> None:
        self.value = 0
        self.start_ns = start_ns


class BufferedRecorder:
    """Collects events with a single ``deque.append``; folded by the registry.

    Use ``recorder.append(event)`` on the hot path, then, if
    ``len(recorder.pending) > recorder.limit``, call :meth:`fold_if_full`.
    """

    __slots__ = ("__weakref__", "_registry", "append", "counters", "histograms", "limit",
                 "pending")

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
        self.append: Callable[[Event], None] = self.pending.append
        self.limit = limit
        # The registry holds recorders weakly. Events still pending when a recorder is
        # dropped (its owner closed, or replaced after a generation change) are handed
        # to the registry for the next collection rather than lost.
        weakref.finalize(self, registry._adopt, self.pending, self.histograms,
                         self.counters)

    def fold_if_full(self) -> None:
        """Fold pending events now if another thread is not already doing it."""
        self._registry.fold(self, blocking=False)


class SdkRecorder:
    """Fallback recorder over plain SDK instruments (same ``append`` interface)."""

    __slots__ = ("_counters", "_histograms", "counters", "histograms", "limit", "pending")

    def __init__(
        self,
        meter: metrics_api.Meter,
        histograms: Sequence[HistogramSpec],
        counters: Sequence[CounterSpec],
    ) -> None:
        self.histograms = tuple(histograms)
        self.counters = tuple(counters)
        self._histograms = [
            meter.create_histogram(
                h.name,
                unit=h.unit,
                description=h.description,
                explicit_bucket_boundaries_advisory=list(h.boundaries),
            )
            for h in self.histograms
        ]
        self._counters = [
            meter.create_counter(c.name, unit=c.unit, description=c.description)
            for c in self.counters
        ]
        self.pending: deque[Event] = deque()  # always empty: nothing is buffered
        self.limit = DEFAULT_PENDING_LIMIT

    def append(self, event: Event) -> None:
        """Record one event through the SDK."""
        attrs, values, _ctx, _t = event
        mapping = attrs.mapping
        for hist, value in zip(self._histograms, values, strict=False):
            if value is not None:
                hist.record(value, mapping)
        for counter in self._counters:
            counter.add(1, mapping)

    def fold_if_full(self) -> None:
        """Nothing to fold."""


Recorder = BufferedRecorder | SdkRecorder


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
        limit: int = DEFAULT_PENDING_LIMIT,
    ) -> BufferedRecorder:
        """Create a recorder whose events are folded into this registry.

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
            rec = BufferedRecorder(self, histograms, counters, limit)
            self._recorders.add(rec)
            return rec

    def fold(self, recorder: BufferedRecorder, blocking: bool = True) -> None:
        """Drain ``recorder``'s pending events into the aggregates."""
        if not self._lock.acquire(blocking):
            return
        try:
            self._fold_locked(recorder)
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

    def _fold_locked(self, rec: BufferedRecorder) -> None:
        self._fold_events(rec.pending, rec.histograms, rec.counters)

    def _fold_orphans_locked(self) -> None:
        orphans = self._orphans
        while orphans:
            self._fold_events(*orphans.popleft())

    def _fold_events(self, pending: deque[Event], specs: tuple[HistogramSpec, ...],
                     counters: tuple[CounterSpec, ...]) -> None:
        """Fold the events present in ``pending`` now into the aggregates.

        Column-wise: the events are grouped by attribute set (order kept within a
        group), and each group's values are folded one histogram at a time with
        C-level passes (``sum``, ``min``, ``max``, ``bisect`` over the range of
        buckets they span) instead of a Python loop per event. Small groups use a
        loop per value. Bucket counts, counts, min, max and exemplars equal the
        per-event fold's (:meth:`_fold_each`); sums are equal on CPython < 3.12 and
        may differ in the last bits on >= 3.12, whose ``sum()`` of floats is
        compensated (more accurate than ``+=``).

        Everything is computed before anything is stored, so input the column-wise
        fold cannot take (a value that is not a number) is handed to the per-event
        fold instead, which behaves exactly as before: it raises at that event.
        """
        n = len(pending)
        if not n:
            return
        # Pop exactly the events present now; appends racing with us stay for next time.
        events = list(starmap(pending.popleft, repeat((), n)))
        now = self._clock()
        start = self._last_collect_ns if self._last_collect_ns is not None else now
        try:
            groups = _group_by_attrs(events)
            plans = [(attrs, len(evs), self._plan_group(attrs, evs, specs) if specs else ())
                     for attrs, evs in groups.items()]
        except Exception:
            self._fold_each(pending, events, specs, counters, start)
            return
        hists = self._hists
        counts = self._counts
        counter_names = [c.name for c in counters]
        for attrs, size, hist_plans in plans:
            for spec, key, count, total, mn, mx, buckets, exemplars in hist_plans:
                st = hists.get(key)
                if st is None:
                    st = hists[key] = _HistState(len(spec.boundaries) + 1, start)
                bucket_counts = st.counts
                for i, c in buckets:
                    bucket_counts[i] += c
                st.count += count
                st.sum = total
                if mn < st.min:
                    st.min = mn
                if mx > st.max:
                    st.max = mx
                if exemplars:
                    st.exemplars.update(exemplars)
            for name in counter_names:
                ckey = (name, attrs)
                cs = counts.get(ckey)
                if cs is None:
                    cs = counts[ckey] = _CountState(start)
                cs.value += size

    def _plan_group(self, attrs: AttrSet, evs: list[Event],
                    specs: tuple[HistogramSpec, ...]) -> list[_HistPlan]:
        """What folding ``evs`` (all with ``attrs``) adds to each histogram; no stores."""
        hists = self._hists
        rows = list(map(_VALUES, evs))
        m = len(evs)
        # Span contexts for exemplars: on no event (metrics mode), on every event
        # (spans mode) or on some (retroactive mode: the slow messages).
        no_ctx = list(map(_CTX, evs)).count(None)
        all_ctx = no_ctx == 0
        ex_idx: Sequence[int] = (
            () if no_ctx == m else range(m) if all_ctx
            else [i for i, ev in enumerate(evs) if ev[2] is not None])
        out: list[_HistPlan] = []
        for j, spec in enumerate(specs):
            try:
                col = list(map(itemgetter(j), rows))
            except IndexError:  # a short values tuple: None for the histograms after it
                col = [row[j] if len(row) > j else None for row in rows]
            key = (spec.name, attrs)
            st = hists.get(key)
            total = st.sum if st is not None else 0.0
            b = spec.boundaries
            # Exemplars as the per-event fold leaves them: per bucket the last event's,
            # buckets in the order they first got one. Kept per bucket, not per event:
            # a list of one tuple per event would wake the cyclic GC over a large heap.
            exemplars: dict[int, tuple[float, int, SpanContext]] = {}
            ex_done = False
            if m < _COLUMN_MIN:
                plan = _plan_small(col, b, total)
                if plan is None:
                    continue
                count, total, mn, mx, buckets = plan
            else:
                vals = col
                try:
                    total = sum(vals, total)  # raises on None (rare): filtered below
                except TypeError:
                    vals = list(compress(col, map(is_not, col, repeat(None))))
                    if not vals:
                        continue
                    total = sum(vals, total)
                count = len(vals)
                # With a context on every event and no None, event k's value is vals[k].
                ex_all = all_ctx and vals is col
                if total == total:
                    # No NaN, so values are totally ordered and every value lies in
                    # buckets lo..hi: bisect over just the bounds between them.
                    mn = min(vals)
                    mx = max(vals)
                    lo = bisect_left(b, mn)
                    hi = bisect_left(b, mx)
                    if lo == hi:
                        buckets = [(lo, count)]
                        if ex_all:
                            ev = evs[-1]
                            exemplars[lo] = (vals[-1], ev[3], ev[2])
                            ex_done = True
                    elif hi - lo < 256:
                        # Bucket offsets as bytes: bytes.count tallies at memchr speed.
                        offsets = bytes(map(bisect_left, repeat(b[lo:hi]), vals))
                        present = [(offsets.index(i), i) for i in range(hi - lo + 1)
                                   if i in offsets]
                        buckets = [(lo + i, offsets.count(i)) for _, i in present]
                        if ex_all:
                            for _, i in sorted(present):
                                k = offsets.rindex(i)
                                ev = evs[k]
                                exemplars[lo + i] = (vals[k], ev[3], ev[2])
                            ex_done = True
                    else:
                        buckets = [(lo + i, c) for i, c in Counter(
                            map(bisect_left, repeat(b[lo:hi]), vals)).items()]
                else:
                    # A NaN: the per-event fold bins it in bucket 0 and min/max skip
                    # it (comparisons with NaN are false).
                    buckets = list(Counter(map(bisect_left, repeat(b), vals)).items())
                    ordered = list(compress(vals, map(eq, vals, vals)))
                    mn = min(ordered, default=_INF)
                    mx = max(ordered, default=_NEG_INF)
            if not ex_done:
                for i in ex_idx:
                    v = col[i]
                    if v is not None:
                        ev = evs[i]
                        exemplars[bisect_left(b, v)] = (v, ev[3], ev[2])
            out.append((spec, key, count, total, mn, mx, buckets, exemplars))
        return out

    def _fold_each(self, pending: deque[Event], events: list[Event],
                   specs: tuple[HistogramSpec, ...], counters: tuple[CounterSpec, ...],
                   start: int) -> None:
        """The per-event fold: the reference the column-wise fold must equal.

        Used when the column-wise fold rejects its input. If an event raises, the
        events after it go back to the front of ``pending``, as if never popped.
        """
        hists = self._hists
        counts = self._counts
        counter_names = [c.name for c in counters]
        for k, (attrs, values, ctx, t_ns) in enumerate(events):
            try:
                for spec, value in zip(specs, values, strict=False):
                    if value is None:
                        continue
                    key = (spec.name, attrs)
                    st = hists.get(key)
                    if st is None:
                        st = hists[key] = _HistState(len(spec.boundaries) + 1, start)
                    i = bisect_left(spec.boundaries, value)
                    st.counts[i] += 1
                    st.count += 1
                    st.sum += value
                    if value < st.min:
                        st.min = value
                    if value > st.max:
                        st.max = value
                    if ctx is not None:
                        st.exemplars[i] = (value, t_ns, ctx)
                for name in counter_names:
                    key = (name, attrs)
                    cs = counts.get(key)
                    if cs is None:
                        cs = counts[key] = _CountState(start)
                    cs.value += 1
            except Exception:
                pending.extendleft(reversed(events[k + 1:]))
                raise

    # -- collection ----------------------------------------------------------------
    def collect(
        self,
        histogram_temporality: AggregationTemporality = AggregationTemporality.CUMULATIVE,
        counter_temporality: AggregationTemporality = AggregationTemporality.CUMULATIVE,
    ) -> list[Metric]:
        """Fold every recorder and return the aggregates as SDK ``Metric`` objects.

        With DELTA temporality the aggregates are reset after being returned.
        """
        from opentelemetry.sdk.metrics._internal.exemplar import Exemplar

        with self._lock:
            for rec in list(self._recorders):
                self._fold_locked(rec)
            self._fold_orphans_locked()
            now = self._clock()
            hist_points: dict[str, list[HistogramDataPoint]] = {}
            for (name, attrs), st in self._hists.items():
                if st.count == 0:
                    continue
                spec = self._hist_specs[name]
                exemplars = [
                    Exemplar(
                        filtered_attributes=None,
                        value=v,
                        time_unix_nano=t,
                        span_id=c.span_id,
                        trace_id=c.trace_id,
                    )
                    for v, t, c in st.exemplars.values()
                ]
                hist_points.setdefault(name, []).append(
                    HistogramDataPoint(
                        attributes=dict(attrs.mapping),
                        start_time_unix_nano=st.start_ns,
                        time_unix_nano=now,
                        count=st.count,
                        sum=st.sum,
                        bucket_counts=list(st.counts),
                        explicit_bounds=list(spec.boundaries),
                        min=st.min,
                        max=st.max,
                        exemplars=exemplars,
                    )
                )
            count_points: dict[str, list[NumberDataPoint]] = {}
            for (name, attrs), cs in self._counts.items():
                if cs.value == 0 and counter_temporality is AggregationTemporality.DELTA:
                    continue
                count_points.setdefault(name, []).append(
                    NumberDataPoint(
                        attributes=dict(attrs.mapping),
                        start_time_unix_nano=cs.start_ns,
                        time_unix_nano=now,
                        value=cs.value,
                    )
                )
            if histogram_temporality is AggregationTemporality.DELTA:
                self._hists.clear()
            else:
                for st in self._hists.values():
                    st.exemplars.clear()
            if counter_temporality is AggregationTemporality.DELTA:
                self._counts.clear()
            self._last_collect_ns = now
            out: list[Metric] = []
            for name, points in hist_points.items():
                spec = self._hist_specs[name]
                out.append(
                    Metric(
                        name=name,
                        description=spec.description,
                        unit=spec.unit,
                        data=Histogram(
                            data_points=points, aggregation_temporality=histogram_temporality
                        ),
                    )
                )
            for name, cpoints in count_points.items():
                cspec = self._counter_specs[name]
                out.append(
                    Metric(
                        name=name,
                        description=cspec.description,
                        unit=cspec.unit,
                        data=Sum(
                            data_points=cpoints,
                            aggregation_temporality=counter_temporality,
                            is_monotonic=True,
                        ),
                    )
                )
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


# -- binding registries to meter providers --------------------------------------------

_bindings: weakref.WeakKeyDictionary[Any, LocalAggregationRegistry] = weakref.WeakKeyDictionary()
_default_registry = LocalAggregationRegistry()
_generation = [0]


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
    _generation[0] += 1


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
            "otel_rtc.local_aggregation.series",
            callbacks=[observe],
            unit="{series}",
            description="Series held by otel_rtc's local aggregation for the export stage.",
        )
        register_self_metrics(meter)
    except Exception as exc:
        report_error("local_aggregation", exc)


def generation() -> int:
    """Incremented whenever bindings change; instrumentations re-resolve on change."""
    return _generation[0]


def _bump_generation() -> None:
    _generation[0] += 1


def get_recorder(
    histograms: Sequence[HistogramSpec],
    counters: Sequence[CounterSpec],
    meter_provider: Any = None,
) -> Recorder:
    """Return the cheapest recorder valid for ``meter_provider`` (``None``: global).

    A buffered recorder when an export stage is bound to that provider (or, for the
    global provider, when the default registry is active); otherwise SDK instruments.
    """
    try:
        registry: LocalAggregationRegistry | None
        if meter_provider is None:
            mp = metrics_api.get_meter_provider()
            registry = _bindings.get(mp)
            if registry is None and _default_registry.active:
                registry = _default_registry
        else:
            mp = meter_provider
            registry = _bindings.get(mp)
        if registry is not None:
            _ensure_always_collected(mp, registry)
            return registry.recorder(histograms, counters)
    except ValueError:
        raise
    except Exception as exc:  # e.g. an unhashable third-party provider
        report_error("local_aggregation", exc)
    meter = mp.get_meter("otel_rtc", __version__)
    return SdkRecorder(meter, histograms, counters)


def histogram_views(specs: Sequence[HistogramSpec]) -> list[View]:
    """SDK views giving ``specs``' boundaries to SDK histograms of the same name."""
    return [
        View(
            instrument_name=s.name,
            aggregation=ExplicitBucketHistogramAggregation(boundaries=list(s.boundaries)),
        )
        for s in specs
    ]
