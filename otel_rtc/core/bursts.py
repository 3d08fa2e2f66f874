"""Burst accounting: how long a consumer stays busy, and the latency bound that implies.

Pure core: stdlib and otel_rtc's pure core only, so it also runs inside a collector.

A *burst* starts when a message begins processing while no burst is in progress, and
ends when the consumer next finds its input buffer empty. The idle time between two
bursts is a *break*. If every message of a burst had arrived at the instant the burst
started, the last one would have waited the whole burst, so a burst's duration is the
worst-case receive-to-finish latency the consumer can observe without knowing arrival
times (see ``docs/bursts.md``).

:class:`BurstTracker` detects the bursts of one consumer and takes frames of them; what a
burst and a frame measure (:class:`~otel_rtc.core.burst_stats.BurstRecord`, the
``logMessageBurstStats`` fields of :class:`~otel_rtc.core.burst_stats.FrameStats`) is
:mod:`otel_rtc.core.burst_stats`.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable

from otel_rtc.core.burst_stats import BurstRecord, FrameAccumulator, FrameStats
from otel_rtc.core.clock import Clock, wall_clock_ns

_logger = logging.getLogger("otel_rtc")

__all__ = ["BurstTracker"]


def _noop_drop(_reason: str) -> None:
    pass


def _noop_clamp() -> None:
    pass


def _log_error(exc: BaseException) -> None:
    _logger.warning("otel_rtc: on_burst_end callback failed: %r", exc)


class BurstTracker:
    """Tracks bursts of one consumer: a start per message, an end when its buffer is empty.

    A burst is the run of messages between two times the input buffer is found empty
    (``docs/bursts.md``): it starts at the first message's processing start and ends at
    the :meth:`buffer_empty` call, so a message's own finish time is never needed (the
    handler's latency metrics have it). Intended for one consumer worker. The
    per-message call (:meth:`processing_started`) takes no lock and allocates nothing
    beyond an int; burst transitions (once per burst) take a short lock. Under
    concurrent calls no count is lost or duplicated: the message count is an
    ``itertools.count`` (atomic under the GIL) read once per burst end, so the total
    over all bursts is exact, but a message racing with a burst end may be attributed
    to the next burst.

    Args:
        clock: Clock used when :meth:`take_frame` is given no timestamp, and for the
            first frame's start.
        mode: Label reported in :attr:`FrameStats.mode`.
        raw_capacity: Completed bursts kept for :meth:`raw` (a ring; 0 keeps none).
            Bursts pushed out of a full ring are reported to ``on_drop("raw_overflow")``.
        on_burst_end: Called with each completed :class:`BurstRecord`, in the thread
            that called :meth:`buffer_empty`, outside the tracker's lock. Exceptions are
            passed to ``on_error``.
        on_drop: Called with a reason for rejected or lost input (``"raw_overflow"``,
            ``"invalid"``).
        on_clamp: Called once per duration clamped at 0 because the clock went back.
        on_error: Called with exceptions raised by ``on_burst_end`` (default: logged).

    Attributes:
        state: ``(seq, start_ns)`` of the burst in progress, or ``None``. One attribute,
            so a reader on another thread always sees a consistent pair. Read-only.
        mode: The :attr:`FrameStats.mode` label.

    Raises:
        ValueError: On a bad argument.
    """

    __slots__ = (
        "_clock", "_frame", "_frame_start_ns", "_last_end_ns",
        "_last_mark", "_lock", "_mark", "_raw", "_raw_capacity", "_seq", "_tick",
        "mode", "on_burst_end", "on_clamp", "on_drop", "on_error", "state",
    )

    def __init__(
        self,
        *,
        clock: Clock = wall_clock_ns,
        mode: str = "worker",
        raw_capacity: int = 10_000,
        on_burst_end: Callable[[BurstRecord], None] | None = None,
        on_drop: Callable[[str], None] | None = None,
        on_clamp: Callable[[], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if not callable(clock):
            raise ValueError("clock must be callable")
        if not isinstance(mode, str):
            raise ValueError("mode must be a str")
        if isinstance(raw_capacity, bool) or not isinstance(raw_capacity, int) or raw_capacity < 0:
            raise ValueError(f"raw_capacity must be an int >= 0, got {raw_capacity!r}")
        for name, cb in (("on_burst_end", on_burst_end), ("on_drop", on_drop),
                         ("on_clamp", on_clamp), ("on_error", on_error)):
            if cb is not None and not callable(cb):
                raise ValueError(f"{name} must be callable")
        self._clock = clock
        self.mode = mode
        self.on_burst_end = on_burst_end
        self.on_drop = on_drop or _noop_drop
        self.on_clamp = on_clamp or _noop_clamp
        self.on_error = on_error or _log_error
        self._lock = threading.Lock()
        counter = itertools.count()
        self._tick = counter.__next__
        self._mark = counter.__next__
        self._last_mark = -1
        self._seq = 0
        # (seq, start_ns) of the burst in progress, or None: one attribute so that a
        # reader always sees a consistent pair.
        self.state: tuple[int, int] | None = None
        self._last_end_ns: int | None = None
        self._raw_capacity = raw_capacity
        self._raw: deque[BurstRecord] = deque(maxlen=raw_capacity)
        self._frame = FrameAccumulator()
        self._frame_start_ns = clock()

    # -- hot path ----------------------------------------------------------------------
    def processing_started(self, t_ns: int) -> None:
        """A message begins processing at ``t_ns``; starts a burst if none is active.

        A message whose timestamp is not an ``int`` is rejected (counted as dropped,
        reason ``invalid``) and not counted into any burst.
        """
        if type(t_ns) is not int:
            self.on_drop("invalid")
            return
        if self.state is None:
            self._begin(t_ns)
        self._tick()

    def buffer_empty(self, t_ns: int) -> None:
        """The input buffer was found empty at ``t_ns``: ends the burst in progress."""
        if type(t_ns) is not int:
            self.on_drop("invalid")
            return
        if self.state is not None:
            self._end(t_ns)

    # -- transitions (once per burst) --------------------------------------------------
    def _begin(self, t_ns: int) -> None:
        with self._lock:
            if self.state is None:
                self._seq += 1
                self.state = (self._seq, t_ns)

    def _end(self, t_ns: int) -> None:
        clamps = 0
        overflow = False
        with self._lock:
            state = self.state
            if state is None:
                return
            seq, start = state
            self.state = None
            mark = self._mark()
            count = mark - self._last_mark - 1
            self._last_mark = mark
            if t_ns < start:
                clamps += 1
            last_end = self._last_end_ns
            brk: int | None = None
            if last_end is not None:
                brk = start - last_end
                if brk < 0:
                    brk = 0
                    clamps += 1
            self._last_end_ns = t_ns
            rec = BurstRecord(start, t_ns, count, brk, seq)
            self._frame.add(rec)
            if self._raw_capacity:
                overflow = len(self._raw) == self._raw_capacity
                self._raw.append(rec)
        for _ in range(clamps):
            self.on_clamp()
        if overflow:
            self.on_drop("raw_overflow")
        cb = self.on_burst_end
        if cb is not None:
            try:
                cb(rec)
            except Exception as exc:
                self.on_error(exc)

    def abandon(self) -> None:
        """Forget the burst in progress (e.g. tracking was switched off mid-burst).

        Its messages are not counted, and the next burst has no ``break_before`` since
        the idle time in between was not observed.
        """
        with self._lock:
            self.state = None
            self._last_mark = self._mark()
            self._last_end_ns = None

    # -- reading -----------------------------------------------------------------------
    @property
    def in_burst(self) -> bool:
        """Whether a burst is in progress."""
        return self.state is not None

    @property
    def burst_start_ns(self) -> int | None:
        """Start of the burst in progress, or ``None``."""
        s = self.state
        return None if s is None else s[1]

    def take_frame(self, now_ns: int | None = None) -> FrameStats:
        """Statistics since the previous frame; starts a new frame at ``now_ns``.

        Args:
            now_ns: End of the frame (default: the tracker's clock).
        """
        now = self._clock() if now_ns is None else now_ns
        clamps = 0
        with self._lock:
            acc = self._frame
            self._frame = FrameAccumulator()
            frame_ns = now - self._frame_start_ns
            self._frame_start_ns = now
            state = self.state
        if frame_ns < 0:
            frame_ns = 0
            clamps += 1
        open_ns = 0
        if state is not None:
            open_ns = now - state[1]
            if open_ns < 0:
                open_ns = 0
                clamps += 1
        for _ in range(clamps):
            self.on_clamp()
        return acc.stats(self.mode, frame_ns, open_ns)

    def raw(self, *, clear: bool = False) -> list[BurstRecord]:
        """The most recent completed bursts, oldest first (at most ``raw_capacity``).

        Args:
            clear: Also empty the ring (for a consumer that reads every burst once).
        """
        with self._lock:
            out = list(self._raw)
            if clear:
                self._raw.clear()
        return out
