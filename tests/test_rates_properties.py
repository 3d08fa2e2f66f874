"""Properties of RateEngine over generated inputs (hypothesis)."""

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_rtc._rates import REJECT_REASONS, RateConfig, RateEngine

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
