"""Sample sources: counters whose running totals the rate sampler may read (pure).

A sample source is any callable returning :class:`SampleColumns` (the metric name,
attributes, cumulative value and start time of each of its series, column by column),
e.g. :meth:`otel_rtc.TrafficAccounting.snapshot`. Registered sources
are read every sub-window period by the :class:`~otel_rtc.sdk.CounterSampler` of the
default metric processors, so that peak rates come from real short intervals. Kept apart
from the sampler (:mod:`otel_rtc.sdk.sampler`) so that sources (which sit below it) can
register without importing the SDK glue.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

__all__ = [
    "SampleColumns",
    "SampleSource",
    "register_sample_source",
    "registered_sources",
    "unregister_sample_source",
]


class SampleColumns(NamedTuple):
    """What a sample source returns: the running totals of its series, column by column.

    Series ``i`` is ``(names[i], attrs[i], values[i], starts[i])``. Return the same
    ``names``, ``attrs`` and ``starts`` objects (never mutated) on every call while the
    source's series stay the same, and a fresh ``values`` list each time: the processors
    then recognise the layout by identity and feed every series of the source to the
    engine as one column update. New objects mean the series changed: every row is
    resolved again.

    Attributes:
        names: Metric name of each series.
        attrs: Attributes of each series.
        values: Cumulative value of each series, read now.
        starts: Start time of each series' counter (ns since the epoch).
    """

    names: Sequence[str]
    attrs: Sequence[Mapping[str, Any]]
    values: Sequence[float]
    starts: Sequence[int]


SampleSource = Callable[[], SampleColumns]
"""Returns the current running totals of some counters."""

_sources_lock = threading.Lock()
_sources: list[Callable[[], SampleSource | None]] = []


def _ref(fn: SampleSource) -> Callable[[], SampleSource | None]:
    if hasattr(fn, "__self__") and hasattr(fn, "__func__"):
        return weakref.WeakMethod(fn)  # type: ignore[arg-type,return-value]
    return lambda: fn


def register_sample_source(source: SampleSource) -> None:
    """Make ``source`` readable by every :class:`~otel_rtc.sdk.CounterSampler`.

    The one way to add a source, for the default processors of ``configure()`` as for
    a sampler of your own.

    Bound methods are held weakly (a garbage-collected owner simply stops being read),
    e.g. ``register_sample_source(traffic.snapshot)``. See :class:`SampleColumns` for
    what the source returns, and which objects to keep from one call to the next.
    """
    with _sources_lock:
        _sources.append(_ref(source))


def unregister_sample_source(source: SampleSource) -> None:
    """Stop reading ``source`` (no-op if unknown)."""
    with _sources_lock:
        _sources[:] = [r for r in _sources if r() not in (None, source)]


def registered_sources() -> list[SampleSource]:
    """The live registered sources, forgetting those whose owner was collected."""
    with _sources_lock:
        live = [(r, r()) for r in _sources]
        _sources[:] = [r for r, f in live if f is not None]
        return [f for _, f in live if f is not None]
