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


class _CapturingExporter:
    """Built lazily so the SDK import stays inside the test."""

    @staticmethod
    def make():
        from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

        class Capture(MetricExporter):
            def __init__(self):
                super().__init__()
                self.batches = []

            def export(self, metrics_data, timeout_millis=10_000, **kwargs):
                self.batches.append(metrics_data)
                return MetricExportResult.SUCCESS

            def force_flush(self, timeout_millis=10_000):
                return True

            def shutdown(self, timeout_millis=30_000, **kwargs):
                pass

        return Capture()


def _names(batch):
    return {m.name for rm in batch.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics}


def test_local_aggregates_export_when_the_sdk_has_no_data_of_its_own():
    # Regression: the SDK calls a reader only when its own instruments have points, so a
    # process whose only metrics are otel_rtc's buffered ones exported nothing.
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from otel_rtc import RtcMetricExporter
    from otel_rtc._local_aggregation import bind_registry

    inner = _CapturingExporter.make()
    reg = LocalAggregationRegistry()
    exporter = RtcMetricExporter(inner, registry=reg)
    mp = MeterProvider(metric_readers=[
        PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)])
    bind_registry(mp, reg)
    rec = get_recorder([H], [C], mp)
    rec.append((A, (0.2,), None, 0))
    mp.force_flush()
    assert inner.batches, "the export stage was never called"
    names = set().union(*(_names(b) for b in inner.batches))
    assert {"t.latency", "t.count", "otel_rtc.local_aggregation.series"} <= names
    mp.shutdown()


def test_events_of_a_dropped_recorder_are_kept_for_the_next_collection():
    import gc

    reg = LocalAggregationRegistry(clock=ManualClock(5))
    rec = reg.recorder([H], [C])
    rec.append((A, (0.2,), None, 0))
    cycle = [rec]
    cycle.append(cycle)  # only the cyclic GC frees it, as with a closed owner
    del rec, cycle
    gc.collect()
    [hist, count] = reg.collect()
    assert hist.data.data_points[0].count == 1 and count.data.data_points[0].value == 1
    [hist, _] = reg.collect()  # folded once, not again
    assert hist.data.data_points[0].count == 1


def test_burst_metrics_survive_a_closed_and_collected_monitor():
    import gc

    from otel_rtc._burst_telemetry import BurstMonitor
    from otel_rtc._switch import BurstSwitches

    pipe = make_test_pipeline()
    switches = BurstSwitches(environ={})
    switches.set(enabled=True)
    mon = BurstMonitor("gone", meter_provider=pipe.meter_provider,
                       tracer_provider=pipe.tracer_provider, stats_interval_s=None,
                       switches=switches)
    mon.processing_started(1_000)
    mon.processing_finished(2_000)
    mon.buffer_empty(3_000)
    mon.close()
    del mon
    gc.collect()
    [p] = pipe.metrics()["otel_rtc.burst.duration"]
    assert p.count == 1


def test_a_failed_metric_export_counts_its_points_as_dropped():
    from opentelemetry.sdk.metrics.export import MetricExportResult

    from otel_rtc import RtcMetricExporter
    from otel_rtc._self_telemetry import drop_count

    inner = _CapturingExporter.make()
    inner.export = lambda data, timeout_millis=10_000, **kw: MetricExportResult.FAILURE
    reg = LocalAggregationRegistry()
    exporter = RtcMetricExporter(inner, registry=reg)
    rec = reg.recorder([H], [C])
    rec.append((A, (0.2,), None, 0))
    rec.append((intern_attrs({"k": "w"}), (0.3,), None, 0))
    before = drop_count("export.metrics", "export_failed")
    assert exporter.export(None) is MetricExportResult.FAILURE
    assert drop_count("export.metrics", "export_failed") - before == 4  # 2 series x 2 metrics
    exporter.shutdown()


def test_otlp_request_keeps_sdk_and_local_metrics_of_the_same_scope(otlp_receiver):
    """Regression: local aggregates and the derived rates were appended as extra
    ScopeMetrics equal to an existing scope; the OTLP encoder groups by scope, so one
    replaced the other in the request (silently losing e.g. the buffer depth gauge)."""
    from otel_rtc import InstrumentedQueue, MessageHandler, TrafficAccounting, configure

    h = configure(endpoint=otlp_receiver.endpoint, set_global=False, export_interval_s=3600)
    try:
        q = InstrumentedQueue(1, name="scope-q", meter_provider=h.meter_provider)
        q.offer(1)
        q.offer(2)  # dropped: counted
        handler = MessageHandler("scope-h", meter_provider=h.meter_provider)
        handler(lambda m: m)(q.get())
        traffic = TrafficAccounting(meter_provider=h.meter_provider)
        traffic.add("r", "p", "up", "audio", 0, 0)
        h.force_flush()
        traffic.add("r", "p", "up", "audio", 50, 5000)
        h.force_flush()
        want = {"otel_rtc.buffer.depth", "otel_rtc.telemetry.dropped",  # SDK, "otel_rtc"
                "messaging.process.duration", "otel_rtc.buffer.dropped",  # local, "otel_rtc"
                "otel_rtc.traffic.bytes.rate", "otel_rtc.traffic.load.score"}  # both derived
        assert otlp_receiver.wait_for(lambda r: want <= set(r.metrics()), 10), \
            sorted(set(otlp_receiver.metrics()))
    finally:
        h.shutdown()
