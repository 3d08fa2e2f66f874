"""cProfile of the processors: where the time of ``bench_processor`` goes.

Run: .venv/bin/python benchmarks/profile_processor.py [--top 25] [--rounds 40]

1. the in-process transform (the default ``WindowRateProcessor``: rates and load) of the
   ``bench_processor`` batch, 60 s of 1 s samples since the previous export;
2. ``otel_rtc.collector.processor`` inside a real ``rotel-agent``, through a wrapper
   module that profiles every ``process_metrics`` call and writes the statistics to a
   temporary file read back here.

Profiling inflates call-heavy code; use the shares, not the absolute times.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_WRAPPER = '''
import cProfile, pstats, sys
sys.path.insert(0, {root!r})
from otel_rtc.collector import processor as _cp
_pr = cProfile.Profile()
_n = [0]

def process_metrics(resource_metrics):
    _pr.enable()
    try:
        _cp.process_metrics(resource_metrics)
    finally:
        _pr.disable()
    _n[0] += 1
    if _n[0] % 20 == 0:
        _pr.dump_stats({out!r})
'''


def profile_inprocess(top: int, seconds: int = 300) -> None:
    from benchmarks import bench_processor as b

    # 1 s samples, exported every 60 s: the profiled transform is the one after the last
    # 60 s of samples, as a live export sees it.
    p, procs, transform, _ticks, _clock, _acc = b._inprocess_setup(200, seconds)
    data = p.metric_reader.get_metrics_data()
    pr = cProfile.Profile()
    pr.enable()
    transform(data)
    pr.disable()
    for proc in procs:
        proc.shutdown()
    print(f"## in-process transform ({seconds} s of 1 s samples, 60 s new)")
    pstats.Stats(pr).sort_stats("cumulative").print_stats(top)


def profile_collector(top: int, rounds: int) -> None:
    from benchmarks import bench_processor as b

    with tempfile.TemporaryDirectory(prefix="otel-rtc-prof-") as d:
        out = Path(d) / "collector.prof"
        wrapper = Path(d) / "profiled_processor.py"
        root = str(Path(__file__).resolve().parents[1])
        wrapper.write_text(textwrap.dedent(_WRAPPER.format(root=root, out=str(out))))
        pps, cpu, _ = b.bench_collector(wrapper, rounds=rounds)
        print(f"## collector processor inside rotel-agent ({pps:,.0f} points/s under the "
              f"profiler, agent CPU {cpu * 1e6:.1f} us/point)")
        pstats.Stats(str(out)).sort_stats("cumulative").print_stats(top)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--rounds", type=int, default=40)
    args = ap.parse_args()
    profile_inprocess(args.top)
    profile_collector(args.top, args.rounds)


if __name__ == "__main__":
    main()
