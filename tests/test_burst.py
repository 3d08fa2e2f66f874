"""Pure burst accounting: the A-E example, the reference log lines, frames, edge cases."""

import math
import re
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_rtc.core.burst_stats import REFERENCE_FIELDS, BurstRecord, FrameStats
from otel_rtc.core.bursts import BurstTracker
from otel_rtc.core.clock import ManualClock

BASE = 1_700_000_000_000_000_000  # an epoch-domain origin, like time.time_ns()
MS = 1_000_000


def ms(t: float) -> int:
    return BASE + round(t * MS)


def inconsistencies(f: FrameStats, rel_tol: float = 1e-4) -> list[str]:
    """The relations that must hold between the fields of any frame (the test oracle).

    Also usable on stats from elsewhere (e.g. parsed log lines): ``rel_tol`` absorbs
    the rounding of printed values.

    Returns:
        One message per violated relation; empty when consistent.
    """
    bad: list[str] = []

    def le(a: float, b: float, what: str) -> None:
        if a > b and not math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-12):
            bad.append(f"{what}: {a!r} > {b!r}")

    n = f.data_points
    if f.frame_time_dur > 0:
        expect = f.total_message_count / f.frame_time_dur
        if not math.isclose(f.total_message_throughput_rate, expect, rel_tol=rel_tol):
            bad.append(
                f"total_message_throughput_rate {f.total_message_throughput_rate!r} "
                f"!= total_message_count / frame_time_dur = {expect!r}"
            )
    if n == 0:
        if f.total_message_count or f.total_message_burst_duration:
            bad.append("bursts counted with data_points == 0")
        return bad
    le(n, f.total_message_count, "data_points <= total_message_count")
    le(f.max_message_burst_count, f.total_message_count,
       "max_message_burst_count <= total_message_count")
    le(f.total_message_count, n * f.max_message_burst_count,
       "total_message_count <= data_points * max_message_burst_count")
    le(f.max_message_burst_duration, f.total_message_burst_duration,
       "max_message_burst_duration <= total_message_burst_duration")
    le(f.total_message_burst_duration, n * f.max_message_burst_duration,
       "total_message_burst_duration <= data_points * max_message_burst_duration")
    le(f.max_message_break_duration, f.total_message_break_duration,
       "max_message_break_duration <= total_message_break_duration")
    le(f.total_message_break_duration, n * f.max_message_break_duration,
       "total_message_break_duration <= data_points * max_message_break_duration")
    lo, hi = f.min_message_burst_throughput_rate, f.max_message_burst_throughput_rate
    le(lo, f.avg_message_burst_throughput_rate, "min rate <= avg rate")
    le(f.avg_message_burst_throughput_rate, hi, "avg rate <= max rate")
    # Upper bounds on the max rate would not survive zero-duration bursts (no rate):
    # only lower bounds are checked.
    if f.total_message_burst_duration > 0 and hi > 0:
        # sum c / sum d is at least the duration-weighted mean of the per-burst rates.
        pooled = f.total_message_count / f.total_message_burst_duration
        le(lo, pooled, "min rate <= total_message_count / total_message_burst_duration")
    if f.max_message_burst_duration > 0 and hi > 0:
        # The longest burst has a rate <= c_max / d_max; every burst with a rate has
        # at least one message and lasts at most d_max.
        ratio = f.max_message_burst_count / f.max_message_burst_duration
        le(lo, ratio, "min rate <= max_message_burst_count / max_message_burst_duration")
        le(1 / f.max_message_burst_duration, lo,
           "1 / max_message_burst_duration <= min rate")
    # Only one burst and one break can straddle the frame start (bursts never overlap).
    le(f.total_message_burst_duration, f.frame_time_dur + f.max_message_burst_duration,
       "total_message_burst_duration <= frame_time_dur + max_message_burst_duration")
    le(f.total_message_burst_duration + f.total_message_break_duration,
       f.frame_time_dur + f.max_message_burst_duration + f.max_message_break_duration,
       "bursts + breaks <= frame_time_dur + max burst + max break")
    le(f.max_message_burst_duration, f.worst_case_latency_s,
       "max_message_burst_duration <= worst_case_latency_s")
    return bad


# -- the A-E example of the reference --------------------------------------------------
# Each message: (name, intended arrival ms, processing start ms, processing finish ms).
# Ideal: everything arrives once, in order, and is processed in order.
IDEAL = [
    ("A", 1, 4, 8),
    ("B", 2, 8, 11),
    ("C", 3, 11, 14),
    ("D", 4, 14, 18),
    ("E", 5, 18, 20),
]
# Realistic: a tiny buffer drops C and E, they are resent (ACK on processing start, resend
# after 4 ms). A is pulled out at 4 and processes until 7-8; B at 8 while C's resend hits
# the buffer; E's third attempt gets in when D is pulled in. Order becomes A B D C E; the
# processing times are the same, the arrival times (originals) are the same.
REALISTIC = [
    ("A", 1, 4, 8),
    ("B", 2, 8, 11),
    ("D", 4, 11, 15),
    ("C", 3, 15, 18),
    ("E", 5, 18, 20),
]


def replay(timeline, tracker):
    """Drive a single worker: find the buffer empty before and after the busy period."""
    tracker.buffer_empty(ms(0))  # idle: no burst to end
    for _name, _arrived, start, _finish in timeline:
        tracker.processing_started(ms(start))
    tracker.buffer_empty(ms(timeline[-1][3]))


def actual_worst(timeline):
    return max(finish - arrived for _n, arrived, _s, finish in timeline)


@pytest.mark.parametrize("timeline", [IDEAL, REALISTIC], ids=["ideal", "realistic"])
def test_reference_a_to_e_burst(timeline):
    ends = []
    tr = BurstTracker(clock=ManualClock(ms(0)), on_burst_end=ends.append)
    replay(timeline, tr)
    assert not tr.in_burst
    [rec] = ends
    assert rec == BurstRecord(ms(4), ms(20), 5, None, 1)
    # "if all the messages arrived simultaneously the last message would be waiting 16ms"
    assert rec.worst_case_latency_s == pytest.approx(0.016)
    # The truth (only known to this test): E, and in the realistic case also C, wait 15 ms.
    assert actual_worst(timeline) == 15
    worst = [n for n, a, _s, f in timeline if f - a == 15]
    assert worst == (["E"] if timeline is IDEAL else ["C", "E"])
    assert rec.worst_case_latency_s * 1000 >= actual_worst(timeline)
    assert rec.throughput_rate == pytest.approx(5 / 0.016)
    # The receiving application was constantly busy in either case.
    assert sum(f - s for _n, _a, s, f in timeline) == 16


def test_ideal_and_realistic_are_indistinguishable():
    a, b = BurstTracker(clock=ManualClock(ms(0))), BurstTracker(clock=ManualClock(ms(0)))
    replay(IDEAL, a)
    replay(REALISTIC, b)
    assert a.raw() == b.raw()
    assert a.take_frame(ms(30)) == b.take_frame(ms(30))


def test_a_to_e_frame_stats():
    tr = BurstTracker(clock=ManualClock(ms(0)))
    replay(IDEAL, tr)
    f = tr.take_frame(ms(50))
    assert f.data_points == 1
    assert f.total_message_count == 5
    assert f.frame_time_dur == pytest.approx(0.050)
    assert f.total_message_burst_duration == pytest.approx(0.016)
    assert f.max_message_burst_duration == pytest.approx(0.016)
    assert f.total_message_break_duration == 0.0  # the first burst has no break before it
    assert f.total_message_throughput_rate == pytest.approx(5 / 0.050)
    assert f.avg_message_burst_throughput_rate == pytest.approx(5 / 0.016)
    assert f.worst_case_latency_s == pytest.approx(0.016)
    assert f.mode == "worker"
    assert inconsistencies(f) == []


# -- the two reference log lines ---------------------------------------------------------
REF_LINES = [
    "logMessageBurstStats {'avg_message_burst_throughput_rate':r1768.89, 'data_points':i702, "
    "'frame_time_dur':r53.1146, 'max_message_break_duration':r5.85154, "
    "'max_message_burst_count':i227, 'max_message_burst_duration':r0.307471, "
    "'max_message_burst_throughput_rate':r12422.4, 'min_message_burst_throughput_rate':r163.62, "
    "'mode':'worker', 'total_message_break_duration':r47.1424, "
    "'total_message_burst_duration':r6.48097, 'total_message_count':i6341, "
    "'total_message_throughput_rate':r119.383}",
    "logMessageBurstStats {'avg_message_burst_throughput_rate':r1097.77, 'data_points':i115, "
    "'frame_time_dur':r10.1428, 'max_message_break_duration':r2.9249, "
    "'max_message_burst_count':i216, 'max_message_burst_duration':r0.314165, "
    "'max_message_burst_throughput_rate':r3458.5, 'min_message_burst_throughput_rate':r438.102, "
    "'mode':'worker', 'total_message_break_duration':r9.07722, "
    "'total_message_burst_duration':r1.16166, 'total_message_count':i1082, "
    "'total_message_throughput_rate':r106.676}",
]


def parse_llsd_line(line: str) -> FrameStats:
    """Parse the LLSD notation of the reference log line (r=real, i=integer, '...'=str)."""
    body = line.split(" ", 1)[1]
    fields = {}
    for key, kind, number, text in re.findall(r"'(\w+)':(?:(r|i)([-0-9.e+]+)|'([^']*)')", body):
        fields[key] = float(number) if kind == "r" else int(number) if kind == "i" else text
    # The reference has no worst-case field; from completed bursts it is the longest one.
    fields["worst_case_latency_s"] = fields["max_message_burst_duration"]
    return FrameStats(**fields)


@pytest.mark.parametrize("line", REF_LINES, ids=["line1", "line2"])
def test_reference_log_lines_are_consistent_with_our_formulas(line):
    f = parse_llsd_line(line)
    assert f.mode == "worker"
    # Every field of the reference is a field of FrameStats, in the same order.
    keys = re.findall(r"'(\w+)':", line)
    assert keys == [k for k in f.to_dict() if k != "worst_case_latency_s"]
    assert inconsistencies(f) == []
    # total_message_throughput_rate = total_message_count / frame_time_dur
    assert f.total_message_count / f.frame_time_dur == pytest.approx(
        f.total_message_throughput_rate, rel=1e-5)
    # avg_message_burst_throughput_rate is NOT the pooled rate sum(c)/sum(d) nor the frame
    # rate: it is a mean of per-burst rates (which lies between their min and max).
    pooled = f.total_message_count / f.total_message_burst_duration
    assert not math.isclose(pooled, f.avg_message_burst_throughput_rate, rel_tol=0.05)
    assert not math.isclose(f.total_message_throughput_rate,
                            f.avg_message_burst_throughput_rate, rel_tol=0.05)
    assert (f.min_message_burst_throughput_rate < f.avg_message_burst_throughput_rate
            < f.max_message_burst_throughput_rate)
    # Whole bursts (and the break before them) are counted in the frame where they end,
    # so bursts + breaks exceed the frame by at most one burst and one break.
    covered = f.total_message_burst_duration + f.total_message_break_duration
    assert f.frame_time_dur < covered
    assert covered - f.frame_time_dur < f.max_message_burst_duration + f.max_message_break_duration


@pytest.mark.parametrize(
    "change",
    [
        {"total_message_throughput_rate": 150.0},
        {"avg_message_burst_throughput_rate": 20_000.0},
        {"max_message_burst_count": 7000},
        {"total_message_burst_duration": 300.0},
        {"min_message_burst_throughput_rate": 1_000.0},
        {"max_message_burst_throughput_rate": 500.0},
        {"data_points": 10},
        {"max_message_break_duration": 50.0},
        {"total_message_break_duration": 3.0},
    ],
)
def test_inconsistent_stats_are_detected(change):
    import dataclasses

    f = dataclasses.replace(parse_llsd_line(REF_LINES[0]), **change)
    assert inconsistencies(f) != []


def test_log_line_round_trips_as_json():
    import json

    tr = BurstTracker(clock=ManualClock(ms(0)))
    replay(IDEAL, tr)
    f = tr.take_frame(ms(40))
    head, body = f.to_log_line().split(" ", 1)
    assert head == "logMessageBurstStats"
    doc = json.loads(body)
    assert tuple(doc) == REFERENCE_FIELDS  # exactly the reference's fields, in its order
    assert FrameStats(**doc, worst_case_latency_s=f.worst_case_latency_s) == f


# -- frames --------------------------------------------------------------------------------
def test_burst_straddling_a_frame_is_counted_whole_where_it_ends():
    tr = BurstTracker(clock=ManualClock(ms(0)))
    tr.processing_started(ms(1))
    tr.buffer_empty(ms(3))  # burst 1: 1..3
    tr.processing_started(ms(8))  # burst 2 starts in frame 1 (break 5 ms) ...
    f1 = tr.take_frame(ms(10))
    assert tr.in_burst
    assert f1.data_points == 1 and f1.total_message_count == 1
    assert f1.worst_case_latency_s == pytest.approx(0.002)  # open burst: 8..10
    tr.processing_started(ms(11))
    tr.buffer_empty(ms(14))  # ... and ends in frame 2
    f2 = tr.take_frame(ms(20))
    assert f2.frame_time_dur == pytest.approx(0.010)
    assert f2.data_points == 1
    assert f2.total_message_count == 2  # both messages, one of which started in frame 1
    assert f2.total_message_burst_duration == pytest.approx(0.006)
    assert f2.total_message_break_duration == pytest.approx(0.005)
    assert f2.total_message_burst_duration + f2.total_message_break_duration > f2.frame_time_dur
    assert inconsistencies(f1) == [] and inconsistencies(f2) == []
    f3 = tr.take_frame(ms(30))
    assert f3.data_points == 0 and f3.total_message_count == 0
    assert f3.total_message_throughput_rate == 0.0 and f3.worst_case_latency_s == 0.0


def test_open_long_burst_shows_in_worst_case_before_it_ends():
    tr = BurstTracker(clock=ManualClock(ms(0)))
    tr.processing_started(ms(5))
    f = tr.take_frame(ms(5005))
    assert f.data_points == 0
    assert f.worst_case_latency_s == pytest.approx(5.0)
    assert inconsistencies(f) == []


def brute_force(records, frame_s, mode="worker"):
    """Independent per-frame computation from raw records."""
    rates = [r.message_count / r.duration_s for r in records if r.duration_s > 0]
    breaks = [r.break_before_s for r in records if r.break_before_s is not None]
    count = sum(r.message_count for r in records)
    return FrameStats(
        avg_message_burst_throughput_rate=sum(rates) / len(rates) if rates else 0.0,
        data_points=len(records),
        frame_time_dur=frame_s,
        max_message_break_duration=max(breaks, default=0.0),
        max_message_burst_count=max((r.message_count for r in records), default=0),
        max_message_burst_duration=max((r.duration_s for r in records), default=0.0),
        max_message_burst_throughput_rate=max(rates, default=0.0),
        min_message_burst_throughput_rate=min(rates, default=0.0),
        mode=mode,
        total_message_break_duration=sum(breaks),
        total_message_burst_duration=sum(r.duration_s for r in records),
        total_message_count=count,
        total_message_throughput_rate=count / frame_s if frame_s > 0 else 0.0,
        worst_case_latency_s=max((r.duration_s for r in records), default=0.0),
    )


def assert_stats_close(a: FrameStats, b: FrameStats):
    for k, v in a.to_dict().items():
        w = getattr(b, k)
        if isinstance(v, float):
            assert v == pytest.approx(w, rel=1e-9, abs=1e-12), k
        else:
            assert v == w, k


# A worker's life as steps: ("msg", gap_before_start_us, processing_us) or ("empty", gap_us)
# or ("frame", gap_us).
steps = st.lists(
    st.one_of(
        st.tuples(st.just("msg"), st.integers(0, 5_000), st.integers(0, 5_000)),
        st.tuples(st.just("empty"), st.integers(0, 50_000)),
        st.tuples(st.just("frame"), st.integers(0, 50_000)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(steps)
def test_frames_match_brute_force_over_raw_records(script):
    t = ms(0)
    tr = BurstTracker(clock=ManualClock(t))
    frame_start = t
    pending: list = []
    total_started = 0
    counted = 0
    for step in script:
        if step[0] == "msg":
            t += step[1] * 1000
            tr.processing_started(t)
            total_started += 1
            t += step[2] * 1000
        else:
            t += step[1] * 1000
            if step[0] == "empty":
                tr.buffer_empty(t)
            else:
                new = tr.raw(clear=True)
                f = tr.take_frame(t)
                expect = brute_force(pending + new, (t - frame_start) / 1e9)
                open_s = (t - tr.burst_start_ns) / 1e9 if tr.in_burst else 0.0
                expect = FrameStats(**{**expect.to_dict(), "worst_case_latency_s": max(
                    expect.worst_case_latency_s, open_s)})
                assert_stats_close(f, expect)
                assert inconsistencies(f) == []
                counted += f.total_message_count
                pending = []
                frame_start = t
    t += 1000
    tr.buffer_empty(t)
    f = tr.take_frame(t)
    counted += f.total_message_count
    assert counted == total_started
    assert inconsistencies(f) == []


# -- raw ring, clamps, invalid input, callbacks ----------------------------------------------
def test_raw_ring_overflow_is_counted():
    drops = []
    tr = BurstTracker(clock=ManualClock(ms(0)), raw_capacity=3, on_drop=drops.append)
    for i in range(5):
        tr.processing_started(ms(10 * i))
        tr.buffer_empty(ms(10 * i + 2))
    assert [r.seq for r in tr.raw()] == [3, 4, 5]
    assert drops == ["raw_overflow", "raw_overflow"]
    assert len(tr.raw(clear=True)) == 3
    assert tr.raw() == []
    assert tr.take_frame(ms(100)).data_points == 5  # stats are not limited by the ring


def test_zero_raw_capacity_keeps_nothing_and_drops_nothing():
    drops = []
    tr = BurstTracker(clock=ManualClock(ms(0)), raw_capacity=0, on_drop=drops.append)
    tr.processing_started(ms(1))
    tr.buffer_empty(ms(2))
    assert tr.raw() == [] and drops == []


def test_clock_going_backwards_is_clamped_and_counted():
    clamps = []
    tr = BurstTracker(clock=ManualClock(ms(100)), on_clamp=lambda: clamps.append(1))
    tr.processing_started(ms(110))
    tr.buffer_empty(ms(105))  # end before start
    [rec] = tr.raw()
    assert rec.duration_ns == 0 and rec.throughput_rate is None
    tr.processing_started(ms(100))  # starts before the previous end: break < 0
    tr.buffer_empty(ms(101))
    assert tr.raw()[1].break_before_ns == 0
    f = tr.take_frame(ms(50))  # frame end before frame start
    assert f.frame_time_dur == 0.0 and f.total_message_throughput_rate == 0.0
    assert len(clamps) == 3
    # The zero-duration burst is excluded from the rate statistics.
    assert f.max_message_burst_throughput_rate == pytest.approx(1 / 0.001)
    assert f.min_message_burst_throughput_rate == pytest.approx(1 / 0.001)


def test_invalid_timestamps_are_dropped_not_raised():
    drops = []
    tr = BurstTracker(clock=ManualClock(ms(0)), on_drop=drops.append)
    tr.processing_started(None)  # type: ignore[arg-type]
    assert not tr.in_burst
    tr.processing_started(ms(1))
    tr.processing_started(2.0)  # type: ignore[arg-type]  # inside a burst: rejected too
    tr.buffer_empty(1.5)  # type: ignore[arg-type]
    assert tr.in_burst
    tr.buffer_empty(ms(3))
    assert drops == ["invalid"] * 3
    # Only accepted messages count: the rejected ones are in no burst.
    assert tr.raw()[0].message_count == 1
    tr.processing_started(True)  # type: ignore[arg-type]  # a bool is not a timestamp
    tr.processing_started(ms(5))
    tr.buffer_empty(ms(6))
    assert tr.raw()[1].message_count == 1 and len(drops) == 4


def test_callback_errors_are_contained():
    errors = []

    def boom(rec):
        raise RuntimeError("user bug")

    tr = BurstTracker(clock=ManualClock(ms(0)), on_burst_end=boom, on_error=errors.append)
    tr.processing_started(ms(1))
    tr.buffer_empty(ms(2))
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert tr.take_frame(ms(3)).data_points == 1


def test_abandon_forgets_the_burst_and_the_break():
    tr = BurstTracker(clock=ManualClock(ms(0)))
    tr.processing_started(ms(1))
    tr.buffer_empty(ms(2))
    tr.processing_started(ms(3))
    tr.processing_started(ms(4))
    tr.abandon()
    assert not tr.in_burst
    tr.processing_started(ms(10))
    tr.buffer_empty(ms(11))
    _first, second = tr.raw()
    assert second.message_count == 1 and second.break_before_ns is None


def test_buffer_empty_outside_a_burst_is_a_no_op():
    ends = []
    tr = BurstTracker(clock=ManualClock(ms(0)), on_burst_end=ends.append)
    for i in range(3):
        tr.buffer_empty(ms(i))
    assert ends == [] and tr.take_frame(ms(5)).data_points == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"raw_capacity": -1},
        {"raw_capacity": 1.5},
        {"raw_capacity": True},
        {"mode": 3},
        {"clock": 5},
        {"on_burst_end": "x"},
        {"on_drop": 1},
    ],
)
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ValueError):
        BurstTracker(**kwargs)


def test_concurrent_calls_lose_no_message():
    tr = BurstTracker()
    n_threads, per = 4, 5_000
    totals = []
    stop = threading.Event()

    def worker(k):
        for i in range(per):
            tr.processing_started(time.time_ns())
            if i % 50 == k:
                tr.buffer_empty(time.time_ns())

    def framer():
        while not stop.is_set():
            totals.append(tr.take_frame().total_message_count)
            tr.raw(clear=True)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    f = threading.Thread(target=framer)
    f.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    f.join()
    tr.buffer_empty(time.time_ns())
    totals.append(tr.take_frame().total_message_count)
    assert sum(totals) == n_threads * per
    assert not tr.in_burst
