"""RateEngine: the reference cases, resets, wraps, ordering, gaps, eviction and caps."""

import math

import pytest

from otel_rtc.core.clock import ManualClock
from otel_rtc.core.rates import ACCEPT_REASONS, REJECT_REASONS, RateConfig, RateEngine, SeriesRates

S = 1_000_000_000
T0 = 1_700_000_000 * S
MBPS = 1e6 / 8  # bytes per second in one megabit per second


def make(config=None, now=T0):
    reasons = []
    clock = ManualClock(now)
    eng = RateEngine(config or RateConfig(), clock=clock, on_drop=reasons.append)
    return eng, clock, reasons


def spike_series():
    """Bytes counter sampled every 1 s for 300 s: idle except 100 Mbps during 10 s."""
    points = [(T0, 0.0)]
    total = 0.0
    for i in range(1, 301):
        if 100 < i <= 110:
            total += 100 * MBPS
        points.append((T0 + i * S, total))
    return points


# -- the reference cases ---------------------------------------------------------------

def test_five_minute_accumulation_read_over_two_seconds_is_not_a_spike():
    """1 Mbps for 5 minutes reported as one point: no window may divide it by 2 s."""
    cfg = RateConfig(windows_s=(2.0, 10.0, 300.0))
    eng, _, reasons = make(cfg, now=T0 + 300 * S)
    value = 300 * 1 * MBPS
    assert eng.observe("bytes", value, T0 + 300 * S, start_ns=T0)
    r = eng.rates("bytes")
    assert r.mean_rate == pytest.approx(1 * MBPS)  # the data's own 300 s span
    assert r.span_s == 300.0
    assert r.window_rates[2.0] is None  # nothing was accumulated over just 2 s
    assert r.window_rates[10.0] is None
    assert r.window_rates[300.0] == pytest.approx(1 * MBPS)
    assert r.peak_rates == {1.0: None, 5.0: None}  # too coarse to resolve a peak
    naive = value / 2.0  # what the reported bug computed: 5 minutes of bytes / 2 s
    assert naive / r.mean_rate == pytest.approx(150.0)
    assert reasons == []


def test_five_minute_delta_reports_give_steady_rate_not_spikes():
    cfg = RateConfig(windows_s=(2.0, 300.0), peak_subwindows_s=(1.0,))
    eng, _, _ = make(cfg)
    for k in range(1, 4):
        eng.observe("b", 300 * MBPS, T0 + k * 300 * S, start_ns=T0 + (k - 1) * 300 * S,
                    cumulative=False)
        r = eng.rates("b", T0 + k * 300 * S)
        assert r.mean_rate == pytest.approx(MBPS)
        assert r.window_rates[2.0] is None
        assert r.window_rates[300.0] == pytest.approx(MBPS)


def test_ten_second_spike_in_five_minutes_mean_and_peaks():
    cfg = RateConfig(windows_s=(10.0, 60.0, 300.0), peak_subwindows_s=(1.0, 5.0))
    eng, _, reasons = make(cfg)
    points = spike_series()
    for t, v in points:
        assert eng.observe("b", v, t, start_ns=T0)
    r = eng.rates("b", T0 + 300 * S)
    mbps = 8 / 1e6
    assert r.mean_rate * mbps == pytest.approx(100 * 10 / 300)  # 3.33 Mbps
    assert r.window_rates[300.0] * mbps == pytest.approx(3.3333, rel=1e-4)
    assert r.peak_rates[1.0] * mbps == pytest.approx(100.0)
    assert r.peak_rates[5.0] * mbps == pytest.approx(100.0)
    assert r.window_rates[10.0] == 0.0  # the last 10 s were idle
    assert r.total == pytest.approx(100 * MBPS * 10)
    # Naive: bytes over the reporting window smooths the spike to 3.33 Mbps (a 30x
    # underestimate of the peak)...
    naive_report = points[-1][1] / 300.0
    assert naive_report * mbps == pytest.approx(3.333, rel=1e-3)
    assert r.peak_rates[1.0] / naive_report == pytest.approx(30.0)
    # ...and the same bytes over a 2 s read window invent a 500 Mbps spike.
    naive_short = points[-1][1] / 2.0
    assert naive_short * mbps == pytest.approx(500.0)
    assert naive_short > r.peak_rates[1.0] * 4
    assert reasons == []


def test_peak_with_sub_second_samples_groups_to_the_subwindow():
    # 0.25 s samples; 100 B/s base, one 0.25 s burst at 1000 B/s.
    eng, _, _ = make(RateConfig(windows_s=(60.0,), peak_subwindows_s=(1.0,)))
    q = S // 4
    total = 0.0
    eng.observe("k", 0.0, T0, start_ns=T0)
    for i in range(1, 41):
        total += (1000 if i == 20 else 100) * 0.25
        eng.observe("k", total, T0 + i * q, start_ns=T0)
    r = eng.rates("k", T0 + 40 * q)
    # Best 1 s group (4 samples incl. the burst): (3*25 + 250) / 1 s.
    assert r.peak_rates[1.0] == pytest.approx(325.0)


def test_jittered_one_second_samples_still_resolve_one_second_peak():
    eng, _, _ = make(RateConfig(windows_s=(60.0,), peak_subwindows_s=(1.0,)))
    eng.observe("k", 0.0, T0, start_ns=T0)
    t, total = T0, 0.0
    for i in range(30):
        dt = S - 1_000_000 if i % 2 else S + 1_000_000  # 0.999 s / 1.001 s
        rate = 50.0 if i == 10 else 1.0
        t += dt
        total += rate * dt / S
        eng.observe("k", total, t, start_ns=T0)
    assert eng.rates("k", t).peak_rates[1.0] == pytest.approx(50.0)


# -- resets, wraps, ordering -----------------------------------------------------------

def test_decrease_is_a_reset_never_a_negative_rate():
    eng, _, reasons = make()
    for i, v in enumerate([0, 100, 200, 50, 150]):
        assert eng.observe("k", float(v), T0 + i * S)
    r = eng.rates("k", T0 + 4 * S)
    assert reasons == ["reset"]
    # After the reset: 50 over the reset interval (a lower bound), then 100.
    assert r.total == 150.0
    assert r.mean_rate == pytest.approx(75.0)  # run since the last pre-reset point
    assert r.window_rates[10.0] == pytest.approx(350 / 4)
    assert all(v >= 0 for v in r.peak_rates.values() if v is not None)


def test_start_time_change_starts_a_new_run():
    eng, _, reasons = make()
    eng.observe("k", 0.0, T0, start_ns=T0)
    eng.observe("k", 1000.0, T0 + 10 * S, start_ns=T0)
    restart = T0 + 12 * S
    assert eng.observe("k", 40.0, T0 + 14 * S, start_ns=restart)  # higher value is no reset
    r = eng.rates("k", T0 + 14 * S)
    assert reasons == ["start_time_change"]
    assert r.total == 40.0
    assert r.span_s == 2.0 and r.mean_rate == 20.0
    # Windows use the real intervals (0,10] and (12,14]; the 2 s of unknown time is
    # counted as zero, a lower bound.
    assert r.window_rates[60.0] == pytest.approx(1040 / 14)


def test_start_time_change_overlapping_old_data_is_kept_out_of_windows():
    eng, _, reasons = make()
    eng.observe("k", 0.0, T0, start_ns=T0)
    eng.observe("k", 100.0, T0 + 10 * S, start_ns=T0)
    assert eng.observe("k", 500.0, T0 + 20 * S, start_ns=T0 + 5 * S)
    r = eng.rates("k", T0 + 20 * S)
    assert reasons == ["start_time_change"]
    assert r.mean_rate == pytest.approx(500 / 15)
    assert r.window_rates[60.0] == pytest.approx(10.0)  # only the non-overlapping interval


@pytest.mark.parametrize("last,new", [(2**32 - 100, 50), (2**32 - 1, 0)])
def test_wrap_around_of_32_bit_counter(last, new):
    eng, _, reasons = make(RateConfig(wrap_modulus=2**32))
    eng.observe("k", float(last - 1000), T0)
    eng.observe("k", float(last), T0 + S)
    assert eng.observe("k", float(new), T0 + 2 * S)
    r = eng.rates("k", T0 + 2 * S)
    assert reasons == ["wrap"]
    assert r.total == 1000 + (2**32 - last + new)
    assert r.peak_rates[1.0] == 1000.0


def test_implausible_wrap_is_a_reset():
    eng, _, reasons = make(RateConfig(wrap_modulus=2**32))
    eng.observe("k", 5000.0, T0)
    eng.observe("k", 10.0, T0 + S)  # wrapped delta ~4.29e9 > modulus/2: a restart
    assert reasons == ["reset"]
    assert eng.rates("k", T0 + S).total == 10.0


def test_without_modulus_wrap_is_a_reset_and_values_beyond_modulus_rejected():
    eng, _, reasons = make()
    eng.observe("k", float(2**32 - 100), T0)
    eng.observe("k", 50.0, T0 + S)
    assert reasons == ["reset"]
    eng2, _, reasons2 = make(RateConfig(wrap_modulus=2**32))
    eng2.observe("k", 1.0, T0)
    assert not eng2.observe("k", float(2**32), T0 + S)
    assert reasons2 == ["out_of_range"]


def test_duplicates_and_out_of_order_are_rejected_and_counted():
    eng, _, reasons = make()
    eng.observe("k", 0.0, T0)
    eng.observe("k", 10.0, T0 + 2 * S)
    assert not eng.observe("k", 10.0, T0 + 2 * S)
    assert not eng.observe("k", 5.0, T0 + S)
    assert eng.observe("k", 30.0, T0 + 3 * S)
    assert reasons == ["duplicate", "out_of_order"]
    assert eng.anomaly_counts() == {"duplicate": 1, "out_of_order": 1}
    assert eng.rates("k", T0 + 3 * S).total == 30.0


def test_delta_overlap_duplicate_gap_and_zero_span():
    eng, _, reasons = make(RateConfig(gap_after_s=30.0))
    assert eng.observe("d", 100.0, T0 + 10 * S, start_ns=T0, cumulative=False)
    assert not eng.observe("d", 100.0, T0 + 10 * S, start_ns=T0, cumulative=False)
    assert not eng.observe("d", 5.0, T0 + 15 * S, start_ns=T0 + 5 * S, cumulative=False)
    assert not eng.observe("d", 5.0, T0 + 20 * S, start_ns=T0 + 20 * S, cumulative=False)
    assert not eng.observe("d", -1.0, T0 + 20 * S, start_ns=T0 + 10 * S, cumulative=False)
    assert eng.observe("d", 50.0, T0 + 20 * S, start_ns=T0 + 10 * S, cumulative=False)
    assert eng.observe("d", 70.0, T0 + 70 * S, start_ns=T0 + 60 * S, cumulative=False)
    assert reasons == ["duplicate", "out_of_order", "bad_span", "negative_delta", "gap"]
    r = eng.rates("d", T0 + 70 * S)
    assert r.total == 220.0
    assert r.mean_rate == pytest.approx(220 / 70)  # uncovered 40 s counted as zero
    assert r.window_rates[10.0] == pytest.approx(7.0)


def test_delta_without_start_uses_previous_end():
    eng, _, _ = make()
    assert eng.observe("d", 999.0, T0, cumulative=False)  # no span: only opens the series
    eng.observe("d", 20.0, T0 + 2 * S, cumulative=False)
    r = eng.rates("d", T0 + 2 * S)
    assert r.total == 20.0 and r.mean_rate == 10.0


def test_cumulative_gap_is_reported_and_accepted():
    eng, _, reasons = make(RateConfig(gap_after_s=30.0))
    eng.observe("k", 0.0, T0)
    assert eng.observe("k", 120.0, T0 + 120 * S)
    assert reasons == ["gap"]
    r = eng.rates("k", T0 + 120 * S)
    assert r.mean_rate == 1.0
    assert r.window_rates[10.0] is None and r.window_rates[300.0] == 1.0
    assert r.peak_rates == {1.0: None, 5.0: None}  # a 120 s average is no 1 s peak


def test_histogram_count_is_a_cumulative_sum():
    eng, _, _ = make()
    for i, count in enumerate([0, 40, 80, 80, 200]):
        eng.observe(("latency", "count"), float(count), T0 + i * S, start_ns=T0)
    r = eng.rates(("latency", "count"), T0 + 4 * S)
    assert r.mean_rate == 50.0 and r.peak_rates[1.0] == 120.0


def test_temporality_change_restarts_the_run():
    eng, _, reasons = make()
    eng.observe("k", 10.0, T0, start_ns=T0 - 10 * S)
    assert eng.observe("k", 5.0, T0 + S, start_ns=T0, cumulative=False)
    assert reasons == ["reset"]
    assert eng.rates("k", T0 + S).total == 5.0


@pytest.mark.parametrize("value,time_ns,start_ns,reason", [
    (math.nan, T0, None, "non_finite"),
    (math.inf, T0, None, "non_finite"),
    (-math.inf, T0, None, "non_finite"),
    (1e40, T0, None, "out_of_range"),
    (10**40, T0, None, "out_of_range"),
    (-1.0, T0, None, "negative_value"),
    (1.0, -5, None, "invalid"),
    (1.0, 2**64, None, "invalid"),
    (1.0, 1.5e18, None, "invalid"),
    ("1", T0, None, "invalid"),
    (None, T0, None, "invalid"),
    (1.0, T0, T0 + 1, "bad_span"),
])
def test_hostile_input_is_rejected_and_counted(value, time_ns, start_ns, reason):
    eng, _, reasons = make()
    assert eng.observe("k", value, time_ns, start_ns=start_ns) is False
    assert reasons == [reason]
    assert reason in REJECT_REASONS
    assert len(eng) == 0


def test_hostile_input_on_existing_series_takes_no_fast_path():
    eng, _, reasons = make()
    eng.observe("k", 1.0, T0)
    for bad in (math.nan, math.inf, "x", None):
        assert eng.observe("k", bad, T0 + S) is False
    assert eng.observe("k", 2.0, T0 + S)
    assert reasons == ["non_finite", "non_finite", "invalid", "invalid"]


def test_broken_callback_does_not_break_the_engine():
    def boom(reason):
        raise RuntimeError(reason)

    eng = RateEngine(on_drop=boom)
    assert eng.observe("k", math.nan, T0) is False
    assert eng.anomaly_counts() == {"non_finite": 1}


# -- bounds ----------------------------------------------------------------------------

def test_stale_eviction():
    eng, clock, _ = make(RateConfig(stale_after_s=60.0))
    eng.observe("old", 1.0, T0)
    eng.observe("new", 1.0, T0 + 100 * S)
    assert eng.evict_stale(T0 + 100 * S) == 1
    assert len(eng) == 1 and eng.rates("old") is None
    clock.set(T0 + 1000 * S)
    assert eng.evict_stale() == 1 and len(eng) == 0


def test_series_cap_rejects_new_series_after_evicting_stale_ones():
    eng, clock, reasons = make(RateConfig(max_series=2, stale_after_s=60.0))
    assert eng.observe("a", 1.0, T0)
    assert eng.observe("b", 1.0, T0)
    assert not eng.observe("c", 1.0, T0)
    assert reasons == ["series_cap"]
    assert eng.observe("a", 2.0, T0 + S)  # existing series still accepted
    clock.set(T0 + 120 * S)
    eng.observe("b", 2.0, T0 + 120 * S)  # b is fresh, a is stale
    assert eng.observe("c", 1.0, T0 + 120 * S)  # a is evicted to make room
    assert sorted(k for k, _ in eng.items()) == ["b", "c"]


def test_ring_overwrite_makes_long_windows_unknown_not_wrong():
    eng, _, _ = make(RateConfig(max_samples_per_series=20))
    for i in range(100):
        eng.observe("k", float(i * 10), T0 + i * S)
    r = eng.rates("k", T0 + 99 * S)
    assert r.window_rates[10.0] == pytest.approx(10.0)
    assert r.window_rates[60.0] is None and r.window_rates[300.0] is None
    assert r.mean_rate == pytest.approx(10.0)  # the mean never depends on the ring


def test_rates_at_a_later_instant_excludes_nothing_it_should_not():
    eng, _, _ = make()
    for i in range(11):
        eng.observe("k", float(i * 5), T0 + i * S)
    later = eng.rates("k", T0 + 200 * S)
    assert later.window_rates[10.0] is None and later.window_rates[60.0] is None
    assert later.window_rates[300.0] == 5.0
    earlier = eng.rates("k", T0 + 5 * S)  # intervals ending after `now` are excluded
    assert earlier.window_rates[10.0] == 5.0
    assert isinstance(earlier, SeriesRates)


@pytest.mark.parametrize("kwargs", [
    {"windows_s": ()}, {"windows_s": (10.0, 5.0)}, {"windows_s": (0.0,)},
    {"windows_s": (math.inf,)}, {"peak_subwindows_s": (1000.0,)},
    {"peak_subwindows_s": [1.0]}, {"max_series": 0}, {"stale_after_s": -1.0},
    {"max_samples_per_series": 1}, {"wrap_modulus": 1.0}, {"wrap_modulus": math.nan},
    {"gap_after_s": 0.0},
])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        RateConfig(**kwargs)
    with pytest.raises(ValueError):
        RateEngine(config="nope")


def test_reason_sets_are_disjoint():
    assert not REJECT_REASONS & ACCEPT_REASONS


# -- first points whose span is shorter than the engine's resolution ---------------------

def test_first_point_with_microsecond_span_is_a_baseline_not_a_spike():
    """The Python SDK stamps a newly observed cumulative series with start ≈ time.

    Its value is the source's whole history (here 5 min at 1 MB/s), so dividing it by
    the 50 µs span would read 6e12 B/s. A first span shorter than the finest peak
    sub-window (x 0.95) cannot be resolved: the point is the baseline.
    """
    eng, _, reasons = make()
    assert eng.observe("b", 300e6, T0, start_ns=T0 - 50_000)
    r = eng.rates("b", T0)
    assert r.mean_rate is None and r.total == 0.0
    assert all(v is None for v in r.window_rates.values())
    assert reasons == ["short_span"]
    for i in range(1, 11):
        assert eng.observe("b", 300e6 + i * 1e6, T0 + i * S, start_ns=T0 - 50_000)
    r = eng.rates("b", T0 + 10 * S)
    assert r.mean_rate == pytest.approx(1e6)
    assert r.window_rates[10.0] == pytest.approx(1e6)
    assert r.peak_rates[1.0] == pytest.approx(1e6)
    assert r.mean_rate * r.span_s == pytest.approx(r.total)


def test_zero_first_point_with_short_span_keeps_its_zero_rate():
    eng, _, reasons = make()
    assert eng.observe("b", 0.0, T0, start_ns=T0 - 50_000)
    assert eng.rates("b", T0).mean_rate == 0.0  # nothing to misattribute
    assert reasons == []


def test_restart_with_short_span_is_a_baseline_too():
    eng, _, reasons = make()
    eng.observe("b", 0.0, T0, start_ns=T0 - 10 * S)
    eng.observe("b", 10e6, T0 + 10 * S, start_ns=T0 - 10 * S)
    # the source restarted with a history the span cannot hold
    assert eng.observe("b", 5e6, T0 + 11 * S, start_ns=T0 + 11 * S - 1_000)
    assert reasons == ["start_time_change", "short_span"]
    eng.observe("b", 6e6, T0 + 12 * S, start_ns=T0 + 11 * S - 1_000)
    r = eng.rates("b", T0 + 12 * S)
    assert r.total == 1e6 and r.mean_rate == pytest.approx(1e6)
    assert r.peak_rates[1.0] == pytest.approx(1e6)


def test_first_span_of_a_full_subwindow_is_a_real_interval():
    eng, _, reasons = make()
    assert eng.observe("b", 950.0, T0, start_ns=T0 - 950_000_000)  # 0.95 s: resolvable
    assert eng.rates("b", T0).mean_rate == pytest.approx(1000.0)
    assert reasons == []


# -- incremental peaks ------------------------------------------------------------------

def test_peaks_follow_the_horizon_between_reads_and_match_a_late_read():
    """Peaks are kept up to date as intervals arrive, read by read: the spike is the
    peak while inside the 300 s horizon, gone once it has left it; a read at an earlier
    ``now`` than the newest point (the rescan path) gives the same as at that time."""
    eng, _, _ = make(RateConfig(windows_s=(10.0, 60.0, 300.0), peak_subwindows_s=(1.0, 5.0)))
    pts = spike_series()
    for t, v in pts[:120]:
        eng.observe("k", v, t, start_ns=T0)
    at_119 = eng.rates("k", T0 + 119 * S)
    assert at_119.peak_rates[1.0] == pytest.approx(100 * MBPS)
    assert at_119.peak_rates[5.0] == pytest.approx(100 * MBPS)
    total = pts[-1][1]
    for i in range(301, 420):
        eng.observe("k", total + (i - 300) * MBPS, T0 + i * S, start_ns=T0)
    assert eng.rates("k", T0 + 400 * S).peak_rates[1.0] == pytest.approx(100 * MBPS)
    later = eng.rates("k", T0 + 419 * S)  # the spike (100..110 s) left the horizon
    assert later.peak_rates[1.0] == pytest.approx(MBPS)
    assert later.peak_rates[5.0] == pytest.approx(MBPS)
    # Read "in the past": intervals after now are ignored, as by the rescan.
    past = eng.rates("k", T0 + 405 * S)
    assert past.peak_rates[1.0] == pytest.approx(100 * MBPS)


def test_peaks_forget_runs_overwritten_in_the_ring():
    """A ring too small for the horizon: a run whose first interval was overwritten is
    no longer a peak, even though the horizon still covers it."""
    eng, _, _ = make(RateConfig(windows_s=(300.0,), peak_subwindows_s=(1.0, 5.0),
                                max_samples_per_series=20))
    total = 0.0
    eng.observe("k", total, T0, start_ns=T0)
    for i in range(1, 61):
        total += 1000.0 if i <= 5 else 10.0
        eng.observe("k", total, T0 + i * S, start_ns=T0)
        if i in (5, 10):
            assert eng.rates("k", T0 + i * S).peak_rates[1.0] == 1000.0
    r = eng.rates("k", T0 + 60 * S)
    assert r.peak_rates == {1.0: 10.0, 5.0: pytest.approx(10.0)}
    assert r.window_rates[300.0] is None  # and the window says the ring is too short


def test_temporality_change_overlapping_old_data_is_kept_out_of_windows_and_peaks():
    """A delta point after a cumulative run whose start lies before the last point:
    like a cumulative restart overlapping the ring, it feeds the mean only (the ring's
    intervals never overlap, so windows and peaks never double count)."""
    eng, _, reasons = make()
    eng.observe("k", 0.0, T0, start_ns=T0)
    eng.observe("k", 100.0, T0 + 10 * S, start_ns=T0)
    assert eng.observe("k", 500.0, T0 + 20 * S, start_ns=T0 + 5 * S, cumulative=False)
    r = eng.rates("k", T0 + 20 * S)
    assert reasons == ["reset"]
    assert r.mean_rate == pytest.approx(500 / 15)
    assert r.window_rates[60.0] == pytest.approx(10.0)  # only the non-overlapping interval
    assert r.peak_rates[5.0] == pytest.approx(10.0)


def test_rate_values_and_window_items_are_rates_without_the_records():
    eng, _, _ = make()
    for t, v in spike_series()[:130]:
        eng.observe("k", v, t, start_ns=T0)
    now = T0 + 129 * S
    r = eng.rates("k", now)
    mean, span_s, wvals, pvals, total = eng.rate_values("k", now)
    assert (mean, span_s, total) == (r.mean_rate, r.span_s, r.total)
    assert wvals == list(r.window_rates.values())
    assert pvals == list(r.peak_rates.values())
    assert eng.rate_values("k", now, peaks=False)[3] == [None, None]
    assert eng.rate_values("nope", now) is None
    for w in r.window_rates:
        assert list(eng.window_items(w, now)) == [("k", r.window_rates[w], r.mean_rate)]
    with pytest.raises(ValueError):
        list(eng.window_items(7.0, now))
