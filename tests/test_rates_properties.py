"""Properties of RateEngine over generated inputs (hypothesis)."""

import itertools
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_rtc.core.rates import NO_RECORDED_VALUE, REJECT_REASONS, RateConfig, RateEngine

S = 1_000_000_000
T0 = 1_700_000_000 * S
CFG = RateConfig(peak_subwindows_s=(1.0, 5.0))
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# A piecewise-constant instantaneous rate: (duration in ms, rate per second) segments.
segments = st.lists(
    st.tuples(st.integers(1, 4000), st.floats(0, 1e9, allow_nan=False)),
    min_size=1, max_size=40,
)
# Sampling instants: gaps between samples, in ms.
sample_gaps = st.lists(st.integers(1, 7000), min_size=1, max_size=120)
# Where the reads fall: after which sample index (sorted, deduplicated by the test).
read_after = st.lists(st.integers(0, 119), max_size=8)


def cumulative_at(segs, t_ns):
    """Exact integral of the piecewise-constant rate from T0 to t (rate 0 after the end)."""
    acc, t = 0.0, T0
    for dur_ms, rate in segs:
        end = t + dur_ms * 1_000_000
        if t_ns <= t:
            break
        acc += rate * (min(end, t_ns) - t) / S
        t = end
    return acc


def feed(segs, gaps, reads=(), cfg=CFG, start=True):
    """Samples every ``gaps``; reads after the given sample indices and at the end."""
    eng = RateEngine(cfg, clock=lambda: T0)
    t = T0
    eng.observe("k", 0.0, t, T0 if start else 0)
    readings = []
    reads = set(reads)
    for n, g in enumerate(gaps):
        t += g * 1_000_000
        assert eng.observe("k", cumulative_at(segs, t), t, T0 if start else 0)
        if n in reads:
            readings += eng.read(t)
    readings += eng.read(t)
    return eng, t, readings


@FAST
@given(segments, sample_gaps, read_after)
def test_readings_tile_time_and_carry_the_true_increase(segs, gaps, reads):
    _, t, readings = feed(segs, gaps, reads)
    assert readings
    assert readings[0].start_ns == T0 and readings[-1].time_ns == t
    for a, b in itertools.pairwise(readings):
        assert a.time_ns == b.start_ns  # consecutive spans tile the time line
    for r in readings:
        want = cumulative_at(segs, r.time_ns) - cumulative_at(segs, r.start_ns)
        got = r.mean * (r.time_ns - r.start_ns) / S
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-6)


@FAST
@given(segments, sample_gaps, read_after)
def test_means_and_peaks_never_exceed_the_true_peak(segs, gaps, reads):
    _, _, readings = feed(segs, gaps, reads)
    true_max = max(rate for _, rate in segs)
    tol = 1e-9 * true_max + 1e-6
    for r in readings:
        for v in (r.mean, *r.peaks):
            assert v is None or 0 <= v <= true_max + tol


@FAST
@given(st.floats(1, 1e9), st.integers(1, 60), st.integers(20, 60))
def test_a_burst_longer_than_twice_the_subwindow_is_found_exactly(rate, start_s, length_s):
    """1 s samples; constant burst of ``length_s`` seconds: both peaks equal the rate."""
    segs = [(start_s * 1000, 0.0), (length_s * 1000, rate), (5000, 0.0)]
    _, _, [r] = feed(segs, [1000] * (start_s + length_s + 5))
    assert math.isclose(r.peaks[0], rate, rel_tol=1e-9)
    assert math.isclose(r.peaks[1], rate, rel_tol=1e-9)


def _defined_peaks(intervals, peaks_s):
    """Peaks by the definition in docs/rates.md, brute force over one span's intervals.

    ``intervals``: every interval of the series as ``(t0, t1, inc, in_span)`` in time order.
    The run ending at interval j is the shortest run of consecutive contiguous intervals
    ending at j lasting >= 0.95 x S; it counts if it lasts <= 2 x S and j is in the span.
    """
    out = []
    for sw in peaks_s:
        need, cap = int(sw * 0.95 * S), int(sw * 2.0 * S)
        best = None
        for j, (_a, end, _x, in_span) in enumerate(intervals):
            if not in_span:
                continue
            i = j
            while i > 0 and end - intervals[i][0] < need and intervals[i - 1][1] == intervals[i][0]:
                i -= 1
            dur = end - intervals[i][0]
            if need <= dur <= cap:
                r = math.fsum(x for _a, _b, x, _s in intervals[i:j + 1]) * S / dur
                best = r if best is None else max(best, r)
        out.append(best)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([(1.0,), (1.0, 5.0), (0.5, 2.0), (0.25, 1.0, 3.0)]),
       st.lists(st.tuples(st.sampled_from(["cum", "cum", "cum", "reset", "read", "marker",
                                           "baseline"]),
                          st.one_of(st.integers(1, 3000),
                                    st.sampled_from([1000, 999, 1001, 250, 5000])),
                          st.floats(0, 1e6, allow_nan=False)),
                min_size=1, max_size=120))
def test_incremental_peaks_equal_the_definition(peaks_s, steps):
    """Running peaks (updated per point, O(1) amortised) equal the brute-force definition,
    across sub-second and jittered samples, resets, markers, new baselines and reads."""
    eng = RateEngine(RateConfig(peak_subwindows_s=peaks_s, gap_after_s=20.0),
                     clock=lambda: T0)
    t, v, start = T0, 0.0, T0
    eng.observe("k", 0.0, t, start)  # start == time: a baseline
    intervals: list[list] = []  # [t0, t1, inc, in current span]
    stale = False
    # reads in a row without a point; a point since the last read; the series ended
    silent, pointed, ended = 0, True, False  # the first point is before the steps
    for kind, gap_ms, x in steps:
        if kind not in ("read", "marker"):
            pointed = True
        if kind == "read":
            got = eng.read(t + 1)
            want = _defined_peaks([(a, b, c, d) for a, b, c, d in intervals], peaks_s)
            if any(d for *_, d in intervals):
                [r] = got
                for g, w in zip(r.peaks, want, strict=True):
                    assert (g is None) == (w is None), (r.peaks, want)
                    if g is not None:
                        assert math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-6)
            for iv in intervals:
                iv[3] = False
            silent = 0 if pointed else silent + 1
            pointed = False
            if silent >= 2:
                ended = True  # its final reading; the next point starts a new series
            continue
        t_new = t + gap_ms * 1_000_000
        if kind == "marker":
            # The start time shows continuity: the next point continues the run.
            eng.observe("k", 0.0, t_new, start, True, NO_RECORDED_VALUE)
            stale = True
            continue
        if kind == "baseline":
            # A marker, then a point of a new run starting at its own time: a baseline.
            eng.observe("k", 0.0, t_new, start, True, NO_RECORDED_VALUE)
            v, start = x, t_new
            assert eng.observe("k", v, t_new, start)
            intervals.append([t_new, t_new, 0.0, False])  # breaks every chain
            t, stale, ended = t_new, False, False
            continue
        if kind == "reset":
            v_new = x / 2
            inc = v_new if v_new < v else v_new - v
        else:
            v_new = v + x
            inc = x
        assert eng.observe("k", v_new, t_new, start)
        if ended:
            # A new series: its first point's own span (start, t] is an interval unless
            # it is too short for a non-zero value (then a baseline).
            if v_new > 0 and t_new - start < int(0.95 * peaks_s[0] * S):
                intervals.append([t_new, t_new, 0.0, False])
            else:
                intervals.append([start, t_new, v_new, True])
            ended = False
        elif stale and v_new < v:
            # After a marker a decrease is no continuity: a first point. Its own span
            # (start, t] counts if it starts at or after the last point and is long
            # enough for its value; otherwise it is a baseline.
            if start >= t and (v_new == 0 or t_new - start >= int(0.95 * peaks_s[0] * S)):
                intervals.append([start, t_new, v_new, True])
            else:
                intervals.append([t_new, t_new, 0.0, False])
        else:
            intervals.append([t, t_new, inc, True])
        stale = False
        t, v = t_new, v_new


@FAST
@given(segments, sample_gaps, st.integers(1, 4), st.lists(st.integers(1, 30_000), min_size=1,
                                                            max_size=8))
def test_a_quiet_series_never_rises_then_reads_0_once_and_ends(segs, gaps, quiet, later_ms):
    """After its last sample a series gives its last reading, then nothing until
    ``quiet_intervals`` silent reads, then exactly one final reading of 0, then nothing."""
    cfg = RateConfig(quiet_intervals=quiet)
    eng, t, readings = feed(segs, gaps, cfg=cfg)
    last = readings[-1]
    assert not last.final
    after = []
    now = t
    for ms in later_ms + [1] * (quiet + 2):
        now += ms * 1_000_000
        after.append(eng.read(now))
    flat = [r for rs in after for r in rs]
    assert len(flat) == 1, flat
    [final] = flat
    assert final.final and final.mean == 0.0 and all(p == 0.0 for p in final.peaks)
    assert final.start_ns == t  # from the last point to the read: it never rises
    assert after.index([final]) == quiet - 1
    assert "k" not in eng
    assert eng.anomaly_counts().get("quiet") == 1


@FAST
@given(segments, st.lists(st.integers(500, 1500), min_size=3, max_size=80), st.data())
def test_a_staleness_marker_with_continuity_changes_nothing(segs, gaps, data):
    """Markers between samples of a series whose start time shows continuity: the
    readings are exactly those without the markers (neither a value nor a reset)."""
    marks = data.draw(st.sets(st.integers(0, len(gaps) - 2)))
    plain = RateEngine(CFG, clock=lambda: T0)
    marked = RateEngine(CFG, clock=lambda: T0)
    t = T0
    for e in (plain, marked):
        e.observe("k", 0.0, t, T0)
    for n, g in enumerate(gaps):
        t += g * 1_000_000
        v = cumulative_at(segs, t)
        plain.observe("k", v, t, T0)
        marked.observe("k", v, t, T0)
        if n in marks:
            marked.observe("k", 0.0, t + 1, T0, True, NO_RECORDED_VALUE)
    a, b = plain.read(t), marked.read(t)
    assert [(r.mean, r.start_ns, r.time_ns, r.peaks) for r in a] == \
        [(r.mean, r.start_ns, r.time_ns, r.peaks) for r in b]
    assert marked.anomaly_counts().get("stale", 0) == len(marks)


any_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.none(), st.text(max_size=2), st.booleans(),
)
any_time = st.one_of(st.integers(-(2**65), 2**65), st.floats(), st.none(),
                     st.integers(T0, T0 + 100 * S))
point = st.tuples(st.sampled_from(["a", "b", ("c", 1)]), any_value, any_time,
                  st.one_of(st.none(), any_time), st.booleans(),
                  st.one_of(st.sampled_from([0, 0, 1, 2]), st.none(), st.text(max_size=1)))


@settings(max_examples=300, deadline=None)
@given(st.lists(point, max_size=60), st.sampled_from([None, 2**32]),
       st.lists(st.integers(T0, T0 + 200 * S), max_size=4))
def test_no_exception_on_any_input_and_every_rejection_is_counted(points, mod, reads):
    counted = []
    eng = RateEngine(RateConfig(max_series=2, wrap_modulus=mod, peak_subwindows_s=(1.0, 5.0),
                                windows_s=(10.0,)),
                     clock=lambda: T0, on_anomaly=counted.append)
    rejected = 0
    for key, value, t, start, cum, flags in points:
        if not eng.observe(key, value, t, start, cum, flags):
            rejected += 1
    assert sum(1 for r in counted if r in REJECT_REASONS) == rejected
    for now in [*reads, T0 + 300 * S]:
        for r in eng.read(now):
            for v in (r.mean, *r.peaks, *(w[0] for w in r.windows if w)):
                assert v is None or (math.isfinite(v) and v >= 0)
            assert r.time_ns > r.start_ns


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 5), st.lists(st.tuples(
    st.sampled_from(["tick", "tick", "tick", "tick", "read", "reset", "restart", "gap",
                     "fine", "bad", "forget", "single"]),
    st.integers(0, 4), st.floats(0, 1e6, allow_nan=False)), max_size=60),
    st.sampled_from([0.0, 0.0, 3.0]))
def test_observe_many_is_observe_for_each_series(n, steps, min_span):
    """The column block of a sampler's rows gives exactly what one observe() per row
    gives: readings, quiet endings and anomaly counts, through every kind of fallback,
    with and without a reading span that holds short data."""
    many = RateEngine(RateConfig(max_series=4, quiet_intervals=2), clock=lambda: T0)
    each = RateEngine(RateConfig(max_series=4, quiet_intervals=2), clock=lambda: T0)
    keys = [f"k{i}" for i in range(n)]
    values = [0.0] * n
    starts = [T0] * n
    t = T0
    for kind, i, x in steps:
        i %= n
        if kind == "read":
            assert _by_key(many.read(t + 1, None, min_span)) == _by_key(
                each.read(t + 1, None, min_span))
            continue
        if kind == "forget":
            many.forget(keys[i])
            each.forget(keys[i])
            continue
        t += {"gap": 90 * S, "fine": S // 4}.get(kind, S)
        vals = [v + x * (j + 1) for j, v in enumerate(values)]
        if kind == "reset":
            vals[i] = x / 3
        if kind == "restart":
            starts[i] = t - S // 2
        row = list(vals)
        if kind == "bad":
            row[i] = float("nan")
        if kind == "single":  # one series fed alone, through observe()
            many.observe(keys[i], row[i], t, starts[i], True, 0, i)
            each.observe(keys[i], row[i], t, starts[i], True, 0, i)
            values[i] = row[i]
            continue
        many.observe_many(keys, row, t, list(starts), list(range(n)))
        for k, v, st_, tag in zip(keys, row, starts, range(n), strict=True):
            each.observe(k, v, t, st_, True, 0, tag)
        values = [v if v == v else values[j] for j, v in enumerate(row)]
    assert _by_key(many.read(t + 1)) == _by_key(each.read(t + 1))
    assert many.anomaly_counts() == each.anomaly_counts()
    assert len(many) == len(each)


def _by_key(readings):
    return sorted(readings, key=lambda r: r.key)  # the order of readings is not specified


def test_observe_many_takes_the_column_path_for_steady_samples():
    eng = RateEngine(clock=lambda: T0)
    keys = ["a", "b", "c"]
    for k in range(1, 5):
        eng.observe_many(keys, [10.0 * k, 20.0 * k, 0.0], T0 + k * S, [T0] * 3, [0, 1, 2])
    assert eng._block is not None and eng._block.keys is keys
    [a, b, c] = eng.read(T0 + 4 * S)
    assert (a.mean, b.mean, c.mean) == (10.0, 20.0, 0.0)
    assert (a.start_ns, a.time_ns, a.peaks) == (T0, T0 + 4 * S, (10.0,))


@FAST
@given(st.sampled_from([0.0, 2.0, 10.0]),
       st.lists(st.one_of(st.integers(100, 4000), st.just("read")), max_size=80))
def test_a_reading_span_holds_short_data_without_losing_or_repeating_any(min_span, steps):
    """With ``min_span_s`` (a collector's reading span), readings still tile the series'
    time line and carry every increase exactly once; a reading shorter than 0.95 x the
    span only comes from a read that got no point since the previous read."""
    eng = RateEngine(RateConfig(quiet_intervals=1000), clock=lambda: T0)
    t, v = T0, 0.0
    eng.observe("k", v, t, 0)  # start unset: a baseline
    total = read_total = 0.0
    last_end, pointed = T0, False
    for step in [*steps, "read", "read"]:  # two reads at the end: nothing stays held
        if step == "read":
            for r in eng.read(t + 1, None, min_span):
                assert not r.final and r.start_ns == last_end  # tiles the time line
                assert pointed is False or r.time_ns - r.start_ns >= int(0.95 * min_span * S)
                read_total += r.mean * (r.time_ns - r.start_ns) / S
                last_end = r.time_ns
            pointed = False
            continue
        t += step * 1_000_000
        v += step / 7
        total += step / 7
        eng.observe("k", v, t, 0)
        pointed = True
    assert math.isclose(read_total, total, rel_tol=1e-9, abs_tol=1e-6)
