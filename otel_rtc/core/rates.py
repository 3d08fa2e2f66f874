"""True rates from counters: the mean over the data's own span and the 1 s peak within it.

Two ways a rate lies (see ``docs/rates.md``):

* **Fake spike.** Bytes accumulated over 5 minutes divided by a 2 s window read as a
  150x spike. Here every rate divides an increment by the span it was *actually*
  accumulated over (OTLP ``start_time_unix_nano`` -> ``time_unix_nano``).
* **Smoothed spike.** A 10 s, 100 Mbps burst inside a 5-minute report reads as
  3.3 Mbps. Here each reading carries, next to its mean, the peak over short
  sub-windows (1 s by default) built from real sample-to-sample intervals.

The engine is incremental: each point updates a few numbers of its series (the span's
increase, the running peak of each sub-window, and, only when opted in, coarse buckets
for trailing windows), and a reading costs O(1) per output. A reading covers the data
since the series' previous reading (:meth:`RateEngine.read`); consecutive readings of a
series tile its time line. The contract, shared with the Go processor through the JSON
vectors in ``tests/vectors/rates/``, is ``docs/rates.md`` ("The v2 contract").

No extrapolation anywhere: every figure is a lower bound of what happened, and a peak
can never exceed the true peak of the input.

Pure module: stdlib and :mod:`otel_rtc.core.clock` only, so the same code runs in a
collector's embedded interpreter and in-process. Not thread-safe: one engine per
consumer, or a lock held by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import add, mul, sub, truediv
from typing import Any, NamedTuple

from otel_rtc.core.clock import NS_PER_S, Clock, wall_clock_ns

OnAnomaly = Callable[[str], None]

NO_RECORDED_VALUE = 1
"""OTLP ``DataPointFlags.FLAG_NO_RECORDED_VALUE``: a staleness marker, not a value."""

# Rejected points (observe() returns False):
REJECT_REASONS = frozenset({
    "non_finite", "out_of_range", "negative_delta", "negative_value", "bad_span",
    "duplicate", "out_of_order", "series_cap", "invalid",
})
# Anomalies of accepted points, and of series (observe() returns True):
ACCEPT_REASONS = frozenset({"reset", "start_time_change", "wrap", "gap", "short_span",
                            "stale", "quiet"})

_MAX_VALUE = 1e30
"""Largest accepted magnitude; beyond it sums of increments could overflow to inf."""
_MAX_TIME_NS = 2**63 - 1
_PEAK_JITTER = 0.95
"""A run of intervals of at least 0.95 x the sub-window counts as one sub-window, so
1 s samples arriving 0.999 s apart still resolve a 1 s peak."""
_PEAK_MAX_RUN = 2.0
"""A run longer than 2 x the sub-window is too coarse to claim that sub-window's peak."""


@dataclass(frozen=True)
class RateConfig:
    """Configuration of a :class:`RateEngine`.

    Attributes:
        peak_subwindows_s: Sub-windows (seconds, strictly increasing) whose peak rate is
            part of each reading. Default: the 1 s peak only.
        windows_s: Opt-in trailing windows (seconds, strictly increasing, multiples of
            ``window_bucket_s``) whose mean is part of each reading. Default: none (get
            1 min and 5 min views downstream, see ``docs/rates.md``).
        window_bucket_s: Bucket width of the trailing windows.
        max_series: Series tracked at once; a new series beyond it is rejected with
            reason ``series_cap``.
        quiet_intervals: A series without a new point at this many consecutive readings
            gets one final reading and is forgotten.
        wrap_modulus: For fixed-width transport counters (e.g. ``2**32``): a decrease
            whose wrapped delta is below half the modulus is a wrap-around, not a reset.
            ``None``: every decrease is a reset.
        gap_after_s: An interval longer than this between consecutive points is
            reported as a ``gap`` (the point is still accepted).
    """

    peak_subwindows_s: tuple[float, ...] = (1.0,)
    windows_s: tuple[float, ...] = ()
    window_bucket_s: float = 10.0
    max_series: int = 2000
    quiet_intervals: int = 2
    wrap_modulus: float | None = None
    gap_after_s: float = 60.0

    def __post_init__(self) -> None:
        def pos(x: object) -> bool:
            return (isinstance(x, (int, float)) and not isinstance(x, bool)
                    and math.isfinite(x) and x > 0)

        for name, empty_ok in (("peak_subwindows_s", False), ("windows_s", True)):
            seq = getattr(self, name)
            if not isinstance(seq, tuple) or not all(pos(w) for w in seq) or (
                    not seq and not empty_ok):
                raise ValueError(f"{name} must be a tuple of positive seconds")
            if any(seq[i] >= seq[i + 1] for i in range(len(seq) - 1)):
                raise ValueError(f"{name} must be strictly increasing")
        if not pos(self.window_bucket_s):
            raise ValueError("window_bucket_s must be positive")
        for w in self.windows_s:
            k = w / self.window_bucket_s
            if abs(k - round(k)) > 1e-9 or round(k) < 1:
                raise ValueError("each of windows_s must be a multiple of window_bucket_s")
        for name in ("max_series", "quiet_intervals"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an int >= 1")
        if not pos(self.gap_after_s):
            raise ValueError("gap_after_s must be positive")
        if self.wrap_modulus is not None and not (pos(self.wrap_modulus)
                                                  and self.wrap_modulus >= 2):
            raise ValueError("wrap_modulus must be None or a finite number >= 2")


class Reading(NamedTuple):
    """One reading of one series: what it did since its previous reading.

    Attributes:
        key: The series.
        tag: What the caller attached to the series on its first point.
        mean: Increase over ``[start_ns, time_ns]`` per second (uncovered time inside
            counts as no increase: a lower bound).
        start_ns: Start of the span the reading covers (start of its first interval).
        time_ns: End of that span (end of its last interval).
        peaks: Per ``peak_subwindows_s``: the largest rate over a run of consecutive
            intervals ending in the span that lasts 0.95..2 x the sub-window; ``None``
            when the data is too coarse.
        windows: Per ``windows_s``: ``(rate, start_ns, time_ns)`` or ``None``.
        final: The series went quiet: this reading (0 over the silent time) is its
            last, and the series is forgotten.
    """

    key: Hashable
    tag: Any
    mean: float
    start_ns: int
    time_ns: int
    peaks: tuple[float | None, ...]
    windows: tuple[tuple[float, int, int] | None, ...]
    final: bool


class _Series:
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


class _Block:
    """Series read together at one instant (a sampler's rows), kept column by column.

    They share one time axis, so what depends on time alone (last time, the open span's
    start, whether it holds an interval) is kept once, and a point of every series costs
    a few C-level passes over lists instead of one Python call each. The semantics are
    exactly those of the per-series path (:meth:`RateEngine.observe_many`).
    """

    __slots__ = ("has", "iinc", "inc", "it0", "keys", "last_t", "last_v", "p0", "pk",
                 "silent", "starts", "tags", "touched")
    cum = False  # never taken for a series by observe()'s fast path

    def __init__(self, keys: Sequence[Hashable], series: list[_Series]) -> None:
        first = series[0]
        self.keys = keys
        self.tags = [s.tag for s in series]
        self.starts = [s.start for s in series]
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


def _valid_time(t: object) -> bool:
    return type(t) is int and 0 <= t <= _MAX_TIME_NS


class RateEngine:
    """Derives true rates from cumulative or delta counter points, per series.

    Args:
        config: Peaks, opt-in windows and bounds.
        clock: Default ``now`` for :meth:`read`.
        on_anomaly: Called with a reason for every rejected point (``REJECT_REASONS``)
            and every anomaly (``ACCEPT_REASONS``). Exceptions it raises are swallowed.
            The counts are also kept (:meth:`anomaly_counts`).

    See ``docs/rates.md`` ("The v2 contract") for the exact semantics.
    """

    __slots__ = ("_anomalies", "_block", "_bucket_ns", "_cap0", "_clock", "_gap_ns",
                 "_min_span_ns", "_n_peaks", "_need0", "_on_anomaly", "_peaks_ns", "_series",
                 "_simple", "_vlimit", "_windows_n", "config")

    def __init__(self, config: RateConfig = RateConfig(), *, clock: Clock = wall_clock_ns,
                 on_anomaly: OnAnomaly | None = None) -> None:
        if not isinstance(config, RateConfig):
            raise ValueError("config must be a RateConfig")
        self.config = config
        self._clock = clock
        self._on_anomaly = on_anomaly
        self._series: dict[Hashable, Any] = {}  # key -> _Series, or the _Block holding it
        self._block: _Block | None = None
        self._gap_ns = int(config.gap_after_s * NS_PER_S)
        self._peaks_ns = [(int(p * _PEAK_JITTER * NS_PER_S), int(p * _PEAK_MAX_RUN * NS_PER_S))
                          for p in config.peak_subwindows_s]
        self._need0, self._cap0 = self._peaks_ns[0]
        self._n_peaks = len(self._peaks_ns)
        self._bucket_ns = int(config.window_bucket_s * NS_PER_S)
        self._windows_n = [round(w / config.window_bucket_s) for w in config.windows_s]
        # Only the first sub-window, no windows: the common case takes the fast path.
        self._simple = self._n_peaks == 1 and not config.windows_s
        self._vlimit = config.wrap_modulus if config.wrap_modulus is not None else _MAX_VALUE
        # Shortest first span (start_ns -> first point) taken as a real interval: the
        # finest resolution the engine claims (0.95 x the shortest peak sub-window).
        self._min_span_ns = self._need0
        self._anomalies: dict[str, int] = {}

    # -- input -----------------------------------------------------------------------
    def observe(self, key: Hashable, value: float, time_ns: int, start_ns: int | None = 0,
                cumulative: bool = True, flags: int = 0, tag: Any = None) -> bool:
        """Feed one data point.

        Args:
            key: Series identity (e.g. metric name + attribute set), hashable.
            value: Cumulative: the running total since ``start_ns``. Delta: the
                increment over ``(start_ns, time_ns]``.
            time_ns: End of the point, ns since the epoch.
            start_ns: OTLP start time; 0 (or ``None``) means unset. Cumulative: a change
                means the counter restarted. Delta: start of the increment (unset: the
                previous point's end).
            cumulative: Temporality of ``value``.
            flags: OTLP data point flags; :data:`NO_RECORDED_VALUE` marks the series
                stale (the value is ignored).
            tag: Attached to a new series and handed back in its readings.

        Returns:
            ``False`` if the point was rejected (reported through ``on_anomaly``).
        """
        try:
            s = self._series.get(key)
            # Fast path: cumulative continuation, same run, increasing time, no gap.
            # Its body is _push() inlined (keep the two in step): one method call less per
            # point is what keeps the core above its 1 M points/s target (bench_rates).
            if (s is not None and cumulative and s.cum and start_ns == s.start and not flags
                    and type(time_ns) is int and not s.stale):
                last_t = s.last_t
                last_v = s.last_v
                if (last_t < time_ns <= last_t + self._gap_ns
                        and last_v <= value < self._vlimit):
                    inc = value - last_v
                    s.last_v = value
                    s.last_t = time_ns
                    s.touched = True
                    if not s.has:
                        s.has = True
                        s.p0 = last_t
                    s.inc += inc
                    dt = time_ns - last_t
                    if self._simple and s.ext is None and dt >= self._need0:
                        # The interval alone spans the sub-window: its run is itself.
                        if dt <= self._cap0:
                            r = inc * NS_PER_S / dt
                            if r > s.pk:
                                s.pk = r
                        s.it0 = last_t
                        s.iinc = inc
                    else:
                        self._interval(s, last_t, time_ns, inc)
                    return True
            return self._observe_slow(s, key, value, time_ns, start_ns or 0, cumulative,
                                      flags, tag)
        except Exception:  # never raise into the host; hostile input ends here
            return self._reject("invalid")

    def observe_many(self, keys: Sequence[Hashable], values: Sequence[float], time_ns: int,
                     starts: Sequence[int], tags: Sequence[Any]) -> None:
        """Feed cumulative points of many series taken at one instant (a sampler tick).

        Exactly ``observe(keys[i], values[i], time_ns, starts[i], True, 0, tags[i])`` for
        each ``i``, in a few C-level passes when the same ``keys`` object comes again
        (pass the same list while the set of series is unchanged): the series are then
        kept as one column block. Anything unusual (a decrease, a new start time, a gap,
        samples finer than the peak sub-window, a bad value) takes the per-series path.
        Pass the same ``starts`` object while the start times do not change (it is then
        not compared again). The engine keeps ``values``: pass a fresh list each time.
        """
        b = self._block
        if b is not None and b.keys is keys:
            try:
                last_t = b.last_t
                dt = time_ns - last_t
                if (type(time_ns) is int and self._need0 <= dt <= self._gap_ns
                        and (starts is b.starts or starts == b.starts)):
                    incs = list(map(sub, values, b.last_v))
                    total = sum(incs)  # NaN anywhere makes it NaN
                    if (incs and total == total and min(incs) >= 0
                            and max(values) < self._vlimit):
                        b.inc = list(map(add, b.inc, incs))
                        if dt <= self._cap0:  # the same operations as the per-series path
                            b.pk = list(map(max, b.pk, map(truediv, map(
                                mul, incs, repeat(NS_PER_S)), repeat(dt))))
                        b.iinc = incs
                        b.it0 = last_t
                        if not b.has:
                            b.has = True
                            b.p0 = last_t
                        b.last_v = values if type(values) is list else list(values)
                        b.last_t = time_ns
                        b.touched = True
                        return
            except Exception:  # a value of a wrong type: the per-series path counts it
                pass
        if b is not None:
            self._dissolve()
        observe = self.observe
        for key, value, start, tag in zip(keys, values, starts, tags, strict=True):
            observe(key, value, time_ns, start, True, 0, tag)
        self._form_block(keys, starts)

    def _form_block(self, keys: Sequence[Hashable], starts: Sequence[int]) -> None:
        """Turn ``keys`` into a column block when their series share a time line."""
        if not self._simple or not keys:
            return
        get = self._series.get
        series = [get(k) for k in keys]
        first = series[0]
        if type(first) is not _Series:
            return
        shared = (first.last_t, first.p0, first.has, first.touched, first.silent, first.it0)
        for s, start in zip(series, starts, strict=True):
            if (type(s) is not _Series or not s.cum or s.stale or s.ext is not None
                    or s.start != start
                    or (s.last_t, s.p0, s.has, s.touched, s.silent, s.it0) != shared):
                return
        if len(set(map(id, series))) != len(series):
            return  # a key listed twice
        b = self._block = _Block(keys, series)
        b.starts = starts
        for k in keys:
            self._series[k] = b

    def _dissolve(self) -> None:
        """Give every series of the block its own state again (same values)."""
        b = self._block
        if b is None:
            return
        self._block = None
        for i, key in enumerate(b.keys):
            if self._series.get(key) is not b:
                continue
            s = _Series(b.tags[i], True)
            s.start = b.starts[i]
            s.last_t = b.last_t
            s.last_v = b.last_v[i]
            s.has = b.has
            s.p0 = b.p0
            s.inc = b.inc[i]
            s.pk = b.pk[i]
            s.it0 = b.it0
            s.iinc = b.iinc[i]
            s.touched = b.touched
            s.silent = b.silent
            self._series[key] = s

    def _note(self, reason: str) -> None:
        self._anomalies[reason] = self._anomalies.get(reason, 0) + 1
        cb = self._on_anomaly
        if cb is not None:
            try:
                cb(reason)
            except Exception:  # a broken callback must not break the engine
                pass

    def _reject(self, reason: str) -> bool:
        self._note(reason)
        return False

    def _observe_slow(self, s: _Series | None, key: Hashable, value: float, time_ns: int,
                      start_ns: int, cumulative: bool, flags: int, tag: Any) -> bool:
        if type(s) is _Block:
            self._dissolve()
            s = self._series[key]
        if not _valid_time(time_ns) or not _valid_time(start_ns):
            return self._reject("invalid")
        if type(flags) is not int:
            return self._reject("invalid")
        if flags & NO_RECORDED_VALUE:
            # A staleness marker: neither a value nor a reset.
            if s is not None and not s.stale:
                s.stale = True
                self._note("stale")
            return True
        if type(value) not in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return self._reject("invalid")
        if isinstance(value, int) and abs(value) > _MAX_VALUE:
            return self._reject("out_of_range")
        value = float(value)
        if not math.isfinite(value):
            return self._reject("non_finite")
        if abs(value) > _MAX_VALUE:
            return self._reject("out_of_range")
        if value < 0:
            return self._reject("negative_value" if cumulative else "negative_delta")
        if start_ns > time_ns:
            return self._reject("bad_span")
        if not cumulative and start_ns and start_ns == time_ns:
            return self._reject("bad_span")
        mod = self.config.wrap_modulus
        if cumulative and mod is not None and value >= mod:
            return self._reject("out_of_range")

        if s is None:
            if len(self._series) >= self.config.max_series:
                return self._reject("series_cap")
            s = _Series(tag, cumulative)
            self._series[key] = s
            s.touched = True
            self._open(s, value, time_ns, start_ns, None)
            return True

        last_t = s.last_t
        if time_ns == last_t and (cumulative or not start_ns or start_ns == s.start):
            return self._reject("duplicate")
        if time_ns < last_t:
            return self._reject("out_of_order")
        if cumulative != s.cum:
            # Temporality changed: nothing before is comparable; start a new run.
            self._note("reset")
            s.cum = cumulative
            s.touched = True
            self._open(s, value, time_ns, start_ns, last_t)
            return True
        if cumulative:
            return self._cumulative(s, value, time_ns, start_ns, last_t)
        return self._delta(s, value, time_ns, start_ns, last_t)

    def _cumulative(self, s: _Series, value: float, time_ns: int, start_ns: int,
                    last_t: int) -> bool:
        if s.stale:
            s.stale = False
            if not (start_ns and start_ns == s.start and value >= s.last_v):
                # No continuity shown by the start time: a new baseline (or a new run
                # whose own span starts after the last real point).
                s.touched = True
                self._open(s, value, time_ns, start_ns, last_t)
                return True
        elif start_ns != s.start and start_ns:
            # The source says it restarted (OTLP start time changed).
            self._note("start_time_change")
            s.touched = True
            self._open(s, value, time_ns, start_ns, last_t)
            return True
        inc = value - s.last_v
        if inc < 0:
            mod = self.config.wrap_modulus
            wrapped = inc + mod if mod is not None else None
            if wrapped is not None and 0 <= wrapped < mod / 2:  # type: ignore[operator]
                self._note("wrap")
                inc = wrapped
            else:
                # Restarted at an unknown instant in (last_t, time_ns]: ``value`` is a
                # lower bound of the increase over that interval (never an overestimate).
                self._note("reset")
                inc = value
        if time_ns - last_t > self._gap_ns:
            self._note("gap")
        s.start = start_ns
        s.last_v = value
        self._push(s, last_t, time_ns, inc)
        return True

    def _delta(self, s: _Series, value: float, time_ns: int, start_ns: int,
               last_t: int) -> bool:
        if s.stale:
            s.stale = False
            if not start_ns:
                # The previous point's end no longer tells where this increment began.
                s.touched = True
                self._open(s, value, time_ns, start_ns, last_t)
                return True
        t0 = start_ns or last_t
        if t0 < last_t:
            return self._reject("out_of_order")  # overlaps known data
        if t0 - last_t > self._gap_ns or time_ns - t0 > self._gap_ns:
            self._note("gap")
        s.start = start_ns
        if t0 != last_t:
            s.it0 = -1  # uncovered time between the two: no run crosses it
        self._push(s, t0, time_ns, value)
        return True

    def _push(self, s: _Series, t0: int, t1: int, inc: float) -> None:
        """Add the interval ``(t0, t1]`` with increase ``inc`` to the open span."""
        s.last_t = t1
        s.touched = True
        if not s.has:
            s.has = True
            s.p0 = t0
        s.inc += inc
        dt = t1 - t0
        if self._simple and s.ext is None and dt >= self._need0:
            if dt <= self._cap0:
                r = inc * NS_PER_S / dt
                if r > s.pk:
                    s.pk = r
            s.it0 = t0
            s.iinc = inc
        else:
            self._interval(s, t0, t1, inc)

    def _interval(self, s: _Series, t0: int, t1: int, inc: float) -> None:
        """Peaks over runs of consecutive intervals, and window buckets (general path).

        For each sub-window the run ending at this interval is the shortest run of
        consecutive intervals lasting at least ``need``; it counts if it lasts at most
        ``cap``. Each sub-window keeps the intervals of its current run: every interval
        enters and leaves once, so the cost per point is O(1) amortised.
        """
        e = s.ext
        if e is None:
            e = s.ext = _Ext(self._n_peaks)
            if s.it0 >= 0:
                # Seed the runs with the previous interval (it ended at t0).
                prev = (s.it0, t0, s.iinc)
                for run in e.runs:
                    run[0].append(prev)
                    run[1] += prev[2]
            e.pk[0] = s.pk
        chained = s.it0 >= 0 and e.runs[0][0] and e.runs[0][0][-1][1] == t0
        for j, (need, cap) in enumerate(self._peaks_ns):
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
        if self._windows_n:
            b = e.buckets
            if b is None:
                b = e.buckets = {}
            k = (t1 - 1) // self._bucket_ns  # buckets are (kB, (k+1)B]
            slot = b.get(k)
            if slot is None:
                b[k] = [inc, t0, t1]
                horizon = k - self._windows_n[-1]
                for old in [i for i in b if i <= horizon]:
                    del b[old]
            else:
                slot[0] += inc
                if t0 < slot[1]:
                    slot[1] = t0
                if t1 > slot[2]:
                    slot[2] = t1
        elif self._simple and t1 - t0 >= self._need0:
            s.ext = None  # back to the fast path: a full interval needs no history

    def _open(self, s: _Series, value: float, time_ns: int, start_ns: int,
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
        if real and s.cum and value > 0 and time_ns - start_ns < self._min_span_ns:
            # Too short a span to hold this value (see docs/rates.md): a baseline.
            self._note("short_span")
            real = False
        if real:
            # ``value`` was accumulated over (start_ns, time_ns]: a real interval.
            self._push(s, start_ns, time_ns, value)
        elif not s.has:
            s.p0 = time_ns

    # -- output ----------------------------------------------------------------------
    def read(self, now_ns: int | None = None, keys: Iterable[Hashable] | None = None,
             min_span_s: float = 0.0) -> list[Reading]:
        """Close the open span of each series and return its readings.

        Args:
            now_ns: The reading instant (default: the clock). Only a quiet series'
                final reading uses it (as its end).
            keys: Series to read (default: all). Unknown keys are skipped.
            min_span_s: A series whose new data spans less than 0.95 x this (data time)
                and that got a point since the previous read is not read now: its data
                waits for a later read. A series that got no point is always read, so
                its last data is never held back. A collector, which reads at every
                incoming batch, uses it to emit one reading per series per ``min_span_s``
                of data instead of one per batch.

        Returns:
            One :class:`Reading` per series that has a new interval since its previous
            reading (and not held by ``min_span_s``), or that went quiet (its final
            reading). A series without a point
            at ``quiet_intervals`` consecutive reads ends with a final reading of 0
            over ``[its last point, now]`` and is forgotten.
        """
        now = self._clock() if now_ns is None else now_ns
        series = self._series
        quiet = self.config.quiet_intervals
        windows_n = self._windows_n
        out: list[Reading] = []
        append = out.append
        no_windows: tuple[None, ...] = (None,) * len(windows_n)
        simple = self._simple
        n_peaks = self._n_peaks
        new = tuple.__new__
        block_done = False
        hold = int(min_span_s * _PEAK_JITTER * NS_PER_S)  # the jitter tolerance of peaks
        for key in (list(series) if keys is None else keys):
            s = series.get(key)
            if s is None:
                continue
            if type(s) is _Block:
                if not block_done:
                    block_done = True
                    self._read_block(s, now, hold, out)
                continue
            if s.has and not (s.touched and s.last_t - s.p0 < hold):
                e = s.ext
                if simple:
                    peaks: tuple[float | None, ...] = (s.pk if s.pk >= 0 else None,)
                else:
                    pk = e.pk if e is not None else [-1.0] * n_peaks
                    peaks = tuple(p if p >= 0 else None for p in pk)
                wins = self._windows(s, now) if windows_n else no_windows
                end = s.last_t
                append(new(Reading, (key, s.tag, s.inc * NS_PER_S / (end - s.p0), s.p0, end,
                                     peaks, wins, False)))
                s.has = False
                s.inc = 0.0
                s.pk = -1.0
                if e is not None:
                    e.pk = [-1.0] * n_peaks
                s.p0 = end
                s.touched = False
                s.silent = 0
            elif s.touched:
                s.touched = False
                s.silent = 0
            else:
                s.silent += 1
                if s.silent >= quiet:
                    del series[key]
                    self._note("quiet")
                    if now > s.last_t:
                        append(new(Reading, (key, s.tag, 0.0, s.last_t, now,
                                             (0.0,) * n_peaks, no_windows, True)))
        return out

    def _read_block(self, b: _Block, now: int, hold: int, out: list[Reading]) -> None:
        """:meth:`read` of every series of the block (the per-series rules, by column)."""
        new = tuple.__new__
        if b.has and not (b.touched and b.last_t - b.p0 < hold):
            end, p0 = b.last_t, b.p0
            span = end - p0
            for key, tag, inc, pk in zip(b.keys, b.tags, b.inc, b.pk, strict=True):
                out.append(new(Reading, (key, tag, inc * NS_PER_S / span, p0, end,
                                         (pk if pk >= 0 else None,), (), False)))
            n = len(b.keys)
            b.inc = [0.0] * n
            b.pk = [-1.0] * n
            b.has = False
            b.p0 = end
            b.touched = False
            b.silent = 0
        elif b.touched:
            b.touched = False
            b.silent = 0
        else:
            b.silent += 1
            if b.silent >= self.config.quiet_intervals:
                self._block = None
                for key, tag in zip(b.keys, b.tags, strict=True):
                    del self._series[key]
                    self._note("quiet")
                    if now > b.last_t:
                        out.append(new(Reading, (key, tag, 0.0, b.last_t, now, (0.0,), (),
                                                 True)))

    def _windows(self, s: _Series, now: int) -> tuple[tuple[float, int, int] | None, ...]:
        e = s.ext
        b = e.buckets if e is not None else None
        if not b:
            return (None,) * len(self._windows_n)
        k_now = (now - 1) // self._bucket_ns
        res: list[tuple[float, int, int] | None] = []
        for n in self._windows_n:
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

    def forget(self, key: Hashable) -> bool:
        """Stop tracking ``key`` (no final reading).

        Returns:
            Whether the series had data not read yet (held by a reading span), which is
            lost with it: the caller counts it.
        """
        if type(self._series.get(key)) is _Block:
            self._dissolve()
        s = self._series.pop(key, None)
        return s is not None and s.has

    def anomaly_counts(self) -> dict[str, int]:
        """Counts of every reason reported so far (rejections and anomalies)."""
        return dict(self._anomalies)

    def __contains__(self, key: object) -> bool:
        return key in self._series

    def __len__(self) -> int:
        return len(self._series)
