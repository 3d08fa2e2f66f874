"""What every instrumented buffer records: enqueue stamps, counts, depth, burst ends.

Shared by the buffers of :mod:`otel_rtc.instrumentation.buffers`:

* :data:`enqueue_stamp`: the enqueue time of the item last taken from a buffer, where
  :class:`~otel_rtc.instrumentation.handler.MessageHandler` picks it up as the message's
  received time;
* :class:`BufferTelemetry`: the ``otel_rtc.buffer.enqueued`` and
  ``otel_rtc.buffer.dropped{otel_rtc.drop.reason}`` counters (drops also in the
  self-telemetry ``otel_rtc.telemetry.dropped``), the buffer's share of the observable
  gauge ``otel_rtc.buffer.depth`` (one per meter provider, over all live buffers), and
  the end of a burst when a get finds the buffer empty.
"""

from __future__ import annotations

import contextvars
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics as metrics_api
from opentelemetry.metrics import CallbackOptions, Observation

from otel_rtc.core import names
from otel_rtc.instrumentation.attributes import AttrSet, intern_attrs
from otel_rtc.instrumentation.recording import CounterSpec, Recorder
from otel_rtc.instrumentation.self_telemetry import count_drop, report_error
from otel_rtc.version import __version__

__all__ = [
    "BUFFER_DROP_REASONS",
    "DROPPED",
    "ENQUEUED",
    "BufferTelemetry",
    "enqueue_stamp",
    "resolve_monitor",
]

_COMPONENT = "buffer"

ATTR_BUFFER_NAME = names.ATTR_BUFFER_NAME
ATTR_DROP_REASON = names.ATTR_DROP_REASON

BUFFER_DROP_REASONS = ("full", "drop_oldest")
"""``full``: the new item was refused; ``drop_oldest``: the oldest item was evicted."""

ENQUEUED = CounterSpec(names.BUFFER_ENQUEUED, "{message}",
                       "Items accepted into an instrumented buffer.")
DROPPED = CounterSpec(names.BUFFER_DROPPED, "{message}",
                      "Items lost by an instrumented buffer because it was full, by reason.")


enqueue_stamp: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "otel_rtc_last_enqueue_ns", default=None
)
"""The enqueue stamp of the item last taken from an instrumented buffer, in this thread
or task: set by the buffers, read and cleared by ``MessageHandler`` (the one seam
between them; a context variable, so the handler's hot path reads it without a call)."""



def resolve_monitor(bursts: Any, default_name: str, tracer_provider: Any, meter_provider: Any
                    ) -> Any:
    """Turn a ``bursts=`` argument into a burst monitor or ``None``.

    ``False``/``None``: none; ``True``: ``get_burst_monitor(default_name)``; a str:
    ``get_burst_monitor(that_name)``; a :class:`~otel_rtc.instrumentation.bursts.BurstMonitor`:
    itself.

    Raises:
        ValueError: Any other value.
    """
    if bursts is None or bursts is False:
        return None
    from otel_rtc.instrumentation.bursts import BurstMonitor, get_burst_monitor

    if isinstance(bursts, BurstMonitor):
        return bursts
    if bursts is True:
        name = default_name
    elif isinstance(bursts, str) and bursts:
        name = bursts
    else:
        raise ValueError(f"bursts must be a bool, a non-empty str or a BurstMonitor, "
                         f"got {bursts!r}")
    return get_burst_monitor(name, tracer_provider=tracer_provider,
                             meter_provider=meter_provider)



# -- the depth gauge: one observable gauge per meter provider over all live buffers ------

class _DepthGauge:
    def __init__(self, meter_provider: Any) -> None:
        # live buffer -> its attribute set
        self.buffers: weakref.WeakKeyDictionary[Any, AttrSet] = weakref.WeakKeyDictionary()
        meter = meter_provider.get_meter("otel_rtc", __version__)
        meter.create_observable_gauge(
            names.BUFFER_DEPTH,
            callbacks=[self._observe],
            unit="{message}",
            description="Items waiting in an instrumented buffer.",
        )

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        try:
            depth: dict[AttrSet, int] = {}
            for b, attrs in list(self.buffers.items()):
                depth[attrs] = depth.get(attrs, 0) + len(b)
            return [Observation(v, a.mapping) for a, v in depth.items()]
        except Exception as exc:
            report_error(_COMPONENT, exc)
            return []


_gauges: weakref.WeakKeyDictionary[Any, _DepthGauge] = weakref.WeakKeyDictionary()
_gauges_lock = threading.Lock()


def _register_depth(buffer: Any, attrs: AttrSet, meter_provider: Any) -> None:
    try:
        mp = meter_provider if meter_provider is not None else metrics_api.get_meter_provider()
        with _gauges_lock:
            gauge = _gauges.get(mp)
            if gauge is None:
                gauge = _gauges[mp] = _DepthGauge(mp)
            gauge.buffers[buffer] = attrs
    except Exception as exc:
        report_error(_COMPONENT, exc)


class BufferTelemetry:
    """Counters, depth registration and burst signalling shared by every buffer type.

    Args:
        owner: The buffer (its ``len()`` is the depth; held weakly).
        name: Value of ``otel_rtc.buffer.name``; also the burst monitor's name with
            ``bursts=True``.
        bursts: See :func:`resolve_monitor`.
        meter_provider: For the counters and the depth gauge (``None``: global).
        tracer_provider: For the burst monitor's spans when it is created here.
        clock: Clock for the enqueue stamps (epoch ns; ``None``: ``time.time_ns``).

    Raises:
        ValueError: On a bad ``name`` or ``clock``.
    """

    __slots__ = ("__weakref__", "_dropped_attrs", "_rec_drop", "_rec_enq", "attrs", "clock",
                 "monitor", "name")

    def __init__(self, owner: Any, name: str, bursts: Any, meter_provider: Any,
                 tracer_provider: Any, clock: Callable[[], int] | None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty str")
        if clock is not None and not callable(clock):
            raise ValueError("clock must be callable")
        self.name = name
        self.clock: Callable[[], int] = clock if clock is not None else time.time_ns
        self.attrs = intern_attrs({ATTR_BUFFER_NAME: name})
        self._dropped_attrs = {
            r: intern_attrs({ATTR_BUFFER_NAME: name, ATTR_DROP_REASON: r})
            for r in BUFFER_DROP_REASONS
        }
        self._rec_enq = Recorder((), (ENQUEUED,), meter_provider)
        self._rec_drop = Recorder((), (DROPPED,), meter_provider)
        self.monitor = resolve_monitor(bursts, name, tracer_provider, meter_provider)
        _register_depth(owner, self.attrs, meter_provider)

    def enqueued(self, t_ns: int) -> None:
        """Count an item accepted at ``t_ns``."""
        try:
            self._rec_enq.record(self.attrs, (), None, t_ns)
        except Exception as exc:
            report_error(_COMPONENT, exc)

    def dropped(self, reason: str) -> None:
        """Count an item lost for ``reason`` (one of :data:`BUFFER_DROP_REASONS`)."""
        try:
            count_drop(_COMPONENT, reason)
            self._rec_drop.record(self._dropped_attrs[reason], (), None, self.clock())
        except Exception as exc:
            report_error(_COMPONENT, exc)

    def empty(self) -> None:
        """A get found the buffer empty: the burst in progress ends."""
        mon = self.monitor
        if mon is not None and mon.enabled:
            try:
                mon.buffer_empty(self.clock())
            except Exception as exc:
                report_error(_COMPONENT, exc)
