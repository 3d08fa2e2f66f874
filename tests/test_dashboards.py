"""Every PromQL query of every provisioned Grafana panel returns plausible data.

The examples run in real time against the SDK's Prometheus exporter (with the otel_rtc
export stage: local aggregation and the rate processor), a real Prometheus server
scrapes them every second, and each panel query is evaluated through the HTTP API as
the range query Grafana would run. A query that returns nothing, or only NaN, or a
value outside the range its unit allows, fails.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests._prometheus import (
    demo_prometheus,
    finite,
    prometheus_available,
    values_of,
)

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "collector_config" / "grafana" / "dashboards").glob("*.json"))
RATE_INTERVAL = "6s"  # >= 2 samples at the 1 s scrape interval, like Grafana's 4x scrape
VARIABLES = {"destination": ".*", "room": ".*", "kind": ".*"}  # the "All" value
# Traffic rates and load are bounded by the SFU example's construction: at most ~25
# peers in its 2 rooms, each sending at most ~0.49 MB/s and ~4050 packets/s per
# direction (the noisy data participant; a video peer ~0.34 MB/s, 370 packets/s). So a
# room's direction carries <= ~1e8 bit/s, a (media kind, direction) <= ~7.5e3 packets/s
# and a room's load score (docs/rates.md) is <= ~3e8/s. The bounds leave ~3-6x headroom
# for real-time tick jitter. A stream's first report counted as traffic of one short
# interval (the fake spike of docs/traffic.md) read 2.6e9 bit/s, 6e5 packets/s and a
# 1.1e10 score here.
BOUNDS = {"s": (0.0, 60.0), "percentunit": (0.0, 1.0), "bps": (0.0, 2.5e8),
          "pps": (0.0, 5e4)}
# Everything else (message rates, counts, the load score): non-negative, finite and
# below the load score's bound; the largest of the rest is a few hundred per second.
DEFAULT_BOUNDS = (0.0, 1e9)


def panel_queries():
    """(dashboard file, panel, target) for every query target of every panel."""
    out = []
    for f in DASHBOARDS:
        dash = json.loads(f.read_text())
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                out.append((f.name, panel, target))
    return out


QUERIES = panel_queries()


def concrete(expr: str) -> str:
    """Replace Grafana's variables by concrete values."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    for name, value in VARIABLES.items():
        expr = expr.replace(f"${name}", value)
    assert "$" not in expr, expr
    return expr


def test_dashboards_exist_and_latency_panels_link_to_traces():
    assert DASHBOARDS and len(QUERIES) >= 30
    titles = " ".join(p["title"].lower() for _, p, _ in QUERIES)
    for topic in ("queue wait", "processing", "receive to finish", "burst", "drop",
                  "subscription", "success rate", "traffic rate", "peak", "top-n",
                  "joins"):
        assert topic in titles, topic
    latency = [t for _, p, t in QUERIES
               if p["fieldConfig"]["defaults"]["unit"] == "s" and "histogram_quantile"
               in t["expr"]]
    assert latency and all(t["exemplar"] is True for t in latency)


@pytest.fixture(scope="module")
def prom_run(tmp_path_factory):
    if not prometheus_available():
        pytest.skip("prometheus not installed (scripts/bootstrap.sh installs it)")
    with demo_prometheus(tmp_path_factory.mktemp("prometheus"), duration_s=8.0) as run:
        _, summaries, _ = run
        failed = {k: v for k, v in summaries.items() if isinstance(v, BaseException)}
        assert not failed, failed
        yield run


@pytest.mark.prometheus
def test_exposed_names_are_the_translated_otel_names(prom_run):
    _, summaries, _ = prom_run
    text = summaries["_exposition"]
    for name in ("otel_rtc_subscription_duration_seconds_bucket",
                 "otel_rtc_subscription_outcomes_total", "otel_rtc_session_joins_total",
                 "otel_rtc_traffic_bytes_total", "otel_rtc_session_active"):
        assert f"\n{name}{{" in text, name


@pytest.mark.prometheus
@pytest.mark.parametrize(
    ("dashboard", "panel", "target"), QUERIES,
    ids=[f"{d}:{p['id']}{t['refId']}" for d, p, t in QUERIES])
def test_panel_query_returns_plausible_data(prom_run, dashboard, panel, target):
    prom, _, (start, end) = prom_run
    expr = concrete(target["expr"])
    result = prom.query_range(expr, start, end, step=1.0)
    assert result, f"{panel['title']!r}: no data for {expr}"
    values = values_of(result)
    good = finite(values)
    assert good, f"{panel['title']!r}: only NaN for {expr}"
    assert not any(math.isinf(v) for v in values), expr
    lo, hi = BOUNDS.get(panel["fieldConfig"]["defaults"]["unit"], DEFAULT_BOUNDS)
    bad = [v for v in good if not lo <= v <= hi]
    assert not bad, f"{panel['title']!r}: values outside [{lo}, {hi}]: {bad[:5]} ({expr})"
