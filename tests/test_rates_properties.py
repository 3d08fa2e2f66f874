"""Properties of RateEngine over generated inputs (hypothesis)."""

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_rtc.core.rates import REJECT_REASONS, RateConfig, RateEngine

S = 1_000_000_000
T0 = 1_700_000_000 * S
CFG = RateConfig(windows_s=(5.0, 30.0, 120.0), peak_subwindows_s=(1.0, 5.0),
                 max_samples_per_series=400)
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# A piecewise-constant instantaneous rate: (duration in ms, rate per second) segments.
segments = st.lists(
    st.tuples(st.integers(1, 4000), st.floats(0, 1e9, allow_nan=False)),
    min_size=1, max_size=40,
)
# Sampling instants: gaps between samples, in ms.
sample_gaps = st.lists(st.integers(1, 7000), min_size=1, max_size=120)


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


def feed(segs, gaps, start=True):
    eng = RateEngine(CFG, clock=lambda: T0)
    t = T0
    eng.observe("k", 0.0, t, start_ns=T0 if start else None)
    for g in gaps:
        t += g * 1_000_000
        assert eng.observe("k", cumulative_at(segs, t), t, start_ns=T0 if start else None)
    return eng, t


@FAST
@given(segments, sample_gaps)
def test_mean_times_span_is_total_and_total_is_the_true_increase(segs, gaps):
    eng, t = feed(segs, gaps)
    r = eng.rates("k", t)
    truth = cumulative_at(segs, t)
    assert math.isclose(r.total, truth, rel_tol=1e-9, abs_tol=1e-6)
    assert r.span_s == (t - T0) / S
    assert math.isclose(r.mean_rate * r.span_s, r.total, rel_tol=1e-9, abs_tol=1e-6)


@FAST
@given(segments, sample_gaps)
def test_peaks_and_windows_never_exceed_the_true_peak(segs, gaps):
    eng, t = feed(segs, gaps)
    true_max = max(rate for _, rate in segs)
    r = eng.rates("k", t)
    tol = 1e-9 * true_max + 1e-6
    for v in (*r.peak_rates.values(), *r.window_rates.values(), r.mean_rate):
        assert v is None or 0 <= v <= true_max + tol


@FAST
@given(st.floats(1, 1e9), st.integers(1, 60), st.integers(20, 60))
def test_a_burst_longer_than_twice_the_subwindow_is_found_exactly(rate, start_s, length_s):
    """1 s samples; constant burst of ``length_s`` seconds: both peaks equal the rate."""
    segs = [(start_s * 1000, 0.0), (length_s * 1000, rate), (5000, 0.0)]
    eng, t = feed(segs, [1000] * (start_s + length_s + 5))
    r = eng.rates("k", t)
    assert math.isclose(r.peak_rates[1.0], rate, rel_tol=1e-9)
    assert math.isclose(r.peak_rates[5.0], rate, rel_tol=1e-9)


@FAST
@given(segments, sample_gaps, st.integers(0, 200))
def test_window_rates_equal_the_true_mean_over_their_covered_span(segs, gaps, back_s):
    eng, t = feed(segs, gaps)
    now = t + back_s * S // 10
    r = eng.rates("k", now)
    # Brute force over the same samples.
    times = [T0]
    for g in gaps:
        times.append(times[-1] + g * 1_000_000)
    for w, got in r.window_rates.items():
        inside = [x for x in times if x >= now - int(w * S) and x <= now]
        if len(inside) < 2:
            assert got is None
        else:
            want = (cumulative_at(segs, inside[-1]) - cumulative_at(segs, inside[0])) / (
                (inside[-1] - inside[0]) / S)
            assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-3)


any_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.none(), st.text(max_size=2), st.booleans(),
)
any_time = st.one_of(st.integers(-(2**65), 2**65), st.floats(), st.none(),
                     st.integers(T0, T0 + 100 * S))
point = st.tuples(st.sampled_from(["a", "b", ("c", 1)]), any_value, any_time,
                  st.one_of(st.none(), any_time), st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.lists(point, max_size=60), st.sampled_from([None, 2**32]))
def test_no_exception_on_any_input_and_every_rejection_is_counted(points, mod):
    counted = []
    eng = RateEngine(RateConfig(max_series=2, wrap_modulus=mod, max_samples_per_series=8),
                     clock=lambda: T0, on_drop=counted.append)
    rejected = 0
    for key, value, t, start, cum in points:
        if not eng.observe(key, value, t, start_ns=start, cumulative=cum):
            rejected += 1
    assert sum(1 for r in counted if r in REJECT_REASONS) == rejected
    for _, r in eng.items(T0 + 50 * S):
        for v in (r.mean_rate, *r.window_rates.values(), *r.peak_rates.values()):
            assert v is None or (math.isfinite(v) and v >= 0)
        assert math.isfinite(r.total) and r.total >= 0


# -- incremental peaks == the definition, over whatever is in the ring -------------------

def _defined_peaks(eng, key, now):
    """Peaks by the definition in docs/rates.md, brute force over the ring's intervals.

    For each interval j ending by ``now``, the run ending at j starts at the last
    interval i whose start is at least 0.95 x the sub-window before j's end; it counts
    if i lies inside the horizon (and is still in the ring) and the run lasts at most
    2 x the sub-window. Rate = sum of the run's increments / its duration.
    """
    s = eng._series[key]
    t0s, t1s, incs = (list(x) for x in s.chronological())
    horizon = eng._horizon_ns
    out = {}
    for sw, need, cap in eng._peaks_ns:
        best = None
        for j, end in enumerate(t1s):
            if end > now:
                continue
            starts = [i for i in range(j + 1) if t0s[i] <= end - need]
            if not starts:
                continue
            i = starts[-1]
            if t0s[i] < now - horizon:
                continue
            dur = end - t0s[i]
            if dur > cap:
                continue
            r = math.fsum(incs[i:j + 1]) * S / dur
            best = r if best is None else max(best, r)
        out[sw] = best
    return out


@st.composite
def _histories(draw):
    ring = draw(st.integers(2, 40))
    subs = draw(st.sampled_from([(1.0, 5.0), (1.0,), (0.5, 2.0), (0.25, 1.0, 3.0)]))
    cfg = RateConfig(windows_s=(5.0, 30.0), peak_subwindows_s=subs,
                     max_samples_per_series=ring, gap_after_s=20.0)
    steps = draw(st.lists(st.tuples(
        st.sampled_from(["cum", "cum", "cum", "cum", "reset", "restart", "delta", "read"]),
        st.one_of(st.integers(1, 3000), st.sampled_from([1000, 1000, 999, 1001, 250, 5000])),
        st.floats(0, 1e6, allow_nan=False), st.integers(-2000, 3000)),
        min_size=1, max_size=120))
    return cfg, steps


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_histories())
def test_incremental_peaks_equal_the_definition_and_the_rescan(history):
    """Peaks kept incrementally (a stack per sub-window, caught up on each read) equal
    the definition and the full rescan of the ring, for reads at any time in between:
    ring overwrites, resets, restarts, delta points, sub-second and jittered samples,
    and reads before the newest interval's end (which take the rescan)."""
    from otel_rtc.core.rates import _rescan

    cfg, steps = history
    eng = RateEngine(cfg, clock=lambda: T0)
    t, v, start = T0, 0.0, T0
    eng.observe("k", 0.0, t, start_ns=start)
    for kind, gap_ms, x, read_ms in steps:
        if kind == "read":
            now = t + read_ms * 1_000_000
            r = eng.rates("k", now)
            scale = 1e-9 * max([1.0, *(abs(p) for p in r.peak_rates.values() if p)])
            want = _defined_peaks(eng, "k", now)
            s = eng._series["k"]
            rw, rp = _rescan(*s.chronological(), s.evicted_t1, now, eng._windows_ns,
                             eng._horizon_ns, eng._peaks_ns)
            for (sw, got), ref in zip(r.peak_rates.items(), rp, strict=True):
                for other in (want[sw], ref):
                    assert (got is None) == (other is None), (sw, got, other)
                    if got is not None:
                        assert math.isclose(got, other, rel_tol=1e-9, abs_tol=scale)
            for (w, got), ref in zip(r.window_rates.items(), rw, strict=True):
                assert (got is None) == (ref is None)
                if got is not None:
                    assert math.isclose(got, ref, rel_tol=1e-9, abs_tol=1e-9)
                [(_, w_only, mean)] = list(eng.window_items(w, now))
                assert w_only == got and mean == r.mean_rate
            continue
        t += gap_ms * 1_000_000
        if kind == "cum":
            v += x
            eng.observe("k", v, t, start_ns=start)
        elif kind == "reset":
            v = x / 2
            eng.observe("k", v, t, start_ns=start)
        elif kind == "restart":
            start = t - abs(read_ms) * 1_000_000
            v = x
            eng.observe("k", v, t, start_ns=start)
        else:
            eng.observe("k", x, t, start_ns=t - gap_ms * 500_000, cumulative=False)
