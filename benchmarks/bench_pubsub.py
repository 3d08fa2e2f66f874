"""Cost of traffic.add and of one subscription attempt vs hand-written OTel equivalents.

Every figure is measured in the same run, so the ratios are what matters (absolute
numbers depend on the machine). Run::

    .venv/bin/python -m benchmarks.bench_pubsub [--write] [--n 20000] [--repeats 9]

``--write`` rewrites ``benchmarks/pubsub_RESULTS.md`` (the write-up is
``docs/performance.md``).

Each row is the best (lowest) over repeats of the mean cost of one call in a plain ``for``
loop. Repeats are interleaved (every variant once per round), so a slow phase of a
shared machine hits all variants alike. Work deferred to metric collection is charged
to the calls that caused it: after each repeat the row's collection runs and its time,
divided by the calls of that repeat, is the ``collect`` column (local aggregation folds
its buffered events there; SDK instruments do their own collection).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from otel_rtc.instrumentation.pubsub import PubSubTelemetry
from otel_rtc.instrumentation.traffic import TrafficAccounting
from otel_rtc.testing import make_test_pipeline

N = 20_000
REPEATS = 9
SERIES = 1_000
"""Series in the collection-per-series rows."""

Variant = tuple[Callable[[int], Any], Callable[[], Any] | None, int]
"""(call(i), collect or None, calls per repeat)."""


def _loop(fn: Callable[[int], Any], start: int, n: int) -> int:
    t0 = time.perf_counter_ns()
    for i in range(start, start + n):
        fn(i)
    return time.perf_counter_ns() - t0


def measure(variants: dict[str, Variant], repeats: int) -> dict[str, tuple[float, float]]:
    """Best ns/call of each variant's loop and of its collection (amortised)."""
    loops: dict[str, list[float]] = {k: [] for k in variants}
    cols: dict[str, list[float]] = {k: [] for k in variants}
    pos = dict.fromkeys(variants, 1)  # call index: cumulative totals keep growing
    for key, (fn, col, n) in variants.items():  # warm up
        _loop(fn, pos[key], min(n, 500))
        pos[key] += min(n, 500)
        if col is not None:
            col()
    for _ in range(repeats):
        for key, (fn, col, n) in variants.items():
            gc.collect()
            loops[key].append(_loop(fn, pos[key], n) / n)
            pos[key] += n
            if col is not None:
                t0 = time.perf_counter_ns()
                col()
                cols[key].append((time.perf_counter_ns() - t0) / n)
    # Best of the interleaved repeats: on a shared machine noise only ever adds time,
    # and a slow phase can cover most repeats of one row (medians then mislead).
    return {k: (min(loops[k]), min(cols[k]) if cols[k] else 0.0) for k in variants}


def _best_ns(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return min(samples)


def bench(n: int = N, repeats: int = REPEATS) -> dict[str, tuple[float, float]]:
    v: dict[str, Variant] = {}
    # -- traffic ----------------------------------------------------------------------
    reader = InMemoryMetricReader()
    sdk_mp = MeterProvider(metric_readers=[reader])
    meter = sdk_mp.get_meter("bench")
    counters = [meter.create_counter(f"bench.c{i}") for i in range(5)]
    attrs = {"otel_rtc.room": "room-1", "otel_rtc.direction": "up",
             "otel_rtc.media.kind": "video"}
    tr_reader = InMemoryMetricReader()
    tr_mp = MeterProvider(metric_readers=[tr_reader])
    acc = TrafficAccounting(meter_provider=tr_mp)
    c0 = counters[0]
    last = [0, 0, 0, 0, 0]

    def hand_one(i: int) -> None:
        c0.add(30, attrs)

    def hand_five(i: int) -> None:
        for c in counters:
            c.add(30, attrs)

    def hand_delta(i: int) -> None:
        # What a hand-written version of traffic.add does at least: turn the five
        # cumulative totals into deltas (no wrap/reset/cap handling), add each.
        new = (i * 30, i * 33_000, i, 0, i * 10)
        for k in range(5):
            d = new[k] - last[k]
            last[k] = new[k]
            if d > 0:
                counters[k].add(d, attrs)

    def traffic_add(i: int) -> None:
        acc.add("room-1", "p1", "up", "video", i * 30, i * 33_000, i, 0, i * 10)

    v["hand_one"] = (hand_one, reader.get_metrics_data, n)
    v["hand_five"] = (hand_five, reader.get_metrics_data, n)
    v["hand_delta"] = (hand_delta, reader.get_metrics_data, n)
    v["traffic"] = (traffic_add, tr_reader.get_metrics_data, n)

    # -- subscription -------------------------------------------------------------------
    tp = TracerProvider()  # recording spans, no exporter: the same for every row
    tracer = tp.get_tracer("bench")
    hist = meter.create_histogram("bench.sub.duration", unit="s")
    hattrs = {"otel_rtc.media.kind": "video", "otel_rtc.attempt": "first",
              "otel_rtc.outcome": "success"}

    def hand_span(i: int) -> None:
        t0 = time.time_ns()
        span = tracer.start_span("subscribe video", kind=SpanKind.CONSUMER, start_time=t0)
        span.set_attributes({"messaging.system": "rtc", "messaging.destination.name": "T",
                             "otel_rtc.room": "r", "otel_rtc.participant": "p",
                             "otel_rtc.media.kind": "video", "otel_rtc.attempt": "first"})
        t1 = time.time_ns()
        hist.record((t1 - t0) / 1e9, hattrs)
        span.end(end_time=t1)

    sub_reader = InMemoryMetricReader()
    sub_mp = MeterProvider(metric_readers=[sub_reader])
    sdk_ps = PubSubTelemetry(tracer_provider=tp, meter_provider=sub_mp)
    pipe = make_test_pipeline()
    buf_ps = PubSubTelemetry(tracer_provider=tp, meter_provider=pipe.meter_provider)

    def sub_sdk(i: int) -> None:
        sdk_ps.subscription("T", room="r", subscriber="p", kind="video").complete()

    def sub_buffered(i: int) -> None:
        buf_ps.subscription("T", room="r", subscriber="p", kind="video").complete()

    v["hand_span"] = (hand_span, reader.get_metrics_data, n // 4)
    v["sub_sdk"] = (sub_sdk, sub_reader.get_metrics_data, n // 4)
    v["sub_buffered"] = (sub_buffered, pipe.metric_reader.get_metrics_data, n // 4)
    try:
        r = measure(v, repeats)
        r.update(bench_collect_per_series(repeats))
        return r
    finally:
        for mp in (sdk_mp, tr_mp, sub_mp, pipe.meter_provider):
            mp.shutdown()
        tp.shutdown()


def bench_collect_per_series(repeats: int) -> dict[str, tuple[float, float]]:
    """Collection cost per traffic series (5 metrics each): SDK counters vs traffic."""
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    meter = mp.get_meter("bench.collect")
    counters = [meter.create_counter(f"bench.s{i}") for i in range(5)]
    tr_reader = InMemoryMetricReader()
    tr_mp = MeterProvider(metric_readers=[tr_reader])
    acc = TrafficAccounting(meter_provider=tr_mp, per_participant=True,
                            max_participants=SERIES + 1)
    for s in range(SERIES):
        a = {"otel_rtc.room": f"room-{s // 10}", "otel_rtc.participant": f"p{s}",
             "otel_rtc.direction": "up", "otel_rtc.media.kind": "video"}
        for c in counters:
            c.add(30, a)
        acc.add(a["otel_rtc.room"], f"p{s}", "up", "video", 30, 33_000, 1, 0, 10)
    try:
        hand = _best_ns(reader.get_metrics_data, repeats) / SERIES
        traffic = _best_ns(tr_reader.get_metrics_data, repeats) / SERIES
    finally:
        mp.shutdown()
        tr_mp.shutdown()
    return {"collect_hand": (0.0, hand), "collect_traffic": (0.0, traffic)}


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def render(r: dict[str, tuple[float, float]], n: int, repeats: int) -> str:
    def tot(k: str) -> float:
        return r[k][0] + r[k][1]

    rows = [
        ("hand-written: 1 x counter.add(v, attrs)", "hand_one", ""),
        ("hand-written: 5 x counter.add(v, attrs)", "hand_five",
         f"{tot('hand_five') / tot('hand_one'):.2f} x one counter.add"),
        ("hand-written: 5 deltas from totals + 5 x counter.add (**baseline**)", "hand_delta",
         "1.00"),
        ("otel_rtc: traffic.add(5 cumulative totals)", "traffic",
         f"**{tot('traffic') / tot('hand_delta'):.2f}** x baseline "
         f"({tot('traffic') / tot('hand_five'):.2f} x 5 x counter.add)"),
        ("hand-written: span + 6 attrs + histogram.record (**baseline**)", "hand_span", "1.00"),
        ("otel_rtc: subscription().complete(), SDK fallback recorder", "sub_sdk",
         f"{tot('sub_sdk') / tot('hand_span'):.2f} x baseline"),
        ("otel_rtc: subscription().complete(), local aggregation", "sub_buffered",
         f"**{tot('sub_buffered') / tot('hand_span'):.2f}** x baseline"),
    ]
    lines = [
        "# pub/sub and traffic: benchmark results",
        "",
        "Generated by `.venv/bin/python -m benchmarks.bench_pubsub --write` on Python "
        f"{platform.python_version()} ({platform.machine()}, {_cpu()}, {os.cpu_count()} CPUs), "
        f"{n:,} traffic calls / {n // 4:,} subscriptions per repeat, best of {repeats} "
        "interleaved repeats. Ratios are against the baseline of the same group, measured "
        "in the same run, on totals (call + amortised collection).",
        "",
        "| operation | call ns | collect ns/call | total ns | ratio |",
        "|---|---:|---:|---:|---|",
    ]
    for label, key, ratio in rows:
        call, col = r[key]
        lines.append(f"| {label} | {call:,.0f} | {col:,.0f} | {call + col:,.0f} | {ratio} |")
    ch, ct = r["collect_hand"][1], r["collect_traffic"][1]
    lines += [
        "",
        f"Collection per traffic series (5 metrics, {SERIES:,} series), paid once per "
        "export interval however many `add` calls the series had:",
        "",
        "| collection | ns/series | ratio |",
        "|---|---:|---|",
        f"| hand-written: 5 SDK counters | {ch:,.0f} | 1.00 |",
        f"| otel_rtc: traffic observable counters | {ct:,.0f} | {ct / ch:.2f} x |",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--n", type=int, default=N)
    ap.add_argument("--repeats", type=int, default=REPEATS)
    args = ap.parse_args()
    text = render(bench(args.n, args.repeats), args.n, args.repeats)
    print(text)
    if args.write:
        (Path(__file__).parent / "pubsub_RESULTS.md").write_text(text)


if __name__ == "__main__":
    main()
