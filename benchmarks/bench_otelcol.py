"""Collector throughput, side by side in one run: otelcol-rtc and rotel-agent, each with and
without its otel_rtc rate processor.

Run: .venv/bin/python benchmarks/bench_otelcol.py [--repeats 3] [--rounds 60]

The same workload goes through each collector (``bench_processor._requests``: 4 senders
posting OTLP/HTTP protobuf, one request per sender and second of data, each with 500
cumulative ``otel_rtc.traffic.bytes`` points of distinct participants), and each collector
forwards over OTLP/HTTP to the same loopback receiver. The clock runs from the first POST
until the receiver holds every source point; the collector's CPU time (user + system, from
``/proc``) over the same span is reported per source point, because the receiver and the
senders (Python) share the machine with the collector.

Variants, interleaved ``--repeats`` times (medians):

* ``otelcol-rtc``: ``otlp`` receiver → ``batch`` → ``otlphttp`` exporter; and the same with
  ``rtcrate`` (otel_rtc's native processor, default settings: every point selected, rates,
  1 s peaks and the room load) before ``batch``. Target: with >= 0.9 x without. Also
  ``rtcrate`` on a metric it does not select (``app.bytes``: passed through by name), and
  an SFU's export (the five traffic counters of each stream, two of them selected).
* ``rotel-agent``: no processor; and ``otel_rtc.collector.processor`` (the Python one).

otelcol-rtc is built by ``scripts/build_otelcol.sh`` (``./test.sh`` runs it). The write-up,
with the figures of a run, is ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_processor import _cpu_s, _requests, bench_collector, post_in_parallel

from tests._otelcol import OTELCOL_RTC, free_port
from tests._otlp_receiver import OtlpReceiver

NAME = "otel_rtc.traffic.bytes"
SFU_NAMES = ("otel_rtc.traffic.bytes", "otel_rtc.traffic.packets", "otel_rtc.traffic.packets_lost",
             "otel_rtc.traffic.packets_out_of_order", "otel_rtc.traffic.padding_bytes")
"""What an SFU's TrafficAccounting exports per stream; rtcrate selects the first two."""


def _sfu_requests(n_senders: int, rounds: int, series: int) -> list[list[bytes]]:
    """Like ``_requests``, with the five traffic counters of each stream in each request."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    per_sender = []
    for bodies in zip(*[_requests(n_senders, rounds, series // len(SFU_NAMES), name=n)
                        for n in SFU_NAMES], strict=True):
        merged = []
        for parts in zip(*bodies, strict=True):
            req = ExportMetricsServiceRequest()
            req.ParseFromString(parts[0])
            sm = req.resource_metrics[0].scope_metrics[0]
            for extra in parts[1:]:
                other = ExportMetricsServiceRequest()
                other.ParseFromString(extra)
                sm.metrics.append(other.resource_metrics[0].scope_metrics[0].metrics[0])
            merged.append(req.SerializeToString())
        per_sender.append(merged)
    return per_sender


def _otelcol_config(http_port: int, sink: str, native: bool) -> dict:
    processors = (["rtcrate"] if native else []) + ["batch"]
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{http_port}"}}}},
        # the same batching as the Rotel runs (batch_timeout 50ms)
        "processors": {"batch": {"timeout": "50ms"}, "rtcrate": {}},
        "exporters": {"otlphttp": {"endpoint": sink, "compression": "none"}},
        "service": {"telemetry": {"metrics": {"level": "none"}},
                    "pipelines": {"metrics": {"receivers": ["otlp"], "processors": processors,
                                              "exporters": ["otlphttp"]}}},
    }


def bench_otelcol(native: bool, n_senders: int = 4, rounds: int = 60,
                  series: int = 500, name: str = NAME) -> tuple[float, float, int]:
    """Source points/s through otelcol-rtc; CPU s per point; derived points received.

    ``name`` ``"sfu"``: each request holds the five traffic counters of 100 streams
    (``SFU_NAMES``, 500 points), of which rtcrate selects two.
    """
    sources = SFU_NAMES if name == "sfu" else (name,)
    # the sources' .rate / .rate.peak points (as bench_processor counts them for Rotel)
    rate_names = tuple(n + ".rate" for n in sources)
    if name == "sfu":
        bodies = _sfu_requests(n_senders, rounds, series)
    else:
        bodies = _requests(n_senders, rounds, series, name=name)
    total = n_senders * rounds * series
    with OtlpReceiver() as recv, tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cfg = Path(tmp) / "otelcol.json"  # JSON is YAML
        cfg.write_text(json.dumps(_otelcol_config(port, recv.endpoint, native)))
        log = (Path(tmp) / "otelcol.log").open("wb")
        proc = subprocess.Popen([str(OTELCOL_RTC), "--config", f"file:{cfg}"], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline, \
                        (Path(tmp) / "otelcol.log").read_text()[-2000:]
                    time.sleep(0.05)
            seen = {"requests": 0, "source": 0, "derived": 0}

            def count(r: OtlpReceiver) -> int:
                reqs = r.metric_requests()
                for req in reqs[seen["requests"]:]:
                    for rm in req.resource_metrics:
                        for sm in rm.scope_metrics:
                            for m in sm.metrics:
                                if m.name in sources:
                                    seen["source"] += len(m.sum.data_points)
                                elif m.name.startswith(rate_names):
                                    seen["derived"] += len(m.gauge.data_points)
                seen["requests"] = len(reqs)
                return seen["source"]

            time.sleep(0.5)  # let the collector finish starting (its CPU is not counted)
            cpu0 = _cpu_s(proc.pid)
            t = time.perf_counter()
            post_in_parallel(port, bodies)
            ok = recv.wait_for(lambda r: count(r) >= total, timeout=300)
            dt = time.perf_counter() - t
            cpu = _cpu_s(proc.pid) - cpu0
            assert ok, seen
            assert seen["source"] == total, seen  # nothing duplicated or lost
            if native and name != "app.bytes":
                assert seen["derived"] > 0, seen  # the processor really derived
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
    return total / dt, cpu / total, seen["derived"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=60, help="seconds of data per sender")
    args = ap.parse_args()
    if not OTELCOL_RTC.exists():
        sys.exit("build/otelcol/otelcol-rtc missing: run scripts/build_otelcol.sh")
    from otel_rtc.collector.rotel import processor_path

    variants = {
        "otelcol-rtc": lambda: bench_otelcol(False, rounds=args.rounds),
        "otelcol-rtc + rtcrate": lambda: bench_otelcol(True, rounds=args.rounds),
        "otelcol-rtc + rtcrate (unselected)": lambda: bench_otelcol(True, rounds=args.rounds,
                                                                    name="app.bytes"),
        "otelcol-rtc (SFU export)": lambda: bench_otelcol(False, rounds=args.rounds,
                                                          name="sfu"),
        "otelcol-rtc (SFU export) + rtcrate": lambda: bench_otelcol(True, rounds=args.rounds,
                                                                    name="sfu"),
        "rotel-agent": lambda: bench_collector(None, rounds=args.rounds, name=NAME),
        "rotel-agent + Python processor": lambda: bench_collector(
            processor_path(), rounds=args.rounds, name=NAME),
    }
    pps: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    derived: dict[str, int] = {}
    for _ in range(args.repeats):
        for k, fn in variants.items():
            rate, c, d = fn()
            pps[k].append(rate)
            cpu[k].append(c)
            derived[k] = d
    print(f"# bench_otelcol: {platform.python_implementation()} {platform.python_version()}, "
          f"4 senders x 500 series x {args.rounds} s of 1 s data, median of {args.repeats}\n")
    print("| collector | processor | source points/s | vs. without | collector CPU µs/point "
          "| .rate/.rate.peak points |")
    print("|---|---|---|---|---|---|")
    for base, with_ in (("otelcol-rtc", ("otelcol-rtc + rtcrate",
                                          "otelcol-rtc + rtcrate (unselected)")),
                        ("otelcol-rtc (SFU export)", ("otelcol-rtc (SFU export) + rtcrate",)),
                        ("rotel-agent", ("rotel-agent + Python processor",))):
        b = statistics.median(pps[base])
        for k in (base, *with_):
            m = statistics.median(pps[k])
            proc = "—" if k == base else k.split(" + ", 1)[1]
            print(f"| {base} | {proc} | {m:,.0f} | {m / b:.2f}x | "
                  f"{statistics.median(cpu[k]) * 1e6:.1f} | {derived.get(k, 0):,} |")
    print("\nall runs (points/s):", {k: [round(x) for x in v] for k, v in pps.items()})


if __name__ == "__main__":
    main()
