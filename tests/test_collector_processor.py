"""The Rotel processor module: unit tests with rotel_sdk test doubles, then the real agent."""

import gzip
import sys
import types
import urllib.request

import pytest

from otel_rtc.collector import processor as cp
from otel_rtc.collector.rotel import processor_path

S = 1_000_000_000
T0 = 1_700_000_000 * S
MBPS = 1e6 / 8


# -- rotel_sdk test doubles (same runtime shapes as the agent's pyo3 classes) ----------

class _Obj:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class AnyValue:
    def __init__(self, value=None):
        self.value = value


class KeyValue:
    def __init__(self, key, value):
        self.key = key
        self.value = value


class _Variant:
    def __init__(self, inner):
        self._0 = inner

    def __getitem__(self, i):
        assert i == 0
        return self._0


class MetricData:
    pass


for _n in ("Sum", "Gauge", "Histogram", "ExponentialHistogram", "Summary"):
    setattr(MetricData, _n, type(f"MetricData_{_n}", (_Variant, MetricData), {}))


class NumberDataPointValue:
    pass


NumberDataPointValue.AsInt = type("AsInt", (_Variant, NumberDataPointValue), {})
NumberDataPointValue.AsDouble = type("AsDouble", (_Variant, NumberDataPointValue), {})


class _Temporality:
    def __init__(self, v):
        self._v = v

    def __int__(self):
        return self._v  # like the agent: == between instances is unreliable, int() is not


class AggregationTemporality:
    Unspecified = _Temporality(0)
    Delta = _Temporality(1)
    Cumulative = _Temporality(2)


def _cls(name):
    return type(name, (_Obj,), {})


Metric, Sum, Gauge, Histogram = _cls("Metric"), _cls("Sum"), _cls("Gauge"), _cls("Histogram")
NumberDataPoint, HistogramDataPoint = _cls("NumberDataPoint"), _cls("HistogramDataPoint")
ScopeMetrics, InstrumentationScope = _cls("ScopeMetrics"), _cls("InstrumentationScope")
ResourceMetrics, Resource = _cls("ResourceMetrics"), _cls("Resource")


@pytest.fixture(autouse=True)
def fake_sdk(monkeypatch):
    common = types.ModuleType("rotel_sdk.open_telemetry.common.v1")
    common.AnyValue, common.KeyValue = AnyValue, KeyValue
    common.InstrumentationScope = InstrumentationScope
    mv1 = types.ModuleType("rotel_sdk.open_telemetry.metrics.v1")
    for n in ("MetricData", "NumberDataPointValue", "AggregationTemporality", "Metric", "Sum",
              "Gauge", "Histogram", "NumberDataPoint", "HistogramDataPoint", "ScopeMetrics",
              "ResourceMetrics"):
        setattr(mv1, n, globals()[n])
    for name in ("rotel_sdk", "rotel_sdk.open_telemetry", "rotel_sdk.open_telemetry.common",
                 "rotel_sdk.open_telemetry.metrics"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "rotel_sdk.open_telemetry.common.v1", common)
    monkeypatch.setitem(sys.modules, "rotel_sdk.open_telemetry.metrics.v1", mv1)
    cp._reset_for_tests({})
    yield
    cp._reset_for_tests({})


def kvs(d):
    return [KeyValue(k, AnyValue(v)) for k, v in d.items()]


def num_point(attrs, start, t, v):
    val = NumberDataPointValue.AsInt(v) if isinstance(v, int) else NumberDataPointValue.AsDouble(v)
    return NumberDataPoint(attributes=kvs(attrs), start_time_unix_nano=start, time_unix_nano=t,
                           value=val, exemplars=[], flags=0)


def sum_metric(name, pts, temporality=AggregationTemporality.Cumulative, monotonic=True,
               unit="By"):
    return Metric(name=name, unit=unit, description="", metadata=[], data=MetricData.Sum(
        Sum(data_points=pts, aggregation_temporality=temporality, is_monotonic=monotonic)))


def rmetrics(*metrics, resource=None):
    return ResourceMetrics(
        resource=Resource(attributes=kvs(resource or {"service.name": "sfu-1"}),
                          dropped_attributes_count=0),
        scope_metrics=[ScopeMetrics(scope=InstrumentationScope(name="app", version=""),
                                    metrics=list(metrics), schema_url="")],
        schema_url="")


def derived(rm, name):
    """{frozenset(attrs): value} of our gauge ``name``; checks scope and gauge type."""
    out = {}
    for sm in rm.scope_metrics:
        for m in sm.metrics:
            if m.name == name:
                assert sm.scope.name == "otel_rtc.collector"
                assert isinstance(m.data, MetricData.Gauge)
                for p in m.data[0].data_points:
                    out[frozenset((kv.key, kv.value.value) for kv in p.attributes)] = p.value[0]
    return out


def sums(rm, name):
    out = {}
    for sm in rm.scope_metrics:
        for m in sm.metrics:
            if m.name == name:
                for p in m.data[0].data_points:
                    out[frozenset((kv.key, kv.value.value) for kv in p.attributes)] = p.value[0]
    return out


def spike_points(attrs):
    total = 0
    pts = [num_point(attrs, T0, T0, 0)]
    for i in range(1, 301):
        if 100 < i <= 110:
            total += int(100 * MBPS)
        pts.append(num_point(attrs, T0, T0 + i * S, total))
    return pts


A = {"otel_rtc.room": "r1", "otel_rtc.direction": "up", "otel_rtc.media.kind": "video",
     "otel_rtc.participant": "alice"}


def key(**extra):
    return frozenset({**A, **extra}.items())


# -- unit tests ---------------------------------------------------------------------------

def test_reference_spike_mean_and_peak():
    rm = rmetrics(sum_metric("otel_rtc.traffic.bytes", spike_points(A)))
    cp.process_metrics(rm)
    rate = derived(rm, "otel_rtc.traffic.bytes.rate")
    peak = derived(rm, "otel_rtc.traffic.bytes.rate.peak")
    assert rate[key(**{"otel_rtc.rate.window": "span"})] * 8 / 1e6 == pytest.approx(10 / 3)
    assert rate[key(**{"otel_rtc.rate.window": "300s"})] * 8 / 1e6 == pytest.approx(10 / 3)
    assert rate[key(**{"otel_rtc.rate.window": "10s"})] == 0.0
    assert peak[key(**{"otel_rtc.rate.subwindow": "1s"})] * 8 / 1e6 == pytest.approx(100)
    units = {m.name: m.unit for sm in rm.scope_metrics for m in sm.metrics}
    assert units["otel_rtc.traffic.bytes.rate"] == "By/s"
    assert units["otel_rtc.traffic.bytes"] == "By"  # source passes through
    assert len(rm.scope_metrics[0].metrics) == 1
    assert cp.problem_counts() == {}


def test_five_minutes_read_as_one_point_is_no_spike_and_state_persists_across_calls():
    a = {"otel_rtc.room": "r"}
    rm = rmetrics(sum_metric("otel_rtc.traffic.bytes", [num_point(a, T0, T0 + 300 * S,
                                                                  int(300 * MBPS))]))
    cp.process_metrics(rm)
    rate = derived(rm, "otel_rtc.traffic.bytes.rate")
    assert max(rate.values()) == pytest.approx(MBPS)  # not 150 x from a 2 s window
    assert frozenset({**a, "otel_rtc.rate.window": "10s"}.items()) not in rate
    # a later call continues the same series (module state)
    rm2 = rmetrics(sum_metric("otel_rtc.traffic.bytes", [num_point(a, T0, T0 + 310 * S,
                                                                   int(310 * MBPS))]))
    cp.process_metrics(rm2)
    assert derived(rm2, "otel_rtc.traffic.bytes.rate")[
        frozenset({**a, "otel_rtc.rate.window": "10s"}.items())] == pytest.approx(MBPS)


def test_series_are_per_resource():
    a = {"otel_rtc.room": "r"}
    for k, res in ((1, "a"), (1, "b"), (2, "a"), (2, "b")):
        rm = rmetrics(sum_metric("otel_rtc.traffic.packets", [
            num_point(a, T0, T0 + k * 10 * S, (100 if res == "a" else 10) * k * 10)],
            unit="{packet}"), resource={"service.name": res})
        cp.process_metrics(rm)
        if k == 2:
            got = derived(rm, "otel_rtc.traffic.packets.rate")
            assert got[frozenset({**a, "otel_rtc.rate.window": "10s"}.items())] == \
                pytest.approx(100 if res == "a" else 10)
    units = {m.name: m.unit for sm in rm.scope_metrics for m in sm.metrics}
    assert units["otel_rtc.traffic.packets.rate"] == "{packet}/s"


def test_delta_points_reset_and_passthrough():
    cp._reset_for_tests({"OTEL_RTC_RATE_METRICS": "app.*"})
    a = {"q": "x"}
    gauge = Metric(name="app.gauge", unit="1", description="", metadata=[],
                   data=MetricData.Gauge(Gauge(data_points=[num_point(a, 0, T0, 3)])))
    updown = sum_metric("app.updown", [num_point(a, T0, T0 + S, 5)], monotonic=False)
    out = None
    for k in range(1, 4):
        d = sum_metric("app.delta", [num_point(a, T0 + (k - 1) * 10 * S, T0 + k * 10 * S, 50)],
                       temporality=AggregationTemporality.Delta, unit="{message}")
        c = sum_metric("app.cum", [num_point(a, T0, T0 + k * 10 * S, 0 if k == 3 else 20 * k)])
        out = rmetrics(gauge, updown, d, c)
        cp.process_metrics(out)
    assert derived(out, "app.delta.rate")[frozenset({**a, "otel_rtc.rate.window": "span"}
                                                    .items())] == pytest.approx(5.0)
    names = {m.name for sm in out.scope_metrics for m in sm.metrics}
    assert "app.gauge.rate" not in names and "app.updown.rate" not in names
    assert out.scope_metrics[0].metrics[:2] == [gauge, updown]
    # the counter went 20 -> 40 -> 0: a reset, never a negative rate
    cum = derived(out, "app.cum.rate")
    assert all(v >= 0 for v in cum.values())


def test_emission_is_throttled_per_series_but_input_is_exact():
    cp._reset_for_tests({"OTEL_RTC_EMIT_INTERVAL": "5", "OTEL_RTC_LOAD": "false"})
    a = {"otel_rtc.room": "r"}
    emitted = []
    for k in range(1, 13):  # one point per second of data time
        rm = rmetrics(sum_metric("otel_rtc.traffic.bytes", [num_point(a, T0, T0 + k * S,
                                                                      1000 * k)]))
        cp.process_metrics(rm)
        if derived(rm, "otel_rtc.traffic.bytes.rate"):
            emitted.append(k)
            last = rm
    assert emitted == [1, 6, 11]
    peak = derived(last, "otel_rtc.traffic.bytes.rate.peak")
    assert peak[frozenset({**a, "otel_rtc.rate.subwindow": "1s"}.items())] == \
        pytest.approx(1000)  # computed from every 1 s point, not only emitted ones


def test_histogram_count_rate():
    cp._reset_for_tests({"OTEL_RTC_RATE_METRICS": "app.lat"})
    for k in (1, 2):
        hp = HistogramDataPoint(attributes=[], start_time_unix_nano=T0,
                                time_unix_nano=T0 + k * 10 * S, count=40 * k, sum=1.0,
                                bucket_counts=[40 * k], explicit_bounds=[], exemplars=[],
                                flags=0, min=None, max=None)
        rm = rmetrics(Metric(name="app.lat", unit="s", description="", metadata=[],
                             data=MetricData.Histogram(Histogram(
                                 data_points=[hp],
                                 aggregation_temporality=AggregationTemporality.Cumulative))))
        cp.process_metrics(rm)
    got = derived(rm, "app.lat.rate")
    assert got[frozenset({("otel_rtc.rate.window", "10s")})] == pytest.approx(4.0)


def test_traffic_load_per_resource_with_top_n():
    cp._reset_for_tests({"OTEL_RTC_LOAD_TOP_N": "1", "OTEL_RTC_EMIT_INTERVAL": "0"})
    rm = None
    for k in range(0, 12):
        t = T0 + k * S
        pts_b, pts_p = [], []
        for who, bps in (("alice", 100_000), ("bob", 1_000), ("carol", 500)):
            a = {**A, "otel_rtc.participant": who}
            pts_b.append(num_point(a, T0, t, bps * k))
            pts_p.append(num_point(a, T0, t, 10 * k))
        rm = rmetrics(sum_metric("otel_rtc.traffic.bytes", pts_b),
                      sum_metric("otel_rtc.traffic.packets", pts_p, unit="{packet}"))
        cp.process_metrics(rm)
    share = derived(rm, "otel_rtc.traffic.load.share")
    assert set(share) == {frozenset({("otel_rtc.room", "r1"), ("otel_rtc.participant", p)})
                          for p in ("alice", "_others")}
    assert sum(share.values()) == pytest.approx(1.0)
    score = derived(rm, "otel_rtc.traffic.load.score")
    assert score[frozenset({("otel_rtc.room", "r1")})] == pytest.approx(
        8 * 101_500 + 4000 * 30)


def test_problems_are_counted_and_exported_never_raised():
    a = {"otel_rtc.room": "r"}
    rm = rmetrics(sum_metric("otel_rtc.traffic.bytes", [
        num_point(a, T0, T0 + S, -5),
        NumberDataPoint(attributes=kvs(a), start_time_unix_nano=T0, time_unix_nano=T0 + S,
                        value=None, exemplars=[], flags=0),
        num_point({"x": 1}, T0 + 9 * S, T0 + S, 1)]))
    cp.process_metrics(rm)
    dropped = sums(rm, "otel_rtc.telemetry.dropped")
    comp = ("otel_rtc.component", "collector_processor")
    assert dropped[frozenset({comp, ("otel_rtc.drop.reason", "negative_value")})] == 1
    assert dropped[frozenset({comp, ("otel_rtc.drop.reason", "invalid")})] == 1
    assert dropped[frozenset({comp, ("otel_rtc.drop.reason", "bad_span")})] == 1
    # the load calculator needs room, direction and media kind
    assert dropped[frozenset({comp, ("otel_rtc.drop.reason", "missing_attributes")})] == 2

    class Broken:
        resource = None

        @property
        def scope_metrics(self):
            raise RuntimeError("boom")

        @scope_metrics.setter
        def scope_metrics(self, v):
            raise RuntimeError("boom")

    cp.process_metrics(Broken())  # must not raise
    cp.process_metrics(None)
    assert cp.problem_counts()[("otel_rtc.internal.errors", "RuntimeError")] == 1
    assert cp.problem_counts()[("otel_rtc.internal.errors", "AttributeError")] == 1


def test_rates_can_be_disabled_and_bad_env_falls_back(caplog):
    cp._reset_for_tests({"OTEL_RTC_RATES": "false", "OTEL_RTC_LOAD": "maybe",
                         "OTEL_RTC_RATE_WINDOWS": "10,5"})
    rm = rmetrics(sum_metric("otel_rtc.traffic.bytes", spike_points(A)))
    cp.process_metrics(rm)
    names = {m.name for sm in rm.scope_metrics for m in sm.metrics}
    assert "otel_rtc.traffic.bytes.rate" not in names
    assert "otel_rtc.traffic.load.score" in names  # bad boolean -> default (on)
    assert "OTEL_RTC_LOAD" in caplog.text and "OTEL_RTC_RATE" in caplog.text


def test_module_imports_only_the_pure_core():
    import subprocess

    code = (f"import sys, runpy; runpy.run_path({str(processor_path())!r}); "
            "bad = [m for m in sys.modules if m.startswith(('opentelemetry', 'google'))]; "
            "print(bad); assert not bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


# -- end to end through the real agent ------------------------------------------------

def _post_metrics(endpoint, request):
    body = gzip.compress(request.SerializeToString())
    req = urllib.request.Request(f"{endpoint}/v1/metrics", data=body, method="POST", headers={
        "Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def _pb_points(recv, name):
    from tests._otlp_receiver import attrs_of

    out = {}
    for m in recv.metrics().get(name, []):
        for p in m.gauge.data_points:
            out[frozenset(attrs_of(p).items())] = p.as_double
    return out


@pytest.mark.collector
def test_end_to_end_sdk_to_rotel_with_processor(otlp_receiver, rotel_collector):
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from otel_rtc.instrumentation.traffic import TrafficAccounting
    from tests._otlp_receiver import attrs_of

    col = rotel_collector(exporter_endpoint=otlp_receiver.endpoint,
                          metrics_processor=processor_path())
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(f"{col.http_endpoint}/v1/metrics"),
                                           export_interval_millis=3_600_000)
    mp = MeterProvider(metric_readers=[reader])
    acc = TrafficAccounting(meter_provider=mp, per_participant=True)
    acc.add("r1", "alice", "up", "video", 1000, 1_000_000)
    acc.add("r1", "bob", "down", "audio", 500, 50_000)
    mp.force_flush()
    assert otlp_receiver.wait_for_metric("otel_rtc.traffic.bytes.rate", 15), col.logs()
    mp.shutdown()
    [src] = [p for m in otlp_receiver.metrics()["otel_rtc.traffic.bytes"]
             for p in m.sum.data_points if attrs_of(p)["otel_rtc.participant"] == "alice"]
    span_s = (src.time_unix_nano - src.start_time_unix_nano) / S
    rate = _pb_points(otlp_receiver, "otel_rtc.traffic.bytes.rate")
    alice = {**attrs_of(src), "otel_rtc.rate.window": "span"}
    assert rate[frozenset(alice.items())] == pytest.approx(src.as_int / span_s, rel=1e-6)
    assert otlp_receiver.wait_for_metric("otel_rtc.traffic.load.share", 5)
    share = _pb_points(otlp_receiver, "otel_rtc.traffic.load.share")
    assert sum(share.values()) == pytest.approx(1.0)
    assert col.running


@pytest.mark.collector
def test_end_to_end_reference_spike_with_explicit_timestamps(otlp_receiver, rotel_collector):
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue as PAny
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue as PKV
    from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

    def attrs(d):
        return [PKV(key=k, value=PAny(string_value=v)) for k, v in d.items()]

    col = rotel_collector(exporter_endpoint=otlp_receiver.endpoint,
                          metrics_processor=processor_path())
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(attrs({"service.name": "sfu-e2e"}))
    m = rm.scope_metrics.add().metrics.add()
    m.name, m.unit = "otel_rtc.traffic.bytes", "By"
    m.sum.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
    m.sum.is_monotonic = True
    total = 0
    for i in range(0, 301):  # 1 s samples, 100 Mbps during seconds 100..110
        if 100 < i <= 110:
            total += int(100 * MBPS)
        p = m.sum.data_points.add()
        p.attributes.extend(attrs(A))
        p.start_time_unix_nano, p.time_unix_nano, p.as_int = T0, T0 + i * S, total
    coarse = {"otel_rtc.room": "coarse"}  # 5 minutes of 1 Mbps in one point
    p = m.sum.data_points.add()
    p.attributes.extend(attrs(coarse))
    p.start_time_unix_nano, p.time_unix_nano, p.as_int = T0, T0 + 300 * S, int(300 * MBPS)
    _post_metrics(col.http_endpoint, req)
    assert otlp_receiver.wait_for_metric("otel_rtc.traffic.bytes.rate.peak", 15), col.logs()
    rate = _pb_points(otlp_receiver, "otel_rtc.traffic.bytes.rate")
    peak = _pb_points(otlp_receiver, "otel_rtc.traffic.bytes.rate.peak")
    assert rate[key(**{"otel_rtc.rate.window": "span"})] * 8 / 1e6 == pytest.approx(10 / 3)
    assert peak[key(**{"otel_rtc.rate.subwindow": "1s"})] * 8 / 1e6 == pytest.approx(100)
    coarse_rates = [v for k, v in rate.items() if ("otel_rtc.room", "coarse") in k]
    assert coarse_rates and max(coarse_rates) == pytest.approx(MBPS)  # no 150x spike
    assert not [k for k in peak if ("otel_rtc.room", "coarse") in k]  # no invented peak
