"""One series of the rate engine: its state, and how an accepted point extends it.

A series (:class:`Series`) keeps its last point and its *open span*, the data since its
previous reading: the increase, the running peak of the first sub-window and, only when
the outputs need them, the runs of short intervals, more peaks and window buckets.
:class:`SeriesRules`, built once per engine from its
:class:`~otel_rtc.core.rates.RateConfig`, turns an accepted point into an interval of its
series (``docs/rates.md``, "Intervals": continuations, resets, wraps, deltas, first
points) and keeps the peaks over runs of intervals and the window buckets.
:class:`SeriesBlock` keeps series sampled at one instant (a sampler's rows) column by
column.

:class:`~otel_rtc.core.rates.RateEngine` owns the series: it finds them by key, checks
each point, takes the common case on its own fast path and reads them. Pure module:
stdlib and :mod:`otel_rtc.core.clock` only.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from operator import add, sub
from typing import TYPE_CHECKING, Any

from otel_rtc.core.clock import NS_PER_S

if TYPE_CHECKING:  # pragma: no cover - rates imports this module
    from otel_rtc.core.rates import RateConfig

MAX_VALUE = 1e30
"""Largest accepted magnitude; beyond it sums of increments could overflow to inf."""
PEAK_JITTER = 0.95
"""A run of intervals of at least 0.95 x the sub-window counts as one sub-window, so
1 s samples arriving 0.999 s apart still resolve a 1 s peak."""
_PEAK_MAX_RUN = 2.0
"""A run longer than 2 x the sub-window is too coarse to claim that sub-window's peak."""


class Series:
    """Per-series state: the last point and the open span since the previous reading."""

    __slots__ = ("cum", "ext", "has", "iinc", "inc", "it0", "last_t", "last_v", "p0", "pk",
                 "silent", "stale", "start", "tag", "touched")

    def __init__(self, tag: Any, cumulative: bool) -> None:
        self.tag = tag
        self.cum = cumulative
        self.start = 0          # OTLP start time reported by the source (0: unset)
        self.last_t = 0         # time of the last real point
        self.last_v = 0.0       # cumulative: its value
        self.stale = False      # a NoRecordedValue marker came after the last point
        self.has = False        # the open span holds at least one interval
        self.p0 = 0             # start of the open span (start of its first interval)
        self.inc = 0.0          # increase over the open span
        self.pk = -1.0          # running peak of the first sub-window (-1: none)
        self.it0 = -1           # start of the last interval (-1: no interval to chain)
        self.iinc = 0.0         # increase of the last interval
        self.touched = False    # a point arrived since the previous reading
        self.silent = 0         # consecutive readings without a point
        self.ext: _Ext | None = None  # short runs, more peaks, windows (when needed)


class _Ext:
    """Per-series state the default outputs do not need.

    Runs of short intervals for the peaks, running peaks of more sub-windows, and the
    window buckets.
    """

    __slots__ = ("buckets", "pk", "runs")

    def __init__(self, n_peaks: int) -> None:
        self.pk = [-1.0] * n_peaks
        # Per sub-window: [intervals as (t0, t1, inc), sum of their inc]
        self.runs: list[list[Any]] = [[[], 0.0] for _ in range(n_peaks)]
        self.buckets: dict[int, list[Any]] | None = None  # index -> [inc, min t0, max t1]


class SeriesRules:
    """How an accepted point changes its series, for one engine's configuration.

    Args:
        config: The engine's peaks, windows and bounds.
        note: Called with the reason of every anomaly found (and of the ``out_of_order``
            rejection of a delta that overlaps known data).

    Attributes:
        need0: Shortest run (ns) that claims the first sub-window's peak.
        cap0: Longest run (ns) that claims it.
        gap_ns: An interval longer than this is a ``gap``.
        vlimit: Values at or above this are out of range.
        simple: Only the first sub-window and no windows: the engine's fast path applies.
        n_peaks: Number of peak sub-windows.
        windows_n: Per trailing window, its number of buckets.
    """

    __slots__ = ("bucket_ns", "cap0", "gap_ns", "min_span_ns", "n_peaks", "need0", "note",
                 "peaks_ns", "simple", "vlimit", "windows_n", "wrap_modulus")

    def __init__(self, config: RateConfig, note: Callable[[str], None]) -> None:
        self.note = note
        self.gap_ns = int(config.gap_after_s * NS_PER_S)
        self.peaks_ns = [(int(p * PEAK_JITTER * NS_PER_S), int(p * _PEAK_MAX_RUN * NS_PER_S))
                         for p in config.peak_subwindows_s]
        self.need0, self.cap0 = self.peaks_ns[0]
        self.n_peaks = len(self.peaks_ns)
        self.bucket_ns = int(config.window_bucket_s * NS_PER_S)
        self.windows_n = [round(w / config.window_bucket_s) for w in config.windows_s]
        self.simple = self.n_peaks == 1 and not config.windows_s
        self.wrap_modulus = config.wrap_modulus
        self.vlimit = config.wrap_modulus if config.wrap_modulus is not None else MAX_VALUE
        # Shortest first span (start_ns -> first point) taken as a real interval: the
        # finest resolution the engine claims (0.95 x the shortest peak sub-window).
        self.min_span_ns = self.need0

    def cumulative(self, s: Series, value: float, time_ns: int, start_ns: int,
                   last_t: int) -> bool:
        """A cumulative point after ``last_t``: a continuation, a restart, a reset or a wrap."""
        if s.stale:
            s.stale = False
            if not (start_ns and start_ns == s.start and value >= s.last_v):
                # No continuity shown by the start time: a new baseline (or a new run
                # whose own span starts after the last real point).
                s.touched = True
                self.open(s, value, time_ns, start_ns, last_t)
                return True
        elif start_ns != s.start and start_ns:
            # The source says it restarted (OTLP start time changed).
            self.note("start_time_change")
            s.touched = True
            self.open(s, value, time_ns, start_ns, last_t)
            return True
        inc = value - s.last_v
        if inc < 0:
            mod = self.wrap_modulus
            wrapped = inc + mod if mod is not None else None
            if wrapped is not None and 0 <= wrapped < mod / 2:  # type: ignore[operator]
                self.note("wrap")
                inc = wrapped
            else:
                # Restarted at an unknown instant in (last_t, time_ns]: ``value`` is a
                # lower bound of the increase over that interval (never an overestimate).
                self.note("reset")
                inc = value
        if time_ns - last_t > self.gap_ns:
            self.note("gap")
        s.start = start_ns
        s.last_v = value
        self.push(s, last_t, time_ns, inc)
        return True

    def delta(self, s: Series, value: float, time_ns: int, start_ns: int,
              last_t: int) -> bool:
        """A delta point after ``last_t``; ``False`` when it overlaps known data."""
        if s.stale:
            s.stale = False
            if not start_ns:
                # The previous point's end no longer tells where this increment began.
                s.touched = True
                self.open(s, value, time_ns, start_ns, last_t)
                return True
        t0 = start_ns or last_t
        if t0 < last_t:
            self.note("out_of_order")
            return False
        if t0 - last_t > self.gap_ns or time_ns - t0 > self.gap_ns:
            self.note("gap")
        s.start = start_ns
        if t0 != last_t:
            s.it0 = -1  # uncovered time between the two: no run crosses it
        self.push(s, t0, time_ns, value)
        return True

    def push(self, s: Series, t0: int, t1: int, inc: float) -> None:
        """Add the interval ``(t0, t1]`` with increase ``inc`` to the open span.

        :meth:`RateEngine.observe <otel_rtc.core.rates.RateEngine.observe>` inlines this
        for its fast path: keep the two in step.
        """
        s.last_t = t1
        s.touched = True
        if not s.has:
            s.has = True
            s.p0 = t0
        s.inc += inc
        dt = t1 - t0
        if self.simple and s.ext is None and dt >= self.need0:
            if dt <= self.cap0:
                r = inc * NS_PER_S / dt
                if r > s.pk:
                    s.pk = r
            s.it0 = t0
            s.iinc = inc
        else:
            self.interval(s, t0, t1, inc)

    def interval(self, s: Series, t0: int, t1: int, inc: float) -> None:
        """Peaks over runs of consecutive intervals, and window buckets (general path).

        For each sub-window the run ending at this interval is the shortest run of
        consecutive intervals lasting at least ``need``; it counts if it lasts at most
        ``cap``. Each sub-window keeps the intervals of its current run: every interval
        enters and leaves once, so the cost per point is O(1) amortised.
        """
        e = s.ext
        if e is None:
            e = s.ext = _Ext(self.n_peaks)
            if s.it0 >= 0:
                # Seed the runs with the previous interval (it ended at t0).
                prev = (s.it0, t0, s.iinc)
                for run in e.runs:
                    run[0].append(prev)
                    run[1] += prev[2]
            e.pk[0] = s.pk
        chained = s.it0 >= 0 and e.runs[0][0] and e.runs[0][0][-1][1] == t0
        for j, (need, cap) in enumerate(self.peaks_ns):
            run = e.runs[j]
            ivs = run[0]
            if not chained:
                ivs.clear()
                run[1] = 0.0
            ivs.append((t0, t1, inc))
            total = run[1] + inc
            # Drop intervals from the front while the rest still lasts ``need``.
            while len(ivs) > 1 and t1 - ivs[1][0] >= need:
                total -= ivs.pop(0)[2]
            run[1] = total
            dur = t1 - ivs[0][0]
            if need <= dur <= cap:
                r = max(total, 0.0) * NS_PER_S / dur
                if r > e.pk[j]:
                    e.pk[j] = r
        s.pk = e.pk[0]
        s.it0 = t0
        s.iinc = inc
        if self.windows_n:
            b = e.buckets
            if b is None:
                b = e.buckets = {}
            k = (t1 - 1) // self.bucket_ns  # buckets are (kB, (k+1)B]
            slot = b.get(k)
            if slot is None:
                b[k] = [inc, t0, t1]
                horizon = k - self.windows_n[-1]
                for old in [i for i in b if i <= horizon]:
                    del b[old]
            else:
                slot[0] += inc
                if t0 < slot[1]:
                    slot[1] = t0
                if t1 > slot[2]:
                    slot[2] = t1
        elif self.simple and t1 - t0 >= self.need0:
            s.ext = None  # back to the fast path: a full interval needs no history

    def open(self, s: Series, value: float, time_ns: int, start_ns: int,
             after: int | None) -> None:
        """Start a run at this point. ``after``: time of the last real point, if any."""
        s.last_t = time_ns
        s.start = start_ns
        s.last_v = value
        s.it0 = -1
        if s.ext is not None:
            for run in s.ext.runs:
                run[0].clear()
                run[1] = 0.0
        real = bool(start_ns) and start_ns < time_ns and (after is None or start_ns >= after)
        if real and s.cum and value > 0 and time_ns - start_ns < self.min_span_ns:
            # Too short a span to hold this value (see docs/rates.md): a baseline.
            self.note("short_span")
            real = False
        if real:
            # ``value`` was accumulated over (start_ns, time_ns]: a real interval.
            self.push(s, start_ns, time_ns, value)
        elif not s.has:
            s.p0 = time_ns

    def windows(self, s: Series, now: int) -> tuple[tuple[float, int, int] | None, ...]:
        """The trailing windows of a reading at ``now``: ``(rate, start, end)`` or ``None``."""
        e = s.ext
        b = e.buckets if e is not None else None
        if not b:
            return (None,) * len(self.windows_n)
        k_now = (now - 1) // self.bucket_ns
        res: list[tuple[float, int, int] | None] = []
        for n in self.windows_n:
            lo = k_now - n
            inc = 0.0
            t0 = t1 = -1
            for k, (x, a, z) in b.items():
                if lo < k <= k_now:
                    inc += x
                    if t0 < 0 or a < t0:
                        t0 = a
                    if z > t1:
                        t1 = z
            res.append((inc * NS_PER_S / (t1 - t0), t0, t1) if t1 > t0 >= 0 else None)
        return tuple(res)


class SeriesBlock:
    """Series read together at one instant (a sampler's rows), kept column by column.

    They share one time axis, so what depends on time alone (last time, the open span's
    start, whether it holds an interval) is kept once, and a point of every series costs
    a few C-level passes over lists instead of one Python call each. The semantics are
    exactly those of the per-series path
    (:meth:`RateEngine.observe_many <otel_rtc.core.rates.RateEngine.observe_many>`).
    """

    __slots__ = ("has", "iinc", "inc", "it0", "keys", "last_t", "last_v", "p0", "pk",
                 "silent", "starts", "tags", "touched")
    cum = False  # never taken for a series by observe()'s fast path

    def __init__(self, keys: Sequence[Hashable], series: list[Series],
                 starts: Sequence[int]) -> None:
        first = series[0]
        self.keys = keys
        self.starts = starts
        self.tags = [s.tag for s in series]
        self.last_v = [s.last_v for s in series]
        self.inc = [s.inc for s in series]
        self.pk = [s.pk for s in series]
        self.iinc = [s.iinc for s in series]
        self.last_t = first.last_t
        self.p0 = first.p0
        self.has = first.has
        self.touched = first.touched
        self.silent = first.silent
        self.it0 = first.it0

    @classmethod
    def of(cls, keys: Sequence[Hashable], series: list[Any],
           starts: Sequence[int]) -> SeriesBlock | None:
        """A block of ``series`` (those of ``keys``), or ``None`` unless they share a time line.

        Sharing it means plain cumulative series (no staleness, no extra state) with the
        start times ``starts`` and the same last time, open span and last interval.
        """
        first = series[0]
        if type(first) is not Series:
            return None
        shared = (first.last_t, first.p0, first.has, first.touched, first.silent, first.it0)
        for s, start in zip(series, starts, strict=True):
            if (type(s) is not Series or not s.cum or s.stale or s.ext is not None
                    or s.start != start
                    or (s.last_t, s.p0, s.has, s.touched, s.silent, s.it0) != shared):
                return None
        if len(set(map(id, series))) != len(series):
            return None  # a key listed twice
        return cls(keys, series, starts)

    def advance(self, values: Sequence[float], time_ns: int, starts: Sequence[int],
                rules: SeriesRules) -> bool:
        """Add a tick of every series (``values`` at ``time_ns``) when nothing is unusual.

        The same operations as :meth:`SeriesRules.push` for each series, by column.

        Returns:
            ``False``, the block unchanged, when a series needs the per-series path (a
            decrease, a new start time, a gap, samples finer than the sub-window, a bad
            value). May raise on a value of a wrong type (the block is then unchanged).
        """
        last_t = self.last_t
        dt = time_ns - last_t
        if not (type(time_ns) is int and rules.need0 <= dt <= rules.gap_ns
                and (starts is self.starts or starts == self.starts)):
            return False
        incs = list(map(sub, values, self.last_v))
        total = sum(incs)  # NaN anywhere makes it NaN
        if not (incs and total == total and min(incs) >= 0 and max(values) < rules.vlimit):
            return False
        self.inc = list(map(add, self.inc, incs))
        if dt <= rules.cap0:  # the per-series path's peak, by column
            self.pk = [r if (r := i * NS_PER_S / dt) > p else p
                       for p, i in zip(self.pk, incs, strict=True)]
        self.iinc = incs
        self.it0 = last_t
        if not self.has:
            self.has = True
            self.p0 = last_t
        self.last_v = values if type(values) is list else list(values)
        self.last_t = time_ns
        self.touched = True
        return True

    def split(self) -> list[Series]:
        """Each series' own state again (the same values), in the order of ``keys``."""
        out = []
        for i in range(len(self.keys)):
            s = Series(self.tags[i], True)
            s.start = self.starts[i]
            s.last_t = self.last_t
            s.last_v = self.last_v[i]
            s.has = self.has
            s.p0 = self.p0
            s.inc = self.inc[i]
            s.pk = self.pk[i]
            s.it0 = self.it0
            s.iinc = self.iinc[i]
            s.touched = self.touched
            s.silent = self.silent
            out.append(s)
        return out
