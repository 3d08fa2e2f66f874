"""MessageHandler: decorator and context manager, spans, metrics, retries, bursts, safety."""

import asyncio
import threading

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from otel_rtc.core.clock import ManualClock
from otel_rtc.core.switch import BurstSwitches
from otel_rtc.instrumentation import self_telemetry as _self_telemetry
from otel_rtc.instrumentation.buffer_telemetry import enqueue_stamp
from otel_rtc.instrumentation.buffers import BoundedBuffer, InstrumentedQueue
from otel_rtc.instrumentation.bursts import BurstMonitor
from otel_rtc.instrumentation.handler import MessageHandler
from otel_rtc.instrumentation.handler_metrics import MESSAGE_LATENCY_BUCKETS
from otel_rtc.sdk.aggregation import MESSAGING_DURATION_BUCKETS
from otel_rtc.testing import make_test_pipeline

BASE = 1_700_000_000_000_000_000
MS = 1_000_000
PROC = "messaging.process.duration"
WAIT = "otel_rtc.message.queue_wait.duration"
R2F = "otel_rtc.message.receive_to_finish.duration"
CONSUMED = "messaging.client.consumed.messages"


pytestmark = pytest.mark.usefixtures("fresh_self_telemetry")


def points(metrics, name, **attrs):
    return [pt for pt in metrics.get(name, [])
            if all(pt.attributes.get(k) == v for k, v in attrs.items())]


def one(metrics, name, **attrs):
    found = points(metrics, name, **attrs)
    assert len(found) == 1, (name, attrs, [dict(p.attributes) for p in found])
    return found[0]


def handler(p, **kw):
    kw.setdefault("tracer_provider", p.tracer_provider)
    kw.setdefault("meter_provider", p.meter_provider)
    return MessageHandler(kw.pop("destination", "orders"), **kw)


# -- decorator: functions and methods ---------------------------------------------------

def test_sync_function_span_and_metrics(pipe):
    clock = ManualClock(BASE)
    h = handler(pipe, mode="spans", clock=clock, received=lambda m: m["t"],
                message_id=lambda m: m["id"], system="rtc", operation="handle")

    @h
    def handle(msg):
        clock.advance(3 * MS)
        return msg["id"] * 2

    clock.advance(2 * MS)
    assert handle({"t": BASE, "id": 21, "payload": "secret"}) == 42
    [span] = pipe.spans()
    assert span.name == "handle orders"
    assert span.kind is SpanKind.CONSUMER
    assert span.start_time == BASE + 2 * MS and span.end_time == BASE + 5 * MS
    a = dict(span.attributes)
    assert a["messaging.system"] == "rtc"
    assert a["messaging.operation.type"] == "process"
    assert a["messaging.operation.name"] == "handle"
    assert a["messaging.destination.name"] == "orders"
    assert a["messaging.message.id"] == "21"
    assert a["otel_rtc.message.queue_wait"] == pytest.approx(0.002)
    assert a["otel_rtc.message.receive_to_finish"] == pytest.approx(0.005)
    assert "messaging.message.retry.count" not in a
    assert "secret" not in repr(a)  # payloads are never recorded
    m = pipe.metrics()
    proc = one(m, PROC, **{"otel_rtc.attempt": "first"})
    assert proc.count == 1 and proc.sum == pytest.approx(0.003)
    assert list(proc.explicit_bounds) == list(MESSAGING_DURATION_BUCKETS)
    assert one(m, WAIT).sum == pytest.approx(0.002)
    assert list(one(m, WAIT).explicit_bounds) == list(MESSAGE_LATENCY_BUCKETS)
    assert one(m, R2F).sum == pytest.approx(0.005)
    c = one(m, CONSUMED)
    assert c.value == 1
    assert dict(c.attributes) == {"messaging.system": "rtc",
                                  "messaging.destination.name": "orders",
                                  "messaging.operation.name": "handle",
                                  "otel_rtc.attempt": "first"}
    # the exemplar points at the message's span
    [ex] = proc.exemplars
    assert ex.span_id == span.context.span_id


async def test_async_function(pipe):
    h = handler(pipe, mode="spans")
    inner = trace.get_tracer("t", tracer_provider=pipe.tracer_provider)

    @h
    async def handle(msg):
        await asyncio.sleep(0)
        with inner.start_as_current_span("db query"):
            await asyncio.sleep(0)
        return msg + 1

    assert await handle(1) == 2
    spans = {s.name: s for s in pipe.spans()}
    assert spans["db query"].parent.span_id == spans["process orders"].context.span_id
    assert one(pipe.metrics(), CONSUMED).value == 1


async def test_methods_sync_and_async(pipe):
    seen = []
    h = handler(pipe, mode="metrics", attempt=lambda m: seen.append(m) or m["attempt"])

    class Server:
        def __init__(self):
            self.done = []

        @h
        def on_message(self, msg):
            self.done.append(msg["attempt"])

        @h
        async def on_message_async(self, msg):
            self.done.append(msg["attempt"])

    s = Server()
    s.on_message({"attempt": 1})
    await s.on_message_async({"attempt": 3})
    assert s.done == [1, 3]
    assert [m["attempt"] for m in seen] == [1, 3]  # the message, not self
    m = pipe.metrics()
    assert one(m, CONSUMED, **{"otel_rtc.attempt": "first"}).value == 1
    assert one(m, CONSUMED, **{"otel_rtc.attempt": "retry"}).value == 1


# -- context manager --------------------------------------------------------------------

def test_with_and_nested_reentrant(pipe):
    h = handler(pipe, mode="spans")
    with h as outer:
        with h as inner:
            assert trace.get_current_span() is inner.span
        assert trace.get_current_span() is outer.span
    assert trace.get_current_span() is trace.INVALID_SPAN
    spans = {s.context.span_id: s for s in pipe.spans()}
    assert len(spans) == 2
    child = spans[inner.span.get_span_context().span_id]
    assert child.parent.span_id == outer.span.get_span_context().span_id
    assert one(pipe.metrics(), CONSUMED).value == 2


async def test_async_with_and_message(pipe):
    clock = ManualClock(BASE)
    h = handler(pipe, mode="spans", clock=clock)
    async with h:
        clock.advance(MS)
    clock.advance(MS)
    async with h.message(received_ns=BASE, message_id="m-7", attempt=2) as scope:
        clock.advance(MS)
    assert scope.received_ns == BASE and scope.start_ns == BASE + 2 * MS
    a = dict(pipe.spans()[1].attributes)
    assert a["messaging.message.id"] == "m-7"
    assert a["messaging.message.retry.count"] == 1
    assert a["otel_rtc.message.queue_wait"] == pytest.approx(0.002)
    assert dict(pipe.spans()[0].attributes)["otel_rtc.message.received_known"] is False
    m = pipe.metrics()
    # unknown received time: processed and counted, but no queue wait / latency sample
    assert sum(p.count for p in m[PROC]) == 2
    assert sum(p.count for p in m[WAIT]) == 1
    assert sum(p.count for p in m[R2F]) == 1
    assert h.unknown_received == 1


# -- concurrency ------------------------------------------------------------------------

def test_threads_do_not_share_state(pipe):
    h = handler(pipe, mode="spans")
    inner = trace.get_tracer("t", tracer_provider=pipe.tracer_provider)
    errors = []
    n_threads, n_msgs = 6, 50
    barrier = threading.Barrier(n_threads)

    def worker(tid):
        stamps = iter(range(BASE + tid * 1000, BASE + tid * 1000 + n_msgs))
        q = InstrumentedQueue(4, name=f"q{tid}", meter_provider=pipe.meter_provider,
                              clock=lambda: next(stamps))
        barrier.wait()
        for i in range(n_msgs):
            q.put_nowait(i)
            q.get()
            with h as scope:
                if scope.received_ns != BASE + tid * 1000 + i:
                    errors.append((tid, i, scope.received_ns))
                with inner.start_as_current_span(f"child {tid} {i}") as child:
                    if child.parent.span_id != scope.span.get_span_context().span_id:
                        errors.append((tid, i, "parent"))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len([s for s in pipe.spans() if s.name == "process orders"]) == n_threads * n_msgs
    m = pipe.metrics()
    assert one(m, CONSUMED).value == n_threads * n_msgs
    assert sum(p.count for p in m[WAIT]) == n_threads * n_msgs


async def test_asyncio_tasks_do_not_share_state(pipe):
    h = handler(pipe, mode="spans")
    inner = trace.get_tracer("t", tracer_provider=pipe.tracer_provider)
    errors = []

    async def task(k):
        buf = BoundedBuffer(2, name=f"b{k}", meter_provider=pipe.meter_provider,
                            clock=lambda: BASE + k)
        for i in range(20):
            buf.push(i)
            buf.pop()
            await asyncio.sleep(0)  # other tasks run between get and handler entry
            async with h as scope:
                await asyncio.sleep(0)
                if scope.received_ns != BASE + k:
                    errors.append((k, i, scope.received_ns))
                with inner.start_as_current_span("child") as child:
                    await asyncio.sleep(0)
                    if child.parent.span_id != scope.span.get_span_context().span_id:
                        errors.append((k, i, "parent"))
                if trace.get_current_span() is not scope.span:
                    errors.append((k, i, "current"))

    await asyncio.gather(*(task(k) for k in range(10)))
    assert errors == []
    assert one(pipe.metrics(), CONSUMED).value == 200


# -- not recording ----------------------------------------------------------------------

def test_not_recording():
    p = make_test_pipeline()
    exporter = InMemorySpanExporter()
    tp = TracerProvider(sampler=ALWAYS_OFF)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    calls = {"id": 0, "headers": 0}

    def mid(m):
        calls["id"] += 1
        return "x"

    def hdrs(m):
        calls["headers"] += 1
        return {}

    clock = ManualClock(BASE)
    for mode in ("spans", "retroactive"):
        h = MessageHandler("orders", mode=mode, tracer_provider=tp,
                           meter_provider=p.meter_provider, message_id=mid, headers=hdrs,
                           received=lambda m: m, clock=clock, slow_threshold_s=0)

        @h
        def handle(msg):
            clock.advance(2 * MS)

        for _ in range(5):
            handle(clock() - MS)
    assert exporter.get_finished_spans() == ()
    assert calls == {"id": 0, "headers": 0}  # no attribute work without a recording span
    m = p.metrics()
    proc = one(m, PROC)
    assert proc.count == 10 and proc.sum == pytest.approx(0.02)
    assert one(m, WAIT).sum == pytest.approx(0.01)
    assert one(m, R2F).sum == pytest.approx(0.03)
    assert all(not pt.exemplars for pt in m[PROC])


# -- errors -----------------------------------------------------------------------------

class Boom(Exception):
    pass


async def test_handler_exception_is_recorded_and_reraised_unchanged(pipe):
    h = handler(pipe, mode="spans")
    raised = Boom("db down")

    @h
    def sync_handle(msg):
        raise raised

    @h
    async def async_handle(msg):
        raise raised

    with pytest.raises(Boom) as e1:
        sync_handle(1)
    with pytest.raises(Boom) as e2:
        await async_handle(1)
    with pytest.raises(Boom) as e3:
        with h:
            raise raised
    with pytest.raises(Boom) as e4:
        async with h.message(attempt=2):
            raise raised
    assert e1.value is raised and e2.value is raised and e3.value is raised
    assert e4.value is raised
    assert raised.__traceback__ is not None
    spans = pipe.spans()
    assert len(spans) == 4
    for s in spans:
        assert s.status.status_code is StatusCode.ERROR
        assert s.attributes["error.type"] == "Boom"
        assert [ev.name for ev in s.events] == ["exception"]
    m = pipe.metrics()
    assert one(m, CONSUMED, **{"error.type": "Boom", "otel_rtc.attempt": "first"}).value == 3
    assert one(m, CONSUMED, **{"error.type": "Boom", "otel_rtc.attempt": "retry"}).value == 1
    assert not points(m, CONSUMED, **{"error.type": None})  # every message failed


def test_exception_messages_stay_out_of_spans_unless_asked(pipe, monkeypatch):
    quiet = handler(pipe, mode="spans")
    loud = handler(pipe, destination="loud", mode="spans")
    with pytest.raises(Boom), quiet:
        raise Boom("card=4111-1111 in the payload")
    monkeypatch.setenv("OTEL_RTC_RECORD_EXCEPTION_MESSAGES", "true")  # the one opt-in
    with pytest.raises(Boom), loud:
        raise Boom("card=4111-1111 in the payload")
    by_dest = {s.attributes["messaging.destination.name"]: s for s in pipe.spans()}
    q, lo = by_dest["orders"], by_dest["loud"]
    assert q.status.description == "Boom"
    assert [dict(ev.attributes) for ev in q.events] == [{"exception.type": "Boom"}]
    assert "4111" not in repr(q.to_json())
    assert "4111" in lo.status.description
    assert "4111" in lo.events[0].attributes["exception.message"]


@pytest.mark.parametrize("mode", ["metrics", "retroactive"])
async def test_a_failing_clock_never_replaces_the_application_exception(pipe, mode):
    calls = []

    def clock():
        calls.append(1)
        if len(calls) % 2 == 0:  # entry works, exit fails
            raise OSError("clock broke")
        return 1_000

    h = handler(pipe, mode=mode, clock=clock)
    raised = Boom("app")

    @h
    def sync_handle(msg):
        raise raised

    @h
    async def async_handle(msg):
        raise raised

    with pytest.raises(Boom) as e1:
        sync_handle(1)
    with pytest.raises(Boom) as e2:
        await async_handle(1)
    assert e1.value is raised and e2.value is raised
    assert _self_telemetry.error_count("handler") == 2


def test_metrics_mode_exception(pipe):
    h = handler(pipe, mode="metrics", received=lambda m: m)

    @h
    def handle(msg):
        raise KeyError(msg)

    with pytest.raises(KeyError):
        handle(None)
    assert one(pipe.metrics(), PROC, **{"error.type": "KeyError"}).count == 1
    assert pipe.spans() == []


def test_instrumentation_errors_never_reach_user_code(pipe):
    def bad(_m):
        raise RuntimeError("extractor bug")

    h = handler(pipe, mode="spans", received=bad, message_id=bad, attempt=bad, headers=bad)

    @h
    def handle(msg):
        return "ok"

    assert handle({"x": 1}) == "ok"
    assert _self_telemetry.error_count("handler.extractor") == 4
    m = pipe.metrics()
    assert one(m, CONSUMED).value == 1

    h2 = handler(pipe, destination="d2", mode="metrics", received=lambda m: "yesterday")
    assert h2(lambda m: 5)("msg") == 5
    assert _self_telemetry.drop_count("handler", "invalid_received") == 1
    h3 = handler(pipe, destination="d3", mode="metrics", attempt=lambda m: -3)
    assert h3(lambda m: 6)("msg") == 6
    assert _self_telemetry.drop_count("handler", "invalid_attempt") == 1


def test_broken_tracer_provider_is_contained(pipe):
    class BrokenTracer:
        def start_span(self, *a, **k):
            raise RuntimeError("sdk bug")

    class BrokenProvider:
        def get_tracer(self, *a, **k):
            return BrokenTracer()

    h = handler(pipe, mode="spans", tracer_provider=BrokenProvider())

    @h
    def handle(msg):
        return msg

    assert handle(3) == 3
    with h:
        pass
    assert _self_telemetry.error_count("handler") == 2
    assert one(pipe.metrics(), CONSUMED).value == 2  # metrics still recorded


def test_unbalanced_exit_is_counted(pipe):
    h = handler(pipe)
    h.__exit__(None, None, None)
    assert _self_telemetry.drop_count("handler", "unbalanced_exit") == 1


# -- retries ----------------------------------------------------------------------------

@pytest.mark.parametrize(("attempt", "label", "retry_count"), [
    (None, "first", None), (0, "first", None), (1, "first", None), (2, "retry", 1),
    (5, "retry", 4), (False, "first", None), (True, "retry", 1),
])
def test_attempts(pipe, attempt, label, retry_count):
    h = handler(pipe, mode="spans", attempt=lambda m: m)
    h(lambda m: None)(attempt)
    [span] = pipe.spans()
    assert span.attributes["otel_rtc.attempt"] == label
    assert span.attributes.get("messaging.message.retry.count") == retry_count
    assert one(pipe.metrics(), CONSUMED).attributes["otel_rtc.attempt"] == label


def test_first_and_retry_are_separate_series(pipe):
    h = handler(pipe, mode="metrics", attempt=lambda m: m)
    handle = h(lambda m: None)
    for a in (1, 1, 2, 3, 1):
        handle(a)
    m = pipe.metrics()
    assert one(m, CONSUMED, **{"otel_rtc.attempt": "first"}).value == 3
    assert one(m, CONSUMED, **{"otel_rtc.attempt": "retry"}).value == 2
    assert one(m, PROC, **{"otel_rtc.attempt": "retry"}).count == 2


# -- links ------------------------------------------------------------------------------

def test_link_from_headers_not_parent(pipe):
    producer = trace.get_tracer("p", tracer_provider=pipe.tracer_provider)
    headers = {}
    with producer.start_as_current_span("send orders", kind=SpanKind.PRODUCER) as send:
        propagate.inject(headers)
    h = handler(pipe, mode="spans", headers=lambda m: m["headers"])
    h(lambda m: None)({"headers": headers})
    proc = next(s for s in pipe.spans() if s.name == "process orders")
    assert proc.parent is None
    assert [link.context.span_id for link in proc.links] == [send.get_span_context().span_id]
    # explicit headers through message(); garbage headers give no link and no error
    with h.message(headers=headers):
        pass
    with h.message(headers={"traceparent": "garbage"}):
        pass
    spans = [s for s in pipe.spans() if s.name == "process orders"]
    assert len(spans[1].links) == 1 and len(spans[2].links) == 0
    assert _self_telemetry.error_count() == 0


# -- retroactive ------------------------------------------------------------------------

def test_retroactive_emits_only_slow_or_failed(pipe):
    clock = ManualClock(BASE)
    h = handler(pipe, mode="retroactive", clock=clock, slow_threshold_s=0.01,
                received=lambda m: m[0], message_id=lambda m: m[1])
    ambient = trace.get_tracer("t", tracer_provider=pipe.tracer_provider)

    @h
    def handle(msg):
        assert trace.get_current_span() is ambient_span  # no span while running
        clock.advance(msg[2] * MS)
        if msg[3]:
            raise Boom()

    with ambient.start_as_current_span("server") as ambient_span:
        handle((clock() - MS, "fast", 1, False))
        t_slow = clock()
        handle((clock() - MS, "slow", 20, False))
        with pytest.raises(Boom):
            handle((clock() - MS, "failed", 2, True))
    spans = [s for s in pipe.spans() if s.name == "process orders"]
    assert [s.attributes["messaging.message.id"] for s in spans] == ["slow", "failed"]
    slow = spans[0]
    assert slow.start_time == t_slow and slow.end_time == t_slow + 20 * MS
    assert slow.attributes["otel_rtc.message.queue_wait"] == pytest.approx(0.001)
    assert slow.parent.span_id == ambient_span.get_span_context().span_id
    assert spans[1].status.status_code is StatusCode.ERROR
    m = pipe.metrics()
    assert sum(p.count for p in m[PROC]) == 3  # metrics for every message
    assert one(m, PROC, **{"error.type": "Boom"}).count == 1
    ok = [p for p in m[PROC] if "error.type" not in p.attributes]
    assert ok[0].sum == pytest.approx(0.021)
    # the slow span is the exemplar of its bucket
    assert any(ex.span_id == slow.context.span_id for p in ok for ex in p.exemplars)


async def test_retroactive_async_and_context_manager(pipe):
    clock = ManualClock(BASE)
    h = handler(pipe, mode="retroactive", clock=clock, slow_threshold_s=0.005)

    @h
    async def handle(ms):
        clock.advance(ms * MS)

    await handle(1)
    await handle(10)
    with h:
        clock.advance(6 * MS)
    with h:
        clock.advance(MS)
    assert len(pipe.spans()) == 2
    assert one(pipe.metrics(), CONSUMED).value == 4


# -- exact histograms, both recording paths -----------------------------------------------

@pytest.mark.parametrize("local", [True, False])
def test_exact_histograms(local):
    p = make_test_pipeline(local_aggregation=local)
    clock = ManualClock(BASE)
    h = MessageHandler("orders", mode="metrics", clock=clock, meter_provider=p.meter_provider,
                       received=lambda m: m[0])

    @h
    def handle(msg):
        clock.advance(msg[1])

    # (queue wait, processing) in ns
    cases = [(1 * MS, 4 * MS), (3 * MS, 9 * MS), (0, 30 * MS), (200 * MS, 600 * MS),
             (2 * MS, 5 * MS)]
    for wait, proc in cases:
        handle((clock() - wait, proc))
    m = p.metrics()
    proc_pt, wait_pt, r2f_pt = one(m, PROC), one(m, WAIT), one(m, R2F)
    procs = [c[1] / 1e9 for c in cases]
    waits = [c[0] / 1e9 for c in cases]
    r2fs = [(c[0] + c[1]) / 1e9 for c in cases]
    for pt, vals, bounds in ((proc_pt, procs, MESSAGING_DURATION_BUCKETS),
                             (wait_pt, waits, MESSAGE_LATENCY_BUCKETS),
                             (r2f_pt, r2fs, MESSAGE_LATENCY_BUCKETS)):
        assert pt.count == len(vals)
        assert pt.sum == pytest.approx(sum(vals), rel=1e-12)
        assert pt.min == pytest.approx(min(vals)) and pt.max == pytest.approx(max(vals))
        expected = [0] * (len(bounds) + 1)
        for v in vals:
            expected[next((i for i, b in enumerate(bounds) if v <= b), len(bounds))] += 1
        assert list(pt.bucket_counts) == expected
    assert one(m, CONSUMED).value == len(cases)
    p.meter_provider.shutdown()


def test_clock_backwards_is_clamped(pipe):
    clock = ManualClock(BASE)
    h = handler(pipe, mode="spans", clock=clock, received=lambda m: m)

    @h
    def handle(msg):
        clock.set(BASE - 5 * MS)

    handle(BASE + MS)  # received after start, finish before start
    pt = one(pipe.metrics(), PROC)
    assert pt.sum == 0 and one(pipe.metrics(), WAIT).sum == 0
    assert one(pipe.metrics(), R2F).sum == 0
    [span] = pipe.spans()
    assert span.end_time == span.start_time == BASE  # never ends before it starts
    assert span.attributes["otel_rtc.message.queue_wait"] == 0
    # One clamp per clamped timestamp: the finish (to the start), the received time.
    assert _self_telemetry._clamps.get("handler") == 2


# -- bursts -----------------------------------------------------------------------------

@pytest.fixture
def monitor(pipe):
    sw = BurstSwitches(environ={})
    sw.set(enabled=True)
    clock = ManualClock(BASE)
    mon = BurstMonitor("rx", tracer_provider=pipe.tracer_provider,
                       meter_provider=pipe.meter_provider, clock=clock, stats_interval_s=None,
                       switches=sw)
    yield mon, clock, sw
    mon.close()


def test_bursts_from_buffer_and_handler(pipe, monitor):
    mon, clock, sw = monitor
    buf = BoundedBuffer(8, name="rx", bursts=mon, meter_provider=pipe.meter_provider,
                        clock=clock)
    h = handler(pipe, mode="spans", bursts=mon, clock=clock)

    @h
    def handle(msg):
        clock.advance(2 * MS)

    def serve():
        while (item := buf.poll()) is not None:
            handle(item)

    for i in range(3):
        buf.push(i)
    serve()  # burst 1: three messages, ends when poll finds the buffer empty
    clock.advance(10 * MS)
    buf.push(9)
    serve()  # burst 2: one message after a 10 ms break
    [b1, b2] = mon.raw()
    assert (b1.message_count, b1.duration_ns) == (3, 6 * MS)
    assert (b2.message_count, b2.break_before_ns) == (1, 10 * MS)
    bursts = [s for s in pipe.spans() if s.name == "burst rx"]
    msgs = [s for s in pipe.spans() if s.name == "process orders"]
    assert len(bursts) == 2 and len(msgs) == 4
    linked = [s.links[-1].context.span_id for s in msgs]
    ids = [b.context.span_id for b in bursts]
    assert linked == [ids[0]] * 3 + [ids[1]]
    # queue wait from the enqueue stamps: the 3rd message waited for the first two
    waits = [s.attributes["otel_rtc.message.queue_wait"] for s in msgs]
    assert waits == pytest.approx([0, 0.002, 0.004, 0])
    # switched off: no burst calls, handler still records
    sw.set(enabled=False)
    buf.push(1)
    serve()
    assert mon.raw() == []
    assert one(pipe.metrics(), CONSUMED).value == 5


def test_bursts_mode_records_no_metrics(pipe, monitor):
    mon, clock, _ = monitor
    h = handler(pipe, mode="bursts", bursts=mon, clock=clock)

    @h
    def handle(msg):
        clock.advance(MS)
        return msg

    @h
    async def ahandle(msg):
        clock.advance(MS)

    assert [handle(i) for i in range(4)] == [0, 1, 2, 3]
    asyncio.run(ahandle(0))
    with h:
        clock.advance(MS)
    mon.buffer_empty(clock())
    [b] = mon.raw()
    assert b.message_count == 6 and b.duration_ns == 6 * MS
    assert PROC not in pipe.metrics()
    assert pipe.spans()[-1].name == "burst rx"
    assert len(pipe.spans()) == 1


async def test_bursts_mode_counts_a_message_at_its_start_and_passes_results_through(
        pipe, monitor):
    mon, clock, _ = monitor
    h = handler(pipe, mode="bursts", bursts=mon, clock=clock)

    @h
    def gen(msg):
        clock.advance(MS)
        yield msg
        clock.advance(MS)

    async def work():
        await asyncio.sleep(0)
        clock.advance(3 * MS)
        return "done"

    @h
    def returns_awaitable(msg):
        return work()  # a coroutine, not awaited here

    g = gen(0)
    assert mon._tracker.in_burst  # the burst began at the call: its end is the empty buffer's
    assert list(g) == [0]
    aw = returns_awaitable(0)
    assert asyncio.iscoroutine(aw)  # handed back untouched
    assert await aw == "done"
    mon.buffer_empty(clock())
    [b] = mon.raw()
    assert b.message_count == 2 and b.duration_ns == 5 * MS


def test_bursts_true_uses_destination_monitor(pipe):
    from otel_rtc.instrumentation.bursts import get_burst_monitor

    h = handler(pipe, destination="handler-test-dest", bursts=True)
    mon = get_burst_monitor("handler-test-dest")
    try:
        assert h.burst_monitor is mon
        assert handler(pipe, destination="x", bursts="handler-test-dest").burst_monitor is mon
    finally:
        mon.close()


def test_enqueue_stamp_is_used_once(pipe):
    clock = ManualClock(BASE)
    q = InstrumentedQueue(4, meter_provider=pipe.meter_provider, clock=clock)
    h = handler(pipe, mode="spans", clock=clock)
    q.put(1)
    clock.advance(3 * MS)
    q.get()
    assert enqueue_stamp.get() == BASE
    with h as s1:
        pass
    with h as s2:  # nothing taken from a buffer since: unknown, not the stale stamp
        pass
    assert s1.received_ns == BASE and s2.received_ns is None
    assert enqueue_stamp.get() is None


def test_explicit_received_beats_extractor_and_stamp(pipe):
    clock = ManualClock(BASE)
    q = BoundedBuffer(4, meter_provider=pipe.meter_provider, clock=clock)
    h = handler(pipe, mode="spans", clock=clock, received=lambda m: BASE - 7 * MS)
    q.push(1)
    clock.advance(MS)
    q.pop()
    with h.message(received_ns=BASE - MS) as s:
        pass
    assert s.received_ns == BASE - MS
    q.push(1)
    q.pop()
    h(lambda m: None)("msg")  # extractor beats the stamp
    assert pipe.spans()[-1].attributes["otel_rtc.message.queue_wait"] == pytest.approx(0.008)


# -- constructor validation ---------------------------------------------------------------

@pytest.mark.parametrize("kw", [
    {"destination": ""}, {"mode": "fast"}, {"received": 3}, {"slow_threshold_s": -1},
    {"slow_threshold_s": True}, {"bursts": 3}, {"system": None}, {"clock": "now"},
])
def test_bad_arguments(kw):
    args = {"destination": "orders", **kw}
    with pytest.raises(ValueError):
        MessageHandler(args.pop("destination"), **args)
    with pytest.raises(ValueError):
        MessageHandler("orders")(42)


# -- generators, async generators and returned awaitables: timed to their real end ----------

class GenBoom(Exception):
    pass


@pytest.mark.parametrize("mode", ["metrics", "spans"])
def test_generator_handler_is_timed_to_its_last_item(pipe, mode):
    clock = ManualClock(BASE)
    h = handler(pipe, mode=mode, clock=clock)

    @h
    def handle(msg):
        for i in range(3):
            clock.advance(10 * MS)
            yield i

    gen = handle("m")
    assert list(gen) == [0, 1, 2]
    assert one(pipe.metrics(), PROC).sum == pytest.approx(0.030)
    if mode == "spans":
        [span] = pipe.spans()
        assert span.end_time - span.start_time == 30 * MS
        assert span.status.status_code is not StatusCode.ERROR


def test_generator_send_and_return_value_pass_through(pipe):
    h = handler(pipe, mode="metrics")

    @h
    def echo(msg):
        got = yield "ready"
        return got * 2

    gen = echo("m")
    assert next(gen) == "ready"
    with pytest.raises(StopIteration) as stop:
        gen.send(21)
    assert stop.value.value == 42
    assert one(pipe.metrics(), CONSUMED).value == 1


@pytest.mark.parametrize("mode", ["metrics", "spans"])
def test_exception_while_iterating_is_recorded_and_reraised_unchanged(pipe, mode):
    h = handler(pipe, mode=mode)
    err = GenBoom("during iteration")

    @h
    def handle(msg):
        yield 1
        raise err

    gen = handle("m")
    assert next(gen) == 1
    with pytest.raises(GenBoom) as caught:
        next(gen)
    assert caught.value is err
    m = pipe.metrics()
    assert one(m, CONSUMED, **{"error.type": "GenBoom"}).value == 1
    assert not points(m, CONSUMED, **{"error.type": None})
    if mode == "spans":
        [span] = pipe.spans()
        assert span.status.status_code is StatusCode.ERROR


def test_generator_closed_early_is_an_early_end_not_a_failure(pipe):
    clock = ManualClock(BASE)
    h = handler(pipe, mode="metrics", clock=clock)

    @h
    def handle(msg):
        while True:
            clock.advance(MS)
            yield 1

    gen = handle("m")
    next(gen)
    next(gen)
    gen.close()
    m = pipe.metrics()
    assert one(m, CONSUMED).value == 1
    assert not points(m, CONSUMED, **{"error.type": "GeneratorExit"})
    assert one(m, PROC).sum == pytest.approx(0.002)


@pytest.mark.parametrize("mode", ["metrics", "spans", "bursts"])
async def test_async_generator_handler_is_timed_to_its_end(pipe, mode):
    clock = ManualClock(BASE)
    sw = BurstSwitches(environ={})
    sw.set(enabled=True)
    mon = BurstMonitor("agen", tracer_provider=pipe.tracer_provider,
                       meter_provider=pipe.meter_provider, stats_interval_s=None,
                       switches=sw, clock=clock)
    h = handler(pipe, mode=mode, clock=clock, bursts=mon)

    @h
    async def handle(msg):
        for i in range(2):
            await asyncio.sleep(0)
            clock.advance(5 * MS)
            yield i

    assert [i async for i in handle("m")] == [0, 1]
    mon.buffer_empty(clock())
    if mode != "bursts":
        assert one(pipe.metrics(), PROC).sum == pytest.approx(0.010)
    [burst] = mon.raw()
    assert burst.end_ns - burst.start_ns == 10 * MS  # the burst saw the real end too
    mon.close()


async def test_exception_in_async_generator_is_recorded_and_reraised_unchanged(pipe):
    h = handler(pipe, mode="spans")
    err = GenBoom("async iteration")

    @h
    async def handle(msg):
        yield 1
        raise err

    agen = handle("m")
    assert await agen.__anext__() == 1
    with pytest.raises(GenBoom) as caught:
        await agen.__anext__()
    assert caught.value is err
    [span] = pipe.spans()
    assert span.attributes["error.type"] == "GenBoom"


async def test_async_generator_asend_and_athrow_are_forwarded(pipe):
    h = handler(pipe, mode="metrics")
    seen = []

    @h
    async def handle(msg):
        while True:
            try:
                seen.append((yield len(seen)))
            except KeyError:
                seen.append("thrown")

    agen = handle("m")
    assert await agen.asend(None) == 0
    assert await agen.asend("a") == 1
    assert await agen.athrow(KeyError()) == 2
    await agen.aclose()
    assert seen == ["a", "thrown"]
    assert one(pipe.metrics(), CONSUMED).value == 1


async def test_awaitable_returned_by_a_plain_function_is_timed_to_its_end(pipe):
    clock = ManualClock(BASE)
    h = handler(pipe, mode="spans", clock=clock)

    async def work():
        await asyncio.sleep(0)
        clock.advance(7 * MS)
        return "done"

    @h
    def handle(msg):
        return work()  # a coroutine, not awaited here

    assert await handle("m") == "done"
    [span] = pipe.spans()
    assert span.end_time - span.start_time == 7 * MS
    assert one(pipe.metrics(), PROC).sum == pytest.approx(0.007)


async def test_future_returned_is_timed_to_its_result_and_stays_the_same_object(pipe):
    clock = ManualClock(BASE)
    h = handler(pipe, mode="metrics", clock=clock)
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    failing = loop.create_future()

    @h
    def handle(f):
        return f

    assert handle(fut) is fut
    assert handle(failing) is failing
    clock.advance(4 * MS)
    fut.set_result(1)
    failing.set_exception(GenBoom("later"))
    await asyncio.sleep(0)  # done callbacks run on the loop
    with pytest.raises(GenBoom):
        failing.result()
    m = pipe.metrics()
    assert one(m, PROC, **{"error.type": None}).sum == pytest.approx(0.004)
    assert one(m, CONSUMED, **{"error.type": "GenBoom"}).value == 1


# -- cardinality: handler destinations -----------------------------------------------------

def test_destinations_over_the_cap_fold_into_one_counted_overflow_series(pipe, monkeypatch):
    from otel_rtc.instrumentation import handler_metrics

    monkeypatch.setattr(handler_metrics, "_series", handler_metrics._SeriesCap(10))  # 6 admitted
    for i in range(20):
        h = handler(pipe, destination=f"room-{i}", mode="metrics")
        h(lambda m: m)("x")
    m = pipe.metrics()
    dests = {p.attributes["messaging.destination.name"] for p in m[CONSUMED]}
    assert len(dests) == 4  # 3 destinations x (first, retry) = 6 sets, then the overflow
    assert "_other" in dests
    sets = {tuple(sorted(p.attributes.items())) for p in m[CONSUMED]}
    assert len(sets) <= 10
    assert sum(p.value for p in m[CONSUMED]) == 20  # every message still counted
    other = one(m, CONSUMED, **{"messaging.destination.name": "_other"})
    assert other.value == 17 and other.attributes["messaging.system"] == "_other"
    # 17 handlers x 2 attempt labels refused, each counted
    assert _self_telemetry.drop_count("handler", "series_cap") == 34


def test_the_default_cap_is_within_the_sdk_limit():
    from otel_rtc.instrumentation.handler_metrics import HANDLER_SERIES_LIMIT

    assert 0 < HANDLER_SERIES_LIMIT <= 2000


def test_twenty_thousand_destinations_stay_under_the_sdk_limit(pipe, monkeypatch):
    # The probe: 20,000 destinations made 40,000 series with no cap and no count.
    from otel_rtc.instrumentation import handler_metrics

    monkeypatch.setattr(handler_metrics, "_series",
                        handler_metrics._SeriesCap(handler_metrics.HANDLER_SERIES_LIMIT))
    for i in range(20_000):
        MessageHandler(f"d{i}", meter_provider=pipe.meter_provider)(lambda m: m)("x")
    m = pipe.metrics()
    assert len(m[CONSUMED]) <= 1000
    assert sum(p.value for p in m[CONSUMED]) == 20_000
    assert not any(p.attributes.get("otel.metric.overflow") for p in m[CONSUMED])
    assert _self_telemetry.drop_count("handler", "series_cap") > 0
