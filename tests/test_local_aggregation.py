import threading

from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import AggregationTemporality

from otel_rtc.core.clock import ManualClock
from otel_rtc.instrumentation.attributes import intern_attrs
from otel_rtc.instrumentation.recording import CounterSpec, HistogramSpec, Recorder
from otel_rtc.sdk import aggregation
from otel_rtc.sdk.aggregation import LocalAggregationRegistry
from otel_rtc.testing import CapturingMetricExporter, make_test_pipeline

H = HistogramSpec("t.latency", "s", "test", (0.1, 1.0))
C = CounterSpec("t.count", "{event}", "test")
A = intern_attrs({"k": "v"})


def test_fold_is_exact_and_buckets_are_upper_inclusive():
    clock = ManualClock(1_000)
    reg = LocalAggregationRegistry(clock=clock)
    rec = reg.recorder([H], [C])
    for v in (0.05, 0.1, 0.5, 1.0, 2.0):
        rec.pending.append((A, (v,), None, 0))
    rec.pending.append((A, (None,), None, 0))  # counted, not in the histogram
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
    rec.pending.append((A, (0.2,), None, 0))
    d = AggregationTemporality.DELTA
    assert reg.collect(d, d)[0].data.data_points[0].count == 1
    assert reg.collect(d, d) == []
    rec.pending.append((A, (0.2,), None, 0))
    c = AggregationTemporality.CUMULATIVE
    reg.collect(c, c)
    rec.pending.append((A, (0.2,), None, 0))
    assert reg.collect(c, c)[0].data.data_points[0].count == 2


def test_concurrent_records_are_never_lost(monkeypatch):
    # Recording threads fold their own buffer past the limit while the collecting
    # thread folds it too.
    monkeypatch.setattr(aggregation, "DEFAULT_PENDING_LIMIT", 1000)
    p = make_test_pipeline()
    reg = p.registry
    rec = Recorder([H], [C], p.meter_provider)
    assert rec.buffered
    n_threads, per = 4, 20_000

    def work():
        for _ in range(per):
            rec.record(A, (0.5,), None, 0)

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
    rec = Recorder([H], [C], meter_provider=p.meter_provider)
    assert rec.buffered
    p.meter_provider.get_meter("x").create_counter("sdk.counter").add(3)
    rec.record(A, (0.3,), None, 0)
    m = p.metrics()
    assert m["sdk.counter"][0].value == 3
    assert m["t.latency"][0].count == 1


def test_fallback_to_sdk_is_also_exact():
    p = make_test_pipeline(local_aggregation=False)
    rec = Recorder([H], [C], meter_provider=p.meter_provider)
    assert not rec.buffered
    for v in (0.05, 0.5, 5.0):
        rec.record(A, (v,), None, 0)
    m = p.metrics()
    assert m["t.latency"][0].count == 3
    assert m["t.count"][0].value == 3
    assert SdkHistogram  # the SDK class used as a temporality key


def _names(batch):
    return {m.name for rm in batch.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics}


def test_local_aggregates_export_when_the_sdk_has_no_data_of_its_own():
    # Regression: the SDK calls a reader only when its own instruments have points, so a
    # process whose only metrics are otel_rtc's buffered ones exported nothing.
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    from otel_rtc import RtcWrappingMetricExporter
    from otel_rtc.sdk.recording_backend import bind_registry

    inner = CapturingMetricExporter()
    reg = LocalAggregationRegistry()
    exporter = RtcWrappingMetricExporter(inner, registry=reg)
    mp = MeterProvider(metric_readers=[
        PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)])
    bind_registry(mp, reg)
    Recorder([H], [C], mp).record(A, (0.2,), None, 0)
    mp.force_flush()
    assert inner.batches, "the export stage was never called"
    names = set().union(*(_names(b) for b in inner.batches))
    assert {"t.latency", "t.count", "otel_rtc.local_aggregation.series"} <= names
    mp.shutdown()


def test_events_of_a_dropped_recorder_are_kept_for_the_next_collection():
    import gc

    reg = LocalAggregationRegistry(clock=ManualClock(5))
    rec = reg.recorder([H], [C])
    rec.pending.append((A, (0.2,), None, 0))
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

    from otel_rtc.core.switch import BurstSwitches
    from otel_rtc.instrumentation.bursts import BurstMonitor

    pipe = make_test_pipeline()
    switches = BurstSwitches(environ={})
    switches.set(enabled=True)
    mon = BurstMonitor("gone", meter_provider=pipe.meter_provider,
                       tracer_provider=pipe.tracer_provider, stats_interval_s=None,
                       switches=switches)
    mon.processing_started(1_000)
    mon.buffer_empty(3_000)
    mon.close()
    del mon
    gc.collect()
    [p] = pipe.metrics()["otel_rtc.burst.duration"]
    assert p.count == 1


def test_a_failed_metric_export_counts_its_points_as_dropped():
    from opentelemetry.sdk.metrics.export import MetricExportResult

    from otel_rtc import RtcWrappingMetricExporter
    from otel_rtc.instrumentation.self_telemetry import drop_count

    inner = CapturingMetricExporter()
    inner.export = lambda data, timeout_millis=10_000, **kw: MetricExportResult.FAILURE
    reg = LocalAggregationRegistry()
    exporter = RtcWrappingMetricExporter(inner, registry=reg)
    rec = reg.recorder([H], [C])
    rec.pending.append((A, (0.2,), None, 0))
    rec.pending.append((intern_attrs({"k": "w"}), (0.3,), None, 0))
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


# -- the (column-wise) fold equals a straightforward per-event fold ----------------------

import itertools  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from bisect import bisect_left  # noqa: E402

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from opentelemetry.trace import SpanContext  # noqa: E402

from otel_rtc.instrumentation.attributes import AttrSet  # noqa: E402

_H1 = HistogramSpec("p.one", "s", "test")  # the messaging buckets
_H2 = HistogramSpec("p.two", "s", "test", (-1.0, 0.0, 1.0))
_C1 = CounterSpec("p.c1", "{event}", "test")
_C2 = CounterSpec("p.c2", "{event}", "test")
_POOL = [intern_attrs({"k": "a"}), intern_attrs({"k": "b"}), intern_attrs({"k": "c"}),
         AttrSet({"k": "a"})]  # equal to the first, but a different (not interned) object
_CTXS = [SpanContext(trace_id=t, span_id=s, is_remote=False) for t, s in ((1, 2), (3, 4))]
_SPECIAL = [0.0, -0.0, 0, 1, 0.005, 0.01, 1.0, 10.0, -1.0, math.inf, -math.inf, math.nan]
_value = st.one_of(
    st.none(),
    st.sampled_from(_SPECIAL),
    st.sampled_from([0, 0.0, -0.0]),  # equal values told apart: min/max keep the first
    st.floats(-20, 20, allow_nan=False),
    st.floats(0, 0.06),  # a few neighbouring buckets, as real latencies
    st.floats(0, 0.004),  # all in bucket 0
)
_event = st.tuples(
    st.integers(0, len(_POOL) - 1),
    st.lists(_value, min_size=0, max_size=3).map(tuple),  # short and long values tuples
    st.one_of(st.none(), st.none(), st.none(), st.sampled_from(_CTXS)),
    st.integers(0, 10**9),
)
# Runs of one attribute set (as from one handler) of varied lengths.
_runs = st.lists(st.tuples(st.integers(0, len(_POOL) - 1), st.integers(1, 40),
                           st.lists(_event, min_size=1, max_size=4)),
                 min_size=1, max_size=6)


def _expand(runs):
    events = []
    for attrs_i, length, templates in runs:
        for k in range(length):
            _, values, ctx, t = templates[k % len(templates)]
            events.append((_POOL[attrs_i], values, ctx, t + k))
    return events


def _reference_fold(events, specs, counters):
    """The straightforward per-event fold, independent of the module's code."""
    hists: dict = {}
    counts: dict = {}
    for attrs, values, ctx, t in events:
        for spec, value in zip(specs, values, strict=False):
            if value is None:
                continue
            h = hists.setdefault((spec.name, attrs), {
                "counts": [0] * (len(spec.boundaries) + 1), "count": 0, "sum": 0.0,
                "min": math.inf, "max": -math.inf, "exemplars": {}})
            i = bisect_left(spec.boundaries, value)
            h["counts"][i] += 1
            h["count"] += 1
            h["sum"] += value
            if value < h["min"]:
                h["min"] = value
            if value > h["max"]:
                h["max"] = value
            if ctx is not None:
                h["exemplars"][i] = (value, t, ctx)
        for c in counters:
            counts[(c.name, attrs)] = counts.get((c.name, attrs), 0) + 1
    return hists, counts


def _same_float(a, b) -> bool:
    """Equal, including NaN == NaN and the sign of zero and int vs float."""
    return repr(a) == repr(b)


def _same_sum(a, b) -> bool:
    if sys.version_info < (3, 12):
        return _same_float(a, b)  # sum() of floats is sequential: bit-identical
    # >= 3.12: sum() of floats is compensated, so the last bits may differ.
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9,
                                                             abs_tol=1e-9)


_TIES = [(0, (0.0, -0.0), None, 1), (0, (-0.0, 0), None, 2), (0, (0, 0.0), None, 3)]
_ALL_CTX = [(0, (0.004, 0.5), _CTXS[0], 1), (0, (0.007, 0.5), _CTXS[1], 2),  # spans mode
            (0, (0.2, -0.5), _CTXS[1], 3), (0, (0.007, 0.7), _CTXS[0], 4)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=_runs, splits=st.lists(st.integers(0, 300), max_size=3))
@example(runs=[(0, 3, _TIES)], splits=[])
@example(runs=[(0, 30, _TIES)], splits=[])
@example(runs=[(1, 40, _ALL_CTX), (0, 20, _ALL_CTX[:1]), (1, 30, _ALL_CTX[1:])], splits=[50])
def test_fold_equals_a_per_event_reference_fold(runs, splits):
    events = _expand(runs)
    specs, counters = (_H1, _H2), (_C1, _C2)
    reg = LocalAggregationRegistry(clock=ManualClock(7))
    rec = reg.recorder(specs, counters)
    cuts = sorted({0, len(events), *(s for s in splits if s < len(events))})
    for a, b in itertools.pairwise(cuts):  # several folds: later ones add to existing states
        for ev in events[a:b]:
            rec.pending.append(ev)
        reg.fold(rec)
    assert not rec.pending
    want_h, want_c = _reference_fold(events, specs, counters)
    got = {m.name: m for m in reg.collect()}

    points = {(name, frozenset(p.attributes.items())): p
              for name, m in got.items() for p in m.data.data_points}
    for (name, attrs), h in want_h.items():
        p = points.pop((name, frozenset(attrs.mapping.items())))
        assert list(p.bucket_counts) == h["counts"]
        assert p.count == h["count"]
        assert _same_float(p.min, h["min"]) and _same_float(p.max, h["max"])
        assert _same_sum(p.sum, h["sum"]), (p.sum, h["sum"])
        assert [(repr(e.value), e.time_unix_nano, e.trace_id, e.span_id)
                for e in p.exemplars] == [(repr(v), t, c.trace_id, c.span_id)
                                          for v, t, c in h["exemplars"].values()]
    for (name, attrs), value in want_c.items():
        assert points.pop((name, frozenset(attrs.mapping.items()))).value == value
    assert not points  # nothing the reference does not have


def test_fold_pops_only_the_events_present_when_it_starts():
    reg = LocalAggregationRegistry()
    rec = reg.recorder([H], [C])
    late = (A, (0.5,), None, 0)

    class Racing(AttrSet):
        """Appends an event from 'another thread' while the fold is running."""

        fired = False

        def __hash__(self) -> int:
            if not Racing.fired:
                Racing.fired = True
                rec.pending.append(late)
            return super().__hash__()

    racing = Racing({"k": "v"})
    for _ in range(40):
        rec.pending.append((racing, (0.2,), None, 0))
    reg.fold(rec)
    assert Racing.fired and list(rec.pending) == [late]
    reg.fold(rec)
    assert not rec.pending
    [hist, count] = reg.collect()
    assert hist.data.data_points[0].count == 41 and count.data.data_points[0].value == 41


def test_a_value_that_is_not_a_number_drops_its_group_counted():
    from otel_rtc.instrumentation.self_telemetry import drop_count

    reg = LocalAggregationRegistry()
    rec = reg.recorder([H, HistogramSpec("t.other", "s", "test", (1.0,))], [C])
    b = intern_attrs({"k": "bad"})
    for _ in range(5):
        rec.pending.append((A, (0.5, 2.0), None, 0))
        rec.pending.append((b, (0.5, 2.0), None, 0))
    rec.pending.append((b, ("bad", 2.0), None, 0))
    before = drop_count("local_aggregation", "invalid_value")
    reg.fold(rec)  # never raises
    assert not rec.pending
    assert drop_count("local_aggregation", "invalid_value") - before == 6  # b's 6 values
    got = {(m.name, p.attributes["k"]): p for m in reg.collect() for p in m.data.data_points}
    assert got[("t.latency", "v")].count == 5
    assert ("t.latency", "bad") not in got  # that histogram dropped the group, counted
    assert got[("t.other", "bad")].count == 6  # the other histogram is unaffected
    assert got[("t.count", "bad")].value == 6  # every event is still counted


def test_many_events_of_a_dropped_recorder_are_folded():
    import gc

    reg = LocalAggregationRegistry(clock=ManualClock(5))
    rec = reg.recorder([H], [C])
    for i in range(100):  # 0.0, 0.04, ..., 3.96, and a None between each
        rec.pending.append((A, (i / 25 if i % 2 == 0 else None,), None, 0))
    del rec
    gc.collect()
    [hist, count] = reg.collect()
    p = hist.data.data_points[0]
    assert p.count == 50 and list(p.bucket_counts) == [2, 11, 37]
    assert p.min == 0.0 and p.max == 3.92
    assert count.data.data_points[0].value == 100


def test_a_recorder_follows_binding_changes_on_its_next_record():
    # One Recorder per owner, made once: it re-resolves when bindings change.
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from otel_rtc.sdk.recording_backend import bind_registry, unbind_registry

    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    reg = LocalAggregationRegistry()
    rec = Recorder([H], [C], mp)
    assert not rec.buffered
    rec.record(A, (0.5,), None, 0)  # through the SDK's own instruments
    bind_registry(mp, reg)
    assert rec.buffered
    rec.record(A, (0.5,), None, 0)  # buffered for the registry
    unbind_registry(mp)
    assert not rec.buffered
    rec.record(A, (0.5,), None, 0)
    sdk = {m.name: m.data.data_points[0] for rm in reader.get_metrics_data().resource_metrics
           for sm in rm.scope_metrics for m in sm.metrics if m.name.startswith("t.")}
    assert sdk["t.latency"].count == 2 and sdk["t.count"].value == 2
    local = {m.name: m.data.data_points[0] for m in reg.collect()}
    assert local["t.latency"].count == 1 and local["t.count"].value == 1
    mp.shutdown()
