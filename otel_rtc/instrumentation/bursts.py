"""SDK glue for burst accounting: histograms, one span per burst, periodic log lines.

A :class:`BurstMonitor` wraps a pure :class:`~otel_rtc.core.bursts.BurstTracker` and, once
per completed burst (in the thread that found the buffer empty, i.e. when the consumer
has nothing else to do), records three histograms through local aggregation and ends
the burst's span. A daemon thread polls the :class:`~otel_rtc.core.switch.BurstSwitches`
and, every ``stats_interval_s``, takes a frame and logs the ``logMessageBurstStats`` and
``logMessageBurstData`` lines on the ``otel_rtc.bursts`` logger.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanContext, SpanKind

from otel_rtc.core import names
from otel_rtc.core.burst_stats import BurstRecord, FrameStats
from otel_rtc.core.bursts import BurstTracker
from otel_rtc.core.clock import Clock, wall_clock_ns
from otel_rtc.core.switch import BurstSwitches, burst_switches
from otel_rtc.instrumentation.attributes import intern_attrs
from otel_rtc.instrumentation.recording import HistogramSpec, Recorder
from otel_rtc.instrumentation.self_telemetry import count_clamp, count_drop, report_error
from otel_rtc.version import __version__

__all__ = [
    "BURST_BREAK_BUCKETS",
    "BURST_DURATION_BUCKETS",
    "BURST_MESSAGES_BUCKETS",
    "BurstMonitor",
    "get_burst_monitor",
]

_log = logging.getLogger("otel_rtc.bursts")
_COMPONENT = "burst"

BURST_DURATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0,
)
"""Seconds: from 1 ms bursts to bursts of a minute (the reference saw multi-second ones)."""
BURST_BREAK_BUCKETS: tuple[float, ...] = (*BURST_DURATION_BUCKETS, 120.0, 300.0, 600.0)
"""Seconds: breaks can be long idle periods."""
BURST_MESSAGES_BUCKETS: tuple[float, ...] = (
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000, 100_000,
)
"""Messages per burst."""

BURST_HISTOGRAMS: tuple[HistogramSpec, ...] = (
    HistogramSpec(names.BURST_DURATION, "s",
                  "Duration of message bursts: from the first message starting processing to "
                  "the input buffer being found empty. The worst-case latency bound.",
                  BURST_DURATION_BUCKETS),
    HistogramSpec(names.BURST_MESSAGES, "{message}",
                  "Messages processed per burst.", BURST_MESSAGES_BUCKETS),
    HistogramSpec(names.BURST_BREAK_DURATION, "s",
                  "Idle time between two bursts.", BURST_BREAK_BUCKETS),
)

ATTR_SOURCE = names.ATTR_BURST_SOURCE
ATTR_MESSAGE_COUNT = names.ATTR_BURST_MESSAGE_COUNT
ATTR_BREAK_BEFORE = names.ATTR_BURST_BREAK_BEFORE
ATTR_WORST_CASE = names.ATTR_BURST_WORST_CASE
ATTR_INCOMPLETE = names.ATTR_BURST_INCOMPLETE

_MAX_OPEN_SPANS = 8


class BurstMonitor:
    """Burst tracking for one consumer, with its telemetry.

    The per-message methods are the tracker's own bound methods (no extra layer).
    Callers read :attr:`enabled` (a plain attribute that follows the switches) and skip
    the calls while it is ``False``. Nothing here raises into the caller.

    Use :func:`get_burst_monitor` rather than the constructor.

    Args:
        name: Value of the ``otel_rtc.burst.source`` attribute.
        tracer_provider: For the burst spans (default: the global provider).
        meter_provider: For the histograms (default: the global provider).
        clock: Clock for frames and for the stats thread.
        stats_interval_s: Period of the stats thread; ``None`` runs no thread (call
            :meth:`tick` yourself).
        switches: Switches to follow (default: the process-wide ones).
        raw_capacity: Raw bursts kept between two ticks.
        mode: :attr:`FrameStats.mode` label.

    Attributes:
        enabled: Whether burst tracking is on.
        last_frame: The frame taken by the latest :meth:`tick`, if any.
    """

    def __init__(
        self,
        name: str,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        clock: Clock = wall_clock_ns,
        stats_interval_s: float | None = 10.0,
        switches: BurstSwitches | None = None,
        raw_capacity: int = 10_000,
        mode: str = "worker",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty str")
        if stats_interval_s is not None and not (
            isinstance(stats_interval_s, (int, float)) and stats_interval_s > 0
        ):
            raise ValueError(f"stats_interval_s must be > 0 or None, got {stats_interval_s!r}")
        self.name = name
        self._clock = clock
        self._attrs = intern_attrs({ATTR_SOURCE: name})
        self._span_name = f"burst {name}"
        self._tracer = trace.get_tracer("otel_rtc", __version__, tracer_provider=tracer_provider)
        self._meter_provider = meter_provider
        self._recorder = Recorder(BURST_HISTOGRAMS, (), meter_provider)
        self._tracker = BurstTracker(
            clock=clock,
            mode=mode,
            raw_capacity=raw_capacity,
            on_burst_end=self._on_burst_end,
            on_drop=_on_drop,
            on_clamp=_on_clamp,
            on_error=_on_error,
        )
        tracker = self._tracker
        # The hot path goes straight to the tracker.
        self.processing_started = tracker.processing_started  # type: ignore[method-assign]
        self.buffer_empty = tracker.buffer_empty  # type: ignore[method-assign]
        self._span_lock = threading.Lock()
        self._spans: dict[int, tuple[Span, SpanContext | None]] = {}
        self.last_frame: FrameStats | None = None
        self._switches = switches if switches is not None else burst_switches()
        if self._switches.on_invalid is None:
            self._switches.on_invalid = _on_invalid_switch
        self.enabled: bool = self._switches.enabled
        self._switches.add_listener(self._on_switches)
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if stats_interval_s is not None:
            self._thread = threading.Thread(
                target=self._run, args=(float(stats_interval_s),),
                name=f"otel_rtc-bursts-{name}", daemon=True,
            )
            self._thread.start()

    # -- hot path (replaced per instance by the tracker's bound methods) -----------------
    def processing_started(self, t_ns: int) -> None:
        """A message begins processing at ``t_ns`` (epoch ns)."""
        self._tracker.processing_started(t_ns)

    def buffer_empty(self, t_ns: int) -> None:
        """The input buffer was found empty at ``t_ns``: ends the burst in progress."""
        self._tracker.buffer_empty(t_ns)

    # -- spans ---------------------------------------------------------------------------
    def current_span_context(self) -> SpanContext | None:
        """The span context of the burst in progress, for message spans to link to.

        The burst span is created on the first call of a burst, with the burst's start
        as its start time. ``None`` outside a burst or when the span is not recording.
        """
        state = self._tracker.state
        if state is None:
            return None
        entry = self._spans.get(state[0])
        if entry is None:
            entry = self._open_span(state[0])
            if entry is None:
                return None
        return entry[1]

    def _open_span(self, seq: int) -> tuple[Span, SpanContext | None] | None:
        try:
            with self._span_lock:
                state = self._tracker.state
                if state is None or state[0] != seq:
                    return None  # ended meanwhile: its span is made at the end
                entry = self._spans.get(seq)
                if entry is None:
                    span = self._start_span(state[1])
                    ctx = span.get_span_context() if span.is_recording() else None
                    entry = (span, ctx)
                    if len(self._spans) >= _MAX_OPEN_SPANS:  # pragma: no cover - defensive
                        for old in list(self._spans)[: len(self._spans) - _MAX_OPEN_SPANS + 1]:
                            self._spans.pop(old)[0].end()
                    self._spans[seq] = entry
                return entry
        except Exception as exc:
            report_error(_COMPONENT, exc)
            return None

    def _start_span(self, start_ns: int) -> Span:
        return self._tracer.start_span(
            self._span_name,
            context=Context(),  # a burst is a root: not a child of its first message
            kind=SpanKind.INTERNAL,
            attributes={ATTR_SOURCE: self.name},
            start_time=start_ns,
        )

    def _on_burst_end(self, rec: BurstRecord) -> None:
        try:
            with self._span_lock:
                entry = self._spans.pop(rec.seq, None)
            span = entry[0] if entry is not None else self._start_span(rec.start_ns)
            ctx: SpanContext | None = None
            if span.is_recording():
                ctx = span.get_span_context()
                span.set_attribute(ATTR_MESSAGE_COUNT, rec.message_count)
                brk = rec.break_before_s
                if brk is not None:
                    span.set_attribute(ATTR_BREAK_BEFORE, brk)
                span.set_attribute(ATTR_WORST_CASE, rec.worst_case_latency_s)
            span.end(end_time=max(rec.end_ns, rec.start_ns))
            self._recorder.record(
                self._attrs, (rec.duration_s, float(rec.message_count), rec.break_before_s),
                ctx, rec.end_ns)
        except Exception as exc:
            report_error(_COMPONENT, exc)

    def _end_open_spans(self) -> None:
        with self._span_lock:
            entries = list(self._spans.values())
            self._spans.clear()
        now = self._clock()
        for span, _ctx in entries:
            try:
                if span.is_recording():
                    span.set_attribute(ATTR_INCOMPLETE, True)
                span.end(end_time=now)
            except Exception as exc:
                report_error(_COMPONENT, exc)

    # -- switches and frames ---------------------------------------------------------------
    def _on_switches(self, switches: BurstSwitches) -> None:
        try:
            on = switches.enabled
            if on == self.enabled:
                return
            if on:
                self._tracker.take_frame()  # the next frame starts now
                self.enabled = True
            else:
                self.enabled = False
                self._tracker.abandon()
                self._tracker.raw(clear=True)
                self._end_open_spans()
        except Exception as exc:
            report_error(_COMPONENT, exc)

    def take_frame(self, now_ns: int | None = None) -> FrameStats:
        """Stats since the previous frame (see :meth:`BurstTracker.take_frame`).

        The stats thread takes a frame every tick; call this yourself only with
        ``stats_interval_s=None``.
        """
        return self._tracker.take_frame(now_ns)

    def raw(self) -> list[BurstRecord]:
        """Bursts completed since the last tick (at most ``raw_capacity``)."""
        return self._tracker.raw()

    def tick(self, now_ns: int | None = None) -> FrameStats | None:
        """Poll the switches; when enabled take a frame and log it. Never raises.

        Returns:
            The frame taken, or ``None`` when tracking is off.
        """
        try:
            self._switches.poll()
            if not self.enabled:
                return None
            frame = self._tracker.take_frame(now_ns)
            raw = self._tracker.raw(clear=True)
            self.last_frame = frame
            sw = self._switches
            if sw.log_stats and _log.isEnabledFor(logging.INFO):
                _log.info("%s", frame.to_log_line(),
                          extra={"otel_rtc_burst_source": self.name,
                                 "otel_rtc_burst_worst_case_latency": frame.worst_case_latency_s})
            if sw.log_data and raw and _log.isEnabledFor(logging.INFO):
                _log.info("%s", _data_line(self.name, frame.mode, raw),
                          extra={"otel_rtc_burst_source": self.name})
            return frame
        except Exception as exc:
            report_error(_COMPONENT, exc)
            return None

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.tick()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the stats thread, stop following the switches, end an open burst span."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout_s)
        self._switches.remove_listener(self._on_switches)
        self._end_open_spans()
        with _registry_lock:
            if _registry.get(self.name) is self:
                del _registry[self.name]

    @property
    def tracker(self) -> BurstTracker:
        """The underlying pure tracker."""
        return self._tracker


def _data_line(name: str, mode: str, raw: list[BurstRecord]) -> str:
    doc = {
        "source": name,
        "mode": mode,
        "start_ns": [r.start_ns for r in raw],
        "burst_duration": [r.duration_s for r in raw],
        "burst_message_count": [r.message_count for r in raw],
        "break_duration": [r.break_before_s for r in raw],
    }
    return "logMessageBurstData " + json.dumps(doc, separators=(", ", ":"))


def _on_drop(reason: str) -> None:
    count_drop(_COMPONENT, reason)


def _on_clamp() -> None:
    count_clamp(_COMPONENT)


def _on_invalid_switch(reason: str) -> None:
    count_drop("burst.switches", reason)


def _on_error(exc: BaseException) -> None:
    report_error(_COMPONENT, exc)


_registry: dict[str, BurstMonitor] = {}
_registry_lock = threading.Lock()


def get_burst_monitor(
    name: str = "default",
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    clock: Clock = wall_clock_ns,
    stats_interval_s: float | None = 10.0,
    switches: BurstSwitches | None = None,
    raw_capacity: int = 10_000,
    mode: str = "worker",
) -> BurstMonitor:
    """Return the monitor called ``name``, creating it on first use.

    Later calls with the same name return the same monitor and ignore their other
    arguments, until it is closed.

    Raises:
        ValueError: On a bad argument.
    """
    with _registry_lock:
        mon = _registry.get(name)
        if mon is None:
            mon = BurstMonitor(
                name,
                tracer_provider=tracer_provider,
                meter_provider=meter_provider,
                clock=clock,
                stats_interval_s=stats_interval_s,
                switches=switches,
                raw_capacity=raw_capacity,
                mode=mode,
            )
            _registry[name] = mon
        return mon
