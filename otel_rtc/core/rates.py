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
for trailing windows; :mod:`otel_rtc.core.rate_series`), and a reading costs O(1) per
output. A reading covers the data
since the series' previous reading (:meth:`RateEngine.read`); consecutive readings of a
series tile its time line. The contract, shared with the Go processor through the JSON
vectors in ``tests/vectors/rates/``, is ``docs/rates.md`` ("The v2 contract").

No extrapolation anywhere: every figure is a lower bound of what happened, and a peak
can never exceed the true peak of the input.

Pure module: stdlib and otel_rtc's pure core only, so the same code runs in a
collector's embedded interpreter and in-process. Not thread-safe: one engine per
consumer, or a lock held by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from otel_rtc.core.clock import NS_PER_S, Clock, wall_clock_ns
from otel_rtc.core.rate_series import MAX_VALUE, PEAK_JITTER, Series, SeriesBlock, SeriesRules

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

_MAX_TIME_NS = 2**63 - 1


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

    __slots__ = ("_anomalies", "_block", "_cap0", "_clock", "_gap_ns", "_interval", "_need0",
                 "_on_anomaly", "_rules", "_series", "_simple", "_vlimit", "config")

    def __init__(self, config: RateConfig = RateConfig(), *, clock: Clock = wall_clock_ns,
                 on_anomaly: OnAnomaly | None = None) -> None:
        if not isinstance(config, RateConfig):
            raise ValueError("config must be a RateConfig")
        self.config = config
        self._clock = clock
        self._on_anomaly = on_anomaly
        self._series: dict[Hashable, Any] = {}  # key -> Series, or the SeriesBlock holding it
        self._block: SeriesBlock | None = None
        self._anomalies: dict[str, int] = {}
        rules = self._rules = SeriesRules(config, self._note)
        # observe()'s fast path reads these from the engine's own slots: no lookup more.
        self._gap_ns, self._vlimit = rules.gap_ns, rules.vlimit
        self._need0, self._cap0 = rules.need0, rules.cap0
        self._simple = rules.simple  # the common case: the 1 s peak only, no windows
        self._interval = rules.interval

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
            # Its body is SeriesRules.push() inlined (keep the two in step): one method call
            # less per point keeps the core above its 1 M points/s target (bench_rates).
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
                if b.advance(values, time_ns, starts, self._rules):
                    return
            except Exception:  # a value of a wrong type: the per-series path counts it
                pass
        if b is not None:
            self._dissolve()
        observe = self.observe
        for key, value, start, tag in zip(keys, values, starts, tags, strict=True):
            observe(key, value, time_ns, start, True, 0, tag)
        if self._simple and keys:
            get = self._series.get
            b = SeriesBlock.of(keys, [get(k) for k in keys], starts)
            if b is not None:  # their series share a time line: one column block
                self._block = b
                for k in keys:
                    self._series[k] = b

    def _dissolve(self) -> None:
        """Give every series of the block its own state again (same values)."""
        b = self._block
        if b is None:
            return
        self._block = None
        for key, s in zip(b.keys, b.split(), strict=True):
            if self._series.get(key) is b:
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

    def _observe_slow(self, s: Series | None, key: Hashable, value: float, time_ns: int,
                      start_ns: int, cumulative: bool, flags: int, tag: Any) -> bool:
        if type(s) is SeriesBlock:
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
        if isinstance(value, int) and abs(value) > MAX_VALUE:
            return self._reject("out_of_range")
        value = float(value)
        if not math.isfinite(value):
            return self._reject("non_finite")
        if abs(value) > MAX_VALUE:
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
            s = Series(tag, cumulative)
            self._series[key] = s
            s.touched = True
            self._rules.open(s, value, time_ns, start_ns, None)
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
            self._rules.open(s, value, time_ns, start_ns, last_t)
            return True
        if cumulative:
            return self._rules.cumulative(s, value, time_ns, start_ns, last_t)
        return self._rules.delta(s, value, time_ns, start_ns, last_t)

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
        rules = self._rules
        windows_n = rules.windows_n
        out: list[Reading] = []
        append = out.append
        no_windows: tuple[None, ...] = (None,) * len(windows_n)
        simple = self._simple
        n_peaks = rules.n_peaks
        new = tuple.__new__
        block_done = False
        hold = int(min_span_s * PEAK_JITTER * NS_PER_S)  # the jitter tolerance of peaks
        for key in (list(series) if keys is None else keys):
            s = series.get(key)
            if s is None:
                continue
            if type(s) is SeriesBlock:
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
                wins = rules.windows(s, now) if windows_n else no_windows
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

    def _read_block(self, b: SeriesBlock, now: int, hold: int, out: list[Reading]) -> None:
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

    def forget(self, key: Hashable) -> bool:
        """Stop tracking ``key`` (no final reading).

        Returns:
            Whether the series had data not read yet (held by a reading span), which is
            lost with it: the caller counts it.
        """
        if type(self._series.get(key)) is SeriesBlock:
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
