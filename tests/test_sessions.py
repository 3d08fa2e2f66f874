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


# -- issue #11: resumes whichever holder releases last, per-connection references ------


def test_resume_stays_pending_when_another_holder_releases_last():
    h = Harness()
    h.reg.join("r", "p1", "signal")
    h.reg.join("r", "p1", "media")
    h.reg.leave("r", "p1", "signal", expect_resume=True)  # resume announced here
    h.reg.leave("r", "p1", "media")  # a plain leave drops the last reference
    assert h.reg.session("r", "p1").state == SUSPENDED
    assert h.names() == [PARTICIPANT_JOINED] and h.reg.active == 1
    h.advance(3)
    h.reg.join("r", "p1", "signal")  # the new connection: revived, connected state kept
    h.reg.join("r", "p1", "media")
    h.reg.leave("r", "p1", "media")
    h.reg.leave("r", "p1", "signal")
    assert h.names() == [PARTICIPANT_JOINED, PARTICIPANT_LEFT]
    assert h.events[-1].reason == "left" and h.events[-1].resumes == 1


def test_pending_resume_ends_with_the_grace_period():
    h = Harness()
    h.reg.join("r", "p1", "signal")
    h.reg.join("r", "p1", "media")
    h.reg.leave("r", "p1", "signal", expect_resume=True)
    h.advance(100)
    h.reg.leave("r", "p1", "media")  # suspended until 180 s after the announcement
    h.advance(79)
    h.reg.reap()
    assert h.names() == [PARTICIPANT_JOINED]
    h.advance(2)
    h.reg.reap()
    assert h.names() == [PARTICIPANT_JOINED, PARTICIPANT_LEFT]
    assert h.events[-1].reason == "resume_timeout"


def test_announcement_older_than_grace_does_not_suspend():
    h = Harness()
    h.reg.join("r", "p1", "signal")
    h.reg.join("r", "p1", "media")
    h.reg.leave("r", "p1", "signal", expect_resume=True)
    h.advance(200)  # the resume never came within the grace period
    h.reg.leave("r", "p1", "media")
    assert h.names() == [PARTICIPANT_JOINED, PARTICIPANT_LEFT]
    assert h.events[-1].reason == "left"


def test_duplicated_close_of_old_connection_does_not_release_the_new_one():
    h = Harness()
    h.reg.join("r", "p1", "signal", connection="ws-1")
    h.reg.join("r", "p1", "signal", connection="ws-2")  # resume: new before old closes
    h.reg.leave("r", "p1", "signal", connection="ws-1")
    h.reg.leave("r", "p1", "signal", connection="ws-1")  # duplicated close
    assert h.names() == [PARTICIPANT_JOINED]
    assert h.reg.session("r", "p1").refs == {"signal": 1}
    assert _self_telemetry.drop_count("sessions", "unknown_connection") == 1
    h.reg.join("r", "p1", "signal", connection="ws-2")  # duplicated join
    assert _self_telemetry.drop_count("sessions", "duplicate_join") == 1
    h.reg.leave("r", "p1", "signal", connection="ws-2")
    assert h.names() == [PARTICIPANT_JOINED, PARTICIPANT_LEFT]
    assert h.events[-1].resumes == 1


def _interleavings(seqs):
    """Every merge of the sequences, each keeping its own order."""
    if all(not s for s in seqs):
        yield []
        return
    for i, s in enumerate(seqs):
        if s:
            rest = [*seqs[:i], s[1:], *seqs[i + 1:]]
            for tail in _interleavings(rest):
                yield [s[0], *tail]


def test_resume_count_and_events_are_the_same_in_every_interleaving():
    # Signal and media both move to new connections; the old ones announce the resume.
    signal = [("join", "signal", "s2"), ("leave_resume", "signal", "s1")]
    media = [("join", "media", "m2"), ("leave_resume", "media", "m1")]
    signal_swapped, media_swapped = signal[::-1], media[::-1]
    outcomes = set()
    n = 0
    for s_ops in (signal, signal_swapped):
        for m_ops in (media, media_swapped):
            for ops in _interleavings([s_ops, m_ops]):
                n += 1
                core = SessionCore(grace_ns=GRACE, clock=ManualClock(0))
                events = core.join("r", "p", "signal", connection="s1")[1]
                events += core.join("r", "p", "media", connection="m1")[1]
                for op, source, conn in ops:
                    if op == "join":
                        events += core.join("r", "p", source, connection=conn)[1]
                    else:
                        events += core.leave("r", "p", source, connection=conn,
                                             expect_resume=True)
                events += core.leave("r", "p", "signal", connection="s2")
                events += core.leave("r", "p", "media", connection="m2")
                outcomes.add(tuple((e.name, e.reason, e.resumes) for e in events))
    assert n == 4 * 6
    assert outcomes == {((PARTICIPANT_JOINED, "", 0), (PARTICIPANT_LEFT, "left", 1))}


def test_ended_sessions_are_bounded_by_count_and_evictions_counted():
    h = Harness(max_ended=100)
    for _ in range(1000):  # one participant, many short sessions within the grace period
        h.reg.join("r", "p1", "signal")
        h.reg.leave("r", "p1", "signal")
    assert h.reg._core.ended <= 100
    assert _self_telemetry.drop_count("sessions", "ended_evicted") == 900
    # A suspended session evicted early still gets its one participant_left.
    h2 = Harness(max_ended=1)
    h2.reg.join("r", "a", "signal")
    h2.reg.leave("r", "a", "signal", expect_resume=True)
    h2.reg.join("r", "b", "signal")
    h2.reg.leave("r", "b", "signal")
    assert h2.names("a") == [PARTICIPANT_JOINED, PARTICIPANT_LEFT]
    assert [e.reason for e in h2.events if e.participant == "a"][-1] == "evicted"
    with pytest.raises(ValueError):
        SessionCore(max_ended=0)


def test_session_duration_clamp_is_counted():
    h = Harness()
    h.reg.join("r", "p1", "signal")
    h.advance(-5)  # the clock went backwards
    h.reg.leave("r", "p1", "signal")
    assert h.events[-1].duration_ns == 0
    assert _self_telemetry._clamps.get("sessions") == 1


# -- a state machine over random interleavings -----------------------------------------

from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

_PARTICIPANTS = ("a", "b")
_SOURCES = ("signal", "media")
_GRACE_SM = 100


class SessionMachine(RuleBasedStateMachine):
    """Joins, leaves with and without expect_resume, duplicated closes, clock and reaping.

    The model knows only what the application did (which connections it holds, which
    it announced as resuming and when); the checks are on the published events.
    """

    @initialize()
    def setup(self):
        self.clock = ManualClock(0)
        self.drops = []
        self.core = SessionCore(grace_ns=_GRACE_SM, clock=self.clock,
                                on_reject=self.drops.append)
        self.events = {p: [] for p in _PARTICIPANTS}
        self.held = {p: [] for p in _PARTICIPANTS}  # [(source, conn)] in join order
        self.released = {p: [] for p in _PARTICIPANTS}
        self.announced = {p: False for p in _PARTICIPANTS}  # any expect_resume this session
        # (source, time) of an announcement by a connection that was the newest of its
        # source, with no join since: the resume is certainly pending.
        self.pending = {p: [] for p in _PARTICIPANTS}
        self.joins_in_session = {p: 0 for p in _PARTICIPANTS}
        self.next_conn = 0

    def _take(self, evs):
        for e in evs:
            self.events[e.participant].append(e)
        return evs

    def _connected(self, p):
        return bool(self.events[p]) and self.events[p][-1].name == PARTICIPANT_JOINED

    @rule(p=st.sampled_from(_PARTICIPANTS), source=st.sampled_from(_SOURCES))
    def join(self, p, source):
        self.next_conn += 1
        conn = (source, self.next_conn)
        was_connected = self._connected(p)
        evs = self._take(self.core.join("r", p, source, connection=conn[1])[1])
        if was_connected:
            assert evs == []  # no second participant_joined, suspended or not
        else:
            assert [e.name for e in evs] == [PARTICIPANT_JOINED]
            self.announced[p] = False
            self.joins_in_session[p] = 0
        self.joins_in_session[p] += 1
        self.held[p].append(conn)
        self.pending[p].clear()

    @precondition(lambda self: any(self.held.values()))
    @rule(data=st.data(), expect_resume=st.booleans())
    def leave(self, data, expect_resume):
        p = data.draw(st.sampled_from([q for q in _PARTICIPANTS if self.held[q]]))
        conn = data.draw(st.sampled_from(self.held[p]))
        newest = [c for c in self.held[p] + self.released[p] if c[0] == conn[0]][-1] == conn
        self.held[p].remove(conn)
        self.released[p].append(conn)
        if expect_resume:
            self.announced[p] = True
            if newest:
                self.pending[p].append(self.clock.now_ns)
        evs = self._take(self.core.leave("r", p, conn[0], connection=conn[1],
                                         expect_resume=expect_resume))
        if self.held[p]:
            assert evs == []  # never left while a connection is held
        elif not self.announced[p]:
            # Left exactly at the last release.
            assert [(e.name, e.reason) for e in evs] == [(PARTICIPANT_LEFT, "left")]
        elif any(t + _GRACE_SM > self.clock.now_ns for t in self.pending[p]):
            assert evs == []  # a resume is pending, whichever holder released last
            assert self.core.get("r", p).state == SUSPENDED

    @precondition(lambda self: any(self.released.values()))
    @rule(data=st.data(), expect_resume=st.booleans())
    def duplicated_close(self, data, expect_resume):
        p = data.draw(st.sampled_from([q for q in _PARTICIPANTS if self.released[q]]))
        conn = data.draw(st.sampled_from(self.released[p]))
        n = len(self.drops)
        evs = self.core.leave("r", p, conn[0], connection=conn[1],
                              expect_resume=expect_resume)
        assert evs == []
        assert len(self.drops) == n + 1  # counted, not silently applied

    @rule(dt=st.integers(min_value=1, max_value=_GRACE_SM))
    def tick(self, dt):
        self.clock.advance(dt)

    @rule()
    def reap(self):
        evs = self._take(self.core.reap())
        for e in evs:
            assert e.reason == "resume_timeout"
            assert not self.held[e.participant]

    @invariant()
    def events_alternate_and_match_the_connections(self):
        if not hasattr(self, "core"):
            return
        for p in _PARTICIPANTS:
            names = [e.name for e in self.events[p]]
            assert names == [PARTICIPANT_JOINED, PARTICIPANT_LEFT] * (len(names) // 2) + (
                [PARTICIPANT_JOINED] if len(names) % 2 else [])
            if self.held[p]:
                assert self._connected(p)
            for e in self.events[p]:
                if e.name == PARTICIPANT_LEFT:
                    assert 0 <= e.resumes

    def teardown(self):
        if not hasattr(self, "core"):
            return
        self._take(self.core.close_all())
        for p in _PARTICIPANTS:
            names = [e.name for e in self.events[p]]
            assert names == [PARTICIPANT_JOINED, PARTICIPANT_LEFT] * (len(names) // 2)
        assert self.core.active == 0 and len(self.core) == 0


SessionMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40,
                                            deadline=None)
test_session_state_machine = SessionMachine.TestCase
