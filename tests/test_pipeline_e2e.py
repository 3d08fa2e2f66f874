"""The examples' telemetry through a real Rotel collector, checked as Jaeger would show it.

configure() → OTLP/HTTP → rotel-agent (with the otel_rtc metric processor) → a loopback
OTLP receiver. Checks the trace structure (parent/child and links: message → burst,
message → client send, subscription → publication), the semconv attributes, that
exemplars carry trace ids of real spans after the trip, and that no payload leaks.
"""

import asyncio
from collections import Counter

import pytest

from examples import message_server, sfu_pubsub
from otel_rtc import configure
from otel_rtc.collector.rotel import processor_path
from otel_rtc.core.switch import burst_switches
from otel_rtc.instrumentation.pubsub_attempts import ATTEMPT_REASONS
from tests._otlp_receiver import attrs_of

pytestmark = pytest.mark.collector

CONSUMER, PRODUCER, CLIENT = 5, 4, 3  # protobuf Span.SpanKind values


@pytest.fixture(scope="module")
def through_rotel():
    from otel_rtc.collector.rotel import RotelCollector, find_rotel
    from tests._otlp_receiver import OtlpReceiver

    if find_rotel() is None:
        pytest.skip("rotel-agent not installed")
    switches = burst_switches()
    before = switches.snapshot()["enabled"]
    with OtlpReceiver() as recv:
        col = RotelCollector(exporter_endpoint=recv.endpoint,
                             metrics_processor=processor_path()).start()
        try:
            h = configure(service_name="e2e-app", endpoint=col.http_endpoint,
                          set_global=False, export_interval_s=1.0, bursts=True)
            try:
                stats = asyncio.run(message_server.run(
                    2.0, seed=5, tracer_provider=h.tracer_provider,
                    meter_provider=h.meter_provider))
                sfu = sfu_pubsub.run(5.0, virtual=True, seed=2,
                                     tracer_provider=h.tracer_provider,
                                     meter_provider=h.meter_provider,
                                     logger_provider=h.logger_provider,
                                     on_finish=lambda: h.force_flush())
            finally:
                h.shutdown(timeout_s=10.0)
            want = {"process": stats.processed, "SELECT": stats.processed,
                    "send": stats.sent, "publish": sfu["publications"],
                    "subscribe": sum(sfu.get(f"subscriptions.{r}", 0)
                                     for r in ATTEMPT_REASONS)}

            def arrived(r):
                got = Counter(s.name.split(" ", 1)[0] for s in r.spans())
                return (all(got[k] == n for k, n in want.items())
                        and "messaging.process.duration" in r.metrics())

            assert recv.wait_for(arrived, timeout=30), (want, col.logs())
            yield recv, stats
        finally:
            col.stop()
            switches.set(enabled=before)


def _hex(b: bytes) -> str:
    return b.hex()


def test_message_spans_link_their_burst_and_the_client_send(through_rotel):
    recv, stats = through_rotel
    spans = recv.spans()
    ids = {_hex(s.span_id): s for s in spans}
    process = [s for s in spans if s.name == "process chat"]
    assert len(process) == stats.processed
    for s in process:
        assert s.kind == CONSUMER
        a = attrs_of(s)
        assert a["messaging.system"] == "udp"
        assert a["messaging.operation.type"] == "process"
        assert a["messaging.destination.name"] == "chat"
        assert a["messaging.message.id"].isdigit()
        assert a["otel_rtc.message.queue_wait"] >= 0
        assert a["otel_rtc.message.receive_to_finish"] >= a["otel_rtc.message.queue_wait"]
        linked = [ids.get(_hex(lk.span_id)) for lk in s.links]
        kinds = {(t.name, t.kind) for t in linked if t is not None}
        assert ("send chat", PRODUCER) in kinds, "no link to the client's send span"
        assert any(name == "burst chat" for name, _ in kinds), "no link to the burst span"
    assert any("messaging.message.retry.count" in attrs_of(s) for s in process)
    bursts = [s for s in spans if s.name == "burst chat"]
    assert bursts and all(attrs_of(b)["otel_rtc.burst.message_count"] >= 1 for b in bursts)


def test_db_query_is_a_child_of_its_message(through_rotel):
    recv, stats = through_rotel
    spans = recv.spans()
    process = {_hex(s.span_id): s for s in spans if s.name == "process chat"}
    db = [s for s in spans if s.name == "SELECT messages"]
    assert len(db) == stats.processed
    for s in db:
        parent = process[_hex(s.parent_span_id)]
        assert s.kind == CLIENT and s.trace_id == parent.trace_id


def test_subscription_links_to_its_publication(through_rotel):
    recv, _ = through_rotel
    spans = recv.spans()
    ids = {_hex(s.span_id): s for s in spans}
    subs = [s for s in spans if s.name.startswith("subscribe ")]
    assert subs
    linked = 0
    for s in subs:
        targets = [ids.get(_hex(lk.span_id)) for lk in s.links]
        linked += any(t is not None and t.name.startswith("publish ") for t in targets)
    assert linked >= len(subs) * 0.9, f"{linked} of {len(subs)} subscriptions linked"


def test_latency_exemplars_point_at_received_spans(through_rotel):
    recv, _ = through_rotel
    span_ids = {(_hex(s.trace_id), _hex(s.span_id)) for s in recv.spans()}
    exemplars = [e for m in recv.metrics()["messaging.process.duration"]
                 for p in m.histogram.data_points for e in p.exemplars]
    assert exemplars
    for e in exemplars:
        assert (_hex(e.trace_id), _hex(e.span_id)) in span_ids


def test_no_payload_anywhere(through_rotel):
    recv, _ = through_rotel
    marker = message_server.PAYLOAD_PREFIX.encode()
    for kind, reqs in recv.requests.items():
        for req in reqs:
            assert marker not in req.SerializeToString(), kind
