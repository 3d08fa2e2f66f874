"""Render every Grafana panel's query results from a real Prometheus run to PNGs.

Grafana cannot run here, so this runs the examples against the SDK's Prometheus
exporter, lets the Debian ``prometheus`` server scrape them (exactly as
``tests/test_dashboards.py`` does), evaluates each panel's PromQL as the range query
Grafana would run, and draws the result with matplotlib. Every image says so in its
title: "rendered from Prometheus query results — not a Grafana screenshot".

    .venv/bin/python docs/plot_dashboards.py            # writes docs/img/dashboards/*.png
"""

from __future__ import annotations

import json
import math
import re
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._prometheus import demo_prometheus  # noqa: E402

OUT = ROOT / "docs" / "img" / "dashboards"
DASHBOARDS = sorted((ROOT / "collector_config" / "grafana" / "dashboards").glob("*.json"))
LABEL = "rendered from Prometheus query results — not a Grafana screenshot"
RATE_INTERVAL = "6s"
SCALE = {"bps": (1e6, "Mbit/s"), "pps": (1.0, "packets/s"), "ops": (1.0, "per second"),
         "s": (1e-3, "ms"), "percentunit": (0.01, "%"), "short": (1.0, "")}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def legend(fmt: str, labels: dict[str, str]) -> str:
    if fmt in ("", "__auto"):
        return ",".join(f"{k}={v}" for k, v in labels.items()) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()


def concrete(expr: str) -> str:
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    return re.sub(r"\$(\w+)", ".*", expr)


def render(prom, start: float, end: float) -> list[Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    written = []
    for f in DASHBOARDS:
        dash = json.loads(f.read_text())
        row = ""
        for panel in dash["panels"]:
            if panel["type"] == "row":
                row = panel["title"]
                continue
            unit = panel["fieldConfig"]["defaults"].get("unit", "short")
            div, unit_label = SCALE.get(unit, (1.0, unit))
            fig, ax = plt.subplots(figsize=(8, 3.6))
            n = 0
            for target in panel["targets"]:
                for series in prom.query_range(concrete(target["expr"]), start, end, 1.0):
                    pts = [(float(t) - start, float(v) / div) for t, v in series["values"]
                           if math.isfinite(float(v))]
                    if not pts:
                        continue
                    xs, ys = zip(*pts, strict=True)
                    name = legend(target.get("legendFormat", ""), series["metric"])
                    ax.plot(xs, ys, marker="." if len(xs) < 4 else None, linewidth=1.2,
                            label=name[:40])
                    n += 1
            if n == 0:
                ax.text(0.5, 0.5, "no data", ha="center", va="center",
                        transform=ax.transAxes)
            ax.set_title(f"{row}: {panel['title']}\n{LABEL}", fontsize=9)
            ax.set_xlabel("seconds since the start of the run")
            ax.set_ylabel(unit_label)
            ax.grid(alpha=0.3)
            if 0 < n <= 12:
                ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
            elif n:
                ax.text(1.01, 1.0, f"{n} series", transform=ax.transAxes, fontsize=7,
                        va="top")
            fig.tight_layout()
            path = OUT / f"{slug(row)}--{slug(panel['title'])}.png"
            fig.savefig(path, dpi=80)
            plt.close(fig)
            written.append(path)
    return written


def main() -> int:
    with demo_prometheus(Path(tempfile.mkdtemp(prefix="otel-rtc-plot-")),
                         duration_s=20.0) as (prom, _, (start, end)):
        for p in render(prom, start, end):
            print(p.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
