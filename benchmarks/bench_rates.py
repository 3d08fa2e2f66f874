"""Throughput of RateEngine.observe and memory per series.

Run: .venv/bin/python benchmarks/bench_rates.py [--points N] [--series K] [--write]

``--write`` rewrites ``benchmarks/rates_RESULTS.md`` with the figures of the run; the
write-up is ``docs/performance.md``.

Reports points/s for the fast path (cumulative continuation), the delta path and the
slow path (first points), next to two baselines measured in the same run: an empty
Python method call and a dict lookup + 3 list stores (the floor of any pure-Python
per-point work); ``rates()`` per series after 10 and 60 new samples, next to a full
rescan of the ring; memory per series (tracemalloc), typical and worst case.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
import tracemalloc
from pathlib import Path

from otel_rtc.core.rates import RateConfig, RateEngine, SeriesRates

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
        obs(k, 0.0, T0, start_ns=T0 if cumulative else None, cumulative=cumulative)
    state = {"t": T0}

    def run():
        t = state["t"]
        base = (t - T0) // S
        for r in range(1, rounds + 1):
            tr = t + r * S
            v = float((base + r) * 1000)
            if cumulative:
                for k in keys:
                    obs(k, v, tr, start_ns=T0)
            else:
                for k in keys:
                    obs(k, 1000.0, tr, cumulative=False)
        state["t"] = t + rounds * S

    def check():
        assert eng.anomaly_counts() == {}, eng.anomaly_counts()

    return run, check


def make_baselines(n_points, n_series):
    keys = [("bytes", i) for i in range(n_series)]
    rounds = n_points // n_series

    class Empty:
        __slots__ = ()

        def observe(self, key, value, time_ns, *, start_ns=None, cumulative=True):
            return True

    e = Empty().observe

    def call():
        for r in range(rounds):
            for k in keys:
                e(k, 1.0, r, start_ns=T0)

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
            eng.observe(i, 0.0, T0, start_ns=T0)
    return n / best_of(run, 3)


def bench_rates(n_series, samples, new):
    """Series/s of ``rates()`` with full rings, each read after ``new`` 1 s samples.

    The peaks are maintained incrementally (caught up on each read), so a read costs
    the windows plus the intervals that arrived since the previous read; re-reading
    unchanged data would hide that. Also returns series/s of a full rescan of the
    ring (``_rescan``, the definition the incremental peaks are checked against, and
    what every read cost before), measured on the same data in the same run.
    """
    from otel_rtc.core.rates import _rescan

    eng = RateEngine(RateConfig(max_series=n_series + 1, max_samples_per_series=samples),
                     clock=lambda: T0)
    state = {"j": 0}

    def feed(k):
        j0 = state["j"]
        for i in range(n_series):
            for j in range(j0, j0 + k):
                eng.observe(i, float(j * 100 + (j * 7919 % 13) * 10), T0 + j * S)
        state["j"] = j0 + k

    feed(samples + 1)
    list(eng.items(T0 + state["j"] * S))
    best = rescan = float("inf")
    for _ in range(3):
        feed(new)
        now = T0 + (state["j"] - 1) * S
        gc.collect()
        t = time.perf_counter()
        for _ in eng.items(now):
            pass
        best = min(best, time.perf_counter() - t)
        series = list(eng._series.values())
        gc.collect()
        t = time.perf_counter()
        for s in series:
            _rescan(*s.chronological(), s.evicted_t1, now, eng._windows_ns, eng._horizon_ns,
                    eng._peaks_ns)
        rescan = min(rescan, time.perf_counter() - t)
    return n_series / best, n_series / rescan


def memory_per_series(n_series, samples, falling=False):
    """Bytes per series with a full ring, read once (the peak stacks exist).

    ``falling``: every interval's rate below the previous one, the worst case of the
    peak stacks (one entry per interval and sub-window); rising or steady rates keep
    one entry.
    """
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    eng = RateEngine(RateConfig(max_series=n_series + 1, max_samples_per_series=samples),
                     clock=lambda: T0)
    n = samples + 2  # fill the ring completely
    for i in range(n_series):
        v = 0.0
        for j in range(n):
            v += (n - j) * 10.0 if falling else 100.0
            eng.observe(("bytes", i), v, T0 + j * S)
    for _ in eng.items(T0 + (n - 1) * S):
        pass
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
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
    for samples in (320, 64):
        for new in (10, 60):
            inc, full = bench_rates(500, samples, new)
            emit(f"rates() per series, ring {samples:4d}, {new:2d} new   {inc:9,.0f} series/s  "
                 f"(full rescan of the ring: {full:7,.0f} series/s, {inc / full:.1f}x)")
    for samples in (320, 64):
        m = memory_per_series(2000, samples)
        w = memory_per_series(2000, samples, falling=True)
        emit(f"memory per series, ring {samples:4d}    {m:9,.0f} bytes "
             f"({m / samples:.1f} B/interval); falling rates (worst case) {w:,.0f} bytes")
    assert SeriesRates  # the record type exists (import check for the reader)
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
