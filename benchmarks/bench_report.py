"""Cost of ``otel-rtc report`` on the telemetry of a default (20 s) demo run.

Target (issue 14): reading and plotting the telemetry of a 20 s demo run takes ≤ 5 s on
the project's machine. Run::

    .venv/bin/python benchmarks/bench_report.py [--dir FOLDER] [--repeats 3]

Without ``--dir`` it first runs the demo for 20 s (``python -m examples.demo``, the
``./demo.sh`` defaults) into a temporary folder. Each repeat, in order: the baseline
(``json.loads`` of every line of the three files: the floor of any reader of this format),
reading (:func:`otel_rtc.report.data.load`), building the page
(:func:`otel_rtc.report.page.render_html`: figures, their JSON, plotly.js inlined) and
the whole command (:func:`otel_rtc.report.write_report`, reading + page + writing). The
best of the repeats is reported (noise only adds time), with the whole command as a
multiple of the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from otel_rtc.report import data, page, write_report

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 5.0


def _demo(folder: Path) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_EXPORTER_OTLP")}
    env["PYTHONPATH"] = str(ROOT)
    subprocess.run([sys.executable, "-m", "examples.demo", "--output-dir", str(folder)],
                   cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    (run,) = folder.glob("demo-*")
    return run


def _baseline(folder: Path) -> int:
    n = 0
    for name in data.SIGNAL_FILES.values():
        with (folder / name).open("rb") as fh:
            for line in fh:
                if line.strip():
                    json.loads(line)
                    n += 1
    return n


def _best(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when the target is not met."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None,
                    help="a telemetry folder (default: run the 20 s demo first)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        folder = args.dir or _demo(Path(tmp))
        out = Path(tmp) / "report.html"
        sizes = {name: (folder / name).stat().st_size for name in data.SIGNAL_FILES.values()}
        tel = data.load(folder)
        rows = {
            "baseline: json.loads of every line": lambda: _baseline(folder),
            "read (otel_rtc.report.data.load)": lambda: data.load(folder),
            "page (figures + HTML, data already read)": lambda: page.render_html(tel),
            "otel-rtc report: read + page + write": lambda: write_report(folder, out),
        }
        # interleaved: one repeat of every row per round
        best = dict.fromkeys(rows, float("inf"))
        for _ in range(args.repeats):
            for key, fn in rows.items():
                best[key] = min(best[key], _best(fn, 1))
        total = best["otel-rtc report: read + page + write"]
        base = best["baseline: json.loads of every line"]
        print(f"telemetry: {folder}")
        print("  " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sizes.items())
              + f"; {sum(len(p) for p in tel.points.values()):,} metric points, "
              f"{len(tel.spans):,} spans, {len(tel.logs):,} log records")
        print(f"  page: {out.stat().st_size / 1e6:.1f} MB")
        print(f"{'step':<44}{'best s':>8}")
        for key, v in best.items():
            print(f"{key:<44}{v:>8.2f}")
        verdict = "MET" if total <= TARGET_S else "NOT MET"
        print(f"whole command {total:.2f} s (target ≤ {TARGET_S:g} s: {verdict}); "
              f"{total / base:.1f} x the json.loads baseline")
        return 0 if total <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
