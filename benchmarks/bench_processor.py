"""Throughput of the rate/load processor: core, in-process exporter and real collector.

Run: .venv/bin/python benchmarks/bench_processor.py [--series N] [--repeats 3] [--quick]

Measured in one run, each next to its baseline (the targets of issue 12):

1. **core**: points/s through the shared ``Deriver`` (engine observe with the series'
   tag), and derived series/s through ``Deriver.derive_into`` (target >= 1 M points/s);
2. **in-process**: one export of a batch of traffic counters through a plain
   ``OTLPMetricExporter`` (protobuf encode + HTTP POST to a loopback receiver) vs the
   processor's ``transform`` of the same batch (rates + load, default outputs), after
   60 s of 1 s samples since the previous export (target <= 25 % of the export, goal
   10 %); and the sampler's tick per sampled series, rates and load together (target
   <= 0.3 us per series);
3. **collector**: points/s through a real ``rotel-agent`` forwarding to a loopback
   receiver, with no processor, a no-op Python processor, a read-only Python processor
   (reads each point's attributes, times and value) and ``otel_rtc.collector.processor``;
   interleaved, ``--repeats`` times, medians (target: otel_rtc >= 0.8 x read-only);
4. **memory** per series (tracemalloc) of the shared engine and its tags (target <= 1 KB,
   goal 200 B).

The write-up, with the figures of a run, is ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import os
import platform
import statistics
import sys
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rates import best_of  # the same timing helper as the core benchmark

from otel_rtc.core.clock import ManualClock
from otel_rtc.core.derived import RATE, Deriver
from otel_rtc.core.processor_settings import ProcessorSettings
from otel_rtc.core.rates import RateConfig

S = 1_000_000_000
T0 = 1_700_000_000 * S


# -- 1. core ---------------------------------------------------------------------------

def _deriver(n_series):
    return Deriver(ProcessorSettings(include=("x.*",), rate=RateConfig(max_series=n_series + 1)),
                   clock=lambda: T0)


def bench_core(n_series, rounds=100):
    """Points/s through the shared engine (with tags); series/s through ``derive_into``."""
    d = _deriver(n_series)
    keys = [("x.bytes", (("k", i),)) for i in range(n_series)]
    obs = d.engine.observe
    for k in keys:
        obs(k, 0, T0, T0, True, 0, d.tag("x.bytes", "By", "", k[1], False, RATE))
    state = {"t": T0}

    def feed(rounds):
        t0 = state["t"]
        for r in range(1, rounds + 1):
            t = t0 + r * S
            v = (t - T0) // S * 1000 + (r * 7919 % 13) * 10
            for k in keys:
                obs(k, v, t, T0)
        state["t"] = t0 + rounds * S

    dt = best_of(lambda: feed(rounds))
    observe_pps = n_series * rounds / dt
    derive = {}
    for new in (10, 60):
        best = float("inf")
        for _ in range(3):
            feed(new)
            gc.collect()
            t = time.perf_counter()
            d.derive_into({}, state["t"])
            best = min(best, time.perf_counter() - t)
        derive[new] = n_series / best
    return observe_pps, derive


# -- 2. in-process -----------------------------------------------------------------------

def _inprocess_setup(n_streams, seconds, export_every=60):
    """Pipeline, the default processor and ``seconds`` of 1 s samples, exported every 60 s.

    The processor runs at every ``export_every`` seconds but the last, so the measured
    transform follows exactly one export interval of new samples, as a live exporter does.
    """
    from otel_rtc.core.load import TrafficLoadConfig
    from otel_rtc.instrumentation.traffic import TrafficAccounting
    from otel_rtc.sdk.processors import CounterSampler, WindowRateProcessor
    from otel_rtc.testing import make_test_pipeline

    clock = ManualClock(T0)
    p = make_test_pipeline(local_aggregation=False)
    acc = TrafficAccounting(meter_provider=p.meter_provider, per_participant=True,
                            max_participants=300, clock=clock)
    streams = [(f"room{i // 10}", f"p{i}", ("up", "down")[i % 2],
                ("audio", "video", "data")[i % 3]) for i in range(n_streams)]
    src_time = [0.0, 0]

    def timed_snapshot():
        t = time.perf_counter()
        cols = acc.snapshot()
        src_time[:] = [time.perf_counter() - t, len(cols.values)]
        return cols

    sampler = CounterSampler(1.0, _sources=[timed_snapshot], clock=clock, autostart=False)
    # What default_processors() builds: one processor, one engine, rates and load.
    procs = [WindowRateProcessor(RateConfig(), load=TrafficLoadConfig(), sampler=sampler,
                                 clock=clock)]

    def transform(data):
        out = data
        for pr in procs:
            out = pr.process(out)
        return out

    for s in streams:
        acc.add(*s, 0, 0)
    sampler.sample_now()
    tick_times = []
    for sec in range(1, seconds + 1):
        clock.advance(S)
        for i, s in enumerate(streams):
            acc.add(*s, sec * (50 + i % 7), sec * 1000 * (10 + i % 13))
        # A tick as the sampler thread runs it, timed in two parts: the source's own
        # snapshot (timed inside the source), and the rest (the processor's work).
        t = time.perf_counter()
        sampler.sample_now()
        total = time.perf_counter() - t
        tick_times.append((total - src_time[0], src_time[0], src_time[1]))
        if sec % export_every == 0 and sec < seconds:
            transform(p.metric_reader.get_metrics_data())
    return p, procs, transform, tick_times, clock, acc


def _timed(fn, *args):
    gc.collect()
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def _export_ok(exp, data, success):
    assert exp.export(data) is success


def bench_inprocess(n_streams, seconds=60, repeats=5):
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import MetricExportResult

    from otel_rtc.sdk.gauges import derived_gauges
    from tests._otlp_receiver import OtlpReceiver

    export_s = transform_s = again_s = build_s = export_derived_s = float("inf")
    ticks = []
    with OtlpReceiver() as recv:
        exp = OTLPMetricExporter(f"{recv.endpoint}/v1/metrics")
        # Interleaved, so a slow phase of a shared machine hits both alike. Each repeat
        # builds its state afresh: the transform is measured once per state.
        for _ in range(repeats):
            p, procs, transform, tick_times, clock, _acc = _inprocess_setup(n_streams, seconds)
            ticks.extend(tick_times)
            data = p.metric_reader.get_metrics_data()
            export_s = min(export_s, _timed(_export_ok, exp, data, MetricExportResult.SUCCESS))
            gc.collect()
            t = time.perf_counter()
            derived = transform(data)
            transform_s = min(transform_s, time.perf_counter() - t)
            # The same transform again, with no new samples (the peaks are current).
            again_s = min(again_s, _timed(transform, data))
            export_derived_s = min(export_derived_s, _timed(exp.export, derived))
            # Part of the transform: turning the derived points into SDK Metric objects
            # (attribute dicts already cached, as from the second export on).
            for _ in range(60):  # the next export interval's samples
                clock.advance(S)
                procs[0].sampler.sample_now()
            groups = {}
            procs[0].deriver.derive_into(groups, clock())
            cache = {}
            derived_gauges(groups, cache)
            build_s = min(build_s, _timed(derived_gauges, groups, cache))
            for pr in procs:
                pr.shutdown()
        exp.shutdown()
    n_points = sum(len(m.data.data_points) for rm in data.resource_metrics
                   for sm in rm.scope_metrics for m in sm.metrics)
    n_out = sum(len(m.data.data_points) for rm in derived.resource_metrics
                for sm in rm.scope_metrics for m in sm.metrics)
    return {
        "points": n_points, "points_out": n_out, "export_s": export_s,
        "transform_s": transform_s, "again_s": again_s,
        "export_derived_s": export_derived_s,
        "tick_s": statistics.mean(x[0] for x in ticks),
        "tick_median_s": statistics.median(x[0] for x in ticks),
        "source_s": statistics.median(x[1] for x in ticks),
        "rows": ticks[0][2], "build_s": build_s, "sampled": 2 * n_streams,
    }


# -- 3. collector ------------------------------------------------------------------------

def _requests(n_senders, rounds, series, round_s=1, name="otel_rtc.traffic.bytes"):
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

    def kv(k, v):
        return KeyValue(key=k, value=AnyValue(string_value=v))

    per_sender = []
    for snd in range(n_senders):
        bodies = []
        for r in range(rounds):
            req = ExportMetricsServiceRequest()
            rm = req.resource_metrics.add()
            rm.resource.attributes.append(kv("service.name", f"sfu-{snd}"))
            m = rm.scope_metrics.add().metrics.add()
            m.name, m.unit = name, "By"
            m.sum.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
            m.sum.is_monotonic = True
            for i in range(series):
                p = m.sum.data_points.add()
                p.attributes.extend([kv("otel_rtc.room", f"room{i // 10}"),
                                     kv("otel_rtc.participant", f"p{i}"),
                                     kv("otel_rtc.direction", ("up", "down")[i % 2]),
                                     kv("otel_rtc.media.kind", ("audio", "video", "data")[i % 3])])
                p.start_time_unix_nano = T0
                p.time_unix_nano = T0 + (r + 1) * round_s * S
                p.as_int = (r + 1) * 1000 * (i + 1)
            bodies.append(req.SerializeToString())
        per_sender.append(bodies)
    return per_sender


NOOP_PROCESSOR = Path(__file__).resolve().parent / "_noop_processor.py"
READ_ONLY_PROCESSOR = Path(__file__).resolve().parent / "_read_only_processor.py"
EMIT_FLOOR_PROCESSOR = Path(__file__).resolve().parent / "_emit_floor_processor.py"


def _cpu_s(pid):
    """CPU seconds (user + system, all threads) the process ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post_in_parallel(port: int, bodies: list[list[bytes]]) -> None:
    """POST each sender's OTLP/HTTP bodies on a connection of its own, all senders at once."""
    def send(my_bodies: list[bytes]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for b in my_bodies:
            conn.request("POST", "/v1/metrics", body=b,
                         headers={"Content-Type": "application/x-protobuf"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200, resp.status
        conn.close()

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def bench_collector(processor, n_senders=4, rounds=60, series=500,
                    name="otel_rtc.traffic.bytes"):
    """Points/s through ``rotel-agent`` with ``processor`` (a path, or None).

    Returns ``(source points/s, agent CPU s per point, derived points received)``. The
    clock runs from the first POST until the receiver holds every source point; the
    agent's CPU time is read from ``/proc`` over the same span.
    """
    from otel_rtc.collector.rotel import RotelCollector
    from tests._otlp_receiver import OtlpReceiver

    bodies = _requests(n_senders, rounds, series, name=name)
    total = n_senders * rounds * series
    with OtlpReceiver() as recv:
        col = RotelCollector(exporter_endpoint=recv.endpoint,
                             metrics_processor=processor, batch_timeout="50ms")
        with col:
            seen = {"requests": 0, "source": 0, "derived": 0}

            def count(r):
                # Incremental: each wake-up only looks at requests not counted yet.
                reqs = r.metric_requests()
                for req in reqs[seen["requests"]:]:
                    for rm in req.resource_metrics:
                        for sm in rm.scope_metrics:
                            for m in sm.metrics:
                                if m.name == name:
                                    seen["source"] += len(m.sum.data_points)
                                elif m.name.startswith("otel_rtc.traffic.bytes.rate"):
                                    seen["derived"] += len(m.gauge.data_points)
                seen["requests"] = len(reqs)
                return seen["source"]

            time.sleep(0.5)  # let the agent finish starting (its CPU is not counted)
            cpu0 = _cpu_s(col.pid)
            t = time.perf_counter()
            post_in_parallel(col.http_port, bodies)
            ok = recv.wait_for(lambda r: count(r) >= total, timeout=300)
            dt = time.perf_counter() - t
            cpu = _cpu_s(col.pid) - cpu0
            assert ok, col.logs()[-2000:]
            assert seen["source"] == total, seen  # nothing duplicated or lost
    return total / dt, cpu / total, seen["derived"]


def bench_collectors(rounds, repeats):
    """Interleaved runs of each variant x repeats; medians of points/s and CPU/point.

    Variants: no processor; a no-op Python processor; a Python processor that only reads
    each point's attributes, times and value (the floor of any rate processor); one that
    reads the same and emits the otel_rtc processor's derived points at its instants,
    deriving nothing (the floor of any processor emitting these outputs); the otel_rtc
    processor on the traffic counters it derives from (every point selected: the worst
    case); the otel_rtc processor on a metric it does not select (pass-through).
    """
    from otel_rtc.collector.rotel import processor_path

    variants = {"none": (None, "otel_rtc.traffic.bytes"),
                "noop": (NOOP_PROCESSOR, "otel_rtc.traffic.bytes"),
                "read_only": (READ_ONLY_PROCESSOR, "otel_rtc.traffic.bytes"),
                "emit_floor": (EMIT_FLOOR_PROCESSOR, "otel_rtc.traffic.bytes"),
                "otel_rtc": (processor_path(), "otel_rtc.traffic.bytes"),
                "passthrough": (processor_path(), "app.bytes")}
    pps = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    derived = {}
    for _ in range(repeats):
        for k, (path, name) in variants.items():
            rate, c, derived[k] = bench_collector(path, rounds=rounds, name=name)
            pps[k].append(rate)
            cpu[k].append(c)
    return ({k: statistics.median(v) for k, v in pps.items()},
            {k: statistics.median(v) for k, v in cpu.items()}, derived)


# -- 4. memory ---------------------------------------------------------------------------

def bench_memory(n_series=2000, samples=300):
    """Bytes per traffic series (rates + load from one engine), keys built beforehand."""
    from otel_rtc.core.derived import LOAD

    d = Deriver(ProcessorSettings(rate=RateConfig(max_series=n_series + 1)), clock=lambda: T0)
    attrs = [(("otel_rtc.direction", "up"), ("otel_rtc.media.kind", "video"),
              ("otel_rtc.participant", f"p{i}"), ("otel_rtc.room", f"r{i // 10}"))
             for i in range(n_series)]
    keys = [("otel_rtc.traffic.bytes", a) for a in attrs]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    obs = d.engine.observe
    for k, a in zip(keys, attrs, strict=True):
        obs(k, 0, T0, T0, True, 0, d.tag(k[0], "By", "", a, False, RATE | LOAD))
    for s_ in range(1, samples):
        t = T0 + s_ * S
        for k in keys:
            obs(k, s_ * 1000, t, T0)
        if s_ % 60 == 0:
            d.derive_into({}, t)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {"rates + load, default outputs (engine state + output names and attributes)":
            used / n_series}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=1000, help="series for core/in-process")
    ap.add_argument("--repeats", type=int, default=3, help="collector runs per variant")
    ap.add_argument("--quick", action="store_true", help="smaller collector run")
    args = ap.parse_args()
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh
                        if ln.startswith("model name")), "")
    except OSError:
        pass
    print(f"Python {platform.python_version()} on {platform.machine()}, {cpu}, "
          f"{os.cpu_count()} CPUs")

    obs, der = bench_core(args.series)
    print("\n## core")
    print(f"observe (engine + glue)           {obs / 1e6:8.2f} M points/s  (target >= 1 M: "
          f"{'MET' if obs >= 1e6 else 'NOT MET'})")
    for new, rate in der.items():
        print(f"derive, full ring, {new:2d} new samples {rate:11,.0f} series/s")

    r = bench_inprocess(args.series // 5, 120)
    ratio = r["transform_s"] / r["export_s"]
    per_series_us = r["tick_s"] / r["sampled"] * 1e6
    print(f"\n## in-process, default outputs, 60 s of 1 s samples since the previous export "
          f"({r['points']} source points in the batch, {r['points_out'] - r['points']} derived; "
          f"{r['sampled']} sampled series)")
    print(f"plain OTLP/HTTP export of the batch  {r['export_s'] * 1e3:8.2f} ms")
    print(f"processor's transform (rates+load)   {r['transform_s'] * 1e3:8.2f} ms  "
          f"({ratio * 100:.0f}% of the export; target <= 25%: "
          f"{'MET' if ratio <= 0.25 else 'NOT MET'}, goal 10%: "
          f"{'MET' if ratio <= 0.10 else 'NOT MET'})")
    print(f"  of which building the derived SDK points {r['build_s'] * 1e3:.2f} ms "
          f"({r['build_s'] / r['export_s'] * 100:.0f}% of the export)")
    print(f"  same transform again, no new samples    {r['again_s'] * 1e3:.2f} ms "
          f"({r['again_s'] / r['export_s'] * 100:.0f}% of the export)")
    print(f"export incl. the derived points      {r['export_derived_s'] * 1e3:8.2f} ms  "
          f"({r['export_derived_s'] / r['export_s']:.2f} x the plain export)")
    print(f"sampler tick, rates and load together {r['tick_s'] * 1e3:7.3f} ms = "
          f"{per_series_us:.3f} us per sampled series (mean of every tick, those after "
          f"an export included; target <= 0.3 us: "
          f"{'MET' if per_series_us <= 0.3 else 'NOT MET'}); median tick "
          f"{r['tick_median_s'] * 1e3:.3f} ms; the source's own snapshot of its "
          f"{r['rows']} rows: {r['source_s'] * 1e3:.3f} ms")

    rounds = 20 if args.quick else 60
    rates, cpu, n_derived = bench_collectors(rounds, args.repeats)
    base = rates["none"]
    print(f"\n## collector (rotel-agent -> loopback receiver, 4 senders x 500 series x "
          f"{rounds} rounds, median of {args.repeats} interleaved runs)")
    labels = {"none": "without processor", "noop": "no-op Python processor",
              "read_only": "read-only Python processor",
              "emit_floor": "read + emit, no derive",
              "otel_rtc": "otel_rtc processor", "passthrough": "otel_rtc, unselected"}
    for k, label in labels.items():
        note = "" if k == "none" else f"  ({rates[k] / base * 100:3.0f}% of without)"
        print(f"{label:24s} {rates[k]:10,.0f} points/s   agent CPU "
              f"{cpu[k] * 1e6:6.2f} us/point{note}")
    withp = rates["otel_rtc"] / rates["read_only"]
    print(f"target: otel_rtc >= 0.8 x the read-only processor: {withp:.2f} x -> "
          f"{'MET' if withp >= 0.8 else 'NOT MET'}  (agent CPU per point "
          f"{cpu['otel_rtc'] / cpu['read_only']:.2f} x the read-only one; "
          f"{n_derived['otel_rtc']:,} derived rate points received)")
    floor = rates["emit_floor"] / rates["read_only"]
    print(f"the floor of any processor emitting these points through rotel_sdk (reading + "
          f"emitting {n_derived['emit_floor']:,} rate points, no deriving): {floor:.2f} x "
          f"the read-only one; otel_rtc is {rates['otel_rtc'] / rates['emit_floor']:.2f} x "
          f"that floor")

    print("\n## memory per series")
    for k, v in bench_memory().items():
        print(f"{k} {v:10,.0f} bytes (target <= 1 KB: {'MET' if v <= 1024 else 'NOT MET'}; "
              f"goal 200 B: {'MET' if v <= 200 else 'NOT MET'})")


if __name__ == "__main__":
    main()
