"""Sample sources: counters whose running totals the rate sampler may read (pure).

A sample source is any callable returning ``(metric name, attributes, cumulative value,
start_ns)`` rows, e.g. :meth:`otel_rtc.TrafficAccounting.snapshot`. Registered sources
are read every sub-window period by the :class:`~otel_rtc.sdk.CounterSampler` of the
default metric processors, so that peak rates come from real short intervals. Kept apart
from the sampler (:mod:`otel_rtc.sdk.sampler`) so that sources (which sit below it) can
register without importing the SDK glue.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "Sample",
    "SampleSource",
    "register_sample_source",
    "registered_sources",
    "unregister_sample_source",
]

Sample = tuple[str, Mapping[str, Any], float, int]
"""``(metric name, attributes, cumulative value, start_ns)``."""
SampleSource = Callable[[], Iterable[Sample]]
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
    e.g. ``register_sample_source(traffic.snapshot)``. Return the same attributes object
    for a series on every call (never mutated): the processors recognise a row by that
    object's identity and skip resolving it again on every tick.
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
