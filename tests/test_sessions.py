"""Participant sessions: ref counting across sources, resume orderings, exactly-once events."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from otel_rtc.core.clock import NS_PER_S, ManualClock
from otel_rtc.core.sessions import (
    CLOSED,
    PARTICIPANT_JOINED,
    PARTICIPANT_LEFT,
    SUSPENDED,
    SessionCore,
)
from otel_rtc.instrumentation import self_telemetry as _self_telemetry
from otel_rtc.instrumentation.sessions import SessionRegistry
from otel_rtc.testing import make_test_pipeline

GRACE = 180 * NS_PER_S


@pytest.fixture(autouse=True)
def _reset():
    _self_telemetry._reset_for_tests()


class Harness:
    """A registry on a manual clock recording the events it publishes."""

    def __init__(self, pipeline=None, **kw):
        self.clock = ManualClock(1_000 * NS_PER_S)
        self.events = []
        self.pipeline = pipeline or make_test_pipeline()
        self.logs = InMemoryLogRecordExporter()
        lp = LoggerProvider()
        lp.add_log_record_processor(SimpleLogRecordProcessor(self.logs))
        self.reg = SessionRegistry(
            reap_interval_s=0, clock=self.clock, on_event=self.events.append,
            meter_provider=self.pipeline.meter_provider, logger_provider=lp, **kw)

    def names(self, participant="p1"):
        return [e.name for e in self.events if e.participant == participant]

    def advance(self, seconds):
        self.clock.advance(int(seconds * NS_PER_S))


def test_ref_counted_over_signal_and_media():
    h = Harness()
    h.reg.join("r", "p1", "signal")
    h.reg.join("r", "p1", "media")
    h.reg.leave("r", "p1", "signal")
    assert h.names() == [PARTICIPANT_JOINED]
    h.reg.leave("r", "p1", "media")
    assert h.names() == [PARTICIPANT_JOINED, PARTICIPANT_LEFT]
    assert h.events[-1].reason == "left"


def test_resume_old_close_before_new_join():
    h = Harness()
    h.reg.join("r", "p1", "signal")
    h.advance(5)
    # the old signal connection closes because the client is resuming
    h.reg.leave("r", "p1", "signal", expect_resume=True)
    assert h.reg.session("r", "p1").state == SUSPENDED
    assert h.reg.active == 1
    h.advance(2)
    s = h.reg.join("r", "p1", "signal")
    assert s.resumes == 1
    assert h.names() == [PARTICIPANT_JOINED]  # connected state kept: no second join
    h.advance(10)
    h.reg.leave("r", "p1", "signal")
    assert h.names() == [PARTICIPANT_JOINED, PARTICIPANT_LEFT]
    left = h.events[-1]
    assert left.reason == "left" and left.resumes == 1
    assert left.duration_ns == 17 * NS_PER_S


def test_resume_new_join_before_old_close():
    h = Harness()
    h.reg.join("r", "p1", "signal")
    h.reg.join("r", "p1", "media")
    h.reg.join("r", "p1", "signal")  # the new signal connection
    h.reg.leave("r", "p1", "signal")  # the old one closes afterwards
    assert h.names() == [PARTICIPANT_JOINED]
    h.reg.leave("r", "p1", "media")
    assert h.names() == [PARTICIPANT_JOINED]
    h.reg.leave("r", "p1", "signal")
    assert h.names() == [PARTICIPANT_JOINED, PARTICIPANT_LEFT]


def test_resume_before_old_close_with_reaping_in_between():
    h = Harness()
    h.reg.join("r", "p1", "signal")
    h.reg.join("r", "p1", "signal")  # resume arrives first
    h.advance(200)  # beyond the 3 min grace period
    h.reg.reap()
    h.reg.leave("r", "p1", "signal")  # old connection closes late
    h.advance(200)
    h.reg.reap()
    assert h.reg.session("r", "p1") is not None  # open sessions are never reaped
    h.reg.leave("r", "p1", "signal")
    assert h.names() == [PARTICIPANT_JOINED, PARTICIPANT_LEFT]


def test_suspended_session_survives_reap_within_grace_then_resumes():
    h = Harness()
    h.reg.join("r", "p1", "signal")
    h.reg.leave("r", "p1", "signal", expect_resume=True)
    h.advance(60)
    h.reg.reap()
    h.reg.join("r", "p1", "signal")
    h.advance(300)
    h.reg.reap()  # the old queue entry must not close the revived session
    assert h.names() == [PARTICIPANT_JOINED]
    h.reg.leave("r", "p1", "signal")
    assert h.names() == [PARTICIPANT_JOINED, PARTICIPANT_LEFT]


def test_resume_that_never_comes_still_sends_participant_left_once():
    h = Harness()
    h.reg.join("r", "p1", "signal")
    h.reg.leave("r", "p1", "signal", expect_resume=True)
    h.advance(179)
    h.reg.reap()
    assert h.names() == [PARTICIPANT_JOINED]
    h.advance(2)
    h.reg.reap()
    h.reg.reap()
    assert h.names() == [PARTICIPANT_JOINED, PARTICIPANT_LEFT]
    assert h.events[-1].reason == "resume_timeout"
    assert len(h.reg) == 0 and h.reg.active == 0


def test_closed_session_is_reaped_after_grace_and_rejoin_is_a_new_session():
    h = Harness()
    h.reg.join("r", "p1", "signal")
    h.reg.leave("r", "p1", "signal")
    assert h.reg.session("r", "p1").state == CLOSED
    h.reg.join("r", "p1", "signal")  # a new session in the same room
    assert h.names() == [PARTICIPANT_JOINED, PARTICIPANT_LEFT, PARTICIPANT_JOINED]
    h.advance(181)
    h.reg.reap()
    assert h.reg.session("r", "p1").state != CLOSED  # the new session is not reaped
    h.reg.leave("r", "p1", "signal")
    h.advance(181)
    h.reg.reap()
    assert len(h.reg) == 0


def test_same_participant_in_two_rooms_is_two_sessions():
    h = Harness()
    h.reg.join("a", "p1", "signal")
    h.reg.join("b", "p1", "signal")
    h.reg.leave("a", "p1", "signal")
    assert [(e.name, e.room) for e in h.events] == [
        (PARTICIPANT_JOINED, "a"), (PARTICIPANT_JOINED, "b"), (PARTICIPANT_LEFT, "a")]
    assert h.reg.active == 1


def test_unbalanced_leave_is_counted_not_raised():
    h = Harness()
    h.reg.leave("r", "ghost", "signal")
    h.reg.join("r", "p1", "signal")
    h.reg.leave("r", "p1", "media")
    assert _self_telemetry.drop_count("sessions", "unknown_session") == 1
    assert _self_telemetry.drop_count("sessions", "unknown_source") == 1
    assert h.names() == [PARTICIPANT_JOINED]


def test_observers_are_removed_when_the_session_closes():
    h = Harness()
    notifier = []
    s = h.reg.join("r", "p1", "signal")
    s.subscribe(notifier.append, notifier.remove, lambda *_: None)
    s.own(lambda: notifier.append("cleanup-ran"))
    assert len(notifier) == 1 and s.owned == 2
    h.reg.leave("r", "p1", "signal", expect_resume=True)
    assert len(notifier) == 1  # suspended: observers kept for the resume
    h.advance(181)
    h.reg.reap()
    assert notifier == ["cleanup-ran"] and s.owned == 0
    late = []
    s.own(lambda: late.append(1))  # registering on a closed session runs at once
    assert late == [1]


def test_failing_cleanup_and_callback_are_contained():
    def boom(_ev):
        raise RuntimeError("webhook down")

    h = Harness()
    h.reg._on_event = boom
    s = h.reg.join("r", "p1", "signal")
    s.own(lambda: 1 / 0)
    h.reg.leave("r", "p1", "signal")
    assert _self_telemetry.error_count("sessions.on_event") == 2
    assert _self_telemetry.error_count("sessions.cleanup") == 1


def test_events_as_otel_logs_and_metrics():
    h = Harness()
    h.reg.join("r", "p1", "signal")
    h.reg.join("r", "p2", "signal")
    h.advance(30)
    h.reg.leave("r", "p1", "signal")
    logs = [r.log_record for r in h.logs.get_finished_logs()]
    assert [lr.event_name for lr in logs] == [PARTICIPANT_JOINED, PARTICIPANT_JOINED,
                                              PARTICIPANT_LEFT]
    assert logs[2].attributes["otel_rtc.participant"] == "p1"
    assert logs[2].attributes["otel_rtc.session.duration"] == 30.0
    m = h.pipeline.metrics()
    assert m["otel_rtc.session.joins"][0].value == 2
    assert m["otel_rtc.session.leaves"][0].value == 1
    assert m["otel_rtc.session.leaves"][0].attributes == {"otel_rtc.session.leave_reason": "left"}
    assert m["otel_rtc.session.duration"][0].sum == 30.0
    assert m["otel_rtc.session.active"][0].value == 1


def test_metrics_through_plain_sdk_pipeline():
    h = Harness(pipeline=make_test_pipeline(local_aggregation=False))
    h.reg.join("r", "p1", "signal")
    h.reg.leave("r", "p1", "signal")
    m = h.pipeline.metrics()
    assert m["otel_rtc.session.joins"][0].value == 1
    assert m["otel_rtc.session.active"][0].value == 0


def test_close_ends_every_session_once():
    h = Harness()
    h.reg.join("r", "p1", "signal")
    h.reg.join("r", "p2", "signal")
    h.reg.leave("r", "p2", "signal", expect_resume=True)
    h.reg.close()
    h.reg.close()
    assert sorted(e.participant for e in h.events if e.name == PARTICIPANT_LEFT) == ["p1", "p2"]


def test_reaper_thread_runs_without_being_called():
    import threading

    done = threading.Event()
    clock = ManualClock(0)
    reg = SessionRegistry(grace_s=0, reap_interval_s=0.01, clock=clock,
                          on_event=lambda e: e.name == PARTICIPANT_LEFT and done.set())
    reg.join("r", "p", "signal")
    reg.leave("r", "p", "signal", expect_resume=True)
    clock.advance(1)
    assert done.wait(5)
    reg.close()


def test_core_rejects_negative_grace():
    with pytest.raises(ValueError):
        SessionCore(grace_ns=-1)
    with pytest.raises(ValueError):
        SessionRegistry(grace_s=-1, reap_interval_s=0)


# -- properties and concurrency ------------------------------------------------------

_ops = st.lists(st.tuples(
    st.sampled_from(["join", "leave", "leave_resume", "reap", "tick"]),
    st.sampled_from(["a", "b"]),  # participant
    st.sampled_from(["signal", "media"]),
), max_size=60)


@settings(max_examples=200, deadline=None)
@given(_ops)
def test_events_alternate_and_balance_for_any_sequence(ops):
    clock = ManualClock(0)
    events = []
    core = SessionCore(grace_ns=10, clock=clock)
    for op, pid, source in ops:
        if op == "join":
            events += core.join("r", pid, source)[1]
        elif op == "leave":
            events += core.leave("r", pid, source)
        elif op == "leave_resume":
            events += core.leave("r", pid, source, expect_resume=True)
        elif op == "reap":
            events += core.reap()
        else:
            clock.advance(7)
        connected = [p for p in "ab"
                     if [e.name for e in events if e.participant == p][-1:]
                     == [PARTICIPANT_JOINED]]
        assert core.active == len(connected)
    events += core.close_all()
    for pid in "ab":
        names = [e.name for e in events if e.participant == pid]
        assert names == [PARTICIPANT_JOINED, PARTICIPANT_LEFT] * (len(names) // 2)
    assert core.active == 0 and len(core) == 0


def test_concurrent_sources_keep_exactly_once():
    import threading

    events = []
    lock = threading.Lock()

    def record(e):
        with lock:
            events.append(e)

    reg = SessionRegistry(reap_interval_s=0, on_event=record)
    barrier = threading.Barrier(4)

    def work(source):
        barrier.wait()
        for _ in range(2000):
            reg.join("r", "shared", source)
            reg.leave("r", "shared", source)

    threads = [threading.Thread(target=work, args=(f"s{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    joined = sum(e.name == PARTICIPANT_JOINED for e in events)
    left = sum(e.name == PARTICIPANT_LEFT for e in events)
    assert joined == left >= 1
    assert reg.active == 0
