"""In-process rate and traffic-load processors: sampler, SDK glue, names and units."""

import gc
import inspect
import itertools
import logging

import pytest
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_rtc.core.clock import ManualClock
from otel_rtc.core.derived import LOAD, RATE
from otel_rtc.core.load import TrafficLoadConfig
from otel_rtc.core.rates import RateConfig
from otel_rtc.instrumentation import self_telemetry as _self_telemetry
from otel_rtc.instrumentation.traffic import TrafficAccounting
from otel_rtc.sdk.defaults import default_processors
from otel_rtc.sdk.processors import TrafficLoadProcessor, WindowRateProcessor
from otel_rtc.sdk.sampler import (
    CounterSampler,
    SampleColumns,
    register_sample_source,
    unregister_sample_source,
)
from otel_rtc.testing import make_test_pipeline

S = 1_000_000_000
T0 = 1_700_000_000 * S
MBPS = 1e6 / 8
CUM = AggregationTemporality.CUMULATIVE
DELTA = AggregationTemporality.DELTA


@pytest.fixture(autouse=True)
def _reset():
    _self_telemetry._reset_for_tests()


def batch(*metrics):
    scope = InstrumentationScope("app")
    return MetricsData(resource_metrics=[ResourceMetrics(
        resource=Resource.create({"service.name": "t"}),
        scope_metrics=[ScopeMetrics(scope=scope, metrics=list(metrics), schema_url="")],
        schema_url="")])


def sum_metric(name, points, temporality=CUM, unit="By", monotonic=True):
    return Metric(name=name, description="", unit=unit, data=Sum(
        data_points=[NumberDataPoint(attributes=a, start_time_unix_nano=s, time_unix_nano=t,
                                     value=v) for a, s, t, v in points],
        aggregation_temporality=temporality, is_monotonic=monotonic))


def points(data, name):
    """{frozenset(attrs): value} of derived gauge ``name``; also checks it is a gauge."""
    out = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    assert isinstance(m.data, Gauge)
                    for p in m.data.data_points:
                        out[frozenset(p.attributes.items())] = p.value
    return out


def units(data):
    return {m.name: m.unit for rm in data.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics}


def spike_run(clock, acc, sampler, seconds=300):
    """Bytes every 1 s: idle except 100 Mbps during seconds 100..110 (the reference)."""
    total = 0
    pk = 0
    acc.add("room1", "alice", "up", "video", 0, 0)  # the stream opens at T0
    sampler.sample_now()
    for i in range(1, seconds + 1):
        clock.advance(S)
        if 100 < i <= 110:
            total += int(100 * MBPS)
            pk += 1000
        acc.add("room1", "alice", "up", "video", pk, total)
        sampler.sample_now()
    return total


def test_reference_spike_through_sampler_mean_and_peak():
    clock = ManualClock(T0)
    p = make_test_pipeline()
    acc = TrafficAccounting(meter_provider=p.meter_provider, per_participant=True, clock=clock)
    sampler = CounterSampler(1.0, _sources=[acc.snapshot], clock=clock, autostart=False)
    proc = WindowRateProcessor(RateConfig(peak_subwindows_s=(1.0, 5.0)), sampler=sampler,
                               clock=clock)
    p.metric_reader.processors.append(proc)
    total = spike_run(clock, acc, sampler)
    assert total == 10 * int(100 * MBPS)
    m = p.metric_reader.get_metrics_data()
    attrs = {"otel_rtc.room": "room1", "otel_rtc.participant": "alice",
             "otel_rtc.direction": "up", "otel_rtc.media.kind": "video"}
    rate = points(m, "otel_rtc.traffic.bytes.rate")
    peak = points(m, "otel_rtc.traffic.bytes.rate.peak")
    span = rate[frozenset({**attrs, "otel_rtc.rate.window": "span"}.items())]
    assert span * 8 / 1e6 == pytest.approx(100 * 10 / 300, rel=1e-3)  # 3.33 Mbps mean
    assert len(rate) == 1  # no trailing windows by default
    p1 = peak[frozenset({**attrs, "otel_rtc.rate.subwindow": "1s"}.items())]
    assert p1 * 8 / 1e6 == pytest.approx(100, rel=1e-3)  # the true 100 Mbps peak
    assert peak[frozenset({**attrs, "otel_rtc.rate.subwindow": "5s"}.items())] * 8 / 1e6 \
        == pytest.approx(100, rel=1e-3)
    u = units(m)
    assert u["otel_rtc.traffic.bytes.rate"] == "By/s"
    assert u["otel_rtc.traffic.bytes.rate.peak"] == "By/s"
    assert u["otel_rtc.traffic.packets.rate"] == "{packet}/s"
    # the source counter itself passed through unchanged
    src = [pt for pt in p.metrics()["otel_rtc.traffic.bytes"]]
    assert src[0].value == total
    assert _self_telemetry.error_count() == 0


def test_without_sampler_export_resolution_has_no_fake_peak():
    """Points every 60 s: the mean is exact, but no 1 s/5 s peak can be known."""
    clock = ManualClock(T0)
    proc = WindowRateProcessor(clock=clock)
    a = {"otel_rtc.room": "r", "otel_rtc.direction": "down", "otel_rtc.media.kind": "audio"}
    out = None
    for k in range(1, 6):
        clock.set(T0 + k * 60 * S)
        out = proc.process(batch(sum_metric("otel_rtc.traffic.bytes",
                                            [(a, T0, T0 + k * 60 * S, 1000 * 60 * k)])))
    rate = points(out, "otel_rtc.traffic.bytes.rate")
    assert rate == {frozenset({**a, "otel_rtc.rate.window": "span"}.items()): 1000.0}
    assert points(out, "otel_rtc.traffic.bytes.rate.peak") == {}


def test_five_minutes_of_bytes_in_one_point_is_not_a_spike():
    clock = ManualClock(T0 + 302 * S)
    proc = WindowRateProcessor(clock=clock)
    a = {"otel_rtc.room": "r"}
    out = proc.process(batch(sum_metric("otel_rtc.traffic.bytes",
                                        [(a, T0, T0 + 300 * S, 300 * MBPS)])))
    [pt] = [p for rm in out.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            if m.name == "otel_rtc.traffic.bytes.rate" for p in m.data.data_points]
    assert pt.value == pytest.approx(MBPS)  # never 150 x
    assert (pt.start_time_unix_nano, pt.time_unix_nano) == (T0, T0 + 300 * S)  # its span
    assert points(out, "otel_rtc.traffic.bytes.rate.peak") == {}


def test_delta_temporality_and_histogram_counts():
    clock = ManualClock(T0)
    proc = WindowRateProcessor(include=("app.*",), clock=clock)
    out = None
    for k in range(1, 4):
        clock.set(T0 + k * 10 * S)
        h = Metric(name="app.latency", description="", unit="s", data=Histogram(
            data_points=[HistogramDataPoint(
                attributes={"q": "a"}, start_time_unix_nano=T0, time_unix_nano=T0 + k * 10 * S,
                count=50 * k, sum=1.0, bucket_counts=[50 * k], explicit_bounds=[], min=0,
                max=1)], aggregation_temporality=CUM))
        d = sum_metric("app.msgs", [({}, T0 + (k - 1) * 10 * S, T0 + k * 10 * S, 30)],
                       temporality=DELTA, unit="{message}")
        out = proc.process(batch(h, d))
    r = points(out, "app.msgs.rate")
    assert r == {frozenset({("otel_rtc.rate.window", "span")}): pytest.approx(3.0)}
    hr = points(out, "app.latency.rate")
    assert hr[frozenset({("q", "a"), ("otel_rtc.rate.window", "span")})] == pytest.approx(5.0)
    u = units(out)
    assert u["app.msgs.rate"] == "{message}/s"
    assert u["app.latency.rate"] == "{measurement}/s"


def test_unselected_and_non_monotonic_metrics_pass_through_untouched():
    proc = WindowRateProcessor(clock=ManualClock(T0 + S))
    ud = sum_metric("otel_rtc.traffic.weird", [({}, T0, T0 + S, 5)], monotonic=False)
    other = sum_metric("app.bytes", [({}, T0, T0 + S, 5)])
    data = batch(ud, other)
    out = proc.process(data)
    app, ours = out.resource_metrics[0].scope_metrics
    assert app.metrics == [ud, other]
    assert [m.name for m in ours.metrics] == ["otel_rtc.rates.series"]  # nothing derived


def test_bad_points_are_counted_not_raised():
    clock = ManualClock(T0 + 10 * S)
    proc = WindowRateProcessor(clock=clock)
    a = {"otel_rtc.room": "r"}
    bad = sum_metric("otel_rtc.traffic.bytes", [(a, T0, T0 + S, -5.0),
                                                ({"x": "nan"}, T0, T0 + S, float("nan")),
                                                ({"x": "back"}, T0 + 5 * S, T0 + S, 1.0)])
    out = proc.process(batch(bad))
    assert points(out, "otel_rtc.traffic.bytes.rate") == {}
    assert _self_telemetry.drop_count("rate_processor", "negative_value") == 1
    assert _self_telemetry.drop_count("rate_processor", "non_finite") == 1
    assert _self_telemetry.drop_count("rate_processor", "bad_span") == 1
    # garbage batches are returned as they are, never raised
    assert proc.process(None) is None
    weird = object()
    assert proc.process(weird) is weird
    assert _self_telemetry.error_count("rate_processor") == 1


def test_traffic_load_top_n_and_shares():
    clock = ManualClock(T0)
    p = make_test_pipeline()
    acc = TrafficAccounting(meter_provider=p.meter_provider, per_participant=True, clock=clock)
    sampler = CounterSampler(1.0, _sources=[acc.snapshot], clock=clock, autostart=False)
    proc = TrafficLoadProcessor(TrafficLoadConfig(top_n=1), sampler=sampler, clock=clock)
    p.metric_reader.processors.append(proc)
    sampler.sample_now()
    for i in range(1, 21):
        clock.advance(S)
        acc.add("r", "big", "up", "video", 100 * i, 100_000 * i)
        acc.add("r", "small", "up", "audio", 50 * i, 5_000 * i)
        acc.add("r", "tiny", "down", "data", 1 * i, 100 * i)
        sampler.sample_now()
    m = p.metric_reader.get_metrics_data()
    score = points(m, "otel_rtc.traffic.load.score")
    share = points(m, "otel_rtc.traffic.load.share")
    room = score[frozenset({("otel_rtc.room", "r")})]
    big = score[frozenset({("otel_rtc.room", "r"), ("otel_rtc.participant", "big")})]
    others = score[frozenset({("otel_rtc.room", "r"), ("otel_rtc.participant", "_other")})]
    expect_big = 8 * 100_000 + 4000 * 100
    assert big == pytest.approx(expect_big)
    assert room == pytest.approx(big + others)
    assert sum(share.values()) == pytest.approx(1.0)
    assert len(share) == 2  # top-1 + others: no series per participant
    bps = points(m, "otel_rtc.traffic.load.bytes.rate")
    assert bps[frozenset({("otel_rtc.room", "r"), ("otel_rtc.direction", "up"),
                          ("otel_rtc.media.kind", "video")})] == pytest.approx(100_000)
    assert points(m, "otel_rtc.traffic.load.participants")[
        frozenset({("otel_rtc.room", "r")})] == 3
    assert units(m)["otel_rtc.traffic.load.share"] == "1"


def test_sampled_series_ignore_the_batch_copy_of_the_same_counter():
    """The SDK's observable counter has another start time: mixing would read as resets."""
    clock = ManualClock(T0)
    p = make_test_pipeline()
    acc = TrafficAccounting(meter_provider=p.meter_provider, clock=clock)
    sampler = CounterSampler(1.0, _sources=[acc.snapshot], clock=clock, autostart=False)
    proc = WindowRateProcessor(sampler=sampler, clock=clock)
    p.metric_reader.processors.append(proc)
    sampler.sample_now()
    for i in range(1, 4):
        clock.advance(S)
        acc.add("r", "a", "up", "audio", i, 100 * i)
        p.metric_reader.get_metrics_data()
    assert proc.deriver.engine.anomaly_counts() == {}


def test_sampler_thread_lifecycle_and_weak_global_sources():
    class Owner:
        def __init__(self):
            self.calls = 0

        def snapshot(self):
            self.calls += 1
            return SampleColumns(("otel_rtc.traffic.bytes",), ({"otel_rtc.room": "owner-room"},),
                                 [1.0], (T0,))

    def mine(columns):  # other live sources of the process (TrafficAccounting) may answer
        return [r for c in columns for r in zip(*c, strict=True)
                if r[1] == {"otel_rtc.room": "owner-room"}]

    owner = Owner()
    register_sample_source(owner.snapshot)
    sampler = CounterSampler(3600.0)  # global sources; the thread will not fire in-test
    got = []
    sampler.subscribe(lambda t, rows: got.append(rows))
    assert sampler.running
    assert sampler.sample_now()
    assert owner.calls == 1 and mine(got[-1])[0][0] == "otel_rtc.traffic.bytes"
    assert not sampler.sample_now(min_age_ns=3600 * S)  # too soon: skipped
    del owner
    gc.collect()
    assert sampler.sample_now()
    assert mine(got[-1]) == []  # the collected owner is no longer read
    cb = sampler._subscribers[0]
    sampler.unsubscribe(cb)
    assert not sampler.running
    o2 = Owner()
    register_sample_source(o2.snapshot)
    unregister_sample_source(o2.snapshot)
    CounterSampler(1.0, autostart=False).sample_now()
    assert o2.calls == 0


def test_failing_source_and_subscriber_are_contained():
    def boom():
        raise RuntimeError("x")

    s = CounterSampler(1.0, _sources=[boom], autostart=False)
    s.subscribe(lambda t, rows: 1 / 0)
    assert s.sample_now()
    assert _self_telemetry.error_count("rate_sampler.source") == 1
    assert _self_telemetry.error_count("rate_sampler.subscriber") == 1


def test_malformed_sample_rows_are_counted_and_skipped_not_the_whole_tick():
    clock = ManualClock(T0)
    good = {"otel_rtc.room": "r", "otel_rtc.direction": "up", "otel_rtc.media.kind": "audio"}
    value = [0.0]

    def src():
        return SampleColumns(
            ("otel_rtc.traffic.bytes", None, "otel_rtc.traffic.bytes"),  # no metric name
            (["not", "a", "mapping"], good, good),
            [1.0, 1.0, value[0]], (T0, T0, T0))

    def broken():  # a source returning something else, or columns that do not line up
        return None if clock() // S % 2 else SampleColumns(("a", "b"), (good,), [1.0], (T0,))

    sampler = CounterSampler(1.0, _sources=[src, broken], clock=clock, autostart=False)
    proc = WindowRateProcessor(load=TrafficLoadConfig(), sampler=sampler, clock=clock)
    for _ in range(12):
        clock.advance(S)
        value[0] += 1000.0
        sampler.sample_now()
    # two malformed rows and one malformed source per tick, counted once (one engine);
    # the good row fed every tick
    assert _self_telemetry.drop_count("rate_processor", "invalid_sample") == 36
    assert _self_telemetry.drop_count("traffic_load_processor", "invalid_sample") == 0
    [r] = proc.deriver.engine.read(clock())
    assert r.key == ("otel_rtc.traffic.bytes", tuple(sorted(good.items())))
    assert r.peaks[0] == pytest.approx(1000.0)
    assert _self_telemetry.error_count() == 0
    proc.shutdown()


def test_a_steady_source_that_returns_nothing_once_loses_that_tick_only():
    clock = ManualClock(T0)
    acc = TrafficAccounting(meter_provider=False, clock=clock, sample_source=False)
    ticks = [0]

    def src():
        return None if ticks[0] == 5 else acc.snapshot()

    sampler = CounterSampler(1.0, _sources=[src], clock=clock, autostart=False)
    proc = WindowRateProcessor(sampler=sampler, clock=clock)
    for sec in range(1, 11):
        ticks[0] = sec
        clock.advance(S)
        acc.add("r", "a", "up", "audio", sec, 100 * sec, from_zero=True)
        sampler.sample_now()
    assert _self_telemetry.drop_count("rate_processor", "invalid_sample") == 1
    assert _self_telemetry.error_count() == 0
    by = {r.key[0]: r for r in proc.deriver.engine.read(clock())}
    r = by["otel_rtc.traffic.bytes"]
    assert r.mean == pytest.approx(100) and r.peaks == (pytest.approx(100),)
    proc.shutdown()


def test_steady_sources_are_one_column_update_per_tick_through_exports_and_new_series():
    clock = ManualClock(T0)
    p = make_test_pipeline()
    accs = [TrafficAccounting(meter_provider=p.meter_provider, per_participant=True,
                              clock=clock, sample_source=False) for _ in range(2)]
    sampler = CounterSampler(1.0, _sources=[a.snapshot for a in accs], clock=clock,
                             autostart=False)
    proc = WindowRateProcessor(sampler=sampler, clock=clock)
    p.metric_reader.processors.append(proc)
    engine = proc.deriver.engine
    blocks = []
    for sec in range(1, 31):
        clock.advance(S)
        for i, acc in enumerate(accs):
            acc.add("r", f"p{i}", "up", "video", 10 * sec, 1000 * (i + 1) * sec, from_zero=True)
            if sec >= 20:  # a series that joins: a new layout, then steady again
                acc.add("r", f"q{i}", "down", "audio", sec, 50 * sec, from_zero=True)
        sampler.sample_now()
        if sec in (10, 25):
            p.metric_reader.get_metrics_data()  # an export: the generation moves on
        blocks.append(engine._block)
    # One column block all along, through the export at 10. The joiners share the
    # others' time line once a reading closed everyone's open span (the export at 25).
    assert blocks[0] is not None and blocks[:19] == [blocks[0]] * 19
    assert blocks[19:25] == [None] * 6
    assert blocks[25] is not None and blocks[25:] == [blocks[25]] * 5
    assert blocks[25].keys is proc._layout.keys
    # 2 sources x 1 then 2 streams x the 2 selected counters
    assert len(proc._layout.keys) == 8
    rates = points(p.metric_reader.get_metrics_data(), "otel_rtc.traffic.bytes.rate")
    by = {dict(k)["otel_rtc.participant"]: v for k, v in rates.items()}
    assert by["p0"] == pytest.approx(1000) and by["p1"] == pytest.approx(2000)
    assert by["q0"] == pytest.approx(50) and by["q1"] == pytest.approx(50)
    assert engine.anomaly_counts() == {}
    proc.shutdown()


def test_register_sample_source_is_the_one_way_to_add_a_source():
    # No public constructor argument for sources (CHANGELOG: Removed); _sources is internal.
    params = inspect.signature(CounterSampler).parameters
    assert [p for p in params if not p.startswith("_")] == ["period_s", "clock", "autostart"]
    with pytest.raises(TypeError):
        CounterSampler(1.0, [lambda: []])


@pytest.mark.parametrize("kwargs", [{"period_s": 0}, {"period_s": -1}, {"period_s": True}])
def test_sampler_rejects_bad_period(kwargs):
    with pytest.raises(ValueError):
        CounterSampler(**kwargs)


def test_processor_constructor_validation():
    with pytest.raises(ValueError):
        WindowRateProcessor(config="x")
    with pytest.raises(ValueError):
        WindowRateProcessor(include="otel_rtc.*")
    with pytest.raises(ValueError):
        TrafficLoadProcessor(config=RateConfig())


def test_default_processors_from_env(monkeypatch, caplog):
    """One processor, one engine, for rates and load; the env vars opt in or out."""
    [proc] = default_processors()
    assert type(proc) is WindowRateProcessor and proc.sampler.running
    d = proc.deriver
    assert d.selects("otel_rtc.traffic.bytes") == RATE | LOAD
    assert d.engine.config == RateConfig()  # span mean + 1 s peak; no windows
    assert d.settings.load.top_n == 0      # shares are opt-in
    proc.shutdown()
    assert not proc.sampler.running
    monkeypatch.setenv("OTEL_RTC_LOAD", "false")
    monkeypatch.setenv("OTEL_RTC_RATE_WINDOWS", "10,30")
    monkeypatch.setenv("OTEL_RTC_RATE_PEAKS", "nope")
    monkeypatch.setenv("OTEL_RTC_RATE_METRICS", "app.*, otel_rtc.traffic.*")
    with caplog.at_level(logging.WARNING, logger="otel_rtc"):
        [proc] = default_processors()
    cfg = proc.deriver.engine.config
    assert cfg.windows_s == (10.0, 30.0) and cfg.peak_subwindows_s == (1.0,)
    assert proc.deriver.selects("app.x") == RATE
    assert proc.deriver.selects("otel_rtc.traffic.bytes") == RATE  # no load
    assert not proc.deriver.selects("otel_rtc.traffic.a.rate")
    assert "OTEL_RTC_RATE_PEAKS" in caplog.text
    proc.shutdown()
    monkeypatch.setenv("OTEL_RTC_LOAD", "true")
    monkeypatch.setenv("OTEL_RTC_RATES", "false")
    monkeypatch.setenv("OTEL_RTC_LOAD_TOP_N", "3")
    [proc] = default_processors()
    assert type(proc) is TrafficLoadProcessor
    assert proc.deriver.selects("otel_rtc.traffic.bytes") == LOAD
    assert proc.deriver.settings.load.top_n == 3
    proc.shutdown()


def test_entry_point_exporter_carries_the_processors(monkeypatch):
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="opentelemetry_metrics_exporter")
             if e.name == "otel_rtc"]
    exporter = ep.load()()
    try:
        kinds = [type(p).__name__ for p in exporter.processors]
        assert kinds == ["WindowRateProcessor"]
    finally:
        exporter.shutdown()
    assert not exporter.processors[0].sampler.running


# -- a stream first seen mid-life (the reference's fake spike, from the traffic side) -----

MB = 1_000_000  # bytes per second of one stream
KPK = 1_000  # packets per second of one stream


def _derived_maxima(data, out):
    """Fold the largest derived rate/load values of one export into ``out``."""
    for name, label in (("otel_rtc.traffic.bytes.rate", "rate"),
                        ("otel_rtc.traffic.bytes.rate.peak", "rate"),
                        ("otel_rtc.traffic.packets.rate", "packets"),
                        ("otel_rtc.traffic.packets.rate.peak", "packets"),
                        ("otel_rtc.traffic.load.bytes.rate", "room"),
                        ("otel_rtc.traffic.load.score", "score"),
                        ("otel_rtc.traffic.load.share", "share")):
        for attrs, v in points(data, name).items():
            if label == "share" and ("otel_rtc.participant", "alice") not in attrs:
                continue
            if label == "score" and not any(k == "otel_rtc.participant" for k, _ in attrs):
                label_ = "room_score"
            else:
                label_ = label
            out[label_] = max(out.get(label_, 0.0), v)


@pytest.mark.parametrize("per_participant", [True, False], ids=["participant", "room"])
def test_stream_first_reported_mid_life_is_not_a_rate_spike(per_participant):
    """Alice's transport carried 5 min of 1 MB/s before her first report, then keeps 1 MB/s.

    Bob streams 1 MB/s from the start. Her first totals (300 MB) happened at unknown
    times before tracking began: no derived rate, peak, room load or share may jump.
    """
    clock = ManualClock(T0)
    p = make_test_pipeline()
    acc = TrafficAccounting(meter_provider=p.meter_provider, per_participant=per_participant,
                            clock=clock)
    sampler = CounterSampler(1.0, _sources=[acc.snapshot], clock=clock, autostart=False)
    p.metric_reader.processors.append(
        WindowRateProcessor(load=TrafficLoadConfig(top_n=5), sampler=sampler, clock=clock))
    acc.add("r", "bob", "up", "video", 0, 0)
    p.metric_reader.get_metrics_data()
    seen: dict[str, float] = {}
    alice = [300 * KPK, 300 * MB]  # five minutes of history at 1 MB/s
    for i in range(1, 41):
        clock.set(T0 + i * S)
        acc.add("r", "bob", "up", "video", i * KPK, i * MB)
        if i == 20:
            clock.advance(1_000_000)  # first report 1 ms later, exported 1 ms after that
            acc.add("r", "alice", "up", "video", *alice)
            clock.advance(1_000_000)
        elif i > 20:
            alice = [alice[0] + KPK, alice[1] + MB]
            acc.add("r", "alice", "up", "video", *alice)
        _derived_maxima(p.metric_reader.get_metrics_data(), seen)
    per_stream = 1.05  # 1 MB/s, with the 2 ms shift of alice's first sample
    assert seen["rate"] <= per_stream * (MB if per_participant else 2 * MB), seen
    assert seen["packets"] <= per_stream * (KPK if per_participant else 2 * KPK), seen
    assert seen["room"] <= per_stream * 2 * MB, seen
    assert seen["room_score"] <= per_stream * 2 * (8 * MB + 4000 * KPK), seen
    if per_participant:
        assert seen["share"] <= 0.55, seen  # two equal participants: about half each
    # the data was not lost: the steady rate is there once alice has 10 s of history
    assert seen["room"] >= 1.9 * MB
    assert _self_telemetry.error_count() == 0


def test_observable_counter_first_collected_mid_life_is_not_a_rate_spike():
    """An SDK observable counter's first cumulative point has start ≈ time (tens of µs).

    Its value is the source's whole history (here 5 min at 1 MB/s): the rate core must
    not divide it by the microseconds the SDK stamped on it. No sampler: batch points only.
    """
    clock = ManualClock(T0)
    rates = WindowRateProcessor(clock=clock)
    load = TrafficLoadProcessor(TrafficLoadConfig(top_n=5), clock=clock)
    a = {"otel_rtc.room": "r", "otel_rtc.participant": "alice", "otel_rtc.direction": "up",
         "otel_rtc.media.kind": "video"}
    start = T0 - 50_000  # what the Python SDK stamps on a newly observed attribute set
    seen: dict[str, float] = {}
    for i in range(0, 31):
        clock.set(T0 + i * S)
        data = batch(sum_metric("otel_rtc.traffic.bytes",
                                [(a, start, T0 + i * S, (300 + i) * MB)]),
                     sum_metric("otel_rtc.traffic.packets",
                                [(a, start, T0 + i * S, (300 + i) * KPK)], unit="{packet}"))
        _derived_maxima(load.process(rates.process(data)), seen)
    assert seen["rate"] <= 1.0001 * MB, seen
    assert seen["packets"] <= 1.0001 * KPK, seen
    assert seen["room"] <= 1.0001 * MB, seen
    assert seen["score"] <= 1.0001 * (8 * MB + 4000 * KPK), seen
    assert seen["rate"] >= 0.999 * MB  # and the real rate is there
    assert proc_anomalies(rates) == {"short_span": 2}


def proc_anomalies(proc):
    return proc.deriver.engine.anomaly_counts()


def test_configure_samples_traffic_so_peaks_are_real(otlp_receiver):
    """The real path: configure() + TrafficAccounting, OTLP to a loopback receiver.

    Exports are far apart (as at the default 60 s); the 1 s peak can only come from the
    sampler reading the accounting object every second (ticks driven on a ManualClock, as
    the sampler thread would: exact figures, no sleeping).
    """
    from otel_rtc import TrafficAccounting, configure

    clock = ManualClock(T0)
    sampler = CounterSampler(1.0, clock=clock, autostart=False)  # the global sources
    proc = WindowRateProcessor(load=TrafficLoadConfig(), sampler=sampler, clock=clock)
    h = configure(endpoint=otlp_receiver.endpoint, set_global=False, export_interval_s=3600,
                  processors=[proc])
    try:
        traffic = TrafficAccounting(meter_provider=h.meter_provider, clock=clock)
        traffic.add("room-peak", "p", "up", "video", 0, 0)  # first report: the baseline
        h.force_flush()  # from now on this pipeline exports the series (gating)
        for sec in range(1, 5):
            clock.advance(S)
            if sec == 3:
                traffic.add("room-peak", "p", "up", "video", 1000, 1_000_000)  # 1 MB at once
            sampler.sample_now()
        h.force_flush()
        assert otlp_receiver.wait_for_metric("otel_rtc.traffic.bytes.rate.peak", 10)
        peaks = {a["otel_rtc.rate.subwindow"]: v for a, v, _ in
                 otlp_receiver.number_points("otel_rtc.traffic.bytes.rate.peak")
                 if a.get("otel_rtc.room") == "room-peak"}
        assert peaks == {"1s": pytest.approx(1e6)}  # 1 MB inside one 1 s interval
        means = [v for a, v, _ in otlp_receiver.number_points("otel_rtc.traffic.bytes.rate")
                 if a.get("otel_rtc.room") == "room-peak"]
        assert means[-1] == pytest.approx(1e6 / 4)  # over the 4 s since the baseline
        assert otlp_receiver.wait_for_metric("otel_rtc.traffic.load.score", 10)
    finally:
        h.shutdown()
        sampler.stop()


def test_pipeline_gating_keeps_another_pipelines_counters_out():
    """Two pipelines in one process, each with its own TrafficAccounting registered as a
    global sample source, and processors whose samplers read every global source: each
    pipeline's output holds only the series its own batches carry."""
    clock = ManualClock(T0)
    pipes = []
    for room in ("room-a", "room-b"):
        p = make_test_pipeline()
        acc = TrafficAccounting(meter_provider=p.meter_provider, per_participant=True,
                                clock=clock)
        sampler = CounterSampler(1.0, clock=clock, autostart=False)
        assert sampler.reads_global_sources
        proc = WindowRateProcessor(load=TrafficLoadConfig(), sampler=sampler, clock=clock)
        p.metric_reader.processors.append(proc)
        pipes.append((room, p, acc, sampler, proc))
    try:
        for sec in range(0, 6):
            for room, p, acc, sampler, _ in pipes:
                acc.add(room, "x", "up", "audio", 10 * sec, 1000 * sec)
                if sec == 0:
                    p.metric_reader.get_metrics_data()  # the pipeline exports its series
                sampler.sample_now()
            clock.advance(S)
        for room, p, *_ in pipes:
            data = p.metric_reader.get_metrics_data()
            rooms = {dict(a).get("otel_rtc.room") for name in (
                "otel_rtc.traffic.bytes.rate", "otel_rtc.traffic.bytes.rate.peak",
                "otel_rtc.traffic.load.score") for a in points(data, name)}
            assert rooms == {room}
    finally:
        for *_, proc in pipes:
            proc.shutdown()


def test_exporting_every_minute_tiles_what_one_late_export_gives():
    """Fed the same samples, a processor exporting every 60 s gives readings whose spans
    tile the one reading of a processor exporting once at the end: the same increase, and
    the same highest 1 s peak; a repeat export without new samples derives nothing."""
    clock = ManualClock(T0)
    p = make_test_pipeline()
    acc = TrafficAccounting(meter_provider=p.meter_provider, per_participant=True, clock=clock)
    sampler = CounterSampler(1.0, _sources=[acc.snapshot], clock=clock, autostart=False)
    every = WindowRateProcessor(load=TrafficLoadConfig(), sampler=sampler, clock=clock)
    once = WindowRateProcessor(load=TrafficLoadConfig(), sampler=sampler, clock=clock)
    acc.add("room1", "alice", "up", "video", 0, 0)
    acc.add("room1", "bob", "down", "audio", 0, 0)
    sampler.sample_now()

    def export(proc):
        return _spans(proc.process(p.metric_reader.get_metrics_data()))

    export(every)
    export(once)
    total = 0
    outs = []
    for i in range(1, 301):
        clock.advance(S)
        total += int((100 if 100 < i <= 110 else 1 + i % 7) * MBPS)
        acc.add("room1", "alice", "up", "video", i * 90, total)
        acc.add("room1", "bob", "down", "audio", i * 50, i * 4000)
        sampler.sample_now()
        if i % 60 == 0:
            outs.append(export(every))
    late, again = export(once), export(every)
    assert not [k for k in again if k[0].endswith((".rate", ".rate.peak"))]
    for (name, attrs), [(start, end, value)] in late.items():
        parts = [x for out in outs for x in out.get((name, attrs), [])]
        assert parts[0][0] == start and parts[-1][1] == end, name
        for a, b in itertools.pairwise(parts):
            assert a[1] == b[0]  # consecutive exports tile the time line
        if name.endswith(".rate.peak"):
            assert max(v for *_, v in parts) == pytest.approx(value, rel=1e-12)
        elif name.endswith(".rate"):
            increase = sum(v * (b - a) for a, b, v in parts)
            assert increase == pytest.approx(value * (end - start), rel=1e-9), name
    alice = tuple(sorted({"otel_rtc.room": "room1", "otel_rtc.participant": "alice",
                          "otel_rtc.direction": "up", "otel_rtc.media.kind": "video",
                          "otel_rtc.rate.subwindow": "1s"}.items()))
    assert late[("otel_rtc.traffic.bytes.rate.peak", alice)][0][2] == \
        pytest.approx(100 * MBPS, rel=1e-3)
    for pr in (every, once):
        pr.shutdown()


def _spans(data):
    """``{(name, attrs): [(start, time, value), ...]}`` of the derived gauges."""
    out: dict = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            if sm.scope.name != "otel_rtc.rates":
                continue
            for m in sm.metrics:
                if isinstance(m.data, Gauge) and m.name != "otel_rtc.rates.series":
                    for pt in m.data.data_points:
                        out.setdefault((m.name, tuple(sorted(pt.attributes.items()))), []).append(
                            (pt.start_time_unix_nano, pt.time_unix_nano, pt.value))
    return out


def _all_derived(data):
    """Every derived point as a sorted list of ``(name, attrs, start, time, value)``."""
    return sorted(
        (m.name, tuple(sorted(p.attributes.items())), p.start_time_unix_nano,
         p.time_unix_nano, p.value)
        for rm in data.resource_metrics for sm in rm.scope_metrics
        if sm.scope.name == "otel_rtc.rates" for m in sm.metrics for p in m.data.data_points)


def test_sample_rows_cached_by_attribute_identity_give_the_uncached_result():
    """Processors cache each sample row's resolution by the attributes object's identity.

    TrafficAccounting hands out one read-only view per series (every tick a cache hit);
    a source copying its rows into fresh dicts never hits. Both must give the same
    derived points, through a late joiner (gated until a batch shows it, as the sampler
    reads the process-wide sources), a counter reset, and a series whose samples stop
    long enough for it to be evicted, then come back.
    """
    room = "row-cache-room"

    def run(fresh_dicts):
        clock = ManualClock(T0)
        acc = TrafficAccounting(meter_provider=False, per_participant=True, clock=clock,
                                sample_source=False)
        now = [0]

        def src():
            cols = acc.snapshot()
            gone = 60 <= now[0] < 120
            if not (gone or fresh_dicts):
                return cols  # the same layout objects as on the previous tick
            rows = [(n, dict(a) if fresh_dicts else a, v, s)
                    for n, a, v, s in zip(*cols, strict=True)
                    if not (gone and a["otel_rtc.participant"] == "p4")]
            return SampleColumns(*map(list, zip(*rows, strict=True)))

        register_sample_source(src)
        sampler = CounterSampler(1.0, clock=clock, autostart=False)  # global: gated
        procs = [WindowRateProcessor(load=TrafficLoadConfig(top_n=3), sampler=sampler,
                                     clock=clock)]

        def export():  # the batch an exporter would see: the counters, on the same clock
            by_name = {}
            for n, a, v, st in zip(*acc.snapshot(), strict=True):
                by_name.setdefault(n, []).append((dict(a), st, clock(), v))
            data = batch(*(sum_metric(n, pts) for n, pts in by_name.items()))
            for pr in procs:
                data = pr.process(data)
            return _all_derived(data)

        outs = []
        try:
            for sec in range(1, 181):
                now[0] = sec
                clock.advance(S)
                for i in range(6):
                    if i == 5 and sec < 40:
                        continue  # joins late: sampled before any batch has shown it
                    total = sec * 1000 * (i + 1)
                    if i == 3 and sec >= 90:
                        total -= 90 * 1000 * 4  # the transport restarted its counters
                    acc.add(room, f"p{i}", ("up", "down")[i % 2], ("audio", "video")[i % 2],
                            sec * (i + 1), total, reset=(i == 3 and sec == 90))
                sampler.sample_now()
                if sec % 15 == 0:
                    outs.append(export())
            rows_per_tick = sum(len(f().values) for f in sampler.sources())
        finally:
            unregister_sample_source(src)
            for pr in procs:
                pr.shutdown()
        mine = [k for k, e in procs[0]._rows.items()
                if e[0].get("otel_rtc.room") == room]
        # What each processor took from where: anomalies (a batch point mixed into a
        # sampled series reads as a duplicate or a restart) and the sampled series.
        state = [(pr.deriver.engine.anomaly_counts(), sorted(map(repr, pr._sampled)))
                 for pr in procs]
        return [*outs, state], mine, (len(procs[0]._rows), rows_per_tick)

    cached, mine_cached, _ = run(fresh_dicts=False)
    uncached, _, rows_uncached = run(fresh_dicts=True)
    assert cached == uncached
    assert all(cached) and len(cached) == 13
    peaks = {a for out in cached[:-1] for n, a, *_ in out if n.endswith(".rate.peak")}
    assert any(("otel_rtc.participant", "p5") in a for a in peaks)  # the late joiner
    assert len(mine_cached) == 12  # 6 series x the 2 selected counters, one entry each
    # The fresh-dict source never hits; its cache is cleared rather than growing with
    # every tick (180 ticks x 12 selected rows).
    cache_len, rows_per_tick = rows_uncached
    assert rows_per_tick >= 30
    assert cache_len <= 4 * rows_per_tick + 64 + 12  # cleared past 4 ticks' worth


def test_the_fast_point_builder_makes_the_constructors_point():
    from otel_rtc.sdk.gauges import build_point

    a = {"otel_rtc.room": "r"}
    fast, slow = build_point(a, T0, T0 + S, 2.5), NumberDataPoint(a, T0, T0 + S, 2.5)
    assert build_point is not NumberDataPoint  # this SDK takes the fast path
    assert fast == slow and type(fast) is NumberDataPoint and repr(fast) == repr(slow)
    assert fast.exemplars == [] and fast.exemplars is not build_point(a, 0, 1, 0.0).exemplars
    with pytest.raises(AttributeError):
        fast.value = 3.0  # still frozen
