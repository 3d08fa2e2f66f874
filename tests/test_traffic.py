"""Traffic accounting from cumulative transport counters."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_rtc.core.clock import ManualClock
from otel_rtc.instrumentation import self_telemetry as _self_telemetry
from otel_rtc.instrumentation.traffic import TrafficAccounting
from otel_rtc.testing import make_test_pipeline

W = 2**32


@pytest.fixture(autouse=True)
def _reset():
    _self_telemetry._reset_for_tests()


def rows(acc):
    """``(name, attributes, value, start)`` of each series in ``acc.snapshot()``."""
    return list(zip(*acc.snapshot(), strict=True))


def totals(acc, name="otel_rtc.traffic.packets", **match):
    return sum(v for n, a, v, _ in rows(acc)
               if n == name and all(a.get(k) == x for k, x in match.items()))


def test_deltas_from_cumulative_totals():
    acc = TrafficAccounting(meter_provider=False)
    acc.add("r", "p", "up", "video", 10, 1000, 1, 0, 50, from_zero=True)
    acc.add("r", "p", "up", "video", 25, 2600, 3, 2, 80)
    assert totals(acc) == 25
    assert totals(acc, "otel_rtc.traffic.bytes") == 2600
    assert totals(acc, "otel_rtc.traffic.packets_lost") == 3
    assert totals(acc, "otel_rtc.traffic.packets_out_of_order") == 2
    assert totals(acc, "otel_rtc.traffic.padding_bytes") == 80


def test_wrap_around_counts_the_wrapped_delta():
    acc = TrafficAccounting(meter_provider=False)
    acc.add("r", "p", "down", "audio", W - 10, W - 100)  # first report: baseline
    acc.add("r", "p", "down", "audio", 5, 20)
    assert totals(acc) == 15
    assert totals(acc, "otel_rtc.traffic.bytes") == 120
    assert _self_telemetry.drop_count("traffic") == 0


def test_configurable_modulus():
    acc = TrafficAccounting(meter_provider=False, modulus=2**16)
    acc.add("r", "p", "up", "data", 65_530, 0)
    acc.add("r", "p", "up", "data", 4, 0)
    assert totals(acc) == 10


def test_unexplained_decrease_is_rejected_counted_and_rebased():
    acc = TrafficAccounting(meter_provider=False)
    acc.add("r", "p", "up", "video", 1000, 100_000, from_zero=True)
    acc.add("r", "p", "up", "video", 10, 1_000)  # not a wrap: far from the modulus
    assert totals(acc) == 1000
    assert _self_telemetry.drop_count("traffic", "negative_delta") == 2  # packets and bytes
    acc.add("r", "p", "up", "video", 30, 3_000)  # counted from the new baseline
    assert totals(acc) == 1020


def test_explicit_reset_counts_from_zero():
    acc = TrafficAccounting(meter_provider=False)
    acc.add("r", "p", "up", "video", 1000, 100_000, from_zero=True)
    acc.add("r", "p", "up", "video", 10, 1_000, reset=True)
    assert totals(acc) == 1010
    assert _self_telemetry.drop_count("traffic") == 0


def test_implausible_jump_is_rejected():
    acc = TrafficAccounting(meter_provider=False, max_delta=10_000)
    acc.add("r", "p", "up", "audio", 100, 100, from_zero=True)
    acc.add("r", "p", "up", "audio", 50_000, 200)
    assert totals(acc) == 100
    assert _self_telemetry.drop_count("traffic", "implausible_delta") == 1


def test_invalid_dimensions_are_dropped():
    acc = TrafficAccounting(meter_provider=False)
    acc.add("r", "p", "sideways", "audio", 1, 1)
    acc.add("r", "p", "up", "smell", 1, 1)
    assert rows(acc) == []
    assert _self_telemetry.drop_count("traffic", "invalid") == 2


def test_aggregates_per_room_by_default():
    acc = TrafficAccounting(meter_provider=False)
    acc.add("r", "p1", "up", "audio", 10, 0, from_zero=True)
    acc.add("r", "p2", "up", "audio", 5, 0, from_zero=True)
    packets = [(a, v) for n, a, v, _ in rows(acc) if n == "otel_rtc.traffic.packets"]
    assert packets == [({"otel_rtc.room": "r", "otel_rtc.direction": "up",
                      "otel_rtc.media.kind": "audio"}, 15.0)]


def test_participant_cardinality_cap_folds_into_other():
    acc = TrafficAccounting(meter_provider=False, per_participant=True, max_participants=2)
    for i in range(5):
        acc.add("r", f"p{i}", "up", "audio", 10, 0, from_zero=True)
    parts = sorted(a["otel_rtc.participant"] for n, a, _, _ in rows(acc)
                   if n == "otel_rtc.traffic.packets")
    assert parts == ["_other", "p0", "p1"]
    assert totals(acc, **{"otel_rtc.participant": "_other"}) == 30
    assert _self_telemetry.drop_count("traffic", "cardinality_cap") == 3


def test_forget_drops_baselines_and_keeps_totals():
    acc = TrafficAccounting(meter_provider=False)
    acc.add("r", "p", "up", "audio", 10, 0, from_zero=True)
    acc.add("r", "p", "down", "audio", 10, 0, from_zero=True)
    assert acc.streams == 2
    acc.forget("r", "p")
    assert acc.streams == 0
    acc.add("r", "p", "up", "audio", 3, 0, from_zero=True)  # a new transport, from zero
    assert totals(acc) == 23


def test_observable_counters_read_at_collection():
    p = make_test_pipeline()
    clock = ManualClock(123)
    acc = TrafficAccounting(meter_provider=p.meter_provider, clock=clock)
    acc.add("r", "p", "up", "video", 10, 1200, 1, 0, 0, from_zero=True)
    m = p.metrics()
    [pt] = m["otel_rtc.traffic.packets"]
    assert pt.value == 10
    assert pt.attributes == {"otel_rtc.room": "r", "otel_rtc.direction": "up",
                             "otel_rtc.media.kind": "video"}
    assert m["otel_rtc.traffic.bytes"][0].value == 1200
    acc.add("r", "p", "up", "video", 15, 1800)
    assert p.metrics()["otel_rtc.traffic.packets"][0].value == 15
    assert next(s for n, _, _, s in rows(acc)) == 123


def test_snapshot_keeps_its_layout_objects_until_a_series_is_added():
    """The rate sampler recognises the layout by identity (SampleColumns' contract)."""
    acc = TrafficAccounting(meter_provider=False, per_participant=True)
    acc.add("r", "a", "up", "audio", 1, 10, from_zero=True)
    first = acc.snapshot()
    acc.add("r", "a", "up", "audio", 2, 20)
    second = acc.snapshot()
    assert second.names is first.names and second.attrs is first.attrs
    assert second.starts is first.starts
    assert second.values is not first.values and second.values[:2] == [2, 20]
    acc.add("r", "b", "down", "video", 5, 50, from_zero=True)
    third = acc.snapshot()
    assert third.names is not first.names and len(third.names) == 2 * len(first.names)
    assert [a["otel_rtc.participant"] for a in third.attrs[::5]] == ["a", "b"]
    assert rows(acc)[5:7] == [("otel_rtc.traffic.packets", third.attrs[5], 5, third.starts[5]),
                              ("otel_rtc.traffic.bytes", third.attrs[5], 50, third.starts[5])]


def test_bad_constructor_arguments():
    for kw in ({"max_participants": 0}, {"modulus": 1}, {"max_delta": 0}):
        with pytest.raises(ValueError):
            TrafficAccounting(meter_provider=False, **kw)


@given(st.lists(st.integers(min_value=0, max_value=2**20), min_size=1, max_size=50))
def test_wrapped_totals_sum_to_true_traffic(increments):
    acc = TrafficAccounting(meter_provider=False)
    true_total = 2**32 - 2**19  # start close to the wrap
    acc.add("r", "p", "up", "audio", true_total % W, 0, reset=True)
    for inc in increments:
        true_total += inc
        acc.add("r", "p", "up", "audio", true_total % W, 0)
    assert totals(acc) == true_total


def test_baseline_report_is_a_starting_point_not_traffic():
    # Counters that ran before tracking began (here: near the 32-bit wrap) must not be
    # counted as traffic of the first interval - that is the reference's fake spike.
    acc = TrafficAccounting(meter_provider=False)
    acc.add("r", "p", "up", "video", W - 5, W - 500, baseline=True)
    acc.add("r", "p", "up", "video", 10, 1000)  # wrapped: +15 packets, +1500 bytes
    assert totals(acc) == 15
    assert totals(acc, "otel_rtc.traffic.bytes") == 1500


def test_first_report_is_a_baseline_by_default_and_counted():
    # A transport that already carried 5 min of 1 MB/s when first reported: those bytes
    # happened at unknown times; counting them now would be the reference's fake spike.
    p = make_test_pipeline()
    acc = TrafficAccounting(meter_provider=p.meter_provider)
    acc.add("r", "p", "up", "video", 300_000, 300_000_000)
    acc.add("r", "p", "up", "video", 301_000, 301_000_000)
    assert totals(acc) == 1_000
    assert totals(acc, "otel_rtc.traffic.bytes") == 1_000_000
    assert acc.baselined == 1
    [pt] = p.metrics()["otel_rtc.traffic.baselined_reports"]
    assert pt.value == 1
    assert pt.attributes == {"otel_rtc.room": "r", "otel_rtc.direction": "up",
                             "otel_rtc.media.kind": "video"}
    assert _self_telemetry.drop_count() == 0  # not a rejection: a documented starting point


def test_from_zero_counts_the_first_report_in_full():
    acc = TrafficAccounting(meter_provider=False)
    acc.add("r", "p", "up", "audio", 5, 600, from_zero=True)  # transport created just now
    acc.add("r", "p", "up", "audio", 10, 1200)
    assert totals(acc) == 10
    assert totals(acc, "otel_rtc.traffic.bytes") == 1200
    assert acc.baselined == 0
    acc.add("r", "p", "up", "audio", 20, 2400, from_zero=True)  # only first reports
    assert totals(acc) == 20


def test_rejoin_after_forget_is_a_new_first_report():
    acc = TrafficAccounting(meter_provider=False)
    acc.add("r", "p", "up", "audio", 10, 0, from_zero=True)
    acc.forget("r", "p")
    acc.add("r", "p", "up", "audio", 500, 0)  # unknown history: baseline
    acc.add("r", "p", "up", "audio", 510, 0)
    assert totals(acc) == 20
    assert acc.baselined == 1


def test_zero_first_report_is_not_counted_as_baselined():
    acc = TrafficAccounting(meter_provider=False)
    acc.add("r", "p", "up", "audio", 0, 0)
    acc.add("r", "p", "up", "audio", 3, 30)
    assert totals(acc) == 3
    assert acc.baselined == 0  # nothing was left uncounted


@pytest.mark.parametrize("modulus", [2**32, 2**16])
def test_the_wrap_boundary_is_exactly_half_the_modulus(modulus):
    """A decrease is a wrap when the wrapped delta is at most modulus // 2, else rejected.

    Pins both sides of the boundary (and of the implausible-increase bound, which is the
    same half modulus), so moving it by one in either direction fails this test.
    """
    half = modulus // 2
    start = modulus - 100

    def wrapped_by(delta):
        # The counter went from `start` past the wrap: new total = (start + delta) % modulus.
        acc = TrafficAccounting(meter_provider=False, modulus=modulus)
        acc.add("r", "p", "up", "video", start, 0)  # baseline
        acc.add("r", "p", "up", "video", (start + delta) % modulus, 0)
        return totals(acc)

    _self_telemetry._reset_for_tests()
    assert wrapped_by(half) == half  # the largest wrap still believed
    assert _self_telemetry.drop_count("traffic", "negative_delta") == 0
    assert wrapped_by(half + 1) == 0  # one more: an unexplained decrease, rejected
    assert _self_telemetry.drop_count("traffic", "negative_delta") == 1

    def increased_by(delta):
        acc = TrafficAccounting(meter_provider=False, modulus=modulus)
        acc.add("r", "p", "up", "video", 0, 0, from_zero=True)
        acc.add("r", "p", "up", "video", 10, 0)
        acc.add("r", "p", "up", "video", 10 + delta, 0)
        return totals(acc) - 10

    assert increased_by(half) == half  # the largest increase still plausible
    assert _self_telemetry.drop_count("traffic", "implausible_delta") == 0
    assert increased_by(half + 1) == 0
    assert _self_telemetry.drop_count("traffic", "implausible_delta") == 1


# -- issue #11: caps under the SDK's limit, bounded bookkeeping ---------------------------


def test_caps_above_the_sdk_limit_are_refused():
    from otel_rtc.instrumentation.traffic import MAX_KEYS

    assert (MAX_KEYS + 1) * 6 <= 1999  # every series, overflow included, fits the SDK
    for kw in ({"max_rooms": MAX_KEYS + 1}, {"max_participants": MAX_KEYS + 1},
               {"max_streams": 0}, {"max_rooms": 2.5}):
        with pytest.raises(ValueError):
            TrafficAccounting(meter_provider=False, **kw)


def test_200k_rooms_fold_count_and_bounded_memory():
    import gc
    import tracemalloc

    acc = TrafficAccounting(meter_provider=False, sample_source=False)
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    for i in range(200_000):
        acc.add(f"room{i}", f"p{i}", "up", "audio", 10, 1000, from_zero=True)
    gc.collect()
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rooms = {a["otel_rtc.room"] for n, a, _, _ in rows(acc)
             if n == "otel_rtc.traffic.bytes"}
    assert len(rooms) == 300 + 1 and "_other" in rooms
    assert acc.streams == acc.max_streams  # baselines kept: capped
    folded = _self_telemetry.drop_count("traffic", "cardinality_cap")
    over = _self_telemetry.drop_count("traffic", "stream_cap")
    assert folded == acc.max_streams - 300  # every folded stream counted
    assert over == 200_000 - acc.max_streams  # every stream not kept counted
    # Counted traffic is conserved: what was kept is in the series, the rest dropped.
    assert totals(acc) == 10 * acc.max_streams
    assert after - base < 8 * 1024 * 1024, f"{(after - base) / 1e6:.1f} MB"


def test_caps_through_the_sdk_and_real_otlp(otlp_receiver, tmp_path, monkeypatch):
    """Over-cap rooms and participants fold into `_other` before the SDK's own limit:
    no point lands in the SDK's overflow series, and no traffic is lost."""
    from otel_rtc.sdk.configure import configure
    from tests._otlp_receiver import attrs_of

    monkeypatch.chdir(tmp_path)
    h = configure(set_global=False, endpoint=otlp_receiver.endpoint)
    try:
        acc = TrafficAccounting(meter_provider=h.meter_provider, per_participant=True,
                                sample_source=False)
        for i in range(3000):
            for kind in ("audio", "video"):
                acc.add(f"room{i % 700}", f"p{i}", "down", kind, 5, 500, from_zero=True)
        assert h.force_flush(timeout_s=10)
        assert otlp_receiver.wait_for_metric("otel_rtc.traffic.bytes")
    finally:
        h.shutdown(timeout_s=5)
    last = otlp_receiver.metrics()["otel_rtc.traffic.bytes"][-1]  # cumulative: latest
    points = [(attrs_of(p), p.as_int or p.as_double, p) for p in last.sum.data_points]
    assert not any("otel.metric.overflow" in a for a, _, _ in points)
    assert sum(v for _, v, _ in points) == 3000 * 2 * 500
    other = [v for a, v, _ in points if a.get("otel_rtc.participant") == "_other"]
    assert other and sum(other) == (3000 - 300) * 2 * 500
    # Each folded stream counted once (a room and a participant fold are one stream).
    assert _self_telemetry.drop_count("traffic", "cardinality_cap") == (3000 - 300) * 2
