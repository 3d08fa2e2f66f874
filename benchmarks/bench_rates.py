"""Throughput of RateEngine.observe, cost of a reading and memory per series.

Run: .venv/bin/python benchmarks/bench_rates.py [--points N] [--series K] [--write]

``--write`` rewrites ``benchmarks/rates_RESULTS.md`` with the figures of the run; the
write-up is ``docs/performance.md``.

Reports points/s for the fast path (cumulative continuation), the delta path and the
slow path (first points), next to two baselines measured in the same run: an empty
Python method call and a dict lookup + 3 stores (the floor of any pure-Python
per-point work); ``read()`` per series; memory per series (tracemalloc) with the default
outputs and with opt-in peaks and windows.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
import tracemalloc
from pathlib import Path

from otel_rtc.core.rates import RateConfig, RateEngine

S = 1_000_000_000
T0 = 1_700_000_000 * S


def best_of(fn, repeat=5):
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def best_of_interleaved(runs, repeat=5):
    """Best time of each run, the runs interleaved (one of each per round).

    A slow phase of a shared machine then hits the baselines and the engine alike, so
    their ratio holds even when the absolute figures move.
    """
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, fn in runs.items():
            gc.collect()
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def make_observe(n_points, n_series, cumulative):
    """A run feeding ``n_points`` points (continuations) to an engine, and its check."""
    keys = [("bytes", i) for i in range(n_series)]
    rounds = n_points // n_series
    eng = RateEngine(RateConfig(max_series=n_series + 1), clock=lambda: T0)
    obs = eng.observe
    # Warm up: create the series (slow path) once.
    for k in keys:
        obs(k, 0.0, T0, T0 if cumulative else 0, cumulative)
    state = {"t": T0}

    def run():
        t = state["t"]
        base = (t - T0) // S
        for r in range(1, rounds + 1):
            tr = t + r * S
            v = float((base + r) * 1000)
            if cumulative:
                for k in keys:
                    obs(k, v, tr, T0)
            else:
                for k in keys:
                    obs(k, 1000.0, tr, 0, False)
        state["t"] = t + rounds * S

    def check():
        assert eng.anomaly_counts() == {}, eng.anomaly_counts()

    return run, check


def make_baselines(n_points, n_series):
    keys = [("bytes", i) for i in range(n_series)]
    rounds = n_points // n_series

    class Empty:
        __slots__ = ()

        def observe(self, key, value, time_ns, start_ns=0, cumulative=True, flags=0,
                    tag=None):
            return True

    e = Empty().observe

    def call():
        for r in range(rounds):
            for k in keys:
                e(k, 1.0, r, T0)

    store = {k: [0, 0.0, 0] for k in keys}
    get = store.get

    def dict_store():
        for r in range(rounds):
            for k in keys:
                s = get(k)
                s[0] = r
                s[1] = 1.0
                s[2] = T0

    return call, dict_store


def bench_throughput(n_points, n_series):
    """Points/s of the baselines and of observe (cumulative, delta), interleaved."""
    call, dict_store = make_baselines(n_points, n_series)
    cum, cum_check = make_observe(n_points, n_series, True)
    delta, delta_check = make_observe(n_points, n_series, False)
    best = best_of_interleaved({"call": call, "dict": dict_store, "cum": cum,
                                "delta": delta})
    cum_check()
    delta_check()
    n = (n_points // n_series) * n_series
    return {k: n / v for k, v in best.items()}


def bench_first_points(n):
    def run():
        eng = RateEngine(RateConfig(max_series=n + 1), clock=lambda: T0)
        for i in range(n):
            eng.observe(i, 0.0, T0, T0)
    return n / best_of(run, 3)


def bench_read(n_series, new, config=None):
    """Series/s of ``read()``, each series having ``new`` 1 s samples since the last read."""
    eng = RateEngine(config or RateConfig(max_series=n_series + 1), clock=lambda: T0)
    state = {"j": 0}

    def feed():
        j0 = state["j"]
        for i in range(n_series):
            for j in range(j0, j0 + new):
                eng.observe(i, float(j * 100 + (j * 7919 % 13) * 10), T0 + j * S)
        state["j"] = j0 + new

    feed()
    eng.read(T0 + state["j"] * S)
    best = float("inf")
    for _ in range(5):
        feed()
        now = T0 + state["j"] * S
        gc.collect()
        t = time.perf_counter()
        out = eng.read(now)
        best = min(best, time.perf_counter() - t)
        assert len(out) == n_series
    return n_series / best


def memory_per_series(n_series, config, samples=320):
    """Bytes per series after ``samples`` 1 s samples and a read (tracemalloc).

    The keys are built before the measurement (a processor keeps them anyway); the engine's
    own state is measured: the dict slot, the series object and what it holds.
    """
    keys = [("otel_rtc.traffic.bytes", (("otel_rtc.room", f"r{i}"),)) for i in range(n_series)]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    eng = RateEngine(config, clock=lambda: T0)
    for j in range(samples):
        t = T0 + j * S
        v = float(j * 1000)
        for k in keys:
            eng.observe(k, v, t)
        if j % 60 == 59:
            eng.read(t)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(eng) == n_series
    del eng
    return used / n_series


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    out = []

    def emit(line):
        print(line)
        out.append(line)

    emit(f"Python {sys.version.split()[0]} on {platform.machine()}, "
         f"{a.points:,} points over {a.series:,} series, best of 5 interleaved")
    pps = bench_throughput(a.points, a.series)
    call, floor, cum, delta = pps["call"], pps["dict"], pps["cum"], pps["delta"]
    first = bench_first_points(min(a.points, 100_000))
    emit(f"baseline empty method call      {call / 1e6:6.2f} M points/s")
    emit(f"baseline dict lookup + 3 stores {floor / 1e6:6.2f} M points/s")
    emit(f"observe cumulative (fast path)  {cum / 1e6:6.2f} M points/s  "
         f"({cum / call:.2f}x of an empty call; target >= 1 M: "
         f"{'MET' if cum >= 1e6 else 'NOT MET'})")
    emit(f"observe delta                   {delta / 1e6:6.2f} M points/s  "
         f"({delta / call:.2f}x of an empty call)")
    emit(f"observe first point (new series){first / 1e6:6.2f} M points/s")
    for new in (10, 60):
        emit(f"read() per series, {new:2d} new samples {bench_read(1000, new):11,.0f} series/s "
             "(default outputs: span mean + 1 s peak)")
    opt = RateConfig(peak_subwindows_s=(1.0, 5.0), windows_s=(60.0, 300.0), max_series=5000)
    emit(f"read() per series, 60 new, opt-in  {bench_read(1000, 60, opt):11,.0f} series/s "
         "(+ 5 s peak, 60 s and 300 s windows)")
    m = memory_per_series(2000, RateConfig(max_series=5000))
    emit(f"memory per series, default outputs {m:9,.0f} bytes (target <= 1 KB, goal 200 B: "
         f"{'MET' if m <= 1024 else 'NOT MET'})")
    w = memory_per_series(2000, opt)
    emit(f"memory per series, opt-in 5 s peak + 60/300 s windows {w:9,.0f} bytes")
    if a.write:
        text = "\n".join([
            "# RateEngine benchmark results",
            "",
            "Generated by `.venv/bin/python benchmarks/bench_rates.py --write`. Analysis, "
            "machine and the other benchmarks: `docs/performance.md`.",
            "",
            "```",
            *out,
            "```",
            "",
        ])
        (Path(__file__).parent / "rates_RESULTS.md").write_text(text)


if __name__ == "__main__":
    main()
