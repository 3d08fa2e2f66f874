"""The counter sampler: running totals of the sample sources, every sub-window period.

An export every 60 s gives one interval per minute: the mean is exact but no 1 s peak
can be known from it. For peaks to be real, a :class:`CounterSampler` reads the *source
counters' running totals* every sub-window period (1 s by default) on a daemon thread,
off the hot path, and hands each sample to the processors subscribed to it
(:mod:`otel_rtc.sdk.processors`):

* A sample source is any callable returning :class:`SampleColumns`: the name,
  attributes, running total and start time of each of its series, column by column.
  :meth:`otel_rtc.instrumentation.traffic.TrafficAccounting.snapshot` is one:
  reading it costs one short lock and a list of the totals, no SDK collection, no
  callbacks, no export. Sources are registered with :func:`register_sample_source`
  (weakly held); every ``TrafficAccounting`` registers itself.
* Samples carry the wall-clock time they were read (the sampler thread's ``clock``), so
  each 1 s interval between two samples is a real interval: the 1 s peak is the largest
  rate between consecutive samples and can never exceed the true peak.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from otel_rtc.core.clock import Clock, wall_clock_ns
from otel_rtc.core.sample_sources import (
    SampleColumns,
    SampleSource,
    register_sample_source,
    registered_sources,
    unregister_sample_source,
)
from otel_rtc.instrumentation.self_telemetry import report_error

__all__ = [
    "CounterSampler",
    "SampleCallback",
    "SampleColumns",
    "SampleSource",
    "register_sample_source",
    "unregister_sample_source",
]

SampleCallback = Callable[[int, list[SampleColumns]], None]
"""Receives each sample: ``(time_ns, what each source returned)``."""


class CounterSampler:
    """Reads the registered sources every ``period_s`` on a daemon thread and fans them out.

    Add a source with :func:`register_sample_source`.

    Args:
        period_s: Sampling period; use the shortest peak sub-window.
        clock: Time stamped on each sample (epoch ns).
        autostart: Start the thread on the first :meth:`subscribe`.
        _sources: Internal, for otel_rtc's own tests and benchmarks: read only these
            instead of the registered sources, trusted as they are (the processors do
            not gate them by their export batches).

    Raises:
        ValueError: ``period_s`` is not a positive number.
    """

    def __init__(self, period_s: float = 1.0, *, clock: Clock = wall_clock_ns,
                 autostart: bool = True, _sources: Sequence[SampleSource] | None = None
                 ) -> None:
        if isinstance(period_s, bool) or not isinstance(period_s, (int, float)) \
                or not period_s > 0:
            raise ValueError("period_s must be a positive number")
        self.period_s = float(period_s)
        self._own_sources = None if _sources is None else tuple(_sources)
        self._clock = clock
        self._autostart = autostart
        self._lock = threading.Lock()
        self._sample_lock = threading.Lock()
        self._subscribers: list[SampleCallback] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_ns: int | None = None
        self.samples_taken = 0

    @property
    def reads_global_sources(self) -> bool:
        """Whether this sampler reads the registered sources (always, outside tests)."""
        return self._own_sources is None

    def sources(self) -> list[SampleSource]:
        """Sources read on each sample: the live registered ones."""
        own = self._own_sources
        return registered_sources() if own is None else list(own)

    def subscribe(self, callback: SampleCallback) -> None:
        """Deliver every sample to ``callback(time_ns, columns)`` (starts the thread)."""
        with self._lock:
            self._subscribers.append(callback)
        if self._autostart:
            self.start()

    def unsubscribe(self, callback: SampleCallback) -> None:
        """Stop delivering to ``callback``; stops the thread when nobody listens."""
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)
            empty = not self._subscribers
        if empty:
            self.stop()

    def sample_now(self, min_age_ns: int = 0) -> bool:
        """Read every source once and deliver what they returned; never raises.

        Args:
            min_age_ns: Skip if the previous sample is younger than this (so that two
                processors exporting together do not sample twice).

        Returns:
            Whether a sample was taken.
        """
        try:
            with self._sample_lock:
                now = self._clock()
                last = self._last_ns
                if last is not None and 0 <= now - last < min_age_ns:
                    return False
                columns: list[SampleColumns] = []
                for src in self.sources():
                    try:
                        columns.append(src())
                    except Exception as exc:
                        report_error("rate_sampler.source", exc)
                self._last_ns = now
                self.samples_taken += 1
                with self._lock:
                    subscribers = list(self._subscribers)
                # Delivered under the sample lock: every subscriber sees samples in order.
                for cb in subscribers:
                    try:
                        cb(now, columns)
                    except Exception as exc:
                        report_error("rate_sampler.subscriber", exc)
            return True
        except Exception as exc:
            report_error("rate_sampler", exc)
            return False

    def start(self) -> None:
        """Start the daemon thread (idempotent)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            t = threading.Thread(target=self._run, name="otel_rtc-rate-sampler", daemon=True)
            self._thread = t
        t.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample_now()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (bounded wait)."""
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        """Whether the sampling thread is alive."""
        t = self._thread
        return t is not None and t.is_alive()
