"""BurstMonitor: histograms, burst spans, switches, periodic log lines, containment."""

import json
import logging
import os
import socket
import subprocess
import threading
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind

from otel_rtc.core.clock import ManualClock
from otel_rtc.core.switch import BurstSwitches
from otel_rtc.instrumentation import self_telemetry as _self_telemetry
from otel_rtc.instrumentation.bursts import (
    BURST_DURATION_BUCKETS,
    BurstMonitor,
    get_burst_monitor,
)
from otel_rtc.testing import make_test_pipeline

BASE = 1_700_000_000_000_000_000
MS = 1_000_000


def ms(t: float) -> int:
    return BASE + round(t * MS)


pytestmark = pytest.mark.usefixtures("fresh_self_telemetry")


@pytest.fixture
def switches():
    sw = BurstSwitches(environ={})
    sw.set(enabled=True)
    return sw


@pytest.fixture
def monitors():
    made = []
    yield made
    for m in made:
        m.close()


def make_monitor(monitors, switches, pipeline=None, name="test", tracer_provider=None, **kw):
    p = pipeline or make_test_pipeline()
    m = BurstMonitor(
        name,
        tracer_provider=tracer_provider or p.tracer_provider,
        meter_provider=p.meter_provider,
        clock=ManualClock(ms(0)),
        stats_interval_s=None,
        switches=switches,
        **kw,
    )
    monitors.append(m)
    return m, p


IDEAL = [(4, 8), (8, 11), (11, 14), (14, 18), (18, 20)]


def run_burst(m, times, link=False, offset=0):
    contexts = []
    for start, _finish in times:
        m.processing_started(ms(start + offset))
        if link:
            contexts.append(m.current_span_context())
    m.buffer_empty(ms(times[-1][1] + offset))
    return contexts


def test_histograms_and_spans_for_two_bursts(monitors, switches):
    m, p = make_monitor(monitors, switches, name="worker-1")
    assert m.enabled
    contexts = run_burst(m, IDEAL, link=True)  # 4..20 ms, 5 messages
    run_burst(m, [(50, 51), (51, 53)])  # 50..53 ms, 2 messages, 30 ms break
    metrics = p.metrics()
    [dur] = metrics["otel_rtc.burst.duration"]
    assert dur.count == 2 and dur.sum == pytest.approx(0.016 + 0.003)
    assert dict(dur.attributes) == {"otel_rtc.burst.source": "worker-1"}
    assert list(dur.explicit_bounds) == list(BURST_DURATION_BUCKETS)
    [msgs] = metrics["otel_rtc.burst.messages"]
    assert msgs.count == 2 and msgs.sum == 7 and msgs.max == 5
    [brk] = metrics["otel_rtc.burst.break.duration"]
    assert brk.count == 1 and brk.sum == pytest.approx(0.030)  # the first burst has none

    s1, s2 = sorted(p.spans(), key=lambda s: s.start_time)
    assert s1.name == "burst worker-1" and s1.kind is SpanKind.INTERNAL
    assert (s1.start_time, s1.end_time) == (ms(4), ms(20))
    assert (s2.start_time, s2.end_time) == (ms(50), ms(53))
    assert s1.parent is None
    assert s1.attributes["otel_rtc.burst.message_count"] == 5
    assert s1.attributes["otel_rtc.burst.worst_case_latency"] == pytest.approx(0.016)
    assert "otel_rtc.burst.break_before" not in s1.attributes
    assert s2.attributes["otel_rtc.burst.break_before"] == pytest.approx(0.030)
    # Message spans can link to the burst span while it is in progress; one span per burst.
    assert all(c == s1.context for c in contexts)
    # The duration exemplar points at the burst span.
    assert {e.span_id for e in dur.exemplars} <= {s1.context.span_id, s2.context.span_id}
    assert dur.exemplars


def test_current_span_context_outside_a_burst_is_none(monitors, switches):
    m, p = make_monitor(monitors, switches)
    assert m.current_span_context() is None
    run_burst(m, [(1, 2)])
    assert m.current_span_context() is None
    assert len(p.spans()) == 1


def test_not_recording(monitors, switches):
    exporter = InMemorySpanExporter()
    tp = TracerProvider(sampler=ALWAYS_OFF)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    m, p = make_monitor(monitors, switches, tracer_provider=tp)
    contexts = run_burst(m, IDEAL, link=True)
    assert contexts == [None] * 5
    assert exporter.get_finished_spans() == ()
    [dur] = p.metrics()["otel_rtc.burst.duration"]
    assert dur.count == 1 and dur.exemplars == []


def test_sdk_fallback_without_local_aggregation(monitors, switches):
    p = make_test_pipeline(local_aggregation=False)
    m, _ = make_monitor(monitors, switches, pipeline=p)
    run_burst(m, IDEAL)
    [dur] = p.metrics()["otel_rtc.burst.duration"]
    assert dur.count == 1 and list(dur.explicit_bounds) == list(BURST_DURATION_BUCKETS)


def test_switching_off_mid_burst_abandons_it(monitors, switches):
    m, p = make_monitor(monitors, switches)
    m.processing_started(ms(1))
    assert m.current_span_context() is not None
    switches.set(enabled=False)
    assert m.enabled is False and not m.tracker.in_burst
    [span] = p.spans()  # the open span is ended, marked incomplete
    assert span.attributes["otel_rtc.burst.incomplete"] is True
    assert "otel_rtc.burst.duration" not in p.metrics()
    switches.set(enabled=True)
    assert m.enabled is True
    run_burst(m, [(10, 12)])
    assert p.metrics()["otel_rtc.burst.duration"][0].count == 1


def test_tick_logs_stats_and_data_lines(monitors, switches, caplog):
    m, _ = make_monitor(monitors, switches, name="svc")
    run_burst(m, IDEAL)
    switches.set(log_data=True)
    with caplog.at_level(logging.INFO, logger="otel_rtc.bursts"):
        frame = m.tick(ms(50))
    assert frame is m.last_frame and frame.data_points == 1
    records = [r for r in caplog.records if r.name == "otel_rtc.bursts"]
    stats, data = [r.getMessage() for r in records]
    assert records[0].otel_rtc_burst_source == "svc"
    assert records[0].otel_rtc_burst_worst_case_latency == frame.worst_case_latency_s
    head, body = stats.split(" ", 1)
    assert head == "logMessageBurstStats"
    doc = json.loads(body)
    assert "source" not in doc and doc["total_message_count"] == 5
    assert doc["frame_time_dur"] == pytest.approx(0.050)
    head, body = data.split(" ", 1)
    assert head == "logMessageBurstData"
    raw = json.loads(body)
    assert raw["burst_message_count"] == [5] and raw["burst_duration"] == [pytest.approx(0.016)]
    assert raw["break_duration"] == [None] and raw["start_ns"] == [ms(4)]
    assert m.raw() == []  # drained by the tick


def test_log_lines_are_suppressed_separately(monitors, switches, caplog):
    m, _ = make_monitor(monitors, switches)
    run_burst(m, IDEAL)
    switches.set(log_stats=False, log_data=True)
    with caplog.at_level(logging.INFO, logger="otel_rtc.bursts"):
        m.tick(ms(30))
        run_burst(m, [(40, 41)])
        switches.set(log_data=False)
        frame = m.tick(ms(60))
    msgs = [r.getMessage().split(" ")[0] for r in caplog.records if r.name == "otel_rtc.bursts"]
    assert msgs == ["logMessageBurstData"]
    assert frame.data_points == 1  # frames are still taken


def test_tick_when_disabled_takes_no_frame(monitors, switches):
    m, _ = make_monitor(monitors, switches)
    switches.set(enabled=False)
    assert m.tick(ms(10)) is None and m.last_frame is None


def test_config_file_enables_tracking_at_run_time(monitors, tmp_path):
    cfg = tmp_path / "live.json"
    cfg.write_text(json.dumps({"bursts": {"enabled": False}}))
    sw = BurstSwitches(environ={}, config_file=cfg)
    m, _ = make_monitor(monitors, sw)
    assert m.enabled is False
    cfg.write_text(json.dumps({"bursts": {"enabled": True}}))
    os.utime(cfg, ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))
    assert m.tick(ms(10)) is not None  # the tick polls the switches
    assert m.enabled is True


def test_stats_thread_ticks_and_close_stops_it(switches):
    p = make_test_pipeline()
    m = BurstMonitor("threaded", tracer_provider=p.tracer_provider,
                     meter_provider=p.meter_provider, stats_interval_s=0.02, switches=switches)
    try:
        deadline = time.monotonic() + 10
        while m.last_frame is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert m.last_frame is not None
    finally:
        m.close()
    assert not m._thread.is_alive()
    m.close()  # idempotent


def test_registry_returns_the_same_monitor_until_closed(switches):
    p = make_test_pipeline()
    a = get_burst_monitor("reg-test", tracer_provider=p.tracer_provider,
                          meter_provider=p.meter_provider, stats_interval_s=None,
                          switches=switches)
    try:
        assert get_burst_monitor("reg-test") is a
    finally:
        a.close()
    b = get_burst_monitor("reg-test", stats_interval_s=None, switches=switches)
    try:
        assert b is not a
    finally:
        b.close()


@pytest.mark.parametrize("kwargs", [{"name": ""}, {"stats_interval_s": 0},
                                    {"stats_interval_s": -1.0}, {"raw_capacity": -5}])
def test_bad_arguments(kwargs, switches):
    args = {"name": "bad", "stats_interval_s": None, "switches": switches, **kwargs}
    with pytest.raises(ValueError):
        BurstMonitor(args.pop("name"), **args)


def test_sdk_failures_are_contained(monitors, switches):
    m, p = make_monitor(monitors, switches)

    class Boom:
        def record(self, *_event):
            raise RuntimeError("exporter bug")

    m._recorder = Boom()
    run_burst(m, IDEAL)  # must not raise
    assert _self_telemetry.error_count("burst") == 1
    assert len(p.spans()) == 1  # the span part still worked


def test_raw_overflow_is_counted_as_a_drop(monitors, switches):
    m, _ = make_monitor(monitors, switches, raw_capacity=2)
    for i in range(4):
        run_burst(m, [(10 * i + 1, 10 * i + 2)])
    assert _self_telemetry.drop_count("burst", "raw_overflow") == 2
    assert len(m.raw()) == 2


def test_threads_smoke(monitors, switches):
    m, p = make_monitor(monitors, switches)
    n_threads, per = 4, 2_000

    def work(k):
        for i in range(per):
            m.processing_started(time.time_ns())
            m.current_span_context()
            if i % 100 == k:
                m.buffer_empty(time.time_ns())

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for _ in range(20):
        m.tick()
    for t in threads:
        t.join()
    m.buffer_empty(time.time_ns())
    assert _self_telemetry.error_count() == 0
    [msgs] = p.metrics()["otel_rtc.burst.messages"]
    assert msgs.sum == n_threads * per  # no message lost or counted twice
    assert len(p.spans()) == msgs.count  # one ended span per burst, none leaked


def test_invalid_switch_values_are_counted_as_drops(monitors, tmp_path):
    env = {"OTEL_RTC_BURSTS_ENABLED": "1"}
    sw = BurstSwitches(environ=env)
    m, _ = make_monitor(monitors, sw)
    assert m.enabled is True
    env["OTEL_RTC_BURSTS_ENABLED"] = "sometimes"
    m.tick(ms(5))
    assert m.enabled is False
    assert _self_telemetry.drop_count("burst.switches", "invalid_env") == 1


# -- real path: OTLP/HTTP over 127.0.0.1 through the real Rotel collector ----------------------
try:
    import rotel

    ROTEL = os.path.join(os.path.dirname(rotel.__file__), "rotel-agent")
except ImportError:  # pragma: no cover - the collector extra is not installed
    ROTEL = ""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _OtlpSink:
    """A minimal OTLP/HTTP receiver on 127.0.0.1 that decodes what the collector sends."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        self.metrics, self.spans = [], []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    import gzip

                    body = gzip.decompress(body)
                if self.path.endswith("/v1/metrics"):
                    req = ExportMetricsServiceRequest.FromString(body)
                    for rm in req.resource_metrics:
                        for sm in rm.scope_metrics:
                            sink.metrics.extend(sm.metrics)
                elif self.path.endswith("/v1/traces"):
                    req = ExportTraceServiceRequest.FromString(body)
                    for rs in req.resource_spans:
                        for ss in rs.scope_spans:
                            sink.spans.extend(ss.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.collector
@pytest.mark.skipif(not os.path.exists(ROTEL), reason="rotel-agent binary not installed")
def test_real_path_through_rotel(tmp_path, switches):
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from otel_rtc.sdk.aggregation import LocalAggregationRegistry
    from otel_rtc.sdk.export import RtcWrappingMetricExporter
    from otel_rtc.sdk.recording_backend import bind_registry

    sink = _OtlpSink()
    log = open(tmp_path / "rotel.log", "wb")  # closed in finally
    http_port, grpc_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [ROTEL, "start", "--otlp-http-endpoint", f"127.0.0.1:{http_port}",
         "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}", "--exporter", "otlp",
         "--otlp-exporter-endpoint", f"http://127.0.0.1:{sink.port}",
         "--otlp-exporter-protocol", "http", "--batch-timeout", "100ms",
         "--pid-file", str(tmp_path / "rotel.pid")],
        stdout=log, stderr=subprocess.STDOUT,
    )
    m = None
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", http_port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "rotel.log").read_text()
                assert time.monotonic() < deadline, "rotel did not start"
                time.sleep(0.05)
        base = f"http://127.0.0.1:{http_port}"
        registry = LocalAggregationRegistry()
        reader = PeriodicExportingMetricReader(
            RtcWrappingMetricExporter(OTLPMetricExporter(endpoint=f"{base}/v1/metrics"),
                              registry=registry),
            export_interval_millis=3_600_000,
        )
        mp = MeterProvider(metric_readers=[reader])
        bind_registry(mp, registry)
        # Known foundation gap (see make_monitor): give the SDK one data point.
        mp.get_meter("test").create_counter("test.keepalive").add(1)
        tp = TracerProvider()
        tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
        m = BurstMonitor("real", tracer_provider=tp, meter_provider=mp,
                         stats_interval_s=None, switches=switches)
        t0 = time.time_ns()
        for i in range(3):
            m.processing_started(t0 + i * MS)
        m.buffer_empty(t0 + 3 * MS)
        assert mp.force_flush(10_000)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            names = {x.name for x in sink.metrics}
            if "otel_rtc.burst.duration" in names and sink.spans:
                break
            time.sleep(0.05)
        dur = [x for x in sink.metrics if x.name == "otel_rtc.burst.duration"]
        assert dur, f"got metrics {sorted({x.name for x in sink.metrics})}"
        [point] = dur[0].histogram.data_points
        assert point.count == 1 and point.sum == pytest.approx(0.003)
        assert {(a.key, a.value.string_value) for a in point.attributes} == {
            ("otel_rtc.burst.source", "real")}
        [span] = sink.spans
        assert span.name == "burst real"
        assert (span.start_time_unix_nano, span.end_time_unix_nano) == (t0, t0 + 3 * MS)
        mp.shutdown()
        tp.shutdown()
    finally:
        if m is not None:
            m.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        sink.close()


def test_rejected_timestamps_are_dropped_and_not_counted_into_a_burst(
        monitors, switches, otlp_receiver, tmp_path, monkeypatch):
    """Through configure()'s real OTLP/HTTP export: the burst span counts only the
    accepted messages, and each rejected one is counted as dropped."""
    from otel_rtc.instrumentation.bursts import ATTR_MESSAGE_COUNT, ATTR_SOURCE
    from otel_rtc.sdk.configure import configure
    from tests._otlp_receiver import attrs_of

    monkeypatch.chdir(tmp_path)
    _self_telemetry._reset_for_tests()
    h = configure(set_global=False, endpoint=otlp_receiver.endpoint)
    try:
        m = BurstMonitor("rejects", tracer_provider=h.tracer_provider,
                         meter_provider=h.meter_provider, clock=ManualClock(ms(0)),
                         stats_interval_s=None, switches=switches)
        monitors.append(m)
        m.processing_started(1.5)  # rejected before the burst: must not open or join one
        m.processing_started(ms(1))
        m.processing_started(2.5)  # rejected inside the burst
        m.processing_started(ms(3))
        m.buffer_empty(ms(5))
        assert h.force_flush(timeout_s=10)
        assert otlp_receiver.wait_for(lambda r: any(
            attrs_of(s).get(ATTR_SOURCE) == "rejects" for s in r.spans()))
    finally:
        h.shutdown(timeout_s=5)
    [span] = [s for s in otlp_receiver.spans() if attrs_of(s).get(ATTR_SOURCE) == "rejects"]
    assert attrs_of(span)[ATTR_MESSAGE_COUNT] == 2
    assert _self_telemetry.drop_count("burst", "invalid") == 2


def test_burst_span_never_ends_before_it_starts_and_the_clamp_is_counted(monitors,
                                                                         switches):
    _self_telemetry._reset_for_tests()
    m, p = make_monitor(monitors, switches, name="backwards")
    m.processing_started(ms(10))
    m.buffer_empty(ms(7))  # the clock went backwards within the burst
    [span] = p.spans()
    assert span.end_time >= span.start_time == ms(10)
    assert _self_telemetry._clamps.get("burst") == 1
