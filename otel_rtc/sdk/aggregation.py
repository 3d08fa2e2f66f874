"""Local aggregation: buffered events folded into exact histograms at collection.

The OpenTelemetry SDK's ``Histogram.record()`` costs microseconds per call (attribute
hashing, locks, exemplar filter). Instrumentation records through
:class:`otel_rtc.instrumentation.recording.Recorder`; when an export stage is bound to its
meter provider, the recorders' backend (:mod:`otel_rtc.sdk.recording_backend`) hands out
a :class:`BufferedRecorder` of that stage's :class:`LocalAggregationRegistry` (the
recorder then costs one ``deque.append`` per event), and the export stage
(:class:`otel_rtc.RtcWrappingMetricExporter`) drains every buffer at collection time,
folds the events into exact explicit-bucket histograms and counters
(:mod:`otel_rtc.sdk.folding`), and merges them into the ``MetricsData`` it exports.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from itertools import repeat, starmap

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
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_rtc.core.clock import wall_clock_ns
from otel_rtc.instrumentation.attributes import AttrSet
from otel_rtc.instrumentation.recording import (
    MESSAGING_DURATION_BUCKETS,
    CounterSpec,
    Event,
    HistogramSpec,
)
from otel_rtc.sdk.folding import CountState, HistState, fold_events, histogram_point
from otel_rtc.version import __version__

__all__ = [
    "MESSAGING_DURATION_BUCKETS",
    "BufferedRecorder",
    "CounterSpec",
    "HistogramSpec",
    "LocalAggregationRegistry",
    "add_scope_metrics",
]

DEFAULT_PENDING_LIMIT = 50_000
"""Pending events per recorder before the recording thread folds them itself."""


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
        self._hists: dict[tuple[str, AttrSet], HistState] = {}
        self._counts: dict[tuple[str, AttrSet], CountState] = {}
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
        """Fold the events present in ``pending`` now into the aggregates (lock held)."""
        n = len(pending)
        if not n:
            return
        # Pop exactly the events present now; appends racing with us stay for next time.
        events = list(starmap(pending.popleft, repeat((), n)))
        start = self._last_collect_ns
        fold_events(events, specs, counters, self._hists, self._counts,
                    self._clock() if start is None else start)

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
                        histogram_point(st, attrs, self._hist_specs[name], now))
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
