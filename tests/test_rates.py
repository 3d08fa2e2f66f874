"""RateEngine: the API around the contract (the contract itself: test_rate_vectors.py)."""

import math

import pytest

from otel_rtc.core.clock import ManualClock
from otel_rtc.core.rates import (
    ACCEPT_REASONS,
    NO_RECORDED_VALUE,
    REJECT_REASONS,
    RateConfig,
    RateEngine,
    Reading,
)

S = 1_000_000_000
T0 = 1_700_000_000 * S
MBPS = 1e6 / 8


def make(config=None, now=T0):
    reasons = []
    clock = ManualClock(now)
    eng = RateEngine(config or RateConfig(), clock=clock, on_anomaly=reasons.append)
    return eng, clock, reasons


def test_reference_spike_mean_and_peak_and_the_naive_figures():
    eng, _, reasons = make(RateConfig(peak_subwindows_s=(1.0, 5.0)))
    total = 0.0
    eng.observe("b", 0.0, T0, T0)
    for i in range(1, 301):
        if 100 < i <= 110:
            total += 100 * MBPS
        assert eng.observe("b", total, T0 + i * S, T0)
    [r] = eng.read(T0 + 300 * S)
    assert isinstance(r, Reading) and r.key == "b" and not r.final
    mbps = 8 / 1e6
    assert r.mean * mbps == pytest.approx(100 * 10 / 300)  # 3.33 Mbps
    assert r.peaks[0] * mbps == pytest.approx(100.0)
    assert r.peaks[1] * mbps == pytest.approx(100.0)
    naive_fake_spike = total / 2.0  # the reference's bug: 5 minutes of bytes / 2 s
    assert naive_fake_spike / r.mean == pytest.approx(150.0)
    assert reasons == []


def test_default_outputs_are_the_span_mean_and_the_1s_peak_only():
    cfg = RateConfig()
    assert cfg.peak_subwindows_s == (1.0,) and cfg.windows_s == ()
    assert cfg.max_series == 2000 and cfg.quiet_intervals == 2
    eng, _, _ = make()
    for i in range(4):
        eng.observe("c", 10.0 * i, T0 + i * S)
    [r] = eng.read(T0 + 3 * S)
    assert r.peaks == (10.0,) and r.windows == ()


def test_read_uses_the_clock_and_reads_only_the_keys_given():
    eng, clock, _ = make()
    for k in ("a", "b"):
        eng.observe(k, 0.0, T0)
        eng.observe(k, 5.0, T0 + S)
    assert [r.key for r in eng.read(keys=["b", "unknown"])] == ["b"]
    clock.advance(10 * S)
    assert [r.key for r in eng.read()] == ["a"]  # b: silent once
    [fb] = eng.read()                            # b: silent twice; a: once
    clock.advance(S)
    [fa] = eng.read()
    assert (fb.key, fb.final, fb.start_ns, fb.time_ns) == ("b", True, T0 + S, T0 + 10 * S)
    assert (fa.key, fa.final, fa.time_ns) == ("a", True, T0 + 11 * S)
    assert len(eng) == 0


def test_tag_is_attached_on_the_first_point_and_handed_back():
    eng, _, _ = make()
    eng.observe("k", 0.0, T0, tag="first")
    eng.observe("k", 1.0, T0 + S, tag="ignored: the series exists")
    [r] = eng.read(T0 + S)
    assert r.tag == "first"


def test_a_marker_on_an_unknown_series_creates_nothing_and_counts_nothing():
    eng, _, reasons = make()
    assert eng.observe("k", 0.0, T0, flags=NO_RECORDED_VALUE)
    assert "k" not in eng and reasons == []


def test_marker_then_delta_without_start_is_a_baseline_with_start_continues():
    eng, _, reasons = make()
    eng.observe("d", 5.0, T0 + S, T0, cumulative=False)
    eng.observe("d", 0.0, T0 + 2 * S, 0, cumulative=False, flags=NO_RECORDED_VALUE)
    eng.observe("d", 7.0, T0 + 3 * S, 0, cumulative=False)          # baseline: unknown start
    eng.observe("d", 4.0, T0 + 4 * S, T0 + 3 * S, cumulative=False)  # its own interval
    [r] = eng.read(T0 + 4 * S)
    assert (r.start_ns, r.time_ns) == (T0, T0 + 4 * S)
    assert r.mean == pytest.approx((5.0 + 4.0) / 4)
    assert reasons == ["stale"]


def test_temporality_change_starts_a_new_run_and_counts_a_reset():
    eng, _, reasons = make()
    eng.observe("k", 0.0, T0)
    eng.observe("k", 10.0, T0 + S)
    eng.observe("k", 3.0, T0 + 2 * S, T0 + S, cumulative=False)
    [r] = eng.read(T0 + 2 * S)
    assert r.mean == pytest.approx(13.0 / 2)
    assert reasons == ["reset"]


def test_series_cap_is_global_and_counted_per_rejected_point():
    eng, _, reasons = make(RateConfig(max_series=2))
    assert eng.observe("a", 0.0, T0) and eng.observe("b", 0.0, T0)
    assert not eng.observe("c", 0.0, T0)
    assert not eng.observe("c", 1.0, T0 + S)
    assert reasons == ["series_cap", "series_cap"]
    eng.forget("a")
    assert eng.observe("c", 2.0, T0 + 2 * S)


@pytest.mark.parametrize(("value", "time_ns", "start_ns", "reason"), [
    (float("nan"), T0, 0, "non_finite"),
    (float("inf"), T0, 0, "non_finite"),
    (1e31, T0, 0, "out_of_range"),
    (10**40, T0, 0, "out_of_range"),
    (-1.0, T0, 0, "negative_value"),
    ("1", T0, 0, "invalid"),
    (True, T0, 0, "invalid"),
    (1.0, -1, 0, "invalid"),
    (1.0, 2**63, 0, "invalid"),
    (1.0, float(T0), 0, "invalid"),
    (1.0, T0, T0 + 1, "bad_span"),
])
def test_hostile_input_is_rejected_and_counted(value, time_ns, start_ns, reason):
    eng, _, reasons = make()
    assert not eng.observe("k", value, time_ns, start_ns)
    assert reasons == [reason]
    assert eng.anomaly_counts() == {reason: 1}


def test_broken_callback_does_not_break_the_engine():
    def boom(_reason):
        raise RuntimeError("x")

    eng = RateEngine(on_anomaly=boom)
    assert not eng.observe("k", float("nan"), T0)
    assert eng.observe("k", 1.0, T0)


@pytest.mark.parametrize("kwargs", [
    {"peak_subwindows_s": ()}, {"peak_subwindows_s": (5.0, 1.0)}, {"peak_subwindows_s": (0.0,)},
    {"windows_s": (15.0,)}, {"windows_s": (60.0, 10.0)}, {"window_bucket_s": 0},
    {"max_series": 0}, {"max_series": True}, {"quiet_intervals": 0}, {"gap_after_s": -1},
    {"wrap_modulus": 1}, {"wrap_modulus": float("inf")},
])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        RateConfig(**kwargs)
    with pytest.raises(ValueError):
        RateEngine(config="nope")  # type: ignore[arg-type]


def test_reason_sets_are_disjoint():
    assert not (ACCEPT_REASONS & REJECT_REASONS)
    assert {"reset", "gap", "short_span", "start_time_change", "stale", "quiet"} <= ACCEPT_REASONS


def test_fine_then_coarse_sampling_returns_to_the_fast_path_with_the_same_peaks():
    eng, _, _ = make()
    t, v = T0, 0.0
    eng.observe("k", v, t)
    for _ in range(8):  # 0.25 s samples at 40/s
        t += S // 4
        v += 10.0
        eng.observe("k", v, t)
    assert eng._series["k"].ext is not None
    t += S
    v += 100.0  # one 1 s interval at 100/s
    eng.observe("k", v, t)
    assert eng._series["k"].ext is None  # a full interval needs no history
    [r] = eng.read(t)
    assert r.peaks[0] == pytest.approx(100.0)


def test_a_read_before_any_interval_gives_nothing_and_does_not_count_as_silent():
    eng, _, _ = make()
    eng.observe("k", 7.0, T0)          # a baseline only
    assert eng.read(T0 + S) == []
    eng.observe("k", 8.0, T0 + 2 * S)
    [r] = eng.read(T0 + 3 * S)
    assert (r.start_ns, r.time_ns, r.mean) == (T0, T0 + 2 * S, 0.5)


def test_means_are_finite_at_extreme_magnitudes():
    eng, _, _ = make()
    eng.observe("k", 0.0, T0)
    eng.observe("k", 9e29, T0 + 1)
    [r] = eng.read(T0 + 1)
    assert math.isfinite(r.mean)
