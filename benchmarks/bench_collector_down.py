"""Collector down vs up: per-call cost of a full-span handler, and shutdown/exit time.

Run::

    .venv/bin/python -m benchmarks.bench_collector_down [--rounds 20] [--n 5000]

Two parts, both with ``configure()``'s default OTLP/HTTP pipeline on 127.0.0.1:

1. **Per-call cost** (issue #11 target: median and p99.9 ratio down/up <= 1.05). Two
   ``configure(set_global=False)`` handles in this one process: one exports to a closed
   loopback port (collector down), one to a live OTLP/HTTP receiver running in a
   subprocess (so that receiving costs this process nothing). Each drives its own
   ``MessageHandler(mode="spans")``. Rounds alternate the two (down, up, up, down, ...),
   ``--n`` calls each, every call timed on its own with ``perf_counter_ns``; the ratios
   compare the pooled per-call samples.
2. **Shutdown and exit** (target: <= 1 s by default with the collector down). A fresh
   interpreter per measurement: configure to a closed port, end 5,000 spans (more than
   the 2,048-span queue), then time ``Telemetry.shutdown()`` with its default deadline;
   and, separately, the interpreter's exit through the exit hook (from the last
   statement to the process end, measured by the parent).

Every item the down pipeline does not export is printed by reason (the drop counts).
"""

from __future__ import annotations

import argparse
import json
import logging
import operator
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

_RECEIVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass

srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""

_SHUTDOWN = r"""
import json, sys, time
from otel_rtc import configure
from otel_rtc.instrumentation.self_telemetry import _drops
h = configure(set_global=False, endpoint=sys.argv[1])
tracer = h.tracer_provider.get_tracer("t")
counter = h.meter_provider.get_meter("m").create_counter("c")
for i in range(5000):
    with tracer.start_as_current_span("x"):
        counter.add(1, {"k": i % 50})
time.sleep(0.5)  # some exports have failed and are backing off
if sys.argv[2] == "exit":
    print(json.dumps({"exit_at": time.time()}), flush=True)
    sys.exit(0)
t0 = time.monotonic()
h.shutdown()
took = time.monotonic() - t0
try:
    drops = {"/".join(k): v for k, v in _drops.items()}
except Exception:
    drops = {}
print(json.dumps({"shutdown_s": took, "drops": drops}), flush=True)
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(sorted_xs: list[int], q: float) -> float:
    return float(sorted_xs[min(len(sorted_xs) - 1, int(q * len(sorted_xs)))])


def per_call(rounds: int, n: int) -> dict[str, Any]:
    from otel_rtc import configure
    from otel_rtc.instrumentation.handler import MessageHandler

    # The SDK exporters log every failed export attempt (from their worker threads);
    # keep them off the terminal, as the cost stays the same.
    logging.getLogger("opentelemetry").addHandler(logging.NullHandler())
    logging.getLogger("opentelemetry").propagate = False
    recv = subprocess.Popen([sys.executable, "-c", _RECEIVER], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert recv.stdout is not None
        live = f"http://127.0.0.1:{int(recv.stdout.readline())}"
        dead = f"http://127.0.0.1:{_closed_port()}"
        handles = {"down": configure(set_global=False, endpoint=dead),
                   "up": configure(set_global=False, endpoint=live)}
        received = operator.itemgetter(0)
        fns = {}
        for key, h in handles.items():
            handler = MessageHandler("q", mode="spans", received=received,
                                     tracer_provider=h.tracer_provider,
                                     meter_provider=h.meter_provider)
            fns[key] = handler(lambda m: m)
        samples: dict[str, list[int]] = {"down": [], "up": []}
        pc = time.perf_counter_ns
        order = ("down", "up")
        for r in range(rounds + 1):
            for key in (order if r % 2 == 0 else order[::-1]):
                fn, out = fns[key], samples[key]
                t_msg = time.time_ns()
                for _ in range(n):
                    t0 = pc()
                    fn((t_msg, b"payload"))
                    out.append(pc() - t0)
                if r == 0:
                    out.clear()  # warm-up round: the down queue fills, the up one drains
        from otel_rtc.instrumentation.self_telemetry import drop_count

        dropped = drop_count("export.traces", "queue_full")
        for h in handles.values():
            h.shutdown()
    finally:
        recv.kill()
        recv.wait()
    res: dict[str, Any] = {"rounds": rounds, "n": n, "queue_full_drops": dropped}
    for key, xs in samples.items():
        xs.sort()
        res[key] = {"median_ns": statistics.median(xs), "p999_ns": _percentile(xs, 0.999),
                    "calls": len(xs)}
    res["median_ratio"] = res["down"]["median_ns"] / res["up"]["median_ns"]
    res["p999_ratio"] = res["down"]["p999_ns"] / res["up"]["p999_ns"]
    return res


def shutdown_and_exit(runs: int) -> dict[str, Any]:
    shut: list[float] = []
    exits: list[float] = []
    drops: dict[str, int] = {}
    for _ in range(runs):
        for how in ("shutdown", "exit"):
            dead = f"http://127.0.0.1:{_closed_port()}"
            p = subprocess.Popen([sys.executable, "-c", _SHUTDOWN, dead, how], cwd="/tmp",
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            assert p.stdout is not None
            line = p.stdout.readline()
            p.wait()
            ended = time.time()
            out = json.loads(line)
            if how == "exit":
                exits.append(ended - out["exit_at"])
            else:
                shut.append(out["shutdown_s"])
                drops = out["drops"]
    return {"shutdown_s": shut, "exit_s": exits, "drops_last_run": drops}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rounds", type=int, default=20, help="measured rounds per side")
    ap.add_argument("--n", type=int, default=5000, help="calls per round")
    ap.add_argument("--runs", type=int, default=3, help="shutdown/exit measurements")
    args = ap.parse_args()
    sd = shutdown_and_exit(args.runs)
    print("shutdown with the collector down (s):", " ".join(f"{x:.3f}" for x in sd["shutdown_s"]))
    print("exit through the exit hook (s):     ", " ".join(f"{x:.3f}" for x in sd["exit_s"]))
    print("drops by reason (last shutdown run):", sd["drops_last_run"])
    r = per_call(args.rounds, args.n)
    for key in ("down", "up"):
        print(f"{key:>4}: median {r[key]['median_ns'] / 1000:.2f} us, "
              f"p99.9 {r[key]['p999_ns'] / 1000:.2f} us over {r[key]['calls']:,} calls")
    print(f"ratio down/up: median {r['median_ratio']:.3f}, p99.9 {r['p999_ratio']:.3f} "
          f"(target <= 1.05); spans dropped (queue full): {r['queue_full_drops']:,}")


if __name__ == "__main__":
    main()
