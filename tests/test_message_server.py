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


def test_hostile_datagrams_and_a_flood_are_counted_and_survived():
    """Real loopback UDP: deeply nested JSON (RecursionError in the decoder), garbage and
    a 50,000-datagram flood. The consumer survives all of it, every datagram it could
    not use is counted by reason, and the kernel's own receive-buffer drops are reported
    as a metric."""
    import socket
    import threading
    import time

    pipe = make_test_pipeline()
    observed = []
    sent = {"n": 0}

    def hostile(addr):
        def send():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # blocking: no send loss
            try:
                bad = [b"[" * 30_000 + b"]" * 30_000, b"\xff\xfe not json", b'{"no": "id"}']
                for _ in range(3):
                    for d in bad:
                        s.sendto(d, addr)
                        sent["n"] += 1
                        time.sleep(0.05)
                for _ in range(50_000):
                    s.sendto(b"x", addr)
                    sent["n"] += 1
            finally:
                s.close()

        threading.Thread(target=send, daemon=True).start()

    def progress(stats):
        m = pipe.metrics()
        for p in m.get("chat.udp.receive_buffer.dropped", []):
            observed.append((p.value, stats.kernel_dropped))

    stats = asyncio.run(message_server.run(
        3.0, seed=5, progress=progress, tracer_provider=pipe.tracer_provider,
        meter_provider=pipe.meter_provider, buffer_size=64, on_listening=hostile))
    assert sent["n"] == 9 + 50_000
    # The consumer survived the bad datagrams: the client's messages kept being served.
    assert stats.processed > 50 and stats.acked + stats.lost == stats.sent
    assert stats.rejected.get("RecursionError", 0) >= 1, stats.rejected
    assert stats.rejected.get("undecodable", 0) >= 2, stats.rejected
    # Every datagram is accounted for: read (queued or refused by the full buffer), or
    # dropped by the kernel before it could be read.
    assert stats.kernel_dropped is not None and stats.kernel_dropped > 0
    assert (stats.received + stats.kernel_dropped
            == stats.sent + stats.resends + sent["n"]), stats
    assert stats.received - stats.dropped == stats.processed + sum(stats.rejected.values())
    # The kernel drops were exported as a metric while the server ran.
    assert any(v > 0 for v, _ in observed)
    assert max(v for v, _ in observed) <= stats.kernel_dropped
    rejected = {p.attributes["error.type"]: p.value
                for p in pipe.metrics()["chat.datagrams.rejected"]}
    assert rejected == stats.rejected
