"""The one way instrumentation records a metric event: :meth:`Recorder.record`.

Instrumentation declares what it records (:class:`HistogramSpec`, :class:`CounterSpec`)
and calls ``recorder.record(attrs, values, span_context, time_ns)`` once per event. Where
the event goes is decided by the SDK layer, through one small protocol resolved at run
time, so that this module (like all of ``otel_rtc.instrumentation``) needs only the
OpenTelemetry API at import time:

* when an export stage is bound to the meter provider in use, the SDK layer
  (``otel_rtc.sdk.recording_backend``) hands out an :class:`EventBuffer`; ``record`` is then
  one ``deque.append`` of an :data:`Event` tuple, and the buffer is folded into exact
  histograms at collection time (or by the recording thread when it grows past its
  limit);
* otherwise ``record`` calls plain API instruments (``Histogram.record``,
  ``Counter.add``) of that provider.

The SDK layer registers its :class:`Backend` with :func:`set_backend` when it binds an
export stage, and calls :func:`invalidate` whenever bindings change; every recorder
re-resolves on its next ``record``.

An event is a 4-tuple ``(attrs, values, span_context, time_unix_nano)``:

* ``attrs``: an interned :class:`~otel_rtc.instrumentation.attributes.AttrSet`;
* ``values``: one entry per histogram of the recorder (``None`` skips that histogram);
* ``span_context``: the active span's context for an exemplar, or ``None``;
* ``time_unix_nano``: when the event happened (exemplar timestamp).

Every counter of a recorder counts events (one per ``record``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import metrics as metrics_api
from opentelemetry.trace import SpanContext

from otel_rtc.instrumentation.attributes import AttrSet
from otel_rtc.version import __version__

__all__ = [
    "MESSAGING_DURATION_BUCKETS",
    "Backend",
    "CounterSpec",
    "Event",
    "EventBuffer",
    "HistogramSpec",
    "Recorder",
    "invalidate",
    "set_backend",
]

Event = tuple[AttrSet, tuple[float | None, ...], SpanContext | None, int]

# The OTel messaging semantic conventions' advice for messaging.process.duration.
MESSAGING_DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)


@dataclass(frozen=True)
class HistogramSpec:
    """An explicit-bucket histogram recorded per event.

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
    """A monotonic counter of events (one per :meth:`Recorder.record`)."""

    name: str
    unit: str
    description: str


class EventBuffer(Protocol):
    """Where buffered events wait for the SDK layer's fold (its side of the protocol)."""

    pending: deque[Event]
    limit: int
    """Pending events beyond which the recording thread calls :meth:`fold_if_full`."""

    def fold_if_full(self) -> None:
        """Fold the pending events now, unless another thread already does."""


class Backend(Protocol):
    """The SDK layer's resolver: a buffer for events meant for a meter provider."""

    def buffer(self, histograms: tuple[HistogramSpec, ...], counters: tuple[CounterSpec, ...],
               meter_provider: Any) -> EventBuffer | None:
        """A buffer whose events reach the export of ``meter_provider``, if any.

        ``meter_provider`` ``None`` means the global provider. ``None`` is returned
        when no export stage is bound to it.

        Raises:
            ValueError: A metric name is already registered with a different spec.
        """


_backend: Backend | None = None
_generation = 0


def set_backend(backend: Backend | None) -> None:
    """Install the SDK layer's resolver (``None`` removes it); recorders re-resolve."""
    global _backend
    _backend = backend
    invalidate()


def invalidate() -> None:
    """Bindings changed: every recorder re-resolves on its next :meth:`Recorder.record`."""
    global _generation
    _generation += 1


class Recorder:
    """Records events of fixed histograms and counters; re-resolves when bindings change.

    Args:
        histograms: Histograms of every event (``values`` follow their order).
        counters: Counters, each incremented once per event.
        meter_provider: Meter provider (``None``: the global one).

    Raises:
        ValueError: A metric name is already registered with a different spec.
    """

    __slots__ = ("_append", "_buffer", "_counters", "_fold", "_gen", "_histograms", "_limit",
                 "_mp", "_pending", "counters", "histograms")

    def __init__(self, histograms: Sequence[HistogramSpec], counters: Sequence[CounterSpec] = (),
                 meter_provider: Any = None) -> None:
        self.histograms = tuple(histograms)
        self.counters = tuple(counters)
        self._mp = meter_provider
        self._gen = -1
        self._buffer: EventBuffer | None = None
        self._pending: deque[Event] | None = None
        self._append: Any = None
        self._limit = 0
        self._fold: Any = None
        self._histograms: list[Any] = []
        self._counters: list[Any] = []
        self._resolve()

    @property
    def buffered(self) -> bool:
        """Whether events currently go to an SDK-side buffer (else API instruments)."""
        if self._gen != _generation:
            self._resolve()
        return self._pending is not None

    def record(self, attrs: AttrSet, values: tuple[float | None, ...] = (),
               span_context: SpanContext | None = None, time_ns: int = 0) -> None:
        """Record one event (see the module docstring). The caller contains errors."""
        if self._gen != _generation:
            self._resolve()
        pending = self._pending
        if pending is not None:
            self._append((attrs, values, span_context, time_ns))
            if len(pending) > self._limit:
                self._fold()
            return
        mapping = attrs.mapping
        for hist, value in zip(self._histograms, values, strict=False):
            if value is not None:
                hist.record(value, mapping)
        for counter in self._counters:
            counter.add(1, mapping)

    def _resolve(self) -> None:
        gen = _generation
        backend = _backend
        buf = (None if backend is None
               else backend.buffer(self.histograms, self.counters, self._mp))
        self._buffer = buf  # holds the buffer: its pending events outlive a rebinding
        if buf is not None:
            self._pending, self._limit, self._fold = buf.pending, buf.limit, buf.fold_if_full
            self._append = buf.pending.append
            self._histograms = self._counters = []
        else:
            self._pending = self._append = self._fold = None
            mp = self._mp if self._mp is not None else metrics_api.get_meter_provider()
            meter = mp.get_meter("otel_rtc", __version__)
            self._histograms = [
                meter.create_histogram(h.name, unit=h.unit, description=h.description,
                                       explicit_bucket_boundaries_advisory=list(h.boundaries))
                for h in self.histograms]
            self._counters = [meter.create_counter(c.name, unit=c.unit,
                                                   description=c.description)
                              for c in self.counters]
        self._gen = gen
