"""Instrumented buffers: stamps, counted drops with reasons, depth gauge, burst ends."""

import asyncio
import queue
import threading

import pytest

from otel_rtc.core.clock import ManualClock
from otel_rtc.core.switch import BurstSwitches
from otel_rtc.instrumentation import self_telemetry as _self_telemetry
from otel_rtc.instrumentation.buffer_telemetry import enqueue_stamp
from otel_rtc.instrumentation.buffers import (
    BoundedBuffer,
    InstrumentedAsyncQueue,
    InstrumentedQueue,
)
from otel_rtc.instrumentation.bursts import BurstMonitor
from otel_rtc.testing import make_test_pipeline

BASE = 1_700_000_000_000_000_000
MS = 1_000_000


pytestmark = pytest.mark.usefixtures("fresh_self_telemetry")


def series(p, name):
    out = {}
    for pt in p.metrics().get(name, []):
        a = pt.attributes
        out[(a["otel_rtc.buffer.name"], a.get("otel_rtc.drop.reason"))] = pt.value
    return out


def test_queue_drops_raise_like_stdlib_and_are_counted(pipe):
    clock = ManualClock(BASE)
    q = InstrumentedQueue(2, name="rx", meter_provider=pipe.meter_provider, clock=clock)
    q.put("a")
    clock.advance(MS)
    q.put_nowait("b")
    with pytest.raises(queue.Full):
        q.put_nowait("c")
    with pytest.raises(queue.Full):
        q.put("d", block=False)
    with pytest.raises(queue.Full):
        q.put("e", timeout=0.001)
    assert q.offer("f") is False
    assert len(q) == q.qsize() == 2
    assert series(pipe, "otel_rtc.buffer.depth") == {("rx", None): 2}
    assert q.get() == "a" and enqueue_stamp.get() == BASE
    assert q.get_nowait() == "b" and enqueue_stamp.get() == BASE + MS
    with pytest.raises(queue.Empty):
        q.get_nowait()
    assert q.offer("g") is True
    assert series(pipe, "otel_rtc.buffer.enqueued") == {("rx", None): 3}
    assert series(pipe, "otel_rtc.buffer.dropped") == {("rx", "full"): 4}
    assert series(pipe, "otel_rtc.buffer.depth") == {("rx", None): 1}
    assert _self_telemetry.drop_count("buffer", "full") == 4


def test_queue_between_threads(pipe):
    q = InstrumentedQueue(1000, name="t", meter_provider=pipe.meter_provider)
    got = []

    def consumer():
        for _ in range(500):
            got.append((q.get(), enqueue_stamp.get()))

    t = threading.Thread(target=consumer)
    t.start()
    for i in range(500):
        q.put(i)
    t.join()
    assert [g[0] for g in got] == list(range(500))
    stamps = [g[1] for g in got]
    assert all(s is not None for s in stamps) and stamps == sorted(stamps)
    assert enqueue_stamp.get() is None  # the stamp lives in the consumer thread only


async def test_async_queue(pipe):
    clock = ManualClock(BASE)
    q = InstrumentedAsyncQueue(2, name="aq", meter_provider=pipe.meter_provider, clock=clock)
    assert q.offer(1) and q.offer(2)
    assert q.offer(3) is False
    with pytest.raises(asyncio.QueueFull):
        q.put_nowait(4)
    assert len(q) == 2
    assert await q.get() == 1 and enqueue_stamp.get() == BASE
    clock.advance(MS)

    await q.put(6)  # room for one: goes straight in
    blocked = asyncio.ensure_future(q.put(5))  # full: waits for room rather than dropping
    await asyncio.sleep(0)
    assert not blocked.done() and len(q) == 2
    assert q.get_nowait() == 2  # makes room; the waiting put completes
    await asyncio.wait_for(blocked, 1.0)
    assert [q.get_nowait(), q.get_nowait()] == [6, 5]
    with pytest.raises(asyncio.QueueEmpty):
        q.get_nowait()
    waiter = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    q.put_nowait(7)
    assert await waiter == 7
    assert series(pipe, "otel_rtc.buffer.dropped") == {("aq", "full"): 2}
    assert series(pipe, "otel_rtc.buffer.enqueued") == {("aq", None): 5}


def test_bounded_buffer_policies(pipe):
    clock = ManualClock(BASE)
    rej = BoundedBuffer(2, name="rej", meter_provider=pipe.meter_provider, clock=clock)
    old = BoundedBuffer(2, name="old", policy="drop_oldest", meter_provider=pipe.meter_provider,
                        clock=clock)
    for i in range(5):
        clock.advance(MS)
        assert rej.push(i) is (i < 2)
        assert old.push(i) is True
    assert [rej.pop(), rej.pop()] == [0, 1]
    assert old.pop_stamped() == (BASE + 4 * MS, 3)
    assert old.poll() == 4 and enqueue_stamp.get() == BASE + 5 * MS
    assert old.poll("none") == "none"
    with pytest.raises(IndexError):
        rej.pop()
    with pytest.raises(IndexError):
        old.pop_stamped()
    assert series(pipe, "otel_rtc.buffer.dropped") == {("rej", "full"): 3,
                                                       ("old", "drop_oldest"): 3}
    assert series(pipe, "otel_rtc.buffer.enqueued") == {("rej", None): 2, ("old", None): 5}
    assert _self_telemetry.drop_count("buffer", "drop_oldest") == 3


def test_depth_gauge_sums_buffers_of_the_same_name_and_forgets_dead_ones(pipe):
    a = BoundedBuffer(4, name="same", meter_provider=pipe.meter_provider)
    b = BoundedBuffer(4, name="same", meter_provider=pipe.meter_provider)
    c = BoundedBuffer(4, name="other", meter_provider=pipe.meter_provider)
    a.push(1)
    b.push(1)
    b.push(2)
    assert series(pipe, "otel_rtc.buffer.depth") == {("same", None): 3, ("other", None): 0}
    del c
    import gc

    gc.collect()
    assert series(pipe, "otel_rtc.buffer.depth") == {("same", None): 3}


def test_sdk_fallback_path():
    p = make_test_pipeline(local_aggregation=False)
    q = InstrumentedQueue(1, name="f", meter_provider=p.meter_provider)
    q.offer(1)
    q.offer(2)
    assert series(p, "otel_rtc.buffer.dropped") == {("f", "full"): 1}
    assert series(p, "otel_rtc.buffer.enqueued") == {("f", None): 1}
    p.meter_provider.shutdown()


async def test_empty_get_ends_the_burst(pipe):
    sw = BurstSwitches(environ={})
    sw.set(enabled=True)
    clock = ManualClock(BASE)
    mon = BurstMonitor("b", meter_provider=pipe.meter_provider, clock=clock,
                       stats_interval_s=None, switches=sw)
    try:
        bufs = [
            BoundedBuffer(4, bursts=mon, meter_provider=pipe.meter_provider, clock=clock),
            InstrumentedQueue(4, bursts=mon, meter_provider=pipe.meter_provider, clock=clock),
            InstrumentedAsyncQueue(4, bursts=mon, meter_provider=pipe.meter_provider,
                                   clock=clock),
        ]
        bb, tq, aq = bufs
        for k, take_empty in enumerate([bb.poll, tq.get_nowait, aq.get_nowait]):
            mon.processing_started(clock())
            clock.advance(MS)
            with pytest.raises(Exception) if k else _nullctx():
                take_empty()
            assert len(mon.raw()) == k + 1
        # a non-empty get does not end a burst; await get() on empty does
        mon.processing_started(clock())
        aq.put_nowait(1)
        assert await aq.get() == 1
        assert len(mon.raw()) == 3
        waiter = asyncio.ensure_future(aq.get())
        await asyncio.sleep(0)
        assert len(mon.raw()) == 4
        aq.put_nowait(2)
        await waiter
        # disabled: no burst calls
        sw.set(enabled=False)
        mon.processing_started(clock())
        bb.poll()
        assert mon.tracker.state is not None or len(mon.raw()) == 0
    finally:
        mon.close()


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


@pytest.mark.parametrize("cls", [InstrumentedQueue, InstrumentedAsyncQueue, BoundedBuffer])
@pytest.mark.parametrize("kw", [{"size": 0}, {"size": -1}, {"size": 1.5}, {"size": True},
                                {"name": ""}, {"bursts": 3}, {"clock": 1}])
def test_bad_arguments(cls, kw):
    kw = dict(kw)
    size = kw.pop("size", 4)
    with pytest.raises(ValueError):
        cls(size, **kw)


def test_bad_policy():
    with pytest.raises(ValueError):
        BoundedBuffer(4, policy="drop_newest")
