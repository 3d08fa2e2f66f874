import threading

from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import AggregationTemporality

from otel_rtc import CounterSpec, HistogramSpec, ManualClock, intern_attrs
from otel_rtc._local_aggregation import LocalAggregationRegistry, SdkRecorder, get_recorder
from otel_rtc.testing import make_test_pipeline

H = HistogramSpec("t.latency", "s", "test", (0.1, 1.0))
C = CounterSpec("t.count", "{event}", "test")
A = intern_attrs({"k": "v"})


def test_fold_is_exact_and_buckets_are_upper_inclusive():
    clock = ManualClock(1_000)
    reg = LocalAggregationRegistry(clock=clock)
    rec = reg.recorder([H], [C])
    for v in (0.05, 0.1, 0.5, 1.0, 2.0):
        rec.append((A, (v,), None, 0))
    rec.append((A, (None,), None, 0))  # counted, not in the histogram
    [hist, count] = reg.collect()
    p = hist.data.data_points[0]
    assert p.count == 5
    assert list(p.bucket_counts) == [2, 2, 1]
    assert p.min == 0.05 and p.max == 2.0
    assert abs(p.sum - 3.65) < 1e-9
    assert count.data.data_points[0].value == 6


def test_delta_resets_and_cumulative_keeps():
    reg = LocalAggregationRegistry(clock=ManualClock(5))
    rec = reg.recorder([H], [C])
    rec.append((A, (0.2,), None, 0))
    d = AggregationTemporality.DELTA
    assert reg.collect(d, d)[0].data.data_points[0].count == 1
    assert reg.collect(d, d) == []
    rec.append((A, (0.2,), None, 0))
    c = AggregationTemporality.CUMULATIVE
    reg.collect(c, c)
    rec.append((A, (0.2,), None, 0))
    assert reg.collect(c, c)[0].data.data_points[0].count == 2


def test_concurrent_appends_are_never_lost():
    reg = LocalAggregationRegistry()
    rec = reg.recorder([H], [C], limit=1000)
    n_threads, per = 4, 20_000

    def work():
        for _ in range(per):
            rec.append((A, (0.5,), None, 0))
            if len(rec.pending) > rec.limit:
                rec.fold_if_full()

    threads = [threading.Thread(target=work) for _ in range(n_threads)]
    total = 0
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for m in reg.collect(AggregationTemporality.DELTA, AggregationTemporality.DELTA):
            if m.name == "t.count":
                total += m.data.data_points[0].value
    for t in threads:
        t.join()
    for m in reg.collect(AggregationTemporality.DELTA, AggregationTemporality.DELTA):
        if m.name == "t.count":
            total += m.data.data_points[0].value
    assert total == n_threads * per


def test_conflicting_spec_is_a_value_error():
    reg = LocalAggregationRegistry()
    reg.recorder([H])
    try:
        reg.recorder([HistogramSpec("t.latency", "s", "test", (0.5,))])
    except ValueError as e:
        assert "t.latency" in str(e)
    else:
        raise AssertionError("expected ValueError")


def test_pipeline_merges_local_aggregates_with_sdk_metrics():
    p = make_test_pipeline()
    rec = get_recorder([H], [C], meter_provider=p.meter_provider)
    assert not isinstance(rec, SdkRecorder)
    p.meter_provider.get_meter("x").create_counter("sdk.counter").add(3)
    rec.append((A, (0.3,), None, 0))
    m = p.metrics()
    assert m["sdk.counter"][0].value == 3
    assert m["t.latency"][0].count == 1


def test_fallback_to_sdk_is_also_exact():
    p = make_test_pipeline(local_aggregation=False)
    rec = get_recorder([H], [C], meter_provider=p.meter_provider)
    assert isinstance(rec, SdkRecorder)
    for v in (0.05, 0.5, 5.0):
        rec.append((A, (v,), None, 0))
    m = p.metrics()
    assert m["t.latency"][0].count == 3
    assert m["t.count"][0].value == 3
    assert SdkHistogram  # the SDK class used as a temporality key
