"""examples/message_server.py over real UDP on 127.0.0.1: drops, resends, bursts, spans."""

import asyncio

import pytest
from opentelemetry.trace import SpanKind

from examples import message_server
from otel_rtc.core.switch import burst_switches
from otel_rtc.testing import drop_count, make_test_pipeline


def _sum(points):
    return sum(p.value for p in points)


@pytest.fixture(scope="module")
def run_once():
    """One short run with burst tracking on, against in-memory exporters."""
    switches = burst_switches()
    before = switches.snapshot()["enabled"]
    switches.set(enabled=True)
    pipe = make_test_pipeline()
    seen = []
    drops_before = drop_count("buffer", "full")
    try:
        stats = asyncio.run(message_server.run(
            2.5, seed=3, progress=seen.append, tracer_provider=pipe.tracer_provider,
            meter_provider=pipe.meter_provider, buffer_size=4, burst_size=(10, 30)))
    finally:
        switches.set(enabled=before)
    return pipe, stats, seen, drop_count("buffer", "full") - drops_before


def test_drops_resends_and_bursts_really_happen(run_once):
    _, stats, seen, self_drops = run_once
    assert stats.sent > 50 and stats.processed > 50
    assert stats.dropped > 0 and stats.resends > 0, stats
    # every datagram that reached the server was either queued or dropped (counted)
    assert stats.received == stats.sent + stats.resends  # loopback loses nothing
    assert self_drops == stats.dropped
    assert stats.acked + stats.lost == stats.sent
    assert stats.bursts > 3 and stats.max_burst_duration_s > 0
    assert stats.frame is not None and stats.frame.mode == "worker"
    for lat in (stats.queue_wait, stats.processing, stats.receive_to_finish):
        assert 0 <= lat["p50"] <= lat["p95"] <= lat["p99"]
    assert stats.receive_to_finish["p99"] >= stats.processing["p50"]
    assert len(seen) >= 10  # progress about every 0.1 s


def test_metrics_count_what_the_server_saw(run_once):
    pipe, stats, _, _ = run_once
    m = pipe.metrics()
    dropped = {p.attributes["otel_rtc.drop.reason"]: p.value for p in m["otel_rtc.buffer.dropped"]}
    assert dropped == {"full": stats.dropped}
    assert _sum(m["otel_rtc.buffer.enqueued"]) == stats.received - stats.dropped
    consumed = {p.attributes["otel_rtc.attempt"]: p.value
                for p in m["messaging.client.consumed.messages"]}
    assert sum(consumed.values()) == stats.processed
    assert consumed.get("retry", 0) > 0  # resends that got in are told apart
    waits = m["otel_rtc.message.queue_wait.duration"]
    assert sum(p.count for p in waits) == stats.processed  # every received time known
    bursts = m["otel_rtc.burst.duration"]
    assert sum(p.count for p in bursts) == stats.bursts
    assert max(p.max for p in bursts) == pytest.approx(stats.max_burst_duration_s)


def test_spans_follow_semconv_link_producers_and_bursts(run_once):
    pipe, stats, _, _ = run_once
    spans = pipe.spans()
    process = [s for s in spans if s.kind == SpanKind.CONSUMER]
    producers = {s.context.span_id: s for s in spans if s.kind == SpanKind.PRODUCER}
    bursts = {s.context.span_id for s in spans if s.name == "burst chat"}
    assert len(process) == stats.processed and len(producers) == stats.sent
    assert len(bursts) == stats.bursts
    retried = 0
    for s in process:
        assert s.name == "process chat"
        a = s.attributes
        assert a["messaging.system"] == "udp"
        assert a["messaging.operation.type"] == "process"
        assert a["messaging.destination.name"] == "chat"
        assert a["messaging.message.id"].isdigit()
        retried += "messaging.message.retry.count" in a
        linked = {lk.context.span_id for lk in s.links}
        assert linked & set(producers), "no link to the client's send span"
        assert linked & bursts, "no link to the burst span"
    assert retried > 0
    db = [s for s in spans if s.name == "SELECT messages"]
    assert len(db) == stats.processed
    by_id = {s.context.span_id: s for s in process}
    for s in db:  # the query is a child of its message's span, in the same trace
        assert s.kind == SpanKind.CLIENT and s.parent.span_id in by_id
        assert by_id[s.parent.span_id].context.trace_id == s.context.trace_id
    assert not [s.name for s in spans if message_server.PAYLOAD_PREFIX in s.to_json()]


def test_rejects_non_loopback_and_bad_arguments():
    for kwargs in ({"host": "10.0.0.1"}, {"host": "example.org"}, {"buffer_size": 0},
                   {"db_latency_ms": 0}, {"burst_size": (5, 1)}, {"gap_ms": -1}):
        with pytest.raises(ValueError):
            asyncio.run(message_server.run(1.0, **kwargs))
