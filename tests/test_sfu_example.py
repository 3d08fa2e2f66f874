"""The simulated SFU example runs bounded, and its telemetry is consistent."""

import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.trace import SpanKind

from examples.sfu_pubsub import run
from otel_rtc.instrumentation import self_telemetry as _self_telemetry
from otel_rtc.testing import make_test_pipeline

ROOT = Path(__file__).resolve().parents[1]


def test_virtual_run_is_consistent():
    _self_telemetry._reset_for_tests()
    p = make_test_pipeline()
    logs = InMemoryLogRecordExporter()
    lp = LoggerProvider()
    lp.add_log_record_processor(SimpleLogRecordProcessor(logs))
    collected = {}
    summary = run(40, virtual=True, seed=3, tracer_provider=p.tracer_provider,
                  meter_provider=p.meter_provider, logger_provider=lp,
                  on_finish=lambda: collected.update(p.metrics()))
    # every simulated behaviour happened
    for key in ("migrations", "resumes.close_first", "resumes.join_first", "disconnects",
                "unmutes", "subscriptions.first", "subscriptions.retry",
                "subscriptions.migration", "subscriptions.resume"):
        assert summary.get(key, 0) > 0, key
    # exactly once per session, in both the callback and the OTel log events
    assert summary["participant_joined"] == summary["participant_left"] > 0
    names = [r.log_record.event_name for r in logs.get_finished_logs()]
    assert names.count("participant_joined") == names.count("participant_left")
    assert names.count("participant_joined") == summary["participant_joined"]
    # subscriptions link to publications
    spans = p.spans()
    pubs = {s.context.span_id for s in spans if s.kind is SpanKind.PRODUCER}
    subs = [s for s in spans if s.kind is SpanKind.CONSUMER]
    assert subs and all(s.links and s.links[0].context.span_id in pubs for s in subs)
    # metrics: the first attempt can be charted alone; the noisy participant dominates data
    attempts = {pt.attributes["otel_rtc.attempt"]
                for pt in collected["otel_rtc.subscription.duration"]}
    assert {"first", "retry", "migration", "resume"} <= attempts
    data_up = [pt.value for pt in collected["otel_rtc.traffic.packets"]
               if pt.attributes["otel_rtc.media.kind"] == "data"
               and pt.attributes["otel_rtc.direction"] == "up"]
    assert max(data_up) > 10_000
    assert collected["otel_rtc.session.active"][0].value == 0
    assert _self_telemetry.error_count() == 0
    assert _self_telemetry.drop_count("traffic") == 0  # the 2**32 wraps were all accepted


def test_cli_is_bounded():
    out = subprocess.run(
        [sys.executable, "-m", "examples.sfu_pubsub", "--duration", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert "participant_joined" in out.stdout
    assert "otel_rtc.traffic.packets" in out.stdout


# -- end to end through a real Rotel collector ----------------------------------------

@pytest.mark.collector
def test_end_to_end_through_rotel(otlp_receiver, rotel_collector):
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from otel_rtc.instrumentation.pubsub import PubSubTelemetry
    from otel_rtc.instrumentation.sessions import SessionRegistry
    from otel_rtc.instrumentation.traffic import TrafficAccounting
    from otel_rtc.sdk.aggregation import LocalAggregationRegistry
    from otel_rtc.sdk.export import RtcWrappingMetricExporter
    from otel_rtc.sdk.recording_backend import bind_registry

    recv = otlp_receiver
    col = rotel_collector(exporter_endpoint=recv.endpoint)
    base = col.http_endpoint
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(f"{base}/v1/traces")))
    registry = LocalAggregationRegistry()
    exporter = RtcWrappingMetricExporter(OTLPMetricExporter(f"{base}/v1/metrics"),
                                 registry=registry)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    mp = MeterProvider(metric_readers=[reader])
    bind_registry(mp, registry)
    lp = LoggerProvider()
    lp.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(f"{base}/v1/logs")))

    pubsub = PubSubTelemetry(tracer_provider=tp, meter_provider=mp)
    sessions = SessionRegistry(reap_interval_s=0, meter_provider=mp, logger_provider=lp)
    traffic = TrafficAccounting(meter_provider=mp)
    sessions.join("r", "alice", "signal")
    sessions.join("r", "bob", "signal")
    headers = {}
    pubsub.publication("TR_1", room="r", participant="alice", kind="video",
                       carrier=headers).complete()
    pubsub.subscription("TR_1", room="r", subscriber="bob", kind="video",
                        carrier=headers).complete()
    sessions.leave("r", "bob", "signal", expect_resume=True)
    sessions.join("r", "bob", "signal")  # resume: no second joined
    traffic.add("r", "alice", "up", "video", 2**32 - 10, 1000)  # first: a baseline
    traffic.add("r", "alice", "up", "video", 20, 5000)  # wrapped: +30
    sessions.leave("r", "bob", "signal")
    mp.force_flush()

    assert recv.wait_for(
        lambda r: {"otel_rtc.traffic.packets", "otel_rtc.subscription.duration",
                   "otel_rtc.session.active"} <= set(r.metrics())
        and len(r.spans()) >= 2 and len(r.logs()) >= 3, timeout=15), col.logs()
    m, spans, logs = recv.metrics(), recv.spans(), recv.logs()
    [pkts] = m["otel_rtc.traffic.packets"]
    assert pkts.sum.data_points[0].as_int == 30
    assert m["otel_rtc.session.active"][-1].gauge.data_points[0].as_int == 1
    [dur] = m["otel_rtc.subscription.duration"]
    pt = dur.histogram.data_points[0]
    assert pt.count == 1
    assert {a.key: a.value.string_value for a in pt.attributes}["otel_rtc.attempt"] == \
        "first"
    pub = next(s for s in spans if s.name == "publish video")
    sub = next(s for s in spans if s.name == "subscribe video")
    assert sub.links[0].span_id == pub.span_id
    assert [lr.event_name for lr in logs] == ["participant_joined", "participant_joined",
                                              "participant_left"]
    tp.shutdown()
    lp.shutdown()
    mp.shutdown()
    assert col.running
