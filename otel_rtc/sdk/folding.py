"""Folding buffered events into exact aggregates: explicit-bucket histograms, counters.

An event is what :meth:`otel_rtc.instrumentation.recording.Recorder.record` appends:
``(attribute set, values, span context or None, time_ns)``, one value per histogram of
its recorder (``None``: no value). The
:class:`~otel_rtc.sdk.aggregation.LocalAggregationRegistry` folds each recorder's events
into one :class:`HistState` per (histogram, attribute set) and one :class:`CountState`
per (counter, attribute set), column-wise at C speed, then exports them as SDK points.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from itertools import groupby, repeat
from operator import itemgetter
from typing import Any

from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import HistogramDataPoint
from opentelemetry.trace import SpanContext

from otel_rtc.instrumentation.attributes import AttrSet
from otel_rtc.instrumentation.recording import CounterSpec, Event, HistogramSpec
from otel_rtc.instrumentation.self_telemetry import count_drop

__all__ = ["CountState", "HistState", "fold_events", "histogram_point"]

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


class HistState:
    """One histogram series: bucket counts, moments and exemplars, since ``start_ns``."""

    __slots__ = ("count", "counts", "exemplars", "max", "min", "start_ns", "sum")

    def __init__(self, n_buckets: int, start_ns: int) -> None:
        self.counts = [0] * n_buckets
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        self.start_ns = start_ns
        self.exemplars: dict[int, tuple[float, int, SpanContext]] = {}


def histogram_point(st: HistState, attrs: AttrSet, spec: HistogramSpec, now: int
                    ) -> HistogramDataPoint:
    """The SDK data point of ``st`` at ``now`` (its exemplars included)."""
    exemplars = [Exemplar(filtered_attributes=None, value=v, time_unix_nano=t,
                          span_id=c.span_id, trace_id=c.trace_id)
                 for v, t, c in st.exemplars.values()]
    return HistogramDataPoint(
        attributes=dict(attrs.mapping), start_time_unix_nano=st.start_ns,
        time_unix_nano=now, count=st.count, sum=st.sum, bucket_counts=list(st.counts),
        explicit_bounds=list(spec.boundaries), min=st.min, max=st.max, exemplars=exemplars)


class CountState:
    """One counter series: its value since ``start_ns``."""

    __slots__ = ("start_ns", "value")

    def __init__(self, start_ns: int) -> None:
        self.value = 0
        self.start_ns = start_ns


def _fold_column(st: HistState, bounds: tuple[float, ...], col: list[Any],
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


def fold_events(events: list[Event], specs: Sequence[HistogramSpec],
                counters: Sequence[CounterSpec],
                hists: dict[tuple[str, AttrSet], HistState],
                counts: dict[tuple[str, AttrSet], CountState], start_ns: int) -> None:
    """Fold ``events`` of one recorder into ``hists`` and ``counts``.

    The events are grouped by attribute set (order kept within a group) and each
    group's values are folded one histogram at a time (:func:`_fold_column`). A group
    holding a value that is not a number is dropped and counted (reason
    ``invalid_value``); instrumentation only ever records numbers. A new series starts
    at ``start_ns``.

    Args:
        events: The events, in recording order.
        specs: The recorder's histograms (the order of each event's values).
        counters: The recorder's counters (each counts every event).
        hists: Histogram state by ``(metric name, attribute set)``, updated.
        counts: Counter state by ``(metric name, attribute set)``, updated.
        start_ns: Start time of a series that begins here.
    """
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
                    st = HistState(len(spec.boundaries) + 1, start_ns)
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
                cs = counts[ckey] = CountState(start_ns)
            cs.value += len(evs)
