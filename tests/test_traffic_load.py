"""TrafficLoadCalculator: rates per participant and room, score, shares, top-N + others."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_rtc.core.clock import ManualClock
from otel_rtc.core.load import (
    OTHERS,
    LoadWeights,
    TrafficLoadCalculator,
    TrafficLoadConfig,
)
from otel_rtc.core.rates import RateConfig

S = 1_000_000_000
T0 = 1_700_000_000 * S


def feed(calc, room, pid, direction, media, unit, rate, seconds=10):
    for i in range(seconds + 1):
        assert calc.update(room, pid, direction, media, unit, rate * i, T0 + i * S,
                           start_ns=T0)


def test_rates_score_and_formula():
    w = LoadWeights(bit_weight=1.0, packet_weight=4000.0, down_weight=2.0, video_weight=1.5)
    calc = TrafficLoadCalculator(TrafficLoadConfig(top_n=5, weights=w),
                                 clock=ManualClock(T0 + 10 * S))
    feed(calc, "r", "alice", "up", "video", "bytes", 125_000.0)   # 1 Mbit/s
    feed(calc, "r", "alice", "up", "video", "packets", 100.0)
    feed(calc, "r", "alice", "down", "audio", "bytes", 4_000.0)   # 32 kbit/s
    feed(calc, "r", "alice", "down", "audio", "packets", 50.0)
    room = calc.snapshot()["r"]
    [alice] = room.top
    assert alice.by_stream[("up", "video", "bytes")] == pytest.approx(125_000.0)
    assert alice.bytes_per_s == pytest.approx(129_000.0)
    assert alice.packets_per_s == pytest.approx(150.0)
    want = 1.5 * (8 * 125_000 + 4000 * 100) + 2.0 * (8 * 4_000 + 4000 * 50)
    assert alice.score == pytest.approx(want)
    assert room.score == pytest.approx(want)
    assert alice.share == 1.0
    assert room.others.participants == 0 and room.others.score == 0.0


def test_shares_sum_to_one_and_top_n_plus_others_is_the_room_total():
    calc = TrafficLoadCalculator(TrafficLoadConfig(top_n=2), clock=ManualClock(T0 + 10 * S))
    for k, pid in enumerate(["p1", "p2", "p3", "p4", "p5"]):
        feed(calc, "room", pid, "up", "video", "bytes", 10_000.0 * (k + 1))
        feed(calc, "room", pid, "down", "audio", "packets", 50.0)
    feed(calc, "other-room", "x", "up", "data", "bytes", 10.0)
    snap = calc.snapshot()
    room = snap["room"]
    assert [p.participant for p in room.top] == ["p5", "p4"]
    assert room.others.participant == OTHERS and room.others.participants == 3
    assert room.participants == 5
    parts = (*room.top, room.others)
    assert sum(p.share for p in parts) == pytest.approx(1.0)
    assert sum(p.score for p in parts) == pytest.approx(room.score)
    assert sum(p.bytes_per_s for p in parts) == pytest.approx(room.bytes_per_s)
    assert sum(p.packets_per_s for p in parts) == pytest.approx(room.packets_per_s)
    for key, v in room.by_stream.items():
        assert sum(p.by_stream.get(key, 0.0) for p in parts) == pytest.approx(v)
    assert snap["other-room"].top[0].share == 1.0


def test_default_load_is_per_room_only():
    calc = TrafficLoadCalculator(clock=ManualClock(T0 + 10 * S))
    feed(calc, "r", "alice", "up", "video", "bytes", 1000.0)
    feed(calc, "r", "bob", "up", "video", "bytes", 3000.0)
    room = calc.snapshot()["r"]
    assert room.top == () and room.others.participants == 0  # shares are opt-in
    assert room.participants == 2 and room.bytes_per_s == pytest.approx(4000.0)
    assert (room.start_ns, room.time_ns) == (T0, T0 + 10 * S)


def test_per_room_series_have_no_participants_but_a_score():
    calc = TrafficLoadCalculator(TrafficLoadConfig(top_n=3), clock=ManualClock(T0 + 10 * S))
    feed(calc, "r", "", "up", "video", "bytes", 1000.0)
    room = calc.snapshot()["r"]
    assert room.participants == 0 and room.top == ()
    assert room.score == pytest.approx(8000.0) and room.others.share == 1.0


def test_idle_room_splits_evenly():
    calc = TrafficLoadCalculator(TrafficLoadConfig(top_n=1), clock=ManualClock(T0 + 10 * S))
    for pid in ("a", "b", "c"):
        feed(calc, "r", pid, "up", "audio", "bytes", 0.0)
    room = calc.snapshot()["r"]
    assert room.score == 0.0
    assert room.top[0].share + room.others.share == pytest.approx(1.0)
    assert room.others.share == pytest.approx(2 / 3)


def test_sparse_reports_use_their_own_span():
    """A 5-minute delta report: the load is over its own 300 s span."""
    calc = TrafficLoadCalculator(TrafficLoadConfig(top_n=1), clock=ManualClock(T0 + 300 * S))
    calc.update("r", "p", "up", "video", "bytes", 300 * 125_000.0, T0 + 300 * S,
                start_ns=T0, cumulative=False)
    p = calc.snapshot()["r"].top[0]
    assert p.bytes_per_s == pytest.approx(125_000.0)  # 1 Mbit/s, not 150 Mbit/s


def test_invalid_keys_and_values_are_rejected_and_counted():
    reasons = []
    calc = TrafficLoadCalculator(clock=ManualClock(T0), on_anomaly=reasons.append)
    assert not calc.update("r", "p", "sideways", "video", "bytes", 1.0, T0)
    assert not calc.update("r", "p", "up", "smell", "bytes", 1.0, T0)
    assert not calc.update("r", "p", "up", "video", "bits", 1.0, T0)
    assert not calc.update("r", "p", "up", "video", "bytes", math.nan, T0)
    assert reasons == ["invalid", "invalid", "invalid", "non_finite"]
    assert calc.snapshot() == {}


def test_departed_participants_read_0_once_then_leave_the_room():
    clock = ManualClock(T0 + 10 * S)
    cfg = TrafficLoadConfig(top_n=5, rate=RateConfig(quiet_intervals=1))
    calc = TrafficLoadCalculator(cfg, clock=clock)
    feed(calc, "r", "gone", "up", "audio", "bytes", 100.0)
    assert calc.snapshot()["r"].participants == 1
    clock.set(T0 + 20 * S)
    calc.update("r", "here", "up", "audio", "bytes", 0.0, T0 + 15 * S)
    calc.update("r", "here", "up", "audio", "bytes", 500.0, T0 + 20 * S)
    room = calc.snapshot()["r"]  # gone: its final reading, 0
    assert {p.participant: p.score for p in room.top} == {"here": 800.0, "gone": 0.0}
    calc.update("r", "here", "up", "audio", "bytes", 1000.0, T0 + 25 * S)
    room = calc.snapshot(T0 + 25 * S)["r"]
    assert [p.participant for p in room.top] == ["here"] and room.participants == 1


@pytest.mark.parametrize("kwargs", [
    {"top_n": -1}, {"rate": "x"}, {"weights": LoadWeights()} | {"top_n": 1.5},
])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        TrafficLoadConfig(**kwargs)
    with pytest.raises(ValueError):
        LoadWeights(packet_weight=-1.0)
    with pytest.raises(ValueError):
        TrafficLoadCalculator("nope")


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text("abcdefgh", min_size=1, max_size=3),
                       st.lists(st.floats(0, 1e7), min_size=4, max_size=4),
                       min_size=1, max_size=12),
       st.integers(1, 6))
def test_property_shares_and_partition(rates, top_n):
    calc = TrafficLoadCalculator(TrafficLoadConfig(top_n=top_n), clock=ManualClock(T0 + 2 * S))
    streams = [("up", "video", "bytes"), ("up", "video", "packets"),
               ("down", "audio", "bytes"), ("down", "data", "packets")]
    for pid, rs in rates.items():
        for (d, m, u), r in zip(streams, rs, strict=True):
            for i in range(3):
                calc.update("r", pid, d, m, u, r * i, T0 + i * S, start_ns=T0)
    room = calc.snapshot()["r"]
    parts = (*room.top, room.others)
    assert len(room.top) == min(top_n, len(rates))
    assert math.isclose(sum(p.share for p in parts), 1.0, rel_tol=1e-9)
    assert all(0.0 <= p.share <= 1.0 for p in parts)
    assert math.isclose(sum(p.score for p in parts), room.score, rel_tol=1e-9, abs_tol=1e-6)
    assert [p.score for p in room.top] == sorted((p.score for p in room.top), reverse=True)
    if room.top and room.others.participants:
        assert room.top[-1].score >= max(
            LoadWeights().score({k: rs[i] for i, k in enumerate(streams)})
            for pid, rs in rates.items() if pid not in {p.participant for p in room.top}
        ) * (1 - 1e-9)
