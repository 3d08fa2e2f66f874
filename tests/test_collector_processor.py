"""The Rotel processor module: unit tests with rotel_sdk test doubles, then the real agent."""

import gzip
import itertools
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
    assert rate == {key(**{"otel_rtc.rate.window": "span"}): pytest.approx(10 / 3 * 1e6 / 8)}
    assert peak == {key(**{"otel_rtc.rate.subwindow": "1s"}): pytest.approx(100 * 1e6 / 8)}
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
    assert rate == {frozenset({**a, "otel_rtc.rate.window": "span"}.items()):
                    pytest.approx(MBPS)}  # over its own 300 s: not 150 x
    # a later call continues the same series (module state): a reading over (300, 310]
    rm2 = rmetrics(sum_metric("otel_rtc.traffic.bytes", [num_point(a, T0, T0 + 310 * S,
                                                                   int(310 * MBPS))]))
    cp.process_metrics(rm2)
    [pt] = [p for sm in rm2.scope_metrics for m in sm.metrics
            if m.name == "otel_rtc.traffic.bytes.rate" for p in m.data[0].data_points]
    assert pt.value[0] == pytest.approx(MBPS)
    assert (pt.start_time_unix_nano, pt.time_unix_nano) == (T0 + 300 * S, T0 + 310 * S)


def test_series_are_per_resource():
    a = {"otel_rtc.room": "r"}
    for k, res in ((1, "a"), (1, "b"), (2, "a"), (2, "b")):
        rm = rmetrics(sum_metric("otel_rtc.traffic.packets", [
            num_point(a, T0, T0 + k * 10 * S, (100 if res == "a" else 10) * k * 10)],
            unit="{packet}"), resource={"service.name": res})
        cp.process_metrics(rm)
        if k == 2:
            got = derived(rm, "otel_rtc.traffic.packets.rate")
            assert got[frozenset({**a, "otel_rtc.rate.window": "span"}.items())] == \
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


def _rates_by_room(rm):
    return {{kv.key: kv.value.value for kv in p.attributes}["otel_rtc.room"]:
            (p.start_time_unix_nano, p.time_unix_nano, p.value[0])
            for sm in rm.scope_metrics for m in sm.metrics
            if m.name == "otel_rtc.traffic.bytes.rate" for p in m.data[0].data_points}


def _rates_of_rooms_a_and_b(batches, b_until):
    """Per 1 s batch (k = 1..batches): room a's counter at 1000/s and, up to ``b_until``,
    room b's at 50/s; the ``.rate`` points each batch gained, by room."""
    a, b = {"otel_rtc.room": "a"}, {"otel_rtc.room": "b"}
    spans = []
    for k in range(1, batches + 1):
        pts = [num_point(a, T0, T0 + k * S, 1000 * k)]
        if k <= b_until:
            pts.append(num_point(b, T0, T0 + k * S, 50 * k))
        rm = rmetrics(sum_metric("otel_rtc.traffic.bytes", pts))
        cp.process_metrics(rm)
        spans.append(_rates_by_room(rm))
    return spans


def test_emission_follows_the_data_and_quiet_series_end_with_a_final_reading():
    """Each batch of a resource is an emission instant (reading span 0: every batch): a
    series with new points gets a reading over its data since the previous one (no timer
    holds the last seconds back); a series missing from 2 batches in a row gets a final
    reading of 0, then nothing."""
    cp._reset_for_tests({"OTEL_RTC_LOAD": "false", "OTEL_RTC_RATE_READING_SPAN": "0"})
    spans = _rates_of_rooms_a_and_b(8, b_until=3)
    assert [s_["a"] for s_ in spans] == [(T0 + (k - 1) * S, T0 + k * S, 1000.0)
                                         for k in range(1, 9)]
    assert [s_.get("b") for s_ in spans] == [
        (T0, T0 + S, 50.0), (T0 + S, T0 + 2 * S, 50.0), (T0 + 2 * S, T0 + 3 * S, 50.0),
        None,                                      # silent once: nothing (never rises)
        (T0 + 3 * S, T0 + 5 * S, 0.0),             # silent twice: the final reading
        None, None, None]                          # then nothing
    assert cp.problem_counts()[("otel_rtc.rates.anomalies", "quiet")] == 1


def test_the_reading_span_reads_each_series_once_per_10s_of_data_and_never_holds_its_end():
    """By default a series is read once its new data spans 10 s (0.95 tolerance), not at
    every batch; the first batch of its resource without it reads what was held."""
    cp._reset_for_tests({"OTEL_RTC_LOAD": "false"})
    spans = _rates_of_rooms_a_and_b(25, b_until=13)
    assert {k + 1: s_["a"] for k, s_ in enumerate(spans) if "a" in s_} == {
        10: (T0, T0 + 10 * S, 1000.0), 20: (T0 + 10 * S, T0 + 20 * S, 1000.0)}
    assert {k + 1: s_["b"] for k, s_ in enumerate(spans) if "b" in s_} == {
        10: (T0, T0 + 10 * S, 50.0),
        14: (T0 + 10 * S, T0 + 13 * S, 50.0),  # the first batch without it: read at once
        16: (T0 + 13 * S, T0 + 16 * S, 0.0)}   # then two silent batches: the final reading


def test_a_series_is_one_series_whatever_order_its_attributes_come_in():
    cp._reset_for_tests({"OTEL_RTC_LOAD": "false", "OTEL_RTC_RATE_READING_SPAN": "0"})
    fwd = dict(A)
    rev = dict(reversed(list(A.items())))
    assert list(fwd) != list(rev)
    got = []
    for k, attrs in ((1, fwd), (2, rev), (3, fwd)):
        rm = rmetrics(sum_metric("otel_rtc.traffic.bytes", [num_point(attrs, T0, T0 + k * S,
                                                                      1000 * k)]))
        cp.process_metrics(rm)
        got.append(_rates_by_room(rm))
    assert got == [{"r1": (T0 + (k - 1) * S, T0 + k * S, 1000.0)} for k in (1, 2, 3)]
    assert len(cp._state.deriver.engine) == 1


def _run_batches(batches, env, monkeypatch, memo=True):
    """Feed ``batches`` (lists of (room or None, counter value or None), one per 1 s) to a
    fresh processor: the gauges each batch gained (name -> attributes -> start, time,
    value), the problem counts, and how many points were looked up (not taken from the
    previous batch of their metric)."""
    cp._reset_for_tests(env)
    if not memo:
        monkeypatch.setattr(cp._state, "remember_batch", lambda *a: None)
    looked_up = []
    entry = cp._entry
    monkeypatch.setattr(cp, "_entry", lambda *a: looked_up.append(a[-1]) or entry(*a))
    rates = []
    for k, batch in enumerate(batches, 1):
        pts = []
        for room, v in batch:
            p = num_point({"otel_rtc.room": room} if room else {"other": "x"}, T0, T0 + k * S,
                          v if v is not None else 0)
            if v is None:
                p.value = None
            pts.append(p)
        rm = rmetrics(sum_metric("otel_rtc.traffic.bytes", pts))
        cp.process_metrics(rm)
        rates.append({m.name: {frozenset((kv.key, kv.value.value) for kv in p.attributes):
                               (p.start_time_unix_nano, p.time_unix_nano, p.value[0])
                               for p in m.data[0].data_points}
                      for sm in rm.scope_metrics if sm.scope.name == "otel_rtc.collector"
                      for m in sm.metrics if isinstance(m.data, MetricData.Gauge)})
    return rates, cp.problem_counts(), len(looked_up)


def test_a_batch_in_the_order_of_the_previous_one_takes_its_series_and_nothing_changes(
        monkeypatch):
    """A batch listing the series of the previous batch of its metric in the same order
    takes their entries without a lookup. Reordered, replaced, invalid and unlabelled
    points give the same readings and counts as points looked up one by one."""
    def pt(room, k, bad=False):
        return (room, None if bad else {"a": 1000, "b": 2000, "c": 3000, None: 5}[room] * k)

    seq = [[pt("a", 1), pt("b", 1)], [pt("a", 2), pt("b", 2)],  # same order: no lookup
           [pt("b", 3), pt("a", 3)],                             # reordered
           [pt("b", 4), pt("c", 4)], [pt("b", 5, bad=True), pt("c", 5)],  # replaced; invalid
           [pt("a", 6, bad=True), pt("c", 6)], [pt("a", 7), pt("c", 7)],  # then found
           [pt("c", 8), pt(None, 8)], [pt("c", 9), pt(None, 9)]]  # unlabelled: load only
    for env in ({"OTEL_RTC_RATE_READING_SPAN": "0"},
                {"OTEL_RTC_RATES": "false", "OTEL_RTC_RATE_READING_SPAN": "0"}):
        rates, counts, looked_up = _run_batches(seq, env, monkeypatch)
        assert (rates, counts) == _run_batches(seq, env, monkeypatch, memo=False)[:2]
        assert looked_up == 2 + 2 + 2 + 1 + 1 + 2
    # rates off: the load only, which needs direction and media too: each valid point counted
    assert "otel_rtc.traffic.bytes.rate" not in rates[1]
    assert counts[("otel_rtc.telemetry.dropped", "missing_attributes")] == 16
    assert counts[("otel_rtc.telemetry.dropped", "invalid")] == 2
    rates = [r["otel_rtc.traffic.bytes.rate"] for r in _run_batches(
        seq, {"OTEL_RTC_RATE_READING_SPAN": "0", "OTEL_RTC_LOAD": "false"}, monkeypatch)[0]]
    span = ("otel_rtc.rate.window", "span")
    assert rates[1] == {frozenset({("otel_rtc.room", "a"), span}): (T0 + S, T0 + 2 * S, 1000.0),
                        frozenset({("otel_rtc.room", "b"), span}): (T0 + S, T0 + 2 * S, 2000.0)}
    # a ended (silent at batches 4 and 5); its valid point at 7 starts it again from T0
    assert rates[6][frozenset({("otel_rtc.room", "a"), span})] == (T0, T0 + 7 * S, 1000.0)


def test_batches_kept_for_the_next_one_hold_no_more_points_than_the_series_lookup():
    cp._reset_for_tests({"OTEL_RTC_RATE_MAX_SERIES": "1", "OTEL_RTC_RATE_METRICS": "app.*"})
    st = cp._state
    for n, name in ((600, "app.a"), (600, "app.b"), (1100, "app.c"), (100, "app.a")):
        pts = [num_point({"i": i}, T0, T0 + S, 1) for i in range(n)]
        cp.process_metrics(rmetrics(sum_metric(name, pts)))
        assert st.batch_points == sum(len(raw) for raw, _ in st.batches.values()) <= 1026
    assert {mkey[1] for mkey in st.batches} == {"app.a"}  # at most 2 x 1 + 1024: not app.c


def test_a_batch_of_the_resource_without_selected_metrics_reads_what_was_held():
    cp._reset_for_tests({"OTEL_RTC_LOAD": "false"})
    rm = rmetrics(sum_metric("otel_rtc.traffic.bytes", [num_point(A, T0, T0 + S, 1000)]))
    cp.process_metrics(rm)
    assert not _rates_by_room(rm)  # 1 s of data: held
    rm = rmetrics(sum_metric("app.other", [num_point({}, T0, T0 + S, 1)]))
    cp.process_metrics(rm)
    assert _rates_by_room(rm) == {"r1": (T0, T0 + S, 1000.0)}


def test_data_held_when_its_resource_goes_idle_is_counted_as_dropped(monkeypatch):
    cp._reset_for_tests({"OTEL_RTC_LOAD": "false", "OTEL_RTC_RESOURCE_IDLE": "5"})
    cp.process_metrics(rmetrics(sum_metric("otel_rtc.traffic.bytes",
                                           [num_point(A, T0, T0 + S, 1000)])))  # held
    later = cp.time.monotonic() + 10
    monkeypatch.setattr(cp.time, "monotonic", lambda: later)
    for _ in range(64):  # idle resources are looked for every 64 calls
        cp.process_metrics(rmetrics(sum_metric("app.other", [num_point({}, T0, T0 + S, 1)]),
                                    resource={"service.name": "another"}))
    assert cp.problem_counts()[("otel_rtc.telemetry.dropped", "unread_at_idle")] == 1
    assert len(cp._state.deriver.engine) == 0


def test_a_staleness_marker_is_neither_a_value_nor_a_reset():
    """The issue's example: a histogram count rising 10/s sampled every 1 s, with one
    NoRecordedValue marker (count 0) at t=50: 10/s throughout, no 510/s peak."""
    cp._reset_for_tests({"OTEL_RTC_RATE_METRICS": "app.lat"})
    pts = []
    for i in range(1, 101):
        marker = i == 50
        pts.append(HistogramDataPoint(attributes=[], start_time_unix_nano=T0,
                                      time_unix_nano=T0 + i * S, count=0 if marker else 10 * i,
                                      sum=0.0, bucket_counts=[], explicit_bounds=[],
                                      exemplars=[], flags=1 if marker else 0, min=None,
                                      max=None))
    rm = rmetrics(Metric(name="app.lat", unit="s", description="", metadata=[],
                         data=MetricData.Histogram(Histogram(
                             data_points=pts,
                             aggregation_temporality=AggregationTemporality.Cumulative))))
    cp.process_metrics(rm)
    assert derived(rm, "app.lat.rate") == {frozenset({("otel_rtc.rate.window", "span")}): 10.0}
    assert derived(rm, "app.lat.rate.peak") == {
        frozenset({("otel_rtc.rate.subwindow", "1s")}): 10.0}
    assert sums(rm, "otel_rtc.rates.anomalies") == {frozenset({
        ("otel_rtc.component", "collector_processor"), ("otel_rtc.rate.anomaly", "stale")}): 1}


def test_the_series_cap_is_global_and_each_rejected_point_is_counted_once():
    cp._reset_for_tests({"OTEL_RTC_RATE_MAX_SERIES": "50"})
    for r in range(10):  # 10 resources x 20 traffic series, rates and load on
        pts = [num_point({**A, "otel_rtc.participant": f"p{i}"}, T0, T0 + S, 10)
               for i in range(20)]
        cp.process_metrics(rmetrics(sum_metric("otel_rtc.traffic.bytes", pts),
                                    resource={"service.name": f"sfu-{r}"}))
    assert len(cp._state.deriver.engine) == 50
    assert cp.problem_counts()[("otel_rtc.telemetry.dropped", "series_cap")] == 150
    assert sum(len(res[0]) for res in cp._state.resources.values()) == 50


def test_a_resource_that_derives_in_process_is_passed_through():
    """An app using configure() sends its own otel_rtc.rates scope: the collector does not
    derive its series again (and forgets what it derived before that scope showed up)."""
    cp._reset_for_tests({"OTEL_RTC_RATE_READING_SPAN": "0"})
    a = {"otel_rtc.room": "r"}
    rm = rmetrics(sum_metric("otel_rtc.traffic.bytes", [num_point(a, T0, T0 + 5 * S, 500)]))
    cp.process_metrics(rm)
    assert derived(rm, "otel_rtc.traffic.bytes.rate")
    upstream = ScopeMetrics(scope=InstrumentationScope(name="otel_rtc.rates", version=""),
                            metrics=[Metric(name="otel_rtc.rates.series", unit="{series}",
                                            description="", metadata=[], data=MetricData.Gauge(
                                                Gauge(data_points=[num_point({}, 0, T0, 1)])))],
                            schema_url="")
    for k in (6, 7, 8):
        rm = rmetrics(sum_metric("otel_rtc.traffic.bytes",
                                 [num_point(a, T0, T0 + k * S, 100 * k)]))
        if k == 6:
            rm.scope_metrics.append(upstream)
        cp.process_metrics(rm)
        ours = [m.name for sm in rm.scope_metrics if sm.scope.name == "otel_rtc.collector"
                for m in sm.metrics]
        assert ours == ["otel_rtc.telemetry.dropped"]  # its own telemetry only, no rates
    assert len(cp._state.deriver.engine) == 0


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
    assert got[frozenset({("otel_rtc.rate.window", "span")})] == pytest.approx(4.0)


def test_traffic_load_per_resource_with_top_n():
    cp._reset_for_tests({"OTEL_RTC_LOAD_TOP_N": "1"})
    rm = None
    for k in range(0, 11):  # 10 s of data after the baselines at 0 s: one reading at 10 s
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
                          for p in ("alice", "_other")}
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


def test_self_telemetry_names_match_the_core_names():
    from otel_rtc.core import names

    assert (cp.DROPPED, cp.ERRORS) == (names.TELEMETRY_DROPPED, names.INTERNAL_ERRORS)


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

    # One export, read at once (reading span 0; the default 10 s would hold its data).
    col = rotel_collector(exporter_endpoint=otlp_receiver.endpoint,
                          metrics_processor=processor_path(),
                          env={"OTEL_RTC_LOAD_TOP_N": "5", "OTEL_RTC_RATE_READING_SPAN": "0"})
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


def _pb_req(points, name="app.lat", hist=True, resource="sfu-e2e"):
    """An OTLP request: one cumulative histogram (or sum) series with the given points
    ``(time_ns, count, flags)``, all starting at T0."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue as PAny
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue as PKV
    from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend([PKV(key="service.name", value=PAny(string_value=resource))])
    m = rm.scope_metrics.add().metrics.add()
    m.name, m.unit = name, "s"
    m.histogram.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
    for t, count, flags in points:
        p = m.histogram.data_points.add()
        p.start_time_unix_nano, p.time_unix_nano, p.count, p.flags = T0, t, count, flags
    return req


def _pb_spans(recv, name):
    return [(p.start_time_unix_nano, p.time_unix_nano, p.as_double)
            for m in recv.metrics().get(name, []) for p in m.gauge.data_points]


@pytest.mark.collector
def test_end_to_end_staleness_marker_mid_series(otlp_receiver, rotel_collector):
    """Through the real agent: a histogram count rising 10/s, sampled every 1 s and sent
    in 10 s batches, with a NoRecordedValue marker (count 0) at t=50: every reading is
    10/s, every 1 s peak 10/s (not 510/s), and the marker is counted as ``stale``. The
    batch ending with the marker holds 9 s of data (under the 10 s reading span): it is
    read with the next one."""
    col = rotel_collector(exporter_endpoint=otlp_receiver.endpoint,
                          metrics_processor=processor_path(),
                          env={"OTEL_RTC_RATE_METRICS": "app.lat"})
    for batch_no in range(10):
        pts = [(T0 + i * S, 0 if i == 50 else 10 * i, 1 if i == 50 else 0)
               for i in range(batch_no * 10 + 1, batch_no * 10 + 11)]
        _post_metrics(col.http_endpoint, _pb_req(pts))
        assert otlp_receiver.wait_for(  # in order: this batch passed before the next
            lambda r, n=batch_no: sum(len(m.histogram.data_points)
                                      for m in r.metrics().get("app.lat", [])) >= 10 * (n + 1),
            15), col.logs()
    means = sorted(_pb_spans(otlp_receiver, "app.lat.rate"))
    peaks = sorted(_pb_spans(otlp_receiver, "app.lat.rate.peak"))
    assert [v for *_, v in means] == [pytest.approx(10.0)] * 9
    assert [v for *_, v in peaks] == [pytest.approx(10.0)] * 9
    # The readings tile the data from T0 (the first point's start) to 100 s; the batch
    # ending with the marker is held, so one reading covers 40 s to 60 s.
    assert means[0][0] == T0 and means[-1][1] == T0 + 100 * S
    assert all(a[1] == b[0] for a, b in itertools.pairwise(means))
    assert (T0 + 40 * S, T0 + 60 * S) in [(a, b) for a, b, _ in means]
    stale = [p.as_int for m in otlp_receiver.metrics().get("otel_rtc.rates.anomalies", [])
             for p in m.sum.data_points
             if {kv.key: kv.value.string_value for kv in p.attributes}.get(
                 "otel_rtc.rate.anomaly") == "stale"]
    assert stale and max(stale) == 1


@pytest.mark.collector
def test_end_to_end_in_process_derivation_is_not_derived_again(otlp_receiver,
                                                               rotel_collector):
    """An app deriving in-process (the export stage's default processor) exports through
    the otel_rtc collector: each derived series arrives once, under the app's scope."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from otel_rtc.core.clock import ManualClock
    from otel_rtc.core.load import TrafficLoadConfig
    from otel_rtc.instrumentation.traffic import TrafficAccounting
    from otel_rtc.sdk.export import RtcWrappingMetricExporter
    from otel_rtc.sdk.processors import WindowRateProcessor
    from otel_rtc.sdk.sampler import CounterSampler

    col = rotel_collector(exporter_endpoint=otlp_receiver.endpoint,
                          metrics_processor=processor_path())
    clock = ManualClock(T0)
    sampler = CounterSampler(1.0, clock=clock, autostart=False)  # the global sources
    proc = WindowRateProcessor(load=TrafficLoadConfig(), sampler=sampler, clock=clock)
    exporter = RtcWrappingMetricExporter(OTLPMetricExporter(f"{col.http_endpoint}/v1/metrics"),
                                 processors=[proc])
    mp = MeterProvider(metric_readers=[PeriodicExportingMetricReader(
        exporter, export_interval_millis=3_600_000)])
    acc = TrafficAccounting(meter_provider=mp, per_participant=True, clock=clock)
    try:
        for sec in range(0, 13):
            acc.add("r1", "alice", "up", "video", 100 * sec, 100_000 * sec)
            sampler.sample_now()
            if sec % 4 == 0:
                mp.force_flush()
            clock.advance(S)
        assert otlp_receiver.wait_for(lambda r: len(
            r.metrics().get("otel_rtc.traffic.bytes.rate", [])) >= 3, 15), col.logs()
    finally:
        mp.shutdown()
        sampler.stop()
    scopes = {sm.scope.name for req in otlp_receiver.metric_requests()
              for rm in req.resource_metrics for sm in rm.scope_metrics
              for m in sm.metrics if m.name.startswith("otel_rtc.traffic.")
              and m.name not in ("otel_rtc.traffic.bytes", "otel_rtc.traffic.packets")
              and m.HasField("gauge")}
    assert scopes == {"otel_rtc.rates"}
    spans = sorted(_pb_spans(otlp_receiver, "otel_rtc.traffic.bytes.rate"))
    assert len(spans) == len(set(spans))  # each reading once
    # three exports of 4 s at 100 kB/s; at shutdown one more second without traffic
    assert [v for *_, v in spans] == [pytest.approx(100_000.0)] * 3 + [0.0]
