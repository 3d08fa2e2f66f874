"""Publication/subscription timing: spans, links, propagation, attempts, muted time."""

import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otel_rtc.core.clock import NS_PER_S, ManualClock
from otel_rtc.instrumentation import self_telemetry as _self_telemetry
from otel_rtc.instrumentation.pubsub import PubSubTelemetry
from otel_rtc.testing import make_test_pipeline

MS = NS_PER_S // 1000


@pytest.fixture(autouse=True)
def _reset():
    _self_telemetry._reset_for_tests()


@pytest.fixture
def env():
    p = make_test_pipeline()
    clock = ManualClock(10 * NS_PER_S)
    ps = PubSubTelemetry(tracer_provider=p.tracer_provider, meter_provider=p.meter_provider,
                         clock=clock, high_publish_delay_s=1.0,
                         propagator=TraceContextTextMapPropagator())
    return p, clock, ps


def points(p, name):
    return {(a["otel_rtc.attempt"], a.get("otel_rtc.outcome")): pt
            for pt in p.metrics().get(name, []) for a in [pt.attributes]}


def test_publication_and_linked_subscription_through_headers(env):
    p, clock, ps = env
    headers = {}
    pub = ps.publication("TR_1", room="r", participant="alice", kind="video", carrier=headers)
    assert "traceparent" in headers
    clock.advance(120 * MS)
    pub.complete()
    sub = ps.subscription("TR_1", room="r", subscriber="bob", publisher="alice", kind="video",
                          carrier=dict(headers))
    clock.advance(30 * MS)
    sub.bound()
    clock.advance(50 * MS)
    sub.complete()
    pub_span, sub_span = p.spans()
    assert pub_span.kind is SpanKind.PRODUCER and pub_span.name == "publish video"
    assert sub_span.kind is SpanKind.CONSUMER and sub_span.name == "subscribe video"
    [link] = sub_span.links
    assert link.context.span_id == pub_span.context.span_id
    assert link.context.trace_id == pub_span.context.trace_id
    assert sub_span.attributes["otel_rtc.publisher"] == "alice"
    assert sub_span.attributes["messaging.destination.name"] == "TR_1"
    assert [e.name for e in sub_span.events] == ["bound"]
    assert (sub_span.end_time - sub_span.start_time) == 80 * MS
    d = points(p, "otel_rtc.subscription.duration")[("first", "success")]
    assert d.count == 1 and abs(d.sum - 0.08) < 1e-9
    assert points(p, "otel_rtc.publication.duration")[("first", "success")].sum == 0.12


def test_link_to_publication_object(env):
    p, _clock, ps = env
    pub = ps.publication("T", room="r", participant="a", kind="audio")
    ps.subscription("T", room="r", subscriber="b", kind="audio", publication=pub).complete()
    pub.complete()
    sub_span = next(s for s in p.spans() if s.kind is SpanKind.CONSUMER)
    assert sub_span.links[0].context.span_id == pub.span.get_span_context().span_id


def test_attempt_classification_first_retry_and_explicit_reasons(env):
    p, _clock, ps = env
    kw = {"room": "r", "subscriber": "bob", "kind": "audio"}
    s1 = ps.subscription("T", **kw)
    s1.fail("ConnectionError")
    ps.subscription("T", **kw).complete()  # automatic: retry
    ps.subscription("T", reason="migration", **kw).complete()
    ps.subscription("T", reason="unmuted", **kw).complete()
    ps.subscription("U", **kw).complete()  # another track: first again
    spans = p.spans()
    assert [s.attributes["otel_rtc.attempt"] for s in spans] == [
        "first", "retry", "migration", "unmuted", "first"]
    assert [s.attributes["otel_rtc.attempt.number"] for s in spans] == [1, 2, 3, 4, 1]
    assert spans[0].status.status_code is StatusCode.ERROR
    assert spans[0].attributes["error.type"] == "ConnectionError"
    attempts = {pt.attributes["otel_rtc.attempt"]: pt.value
                for pt in p.metrics()["otel_rtc.subscription.attempts"]}
    assert attempts == {"first": 2, "retry": 1, "migration": 1, "unmuted": 1}
    outcomes = points(p, "otel_rtc.subscription.outcomes")
    assert outcomes[("first", "failure")].value == 1
    assert outcomes[("first", "success")].value == 1


def test_resume_supersedes_open_attempt_without_a_giant_first_sample(env):
    p, clock, ps = env
    kw = {"room": "r", "subscriber": "bob", "kind": "video"}
    first = ps.subscription("T", **kw)  # never gets a packet: the client disconnects
    clock.advance(300 * NS_PER_S)
    resumed = ps.subscription("T", reason="resume", **kw)
    clock.advance(200 * MS)
    resumed.complete()
    m = p.metrics()
    # the 300 s of the interrupted attempt are in no duration series at all
    d = points(p, "otel_rtc.subscription.duration")
    assert set(d) == {("resume", "success")}
    assert abs(d[("resume", "success")].sum - 0.2) < 1e-9
    assert "otel_rtc.subscription.muted_wait" not in m
    # ... but the attempt is still counted, and its span says why it ended
    outcomes = {k: pt.value for k, pt in points(p, "otel_rtc.subscription.outcomes").items()}
    assert outcomes == {("first", "resumed"): 1, ("resume", "success"): 1}
    first_span, resumed_span = p.spans()
    assert first.done
    assert first_span.attributes["otel_rtc.outcome"] == "resumed"
    assert first_span.attributes["otel_rtc.superseded_by"] == "resume"
    assert first_span.end_time - first_span.start_time == 300 * NS_PER_S
    assert first_span.status.status_code is StatusCode.UNSET
    [link] = resumed_span.links
    assert link.context.span_id == first_span.context.span_id
    assert link.attributes["otel_rtc.link"] == "previous_attempt"


def outcome_counts(p, op="subscription"):
    counts = {}
    for pt in p.metrics().get(f"otel_rtc.{op}.outcomes", []):
        key = (pt.attributes["otel_rtc.attempt"], pt.attributes["otel_rtc.outcome"])
        counts[key] = counts.get(key, 0) + pt.value
    return counts


@pytest.mark.parametrize("order", ["suspend_then_resume", "resume_then_suspend"])
def test_expected_to_resume_in_either_order(env, order):
    p, clock, ps = env
    kw = {"room": "r", "subscriber": "bob", "kind": "video"}
    old = ps.subscription("T", **kw)
    clock.advance(2 * NS_PER_S)
    if order == "suspend_then_resume":
        old.suspend()  # the signal connection dropped; a resume is expected
        assert old.suspended and not old.done
        clock.advance(300 * NS_PER_S)
        old.complete()  # a late callback from the old transport: ignored, counted
        assert not old.done
        new = ps.subscription("T", **kw)  # automatic reason: resume
    else:
        new = ps.subscription("T", reason="resume", **kw)  # the new session came first
        clock.advance(50 * MS)
        old.expect_resume()  # the old signal closes afterwards: nothing left to hold
        old.complete()  # already resolved: changes nothing
    clock.set(new.start_ns + 150 * MS)
    new.complete()
    assert (new.attempt, new.attempt_number) == ("resume", 2)
    d = points(p, "otel_rtc.subscription.duration")
    assert set(d) == {("resume", "success")}  # no "first" sample, giant or not
    assert d[("resume", "success")].count == 1
    assert abs(d[("resume", "success")].sum - 0.15) < 1e-9  # the resumed attempt's own time
    assert outcome_counts(p) == {("first", "resumed"): 1, ("resume", "success"): 1}
    old_span, new_span = sorted(p.spans(), key=lambda s: s.start_time)
    assert old_span.attributes["otel_rtc.outcome"] == "resumed"
    assert old_span.end_time - old_span.start_time == 2 * NS_PER_S  # ends when interrupted
    assert new_span.links[0].context.span_id == old_span.context.span_id
    if order == "suspend_then_resume":
        assert [e.name for e in old_span.events] == ["otel_rtc.suspended"]
        assert _self_telemetry.drop_count("pubsub", "suspended") == 1
    else:
        assert _self_telemetry.drop_count("pubsub", "suspended") == 0
    assert _self_telemetry.error_count() == 0


def test_migration_after_suspend_and_retry_supersedes(env):
    p, clock, ps = env
    kw = {"room": "r", "subscriber": "bob", "kind": "audio"}
    a = ps.subscription("T", **kw)
    a.suspend()
    clock.advance(NS_PER_S)
    b = ps.subscription("T", reason="migration", **kw)
    clock.advance(NS_PER_S)
    c = ps.subscription("T", **kw)  # b still open: an automatic retry supersedes it
    clock.advance(10 * MS)
    c.complete()
    assert (b.attempt, c.attempt) == ("migration", "retry")
    assert outcome_counts(p) == {("first", "resumed"): 1, ("migration", "superseded"): 1,
                                 ("retry", "success"): 1}
    assert set(points(p, "otel_rtc.subscription.duration")) == {("retry", "success")}
    by_attempt = {s.attributes["otel_rtc.attempt"]: s for s in p.spans()}
    assert by_attempt["migration"].attributes["otel_rtc.superseded_by"] == "retry"


def test_suspended_attempt_is_abandoned_when_the_participant_leaves(env):
    p, clock, ps = env
    with ps.subscription("T", room="r", subscriber="bob", kind="video", muted=True) as sub:
        clock.advance(NS_PER_S)
        sub.suspend()  # leaving the block does not complete a suspended attempt
        sub.mute()  # ignored while suspended
    assert sub.suspended and not sub.done
    clock.advance(60 * NS_PER_S)
    ps.forget("r", "bob")
    assert sub.done
    [span] = p.spans()
    assert span.attributes["otel_rtc.outcome"] == "abandoned"
    assert span.attributes["otel_rtc.muted_wait"] == 1.0  # muted until the suspension
    assert span.end_time - span.start_time == NS_PER_S
    assert outcome_counts(p) == {("first", "abandoned"): 1}
    m = p.metrics()
    assert "otel_rtc.subscription.duration" not in m
    assert "otel_rtc.subscription.muted_wait" not in m


def test_abandon_is_counted_not_timed(env):
    p, clock, ps = env
    pub = ps.publication("P", room="r", participant="alice", kind="audio")
    clock.advance(5 * NS_PER_S)
    pub.abandon()
    assert outcome_counts(p, "publication") == {("first", "abandoned"): 1}
    assert "otel_rtc.publication.duration" not in p.metrics()
    assert p.spans()[0].attributes["otel_rtc.outcome"] == "abandoned"


def test_suspend_subscriptions_of_a_participant(env):
    p, clock, ps = env
    s1 = ps.subscription("T1", room="r", subscriber="bob", kind="audio")
    s2 = ps.subscription("T2", room="r", subscriber="bob", kind="video")
    done = ps.subscription("T3", room="r", subscriber="bob", kind="video")
    done.complete()
    other = ps.subscription("T1", room="r", subscriber="eve", kind="audio")
    pub = ps.publication("P", room="r", participant="bob", kind="audio")
    assert ps.suspend_subscriptions("r", "bob") == 2
    assert ps.suspend_subscriptions("r", "bob") == 0  # already on hold
    assert ps.suspend_subscriptions("r", "nobody") == 0
    assert s1.suspended and s2.suspended
    assert not (other.suspended or pub.suspended)
    clock.advance(NS_PER_S)
    resumed = [ps.subscription(t, room="r", subscriber="bob", kind="audio")
               for t in ("T1", "T2")]
    assert [s.attempt for s in resumed] == ["resume", "resume"]
    assert s1.done and s2.done
    assert outcome_counts(p)[("first", "resumed")] == 2


def test_evicting_a_suspended_attempt_abandons_it():
    p = make_test_pipeline()
    ps = PubSubTelemetry(tracer_provider=p.tracer_provider, meter_provider=p.meter_provider,
                         max_tracked=1)
    held = ps.subscription("T0", room="r", subscriber="b", kind="audio")
    held.suspend()
    ps.subscription("T1", room="r", subscriber="b", kind="audio").complete()
    assert held.done
    assert outcome_counts(p) == {("first", "abandoned"): 1, ("first", "success"): 1}


def test_suspend_with_bad_time_is_counted_not_raised(env):
    _p, _clock, ps = env
    sub = ps.subscription("T", room="r", subscriber="b", kind="audio")
    sub.suspend(t_ns="soon")
    assert not sub.suspended
    assert _self_telemetry.drop_count("pubsub", "invalid_time") == 1
    sub.complete()
    assert sub.done and _self_telemetry.error_count() == 0


@pytest.mark.parametrize("kw", [{"max_tracked": 0}, {"high_publish_delay_s": -1.0}])
def test_bad_constructor_arguments_raise(kw):
    with pytest.raises(ValueError):
        PubSubTelemetry(tracer_provider=TracerProvider(), **kw)


def test_muted_time_is_excluded_and_reported(env):
    p, clock, ps = env
    sub = ps.subscription("T", room="r", subscriber="b", kind="video", muted=True)
    clock.advance(5 * NS_PER_S)  # publisher muted
    sub.unmute()
    clock.advance(100 * MS)
    sub.mute()
    clock.advance(NS_PER_S)
    sub.unmute()
    clock.advance(50 * MS)
    sub.complete()
    d = points(p, "otel_rtc.subscription.duration")[("first", "success")]
    assert abs(d.sum - 0.15) < 1e-9
    w = points(p, "otel_rtc.subscription.muted_wait")[("first", "success")]
    assert abs(w.sum - 6.0) < 1e-9
    assert p.spans()[0].attributes["otel_rtc.muted_wait"] == 6.0


def test_high_publish_delay_logs_once_with_identifiers(env, caplog):
    p, clock, ps = env
    with caplog.at_level(logging.INFO, logger="otel_rtc.pubsub"):
        fast = ps.publication("T1", room="r", participant="alice", kind="audio")
        clock.advance(100 * MS)
        fast.complete()
        slow = ps.publication("T2", room="r", participant="alice", kind="video")
        clock.advance(1500 * MS)
        slow.complete()
    lines = [r.getMessage() for r in caplog.records if "high publish delay" in r.getMessage()]
    assert len(lines) == 1
    assert "track=T2" in lines[0] and "participant=alice" in lines[0] and "room=r" in lines[0]
    span = next(s for s in p.spans() if s.attributes["messaging.destination.name"] == "T2")
    [ev] = [e for e in span.events if e.name == "otel_rtc.publication.high_delay"]
    assert ev.attributes["otel_rtc.track"] == "T2"


def test_context_manager_success_and_failure(env):
    p, _clock, ps = env
    with ps.publication("T", room="r", participant="a", kind="data"):
        pass
    with pytest.raises(KeyError):
        with ps.subscription("T", room="r", subscriber="b", kind="data"):
            raise KeyError("x")
    pub, sub = p.spans()
    assert pub.attributes["otel_rtc.outcome"] == "success"
    assert sub.attributes["otel_rtc.outcome"] == "failure"
    assert sub.attributes["error.type"] == "KeyError"


async def test_decorators_sync_and_async(env):
    p, _clock, ps = env

    @ps.subscribes(lambda track, who: {"track": track, "room": "r", "subscriber": who,
                                       "kind": "audio"})
    async def subscribe(track, who):
        return f"{who}:{track}"

    @ps.publishes(lambda track: {"track": track, "room": "r", "participant": "a",
                                 "kind": "video"})
    def publish(track):
        if track == "bad":
            raise ValueError(track)
        return track

    assert await subscribe("T", "bob") == "bob:T"
    assert publish("T") == "T"
    with pytest.raises(ValueError):
        publish("bad")
    outcomes = [s.attributes["otel_rtc.outcome"] for s in p.spans()]
    assert outcomes == ["success", "success", "failure"]
    assert subscribe.__name__ == "subscribe"


def test_decorator_with_broken_describe_still_calls_through(env):
    _p, _clock, ps = env

    @ps.publishes(lambda: {"room": "r"})  # no track: describe is wrong
    def publish():
        return 42

    assert publish() == 42
    assert _self_telemetry.error_count("pubsub.decorator") == 1


def test_forget_abandons_open_attempts_and_bounds_state(env):
    p, _clock, ps = env
    ps.subscription("T", room="r", subscriber="bob", kind="audio")
    ps.publication("P", room="r", participant="bob", kind="audio")
    ps.subscription("T", room="r", subscriber="eve", kind="audio")
    assert ps.tracked == 3
    ps.forget("r", "bob")
    assert ps.tracked == 1
    assert sorted(s.attributes["otel_rtc.outcome"] for s in p.spans()) == ["abandoned"] * 2


def test_tracked_cap_evicts_oldest():
    ps = PubSubTelemetry(tracer_provider=TracerProvider(), max_tracked=2)
    for i in range(4):
        ps.subscription(f"T{i}", room="r", subscriber="b", kind="audio").complete()
    assert ps.tracked == 2
    assert _self_telemetry.drop_count("pubsub", "tracked_cap") == 2


def test_invalid_kind_and_reason_are_counted_not_raised(env):
    p, _clock, ps = env
    ps.subscription("T", room="r", subscriber="b", kind="hologram", reason="whim").complete()
    assert p.spans()[0].attributes["otel_rtc.media.kind"] == "_other"
    assert _self_telemetry.drop_count("pubsub", "invalid_kind") == 1
    assert _self_telemetry.drop_count("pubsub", "invalid_reason") == 1


def test_clock_backwards_is_clamped(env):
    p, clock, ps = env
    sub = ps.subscription("T", room="r", subscriber="b", kind="audio")
    clock.set(clock.now_ns - NS_PER_S)
    sub.complete()
    assert points(p, "otel_rtc.subscription.duration")[("first", "success")].sum == 0
    [span] = p.spans()
    assert span.end_time == span.start_time  # never ends before it starts
    assert _self_telemetry._clamps.get("pubsub") == 1


@pytest.mark.parametrize("end", ["complete", "fail", "abandon", "suspend_then_abandon"])
def test_no_span_ends_before_it_starts_whatever_the_end(env, end):
    p, _clock, ps = env
    t0 = 50 * NS_PER_S
    pub = ps.publication("T", room="r", participant="a", kind="video", t_ns=t0)
    if end == "fail":
        pub.fail("Timeout", t_ns=t0 - MS)
    elif end == "suspend_then_abandon":
        pub.suspend(t_ns=t0 - 2 * MS)
        pub.abandon(t_ns=t0 - MS)
    else:
        getattr(pub, end)(t_ns=t0 - MS)
    [span] = p.spans()
    assert span.end_time >= span.start_time == t0
    assert _self_telemetry._clamps.get("pubsub") == 1


def test_failure_text_stays_out_unless_opted_in(env, monkeypatch):
    p, _clock, ps = env
    secret = "4111-1111 from the payload"
    ps.publication("T", room="r", participant="a", kind="audio").fail(ValueError(secret))
    [quiet] = p.spans()
    assert quiet.status.status_code is StatusCode.ERROR
    assert quiet.status.description == "ValueError"
    assert quiet.attributes["error.type"] == "ValueError"
    assert [dict(e.attributes) for e in quiet.events] == [{"exception.type": "ValueError"}]
    assert "4111" not in quiet.to_json()
    monkeypatch.setenv("OTEL_RTC_RECORD_EXCEPTION_MESSAGES", "true")  # the one opt-in
    ps.publication("U", room="r", participant="a", kind="audio").fail(ValueError(secret))
    loud = p.spans()[-1]
    assert "4111" in loud.status.description
    assert "4111" in loud.events[0].attributes["exception.message"]


def test_not_recording(env):
    p, clock, _ = env
    exporter = InMemorySpanExporter()
    tp = TracerProvider(sampler=ALWAYS_OFF)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    ps = PubSubTelemetry(tracer_provider=tp, meter_provider=p.meter_provider, clock=clock,
                         high_publish_delay_s=0.0)
    headers = {}
    pub = ps.publication("T", room="r", participant="a", kind="audio", carrier=headers)
    sub = ps.subscription("T", room="r", subscriber="b", kind="audio", carrier=headers)
    sub.bound()
    clock.advance(MS)
    sub.complete()
    pub.complete()
    held = ps.subscription("U", room="r", subscriber="b", kind="audio")
    held.suspend()
    clock.advance(NS_PER_S)
    resumed = ps.subscription("U", room="r", subscriber="b", kind="audio")
    clock.advance(2 * MS)
    resumed.complete()
    assert exporter.get_finished_spans() == ()
    d = points(p, "otel_rtc.subscription.duration")
    assert set(d) == {("first", "success"), ("resume", "success")}
    assert d[("first", "success")].count == 1 and not d[("first", "success")].exemplars
    assert abs(d[("resume", "success")].sum - 0.002) < 1e-9
    assert outcome_counts(p)[("first", "resumed")] == 1
    assert _self_telemetry.error_count() == 0


def test_exemplar_links_metric_to_span(env):
    p, clock, ps = env
    sub = ps.subscription("T", room="r", subscriber="b", kind="audio")
    clock.advance(MS)
    sub.complete()
    [pt] = p.metrics()["otel_rtc.subscription.duration"]
    assert pt.exemplars[0].span_id == p.spans()[0].context.span_id


def test_sdk_fallback_pipeline():
    p = make_test_pipeline(local_aggregation=False)
    ps = PubSubTelemetry(tracer_provider=p.tracer_provider, meter_provider=p.meter_provider)
    ps.subscription("T", room="r", subscriber="b", kind="audio").complete()
    m = p.metrics()
    assert m["otel_rtc.subscription.duration"][0].count == 1
    assert m["otel_rtc.subscription.attempts"][0].value == 1


def test_muted_time_clamps_are_counted(env):
    p, clock, ps = env
    sub = ps.subscription("T", room="r", subscriber="b", kind="audio", muted=True)
    clock.set(clock.now_ns - NS_PER_S)  # the clock goes back while muted
    sub.unmute()
    clock.advance(2 * NS_PER_S)
    sub.complete()
    assert sub.muted_wait_ns == 0
    assert _self_telemetry._clamps.get("pubsub") == 1
    assert points(p, "otel_rtc.subscription.duration")[("first", "success")].sum == 1.0
