"""True rates from counters: the data's own span, trailing windows and sub-window peaks.

Two ways a rate lies (see ``docs/rates.md``):

* **Fake spike.** Bytes accumulated over 5 minutes divided by a 2 s window read as a
  150x spike. Here every rate divides an increment by the span it was *actually*
  accumulated over (OTLP ``start_time_unix_nano`` → ``time_unix_nano``), never by a
  window the data was not accumulated over.
* **Smoothed spike.** A 10 s, 100 Mbps burst inside a 5-minute report reads as
  3.3 Mbps. Here the engine keeps a bounded ring of real sample-to-sample intervals and
  reports, next to the mean, the peak over short sub-windows. Peaks are kept
  incrementally: each interval's run is computed once, on the first read after it
  arrived, so a read costs the intervals since the previous one, not the whole ring.

No extrapolation anywhere (unlike PromQL ``rate()``, which stretches the first/last
sample to the range boundaries): every figure is a lower bound of what happened, and a
reported peak can never exceed the true peak of the input.

This module is pure: stdlib and :mod:`otel_rtc.core.clock` only, so the same code runs in a
collector's embedded interpreter and in-process. It is not thread-safe: one engine per
consumer, or a lock held by the caller.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from itertools import accumulate, compress, islice, repeat
from operator import gt, le, mul, sub, truediv

from otel_rtc.core.clock import NS_PER_S, Clock, wall_clock_ns

OnDrop = Callable[[str], None]

# Reasons passed to ``on_drop``. Rejected points (observe() returns False):
REJECT_REASONS = frozenset({
    "non_finite", "out_of_range", "negative_delta", "negative_value", "bad_span",
    "duplicate", "out_of_order", "series_cap", "invalid",
})
# Anomalies of accepted points (observe() returns True):
ACCEPT_REASONS = frozenset({"reset", "start_time_change", "wrap", "gap", "short_span"})

_MAX_VALUE = 1e30
"""Largest accepted magnitude; beyond it sums of increments could overflow to inf."""
_MAX_TIME_NS = 2**63 - 1
_PEAK_JITTER = 0.95
"""A group of intervals of at least 0.95 x the sub-window counts as one sub-window, so
1 s samples arriving 0.999 s apart still resolve a 1 s peak."""
_PEAK_MAX_GROUP = 2.0
"""A group longer than 2 x the sub-window is too coarse to claim that sub-window's peak."""


@dataclass(frozen=True)
class RateConfig:
    """Configuration of a :class:`RateEngine`.

    Attributes:
        windows_s: Trailing windows (seconds, strictly increasing) for mean rates, like
            load averages. The longest one is also the horizon of the peaks.
        peak_subwindows_s: Sub-windows (seconds, strictly increasing) whose peak rate is
            reported. Each must not exceed the longest window.
        max_series: Series tracked at once; a new series beyond it is rejected with
            reason ``series_cap`` after stale series are evicted.
        stale_after_s: A series whose last point is older than this is evicted.
        max_samples_per_series: Ring size (intervals kept per series). Must cover the
            longest window at the sampling rate (300 s at 1 Hz needs 300); a window
            whose start was overwritten reports ``None``. 24 bytes per interval, plus
            the peak stacks (up to 16 bytes per interval and sub-window) and fixed
            overhead; see ``docs/rates.md``.
        wrap_modulus: For fixed-width transport counters (e.g. ``2**32``): a decrease
            whose wrapped delta is below half the modulus is a wrap-around, not a reset.
            ``None``: every decrease is a reset.
        gap_after_s: An interval longer than this between consecutive points is
            reported as a ``gap`` (the point is still accepted).
    """

    windows_s: tuple[float, ...] = (10.0, 60.0, 300.0)
    peak_subwindows_s: tuple[float, ...] = (1.0, 5.0)
    max_series: int = 10_000
    stale_after_s: float = 600.0
    max_samples_per_series: int = 320
    wrap_modulus: float | None = None
    gap_after_s: float = 60.0

    def __post_init__(self) -> None:
        def pos(x: object) -> bool:
            return (isinstance(x, (int, float)) and not isinstance(x, bool)
                    and math.isfinite(x) and x > 0)

        for name in ("windows_s", "peak_subwindows_s"):
            seq = getattr(self, name)
            if not isinstance(seq, tuple) or not seq or not all(pos(w) for w in seq):
                raise ValueError(f"{name} must be a non-empty tuple of positive seconds")
            if any(seq[i] >= seq[i + 1] for i in range(len(seq) - 1)):
                raise ValueError(f"{name} must be strictly increasing")
        if self.peak_subwindows_s[-1] > self.windows_s[-1]:
            raise ValueError("peak_subwindows_s must not exceed the longest window")
        if not isinstance(self.max_series, int) or self.max_series < 1:
            raise ValueError("max_series must be an int >= 1")
        if not isinstance(self.max_samples_per_series, int) or self.max_samples_per_series < 2:
            raise ValueError("max_samples_per_series must be an int >= 2")
        if not pos(self.stale_after_s):
            raise ValueError("stale_after_s must be positive")
        if not pos(self.gap_after_s):
            raise ValueError("gap_after_s must be positive")
        if self.wrap_modulus is not None and not (pos(self.wrap_modulus)
                                                  and self.wrap_modulus >= 2):
            raise ValueError("wrap_modulus must be None or a finite number >= 2")


@dataclass(frozen=True)
class SeriesRates:
    """Rates of one series at one instant (per second, in the series' own unit).

    Attributes:
        mean_rate: ``total / span_s``: the increment over the data's own span (start of
            accumulation → last point). ``None`` when the span is zero.
        span_s: Seconds from the start of accumulation (or first point) to the last one.
        window_rates: Mean rate over each trailing window, from real intervals lying
            wholly inside it. ``None`` when there is none or the ring no longer reaches
            back to the window's start.
        peak_rates: For each sub-window, the largest mean rate over a run of consecutive
            real intervals lasting at least (0.95 x) and at most 2 x the sub-window,
            within the longest window. ``None`` when the data is too coarse to resolve
            it. Never above the input's true peak instantaneous rate.
        total: Accumulated value since the series' (re)start.
    """

    mean_rate: float | None
    span_s: float
    window_rates: dict[float, float | None]
    peak_rates: dict[float, float | None]
    total: float


class _Series:
    """Per-series state: last point, current run, a ring of intervals and peak stacks."""

    __slots__ = ("cumulative", "evicted_t1", "inc", "last_raw", "last_t", "n", "pk", "pk_t1",
                 "pos", "run_start", "start_ns", "t0", "t1", "total")

    def __init__(self, size: int, cumulative: bool) -> None:
        self.cumulative = cumulative
        self.t0 = array("q", bytes(8 * size))
        self.t1 = array("q", bytes(8 * size))
        self.inc = array("d", bytes(8 * size))
        self.pos = 0          # next slot to write
        self.n = 0            # intervals stored (<= size)
        self.evicted_t1 = -1  # end of the newest overwritten interval
        self.last_t = 0
        self.last_raw = 0.0
        self.start_ns: int | None = None  # start_ns reported by the source
        self.run_start = 0                # start of accumulation of the current run
        self.total = 0.0
        # Peaks, maintained incrementally (see ``_catch_up``): per sub-window a stack of
        # (run start, rate) with strictly decreasing rates; allocated on the first read.
        self.pk: list[tuple[array, array]] | None = None
        self.pk_t1 = -1       # end of the newest interval folded into the stacks

    def push(self, t0: int, t1: int, inc: float) -> None:
        p = self.pos
        size = len(self.t1)
        if self.n == size:
            self.evicted_t1 = self.t1[p]
        else:
            self.n += 1
        self.t0[p] = t0
        self.t1[p] = t1
        self.inc[p] = inc
        p += 1
        self.pos = 0 if p == size else p

    def chronological(self) -> tuple[array, array, array]:
        """``(t0, t1, inc)`` in time order (C-level copies of the ring)."""
        n, p = self.n, self.pos
        if n < len(self.t1):
            return self.t0[:n], self.t1[:n], self.inc[:n]
        if p == 0:
            return self.t0[:], self.t1[:], self.inc[:]
        return self.t0[p:] + self.t0[:p], self.t1[p:] + self.t1[:p], self.inc[p:] + self.inc[:p]


def _valid_time(t: object) -> bool:
    return type(t) is int and 0 <= t <= _MAX_TIME_NS


class RateEngine:
    """Derives true rates from cumulative or delta counter points, per series.

    Args:
        config: Windows, peaks and bounds.
        clock: Default ``now`` for :meth:`rates`, :meth:`items` and eviction.
        on_drop: Called with a reason string for every rejected point and every
            anomaly of an accepted one (``reset``, ``start_time_change``, ``wrap``,
            ``gap``, ``short_span``). Exceptions it raises are swallowed.

    The first point of a cumulative run (a new series, or a ``start_ns`` change) whose
    span ``time_ns - start_ns`` is shorter than 0.95 x the shortest peak sub-window, and
    whose value is not zero, is only the baseline (reason ``short_span``): its value
    cannot be placed in time that finely. The Python SDK stamps a newly observed
    cumulative series (every observable counter's first collection) with a start time
    microseconds before its time, while its value is the source's whole history;
    dividing one by the other is the reference's fake spike, a million times over.
    """

    __slots__ = ("_anomalies", "_clock", "_gap_ns", "_horizon_ns", "_last_evict_ns",
                 "_min_span_ns", "_on_drop", "_peaks_ns", "_series", "_size", "_stale_ns",
                 "_vlimit", "_windows_ns", "config")

    def __init__(self, config: RateConfig = RateConfig(), *, clock: Clock = wall_clock_ns,
                 on_drop: OnDrop | None = None) -> None:
        if not isinstance(config, RateConfig):
            raise ValueError("config must be a RateConfig")
        self.config = config
        self._clock = clock
        self._on_drop = on_drop
        self._series: dict[Hashable, _Series] = {}
        self._size = config.max_samples_per_series
        self._gap_ns = int(config.gap_after_s * NS_PER_S)
        self._stale_ns = int(config.stale_after_s * NS_PER_S)
        self._windows_ns = [(w, int(w * NS_PER_S)) for w in config.windows_s]
        self._horizon_ns = self._windows_ns[-1][1]
        self._peaks_ns = [(p, int(p * _PEAK_JITTER * NS_PER_S), int(p * _PEAK_MAX_GROUP * NS_PER_S))
                          for p in config.peak_subwindows_s]
        self._vlimit = config.wrap_modulus if config.wrap_modulus is not None else _MAX_VALUE
        # Shortest first span (start_ns -> first point) taken as a real interval: the
        # finest resolution the engine claims (0.95 x the shortest peak sub-window).
        self._min_span_ns = self._peaks_ns[0][1]
        self._anomalies: dict[str, int] = {}
        self._last_evict_ns: int | None = None

    # -- input -----------------------------------------------------------------------
    def observe(self, key: Hashable, value: float, time_ns: int, *, start_ns: int | None = None,
                cumulative: bool = True) -> bool:
        """Feed one data point.

        Args:
            key: Series identity (e.g. metric name + attribute set), hashable.
            value: Cumulative: the running total since ``start_ns``. Delta: the
                increment over ``(start_ns, time_ns]``.
            time_ns: End of the point, ns since the epoch.
            start_ns: OTLP start time. Cumulative: a change means the counter restarted.
                Delta: start of the increment (``None``: the previous point's end).
            cumulative: Temporality of ``value``.

        Returns:
            ``False`` if the point was rejected (reported through ``on_drop``).
        """
        try:
            s = self._series.get(key)
            # Fast path: cumulative continuation, same run, increasing time, no gap.
            if (s is not None and cumulative and s.cumulative and start_ns == s.start_ns
                    and type(time_ns) is int):
                last_t = s.last_t
                last_raw = s.last_raw
                if (last_t < time_ns <= last_t + self._gap_ns
                        and last_raw <= value < self._vlimit):
                    inc = value - last_raw
                    s.push(last_t, time_ns, inc)
                    s.total += inc
                    s.last_t = time_ns
                    s.last_raw = value
                    return True
            return self._observe_slow(s, key, value, time_ns, start_ns, cumulative)
        except Exception:  # never raise into the host; hostile input ends here
            return self._reject("invalid")

    def _note(self, reason: str) -> None:
        self._anomalies[reason] = self._anomalies.get(reason, 0) + 1
        cb = self._on_drop
        if cb is not None:
            try:
                cb(reason)
            except Exception:  # a broken callback must not break the engine
                pass

    def _reject(self, reason: str) -> bool:
        self._note(reason)
        return False

    def _observe_slow(self, s: _Series | None, key: Hashable, value: float, time_ns: int,
                      start_ns: int | None, cumulative: bool) -> bool:
        if not _valid_time(time_ns) or (start_ns is not None and not _valid_time(start_ns)):
            return self._reject("invalid")
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
        if start_ns is not None and start_ns > time_ns:
            return self._reject("bad_span")
        if not cumulative and start_ns is not None and start_ns == time_ns:
            return self._reject("bad_span")
        mod = self.config.wrap_modulus
        if cumulative and mod is not None and value >= mod:
            return self._reject("out_of_range")

        if s is None:
            if not self._admit(time_ns):
                return self._reject("series_cap")
            s = _Series(self._size, cumulative)
            self._series[key] = s
            self._open(s, value, time_ns, start_ns, cumulative)
            return True

        if cumulative != s.cumulative:
            # Temporality changed: nothing before is comparable; start a new run.
            if time_ns <= s.last_t:
                return self._reject("out_of_order")
            self._note("reset")
            s.cumulative = cumulative
            self._open(s, value, time_ns, start_ns, cumulative, after=s.last_t)
            return True

        last_t = s.last_t
        if cumulative:
            return self._cumulative(s, value, time_ns, start_ns, last_t)
        return self._delta(s, value, time_ns, start_ns, last_t)

    def _cumulative(self, s: _Series, value: float, time_ns: int, start_ns: int | None,
                    last_t: int) -> bool:
        if time_ns == last_t:
            return self._reject("duplicate")
        if time_ns < last_t:
            return self._reject("out_of_order")
        if start_ns is not None and start_ns != s.start_ns:
            # The source says it restarted (OTLP start time changed).
            self._note("start_time_change")
            self._open(s, value, time_ns, start_ns, True, after=last_t)
            return True
        inc = value - s.last_raw
        if inc < 0:
            mod = self.config.wrap_modulus
            wrapped = inc + mod if mod is not None else None
            if wrapped is not None and 0 <= wrapped < mod / 2:
                self._note("wrap")
                inc = wrapped
            else:
                # Restarted at an unknown instant in (last_t, time_ns]: ``value`` is a
                # lower bound of the increase over that interval (never an overestimate).
                self._note("reset")
                s.run_start = last_t
                s.total = 0.0
                inc = value
        if time_ns - last_t > self._gap_ns:
            self._note("gap")
        s.push(last_t, time_ns, inc)
        s.total += inc
        s.last_t = time_ns
        s.last_raw = value
        return True

    def _delta(self, s: _Series, value: float, time_ns: int, start_ns: int | None,
               last_t: int) -> bool:
        if time_ns == last_t and (start_ns is None or start_ns == s.start_ns):
            return self._reject("duplicate")
        t0 = last_t if start_ns is None else start_ns
        if time_ns <= last_t or t0 < last_t:
            return self._reject("out_of_order")  # before, or overlapping, known data
        if t0 - last_t > self._gap_ns or time_ns - t0 > self._gap_ns:
            self._note("gap")
        s.push(t0, time_ns, value)
        s.total += value
        s.last_t = time_ns
        s.start_ns = t0
        return True

    def _open(self, s: _Series, value: float, time_ns: int, start_ns: int | None,
              cumulative: bool, after: int | None = None) -> None:
        """Start a run at this point. ``after``: end of the data already in the ring."""
        s.last_t = time_ns
        s.start_ns = start_ns
        if cumulative:
            s.last_raw = value
            if start_ns is not None and value > 0 and time_ns - start_ns < self._min_span_ns:
                # Too short a span to hold this value (see the class doc): baseline.
                self._note("short_span")
                s.run_start = time_ns
                s.total = 0.0
            elif start_ns is not None and start_ns < time_ns and (after is None
                                                                  or start_ns >= after):
                # ``value`` was accumulated over (start_ns, time_ns]: a real interval.
                s.run_start = start_ns
                s.total = value
                s.push(start_ns, time_ns, value)
            elif start_ns is not None and start_ns <= time_ns:
                # Known span, but it overlaps data already in the ring: the mean uses
                # it, the windows/peaks do not (they would double count).
                s.run_start = start_ns
                s.total = value
            else:
                # No start time: the first point is only the baseline.
                s.run_start = time_ns
                s.total = 0.0
        else:
            if start_ns is not None:
                s.run_start = start_ns
                s.total = value
                if after is None or start_ns >= after:
                    s.push(start_ns, time_ns, value)
                # else: overlaps data already in the ring (a temporality change): as for
                # a cumulative restart, the mean uses it, windows and peaks do not.
            else:
                # An increment without a span cannot be turned into a rate: this point
                # only opens the series.
                s.run_start = time_ns
                s.total = 0.0
            s.start_ns = start_ns

    def _admit(self, time_ns: int) -> bool:
        if len(self._series) < self.config.max_series:
            return True
        now = self._now(None)
        # Evict at most once a second: a full table must not make every point O(n).
        if self._last_evict_ns is None or now - self._last_evict_ns >= NS_PER_S:
            self._last_evict_ns = now
            self.evict_stale(now)
        return len(self._series) < self.config.max_series

    def _now(self, now_ns: int | None) -> int:
        return self._clock() if now_ns is None else now_ns

    # -- output ----------------------------------------------------------------------
    def rates(self, key: Hashable, now_ns: int | None = None) -> SeriesRates | None:
        """Rates of one series at ``now_ns`` (default: the clock), or ``None`` if unknown."""
        s = self._series.get(key)
        if s is None:
            return None
        return self._compute(s, self._now(now_ns))

    def items(self, now_ns: int | None = None) -> Iterator[tuple[Hashable, SeriesRates]]:
        """Yield ``(key, rates)`` for every tracked series (a snapshot of the keys)."""
        now = self._now(now_ns)
        for key, s in list(self._series.items()):
            yield key, self._compute(s, now)

    def evict_stale(self, now_ns: int | None = None) -> int:
        """Forget series whose last point is older than ``stale_after_s``; return how many."""
        limit = self._now(now_ns) - self._stale_ns
        stale = [k for k, s in self._series.items() if s.last_t < limit]
        for k in stale:
            del self._series[k]
        return len(stale)

    def anomaly_counts(self) -> dict[str, int]:
        """Counts of every reason reported so far (rejections and accepted anomalies)."""
        return dict(self._anomalies)

    def __len__(self) -> int:
        return len(self._series)

    def _compute(self, s: _Series, now: int) -> SeriesRates:
        mean, span_s, wvals, pvals = self._values(s, now, True)
        return SeriesRates(mean, span_s, dict(zip(self.config.windows_s, wvals, strict=True)),
                           dict(zip(self.config.peak_subwindows_s, pvals, strict=True)), s.total)

    def rate_values(self, key: Hashable, now_ns: int | None = None, peaks: bool = True
                    ) -> tuple[float | None, float, list[float | None], list[float | None],
                               float] | None:
        """:meth:`rates` as plain lists, for glue that reads many series.

        Returns:
            ``(mean_rate, span_s, window rates, peak rates, total)`` with the rates in the
            order of ``config.windows_s`` / ``config.peak_subwindows_s``, or ``None`` if the
            series is unknown. With ``peaks=False`` the peaks are not computed (``None``).
        """
        s = self._series.get(key)
        if s is None:
            return None
        mean, span_s, wvals, pvals = self._values(s, self._now(now_ns), peaks)
        return mean, span_s, wvals, pvals, s.total

    def window_items(self, window_s: float, now_ns: int | None = None
                     ) -> Iterator[tuple[Hashable, float | None, float | None]]:
        """Yield ``(key, window rate, mean rate)`` of every series; no peaks are computed.

        ``window_s`` is one of ``config.windows_s``; the window rate is exactly
        ``rates(key).window_rates[window_s]`` and the mean ``rates(key).mean_rate``.
        """
        w_ns = next((wn for w, wn in self._windows_ns if w == window_s), None)
        if w_ns is None:
            raise ValueError("window_s must be one of config.windows_s")
        now = self._now(now_ns)
        for key, s in list(self._series.items()):
            span_ns = s.last_t - s.run_start
            mean = s.total / (span_ns / NS_PER_S) if span_ns > 0 else None
            yield key, self._window(s, now, w_ns), mean

    def _window(self, s: _Series, now: int, w_ns: int) -> float | None:
        """Rate over one trailing window, read from the ring in place (no copies)."""
        n = s.n
        lo = now - w_ns
        if n == 0 or s.evicted_t1 > lo:
            return None
        t0, t1, inc = s.t0, s.t1, s.inc
        size = len(t1)
        p = s.pos if n == size else 0  # chronological index c is ring slot (p + c) % size
        hi = _ring_bisect(t1, now, p, n, bisect_right)
        i = _ring_bisect(t0, lo, p, n, bisect_left)
        if i >= hi:
            return None
        a, b = p + i, p + hi
        dur = t1[(b - 1) % size] - t0[a % size]
        if dur <= 0:
            return None
        if b <= size:
            tot = sum(inc[a:b])
        elif a >= size:
            tot = sum(inc[a - size:b - size])
        else:
            tot = sum(inc[a:] + inc[:b - size])
        return tot * NS_PER_S / dur

    def _values(self, s: _Series, now: int, peaks: bool
                ) -> tuple[float | None, float, list[float | None], list[float | None]]:
        span_ns = s.last_t - s.run_start
        span_s = span_ns / NS_PER_S
        mean = s.total / span_s if span_ns > 0 else None
        if s.n == 0:
            return mean, span_s, [None] * len(self._windows_ns), [None] * len(self._peaks_ns)
        t0s, t1s, incs = s.chronological()
        hi = len(t1s)
        late = t1s[hi - 1] > now
        if late:
            hi = bisect_right(t1s, now)  # intervals ending after ``now`` are not used
        wvals: list[float | None] = []
        for _w, w_ns in self._windows_ns:
            lo = now - w_ns
            i = bisect_left(t0s, lo, 0, hi)
            if s.evicted_t1 > lo or i >= hi:
                # Nothing inside, or the ring no longer reaches back to the window start.
                wvals.append(None)
                continue
            dur = t1s[hi - 1] - t0s[i]
            wvals.append(sum(incs[i:hi]) * NS_PER_S / dur if dur > 0 else None)
        if not peaks:
            return mean, span_s, wvals, [None] * len(self._peaks_ns)
        if late:
            # Evaluated before the newest interval's end (a replay or a late ``now``):
            # the stacks hold intervals past ``now``, so scan the ring instead.
            return mean, span_s, wvals, _rescan(t0s, t1s, incs, s.evicted_t1, now, [],
                                                self._horizon_ns, self._peaks_ns)[1]
        self._catch_up(s, t0s, t1s, incs)
        lo = now - self._horizon_ns
        pvals: list[float | None] = []
        for starts, rates in s.pk:  # type: ignore[union-attr]
            # The best run starting inside the horizon: the stack's rates decrease, so
            # it is the first entry whose run starts at or after ``lo``.
            k = bisect_left(starts, lo)
            pvals.append(rates[k] if k < len(rates) else None)
        return mean, span_s, wvals, pvals

    def _catch_up(self, s: _Series, t0s: array, t1s: array, incs: array) -> None:
        """Fold the intervals pushed since the last read into the per-sub-window stacks.

        For each new interval j and sub-window, the run ending at j starts at the last
        interval i whose start is at least ``need`` (0.95 x the sub-window) before j's
        end; it counts if it lasts at most ``cap`` (2 x the sub-window). i and the run's
        rate depend only on intervals up to j, so each interval is looked at once, not
        on every read. The stack keeps ``(start of i, rate)`` with strictly decreasing
        rates (an entry with a later start and a rate at least as high dominates it), so
        the peak over any horizon is the first entry starting inside it. Entries whose
        run starts before the oldest interval still in the ring are dropped (a rescan of
        the ring would not see them), and so are those starting before the horizon of
        the newest interval: no read can use them again.
        """
        pk = s.pk
        if pk is None:
            pk = s.pk = [(array("q"), array("d")) for _ in self._peaks_ns]
        n = len(t1s)
        if t1s[n - 1] == s.pk_t1:
            return  # nothing new (and so nothing left the ring either)
        a = bisect_right(t1s, s.pk_t1)
        s.pk_t1 = t1s[n - 1]
        oldest = t0s[0]
        # Runs starting before this can never count again: their first interval left
        # the ring, or the horizon of any read (reads are at or after the newest end).
        dead = max(oldest, t1s[n - 1] - self._horizon_ns)
        new_t1 = t1s[a:].tolist()
        new_t0: list[int] = []
        durs: list[int] = []
        for (_sw, need, cap), (starts, rates) in zip(self._peaks_ns, pk, strict=True):
            k = bisect_left(starts, dead)
            if k:
                del starts[:k]
                del rates[:k]
            if not new_t1:
                continue
            if not durs:
                new_t0 = t0s[a:].tolist()
                durs = list(map(sub, new_t1, new_t0))
            if min(durs) >= need:
                # Every new interval alone spans the sub-window: its run is itself.
                st = new_t0
                rs = list(map(truediv, map(mul, incs[a:], repeat(NS_PER_S)), durs))
                if max(durs) > cap:
                    rs = [r if d <= cap else -1.0 for r, d in zip(rs, durs, strict=True)]
                _push_runs(starts, rates, st, rs)
                continue
            # Intervals ending less than ``need`` after the oldest start have no run.
            skip = bisect_left(new_t1, oldest + need)
            if skip < len(new_t1):
                st, rs = _runs(t0s, incs, a + skip, new_t1[skip:] if skip else new_t1,
                               need, cap)
                _push_runs(starts, rates, st, rs)


def _runs(t0s: array, incs: array, a: int, new_t1: list[int], need: int, cap: int
          ) -> tuple[list[int], list[float]]:
    """Start and rate of the run ending at each interval from ``a`` on (-1.0: none).

    The run ending at interval j starts at the last interval i whose start is at least
    ``need`` before j's end; it counts if it lasts at most ``cap``. Regular sampling
    puts every run start the same number of intervals back: that guess is checked with
    C-level passes and only replaced by one ``bisect`` per interval when it fails.
    """
    m = len(new_t1)
    xs = list(map(sub, new_t1, repeat(need)))
    i0 = bisect_right(t0s, xs[0]) - 1  # run start of the first new interval
    back = a - i0
    st: list[int] | None = None
    if i0 >= 0:
        cand = t0s[i0:i0 + m].tolist()
        if all(map(le, cand, xs)) and (back == 0 or all(map(gt, t0s[i0 + 1:i0 + 1 + m], xs))):
            st = cand
            base = i0
            prefix = [0.0]
            prefix.extend(accumulate(incs[base:]))
            sums = map(sub, prefix[back + 1:back + 1 + m], prefix[:m])
    if st is None:
        base = i0 if i0 > 0 else 0
        t0w = t0s[base:].tolist()
        idx = list(map(sub, map(bisect_right, repeat(t0w), xs), repeat(1)))
        if min(idx) < 0:
            # No interval in the ring starts early enough: point those at the oldest
            # start (a positive duration); their runs are dropped below.
            idx = [i if i >= 0 else 0 for i in idx]
        st = list(map(t0w.__getitem__, idx))
        prefix = [0.0]
        prefix.extend(accumulate(incs[base:]))
        sums = map(sub, map(prefix.__getitem__, range(a - base + 1, a - base + 1 + m)),
                   map(prefix.__getitem__, idx))
    run = list(map(sub, new_t1, st))
    rs = list(map(truediv, map(mul, sums, repeat(NS_PER_S)), run))
    if max(run) > cap or st[0] > xs[0]:
        # Too long a run, or none found: not a peak of this sub-window.
        rs = [r if d <= cap and t <= x else -1.0
              for r, d, t, x in zip(rs, run, st, xs, strict=True)]
    return st, rs


def _push_runs(starts: array, rates: array, st: list[int], rs: list[float]) -> None:
    """Append runs (in time order) to a stack of strictly decreasing rates.

    The batch's survivors are its strict suffix maxima (each the last occurrence of the
    largest rate after the previous one); they remove every older entry that is not
    above the batch's maximum. Rates below 0 mark intervals without a run.
    """
    top = max(rs)
    if top < 0:
        return
    while rates and rates[-1] <= top:
        rates.pop()
        starts.pop()
    m = len(rs)
    rev = rs[::-1]
    lo = 0
    for _ in range(16):
        j = m - 1 - rev.index(top, 0, m - lo)
        starts.append(st[j])
        rates.append(top)
        lo = j + 1
        if lo == m:
            return
        top = max(rs[lo:])
        if top < 0:
            return
    # Many survivors (falling rates): the rest in C-level passes.
    tail = rs[lo:]
    suffix = list(accumulate(reversed(tail), max))
    suffix.reverse()
    suffix.append(-1.0)
    keep = list(map(gt, tail, islice(suffix, 1, None)))
    starts.extend(compress(st[lo:], keep))
    rates.extend(compress(tail, keep))


def _ring_bisect(arr: array, x: int, p: int, n: int,
                 bisect: Callable[..., int]) -> int:
    """``bisect`` over the chronological view of a ring whose oldest slot is ``p``."""
    if p == 0:
        return bisect(arr, x, 0, n)
    last_old = arr[n - 1]  # newest of the older segment [p, n)
    if last_old < x or (last_old == x and bisect is bisect_right):
        return (n - p) + bisect(arr, x, 0, p)
    return bisect(arr, x, p, n) - p


def _rescan(t0s: array, t1s: array, incs: array, evicted_t1: int, now: int,
            windows_ns: list[tuple[float, int]], horizon_ns: int,
            peaks_ns: list[tuple[float, int, int]]
            ) -> tuple[list[float | None], list[float | None]]:
    """Windows and peaks by scanning the whole ring (the reference the stacks must match).

    Used when a series is evaluated before its newest interval's end, and by the tests
    as the definition of the incremental result.
    """
    lo_all = bisect_left(t0s, now - horizon_ns)
    hi = bisect_right(t1s, now)  # intervals ending after ``now`` are not used
    if hi < lo_all:
        hi = lo_all
    prefix = [0.0]
    prefix.extend(accumulate(incs[lo_all:hi]))

    windows: list[float | None] = []
    for _w, w_ns in windows_ns:
        lo = now - w_ns
        i = bisect_left(t0s, lo, lo_all, hi) if hi > lo_all else hi
        if evicted_t1 > lo or i >= hi:
            windows.append(None)
            continue
        dur = t1s[hi - 1] - t0s[i]
        windows.append((prefix[hi - lo_all] - prefix[i - lo_all]) * NS_PER_S / dur
                       if dur > 0 else None)

    peaks: list[float | None] = []
    if hi > lo_all:
        a0, a1 = t0s[lo_all:hi], t1s[lo_all:hi]
        durs = list(map(sub, a1, a0))
        min_dur = min(durs)
    for _sw, need, cap in peaks_ns:
        if hi <= lo_all:
            peaks.append(None)
        elif min_dur >= need:
            # Every interval alone spans the sub-window: its group is itself.
            rates = [x * NS_PER_S / d for x, d in zip(incs[lo_all:hi], durs, strict=True)
                     if d <= cap]
            peaks.append(max(rates) if rates else None)
        else:
            peaks.append(_peak_groups(a0, a1, prefix, need, cap))
    return windows, peaks


def _peak_groups(t0s: array, t1s: array, prefix: list[float], need: int, cap: int
                 ) -> float | None:
    """Largest rate over the shortest runs of intervals lasting ``need..cap`` ns.

    The run ending at interval j starts at the last interval i whose start is at least
    ``need`` before j's end (i <= j because intervals are sorted and disjoint).
    """
    a0 = t0s.tolist()
    ends = t1s.tolist()
    starts = map(bisect_right, repeat(a0), [e - need for e in ends])
    best = -1.0
    for j, (b, end) in enumerate(zip(starts, ends, strict=True)):
        if b:
            dur = end - a0[b - 1]
            if dur <= cap:
                r = (prefix[j + 1] - prefix[b - 1]) / dur
                if r > best:
                    best = r
    return best * NS_PER_S if best >= 0 else None
