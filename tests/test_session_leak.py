"""100k join/resume/leave cycles leave no participant graph and no memory behind.

Reproduces the reference SFU leak: observer closures registered on a publisher's
notifiers captured the subscriber's participant graph and were never removed. Here every
observer is owned by the session and removed when it closes.
"""

import collections
import gc
import tracemalloc
import weakref

from opentelemetry.sdk.trace import TracerProvider

from otel_rtc.core.clock import NS_PER_S, ManualClock
from otel_rtc.instrumentation.pubsub import PubSubTelemetry
from otel_rtc.instrumentation.sessions import SessionRegistry
from otel_rtc.instrumentation.traffic import TrafficAccounting
from otel_rtc.testing import make_test_pipeline

CYCLES = 100_000


class Notifier:
    """A publisher-side notifier like TrackChangedNotifier."""

    def __init__(self):
        self.observers = {}

    def add(self, cb):
        self.observers[id(cb)] = cb

    def remove(self, cb):
        self.observers.pop(id(cb), None)


class Participant:
    """Stands for the heavy participant graph (transports, SDPs, down-tracks)."""

    def __init__(self, pid):
        self.pid = pid
        self.payload = bytearray(64)

    def on_track_changed(self, *_):
        return self.payload


def test_cycles_leave_nothing_behind():
    pipeline = make_test_pipeline()
    clock = ManualClock(0)
    reg = SessionRegistry(reap_interval_s=0, grace_s=1.0, clock=clock,
                          meter_provider=pipeline.meter_provider)
    pubsub = PubSubTelemetry(tracer_provider=TracerProvider(), clock=clock,
                             meter_provider=pipeline.meter_provider)
    traffic = TrafficAccounting(meter_provider=pipeline.meter_provider, clock=clock)
    publisher_changed = Notifier()
    publisher_removed = Notifier()
    refs = []
    left = [0]

    def cycle(i):
        pid = f"p{i}"
        room = f"room{i % 7}"
        part = Participant(pid)
        s = reg.join(room, pid, "signal")
        reg.join(room, pid, "media")
        # closures capturing the participant graph, owned by the session
        s.subscribe(publisher_changed.add, publisher_changed.remove, part.on_track_changed)
        s.subscribe(publisher_removed.add, publisher_removed.remove, lambda *_: part)
        s.own(lambda: pubsub.forget(room, pid))
        s.own(lambda: traffic.forget(room, pid))
        pubsub.subscription("t1", room=room, subscriber=pid, kind="video")  # left open
        traffic.add(room, pid, "up", "audio", i % 50, 100 * (i % 50))
        # resume: the old signal connection closes first, then the new one joins
        reg.leave(room, pid, "signal", expect_resume=True) if i % 2 else None
        reg.join(room, pid, "signal")
        if i % 2 == 0:
            reg.leave(room, pid, "signal")  # other ordering: old closes after new joined
        reg.leave(room, pid, "media")
        reg.leave(room, pid, "signal")
        if i % 1000 == 0:
            refs.append(weakref.ref(part))
        clock.advance(NS_PER_S // 100)
        if i % 500 == 0:
            reg.reap()
        if i % 20_000 == 0:
            pipeline.metrics()

    reg._on_event = lambda e: left.__setitem__(0, left[0] + (e.name == "participant_left"))

    def settle():
        clock.advance(5 * NS_PER_S)
        reg.reap()
        pipeline.metrics()
        gc.collect()

    warm, traced = CYCLES // 5, CYCLES // 5
    for i in range(warm):  # warm up caches, interning and recorder state
        cycle(i)
    settle()
    objects_early = len(gc.get_objects())
    for i in range(warm, CYCLES - traced):
        cycle(i)
    settle()
    objects_late = len(gc.get_objects())
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    for i in range(CYCLES - traced, CYCLES):
        cycle(i)
    settle()
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert left[0] == CYCLES
    assert publisher_changed.observers == {} and publisher_removed.observers == {}
    assert len(reg) == 0 and reg.active == 0
    assert pubsub.tracked == 0 and traffic.streams == 0
    assert all(r() is None for r in refs), "a participant graph is still reachable"
    assert sum(type(o) is Participant for o in gc.get_objects()) == 0
    assert objects_late - objects_early < 500, (objects_early, objects_late)
    growth = after - base
    assert growth < 128 * 1024, f"memory grew by {growth} bytes over {traced} cycles"


def test_ended_sessions_are_bounded_by_count_within_the_grace_period():
    """100k resume cycles of one participant inside the 3-minute grace period: the
    ended sessions kept are capped by ``max_ended``, so memory stops growing."""
    from otel_rtc.core.sessions import SessionCore

    clock = ManualClock(0)
    evicted = collections.Counter()

    def reject(reason):
        evicted[reason] += 1

    core = SessionCore(clock=clock, max_ended=1_000, on_reject=reject)

    def cycles(n):
        for _ in range(n):
            core.join("r", "p", "signal")
            core.join("r", "p", "media")
            core.leave("r", "p", "signal", expect_resume=True)
            core.join("r", "p", "signal")
            core.leave("r", "p", "media")
            core.leave("r", "p", "signal")
            clock.advance(NS_PER_S // 1000)  # 100 s in all: nothing reaches the grace

    tracemalloc.start()
    cycles(5_000)  # past the cap
    gc.collect()
    base, _ = tracemalloc.get_traced_memory()
    cycles(95_000)
    gc.collect()
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert core.ended == 1_000
    assert evicted["ended_evicted"] == 100_000 - 1_000
    assert after - base < 64 * 1024, f"memory grew by {after - base} bytes"
