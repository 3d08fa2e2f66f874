"""The report's charts, as Plotly figures built from :mod:`otel_rtc.report.analysis`.

Needs the ``report`` extra (``pip install 'otel-rtc[report]'``). Each chart comes with a
short explanation and, when its data is missing, a note that says why instead of an
empty plot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from otel_rtc.core import names as n
from otel_rtc.report import analysis
from otel_rtc.report import data as d

__all__ = ["Chart", "build_charts"]

ATTEMPT_ORDER = ("first", "retry", "resume", "migration", "unmuted")
ATTEMPT_COLORS = {"first": "#1f77b4", "retry": "#d62728", "resume": "#2ca02c",
                  "migration": "#9467bd", "unmuted": "#8c564b"}
TOP_STREAMS = 4
HEIGHT = 460
_FONT = {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12}


@dataclass
class Chart:
    """One section of the report.

    Attributes:
        key: Stable id (the page's element id is ``chart-<key>``).
        title: Section heading.
        explanation: What the chart shows, one short paragraph (plain text).
        figure: The Plotly figure, or ``None`` when there is no data.
        note: Why there is no data, or a caveat shown under the chart.
    """

    key: str
    title: str
    explanation: str
    figure: go.Figure | None
    note: str = ""


def _ts(ns: int) -> str:
    """A UTC timestamp Plotly reads as a date (microsecond precision)."""
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def _layout(fig: go.Figure, height: int = HEIGHT, **kw: Any) -> go.Figure:
    fig.update_layout(height=height, margin={"l": 60, "r": 20, "t": 50, "b": 50},
                      font=_FONT, template="plotly_white",
                      legend={"orientation": "h", "y": -0.12, "x": 0}, **kw)
    return fig


def _ms(v: float) -> str:
    ms = v * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"


def _bucket_labels(bounds: tuple[float, ...]) -> list[str]:
    return [f"≤{_ms(b)}" for b in bounds] + [f">{_ms(bounds[-1])}" if bounds else "all"]


def latency_chart(data: d.TelemetryData) -> Chart:
    """Latency distributions by attempt kind: first attempts next to retries."""
    found = list(analysis.latency_by_attempt(data).items())
    chart = Chart("latency", "Latency: first attempts vs retries",
                  "Share of each attempt kind's messages (or subscriptions) per histogram "
                  "bucket, in ms. Retries are told apart by otel_rtc.attempt; each panel's "
                  "subtitle gives each kind's exact mean (sum ÷ count) and count.", None)
    if not found:
        chart.note = ("No latency histograms in metrics.jsonl (messaging.process.duration, "
                      "otel_rtc.message.*, otel_rtc.subscription.duration).")
        return chart
    cols = 2 if len(found) > 1 else 1
    rows = (len(found) + cols - 1) // cols
    titles = []
    labels_of = {key: label for key, _, label, _ in analysis.LATENCIES}
    for key, by_kind in found:
        label = labels_of[key]
        means = " · ".join(f"{k} {h.mean * 1e3:.3g} (n={h.count})"
                           for k, h in _ordered(by_kind) if h.mean is not None)
        titles.append(f"{label}<br><sup>mean ms: {means}</sup>")
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles,
                        vertical_spacing=0.2, horizontal_spacing=0.08)
    shown: set[str] = set()
    for i, (_, by_kind) in enumerate(found):
        row, col = i // cols + 1, i % cols + 1
        # One category axis per panel: the buckets holding any measurement, plus one on
        # either side, so that the shape is visible without the empty tail.
        any_hist = next(iter(by_kind.values()))
        labels = _bucket_labels(any_hist.bounds)
        used = [j for j in range(len(labels))
                if any(j < len(h.counts) and h.counts[j] for h in by_kind.values())]
        lo, hi = max(0, min(used) - 1), min(len(labels), max(used) + 2)
        for kind, h in _ordered(by_kind):
            if h.bounds != any_hist.bounds:
                continue
            fig.add_trace(go.Bar(
                x=labels[lo:hi], y=[100.0 * c / h.count for c in h.counts[lo:hi]],
                name=str(kind), legendgroup=str(kind),
                marker_color=ATTEMPT_COLORS.get(str(kind), "#7f7f7f"),
                showlegend=str(kind) not in shown,
                hovertemplate="%{x} ms: %{y:.1f}%<extra>" + str(kind) + "</extra>"),
                row=row, col=col)
            shown.add(str(kind))
        fig.update_yaxes(title_text="% of attempts", row=row, col=col)
        fig.update_xaxes(title_text="ms (bucket upper bound)", row=row, col=col)
    chart.figure = _layout(fig, height=330 * rows + 80, barmode="group")
    return chart


def _ordered(by_kind: dict[Any, d.Hist]) -> list[tuple[Any, d.Hist]]:
    def rank(k: Any) -> tuple[int, str]:
        return (ATTEMPT_ORDER.index(k) if k in ATTEMPT_ORDER else len(ATTEMPT_ORDER), str(k))
    return [(k, by_kind[k]) for k in sorted(by_kind, key=rank)]


def burst_chart(data: d.TelemetryData) -> Chart:
    """One point per burst: duration (the worst-case latency bound), messages, break."""
    bursts = sorted((s for s in data.spans if s.name.startswith("burst ")
                     and n.ATTR_BURST_MESSAGE_COUNT in s.attrs), key=lambda s: s.start_ns)
    chart = Chart("bursts", "Burst timeline",
                  "Each point is one burst: the time the consumer stayed busy until it found "
                  "its buffer empty (the worst-case receive-to-finish latency bound), the "
                  "messages it processed, and the idle break before it. From the burst spans "
                  "in traces.jsonl.", None)
    if not bursts:
        chart.note = ("No burst spans in traces.jsonl: burst tracking is off by default "
                      "(configure(bursts=True) or OTEL_RTC_BURSTS_ENABLED=true).")
        return chart
    x = [_ts(s.start_ns) for s in bursts]
    dur = [(s.end_ns - s.start_ns) / 1e6 for s in bursts]
    msgs = [int(s.attrs[n.ATTR_BURST_MESSAGE_COUNT]) for s in bursts]
    brk = [s.attrs.get(n.ATTR_BURST_BREAK_BEFORE) for s in bursts]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=(f"burst duration, ms (longest {max(dur):.1f} ms)",
                                        "messages per burst", "break before the burst, ms"))
    fig.add_trace(go.Scatter(x=x, y=dur, mode="markers", name="duration (ms)",
                             marker={"color": "#d62728", "size": 6}), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=msgs, mode="markers", name="messages",
                             marker={"color": "#1f77b4", "size": 6}), row=2, col=1)
    bx = [xi for xi, b in zip(x, brk, strict=True) if b is not None]
    by = [float(b) * 1e3 for b in brk if b is not None]
    fig.add_trace(go.Scatter(x=bx, y=by, mode="markers", name="break (ms)",
                             marker={"color": "#2ca02c", "size": 6}), row=3, col=1)
    fig.update_xaxes(title_text="time (UTC)", row=3, col=1)
    chart.figure = _layout(fig, height=620, showlegend=False)
    return chart


def _mbps(series: list[tuple[int, float]]) -> tuple[list[str], list[float]]:
    return [_ts(t) for t, _ in series], [v * 8 / 1e6 for _, v in series]


def rate_chart(data: d.TelemetryData) -> Chart:
    """True mean and 1 s peak against the naive rate, for the busiest streams."""
    streams = analysis.stream_rates(data)[:TOP_STREAMS]
    chart = Chart("rates", "True rate and 1 s peak vs the naive rate (busiest streams)",
                  "Per stream and export, from the in-process rate processor: the true rate "
                  "(bytes since the previous export ÷ the time they cover; "
                  "otel_rtc.traffic.bytes.rate, window=span) and the highest rate over ~1 s "
                  "of real samples in that time (rate.peak, subwindow=1s), next to what a "
                  "naive reader says: bytes since the previous export ÷ a "
                  f"{analysis.NAIVE_WINDOW_S:g} s window. In Mbit/s. The busiest streams "
                  "first.", None)
    if not streams:
        chart.note = ("No otel_rtc.traffic.bytes.rate series in metrics.jsonl: the default "
                      "processors derive them from TrafficAccounting counters "
                      "(the demo's simulated SFU).")
        return chart
    cols = 2 if len(streams) > 1 else 1
    rows = (len(streams) + cols - 1) // cols
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[s.label for s in streams],
                        vertical_spacing=0.18, horizontal_spacing=0.08)
    lines = (("mean", "true rate (export's span)", "#1f77b4", "solid", "lines+markers"),
             ("peak_1s", "1 s peak", "#d62728", "solid", "lines+markers"),
             ("peak_5s", "5 s peak", "#ff7f0e", "dot", "lines+markers"),
             ("naive", f"naive: bytes since last export ÷ {analysis.NAIVE_WINDOW_S:g} s",
              "#7f7f7f", "dash", "lines+markers"))
    for i, s in enumerate(streams):
        row, col = i // cols + 1, i % cols + 1
        for attr, name, color, dash, mode in lines:
            series = getattr(s, attr)
            if not series:
                continue
            x, y = _mbps(series)
            fig.add_trace(go.Scatter(x=x, y=y, mode=mode, name=name, legendgroup=attr,
                                     showlegend=i == 0,
                                     line={"color": color, "dash": dash}),
                          row=row, col=col)
        fig.update_yaxes(title_text="Mbit/s", rangemode="tozero", row=row, col=col)
    chart.figure = _layout(fig, height=300 * rows + 120)
    if not any(s.peak_1s for s in streams):
        chart.note = ("No 1 s peak yet: the sampler reads a stream's counters once a second "
                      "only after its first export, so peaks need a run of at least the "
                      "export interval plus ~3 s.")
    return chart


def load_chart(data: d.TelemetryData) -> Chart:
    """Room load score over time, and the top participants' shares of each room."""
    rooms = analysis.room_loads(data)
    chart = Chart("load", "Traffic load by room, with top participants",
                  "Left: each room's load score per export (weighted bits/s + packets/s "
                  "since the previous export, otel_rtc.traffic.load.score). Right: the "
                  "share of the room's load of its top participants at the busiest export, "
                  "then everyone else; "
                  "otel_rtc.traffic.load.share).", None)
    if not rooms:
        chart.note = ("No otel_rtc.traffic.load.score series in metrics.jsonl: the load "
                      "processor derives them from TrafficAccounting counters.")
        return chart
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.1,
                        subplot_titles=("room load score (million/s)",
                                        "share of the room's load (busiest export)"))
    for r in rooms:
        x = [_ts(t) for t, _ in r.score]
        fig.add_trace(go.Scatter(x=x, y=[v / 1e6 for _, v in r.score], mode="lines+markers",
                                 name=r.room, legendgroup="rooms"), row=1, col=1)
    # Stacked horizontal bars: one bar per room, one segment per participant rank.
    room_names = [r.room for r in rooms]
    depth = max((len(r.shares) for r in rooms), default=0)
    for rank in range(depth):
        y, xs, text = [], [], []
        for r in rooms:
            if rank < len(r.shares):
                who, share = r.shares[rank]
                y.append(r.room)
                xs.append(100.0 * share)
                text.append(who)
        fig.add_trace(go.Bar(y=y, x=xs, orientation="h", text=text, textposition="inside",
                             insidetextanchor="middle", textangle=0,
                             name=f"rank {rank + 1}", showlegend=False,
                             hovertemplate="%{y} %{text}: %{x:.1f}%<extra></extra>"),
                      row=1, col=2)
    rest = [r for r in rooms if r.others is not None]
    if rest:
        fig.add_trace(go.Bar(y=[r.room for r in rest], x=[100.0 * (r.others or 0.0) for r in rest],
                             orientation="h", text=["others"] * len(rest), textposition="inside",
                             insidetextanchor="middle", textangle=0, marker_color="#c7c7c7",
                             name="others", showlegend=False,
                             hovertemplate="%{y} everyone else: %{x:.1f}%<extra></extra>"),
                      row=1, col=2)
    fig.update_yaxes(categoryorder="array", categoryarray=room_names[::-1], row=1, col=2)
    fig.update_xaxes(title_text="% of room load", range=[0, 100], row=1, col=2)
    chart.figure = _layout(fig, barmode="stack")
    return chart


def drop_chart(data: d.TelemetryData) -> Chart:
    """Drops over time, by where they happened and why."""
    drops = analysis.drops_over_time(data)
    kernel = analysis.kernel_measured(data)
    chart = Chart("drops", "Drops over time by reason",
                  "Running totals of every drop counter at each export (from 0 at the "
                  "counter's start time): the instrumented buffer "
                  "(otel_rtc.buffer.dropped), the kernel's socket receive queue, the "
                  "exporter and other components (otel_rtc.telemetry.dropped, by component "
                  "and reason).", None,
                  "" if kernel else "kernel: not measured (no kernel drop counter in the "
                  "telemetry).")
    if not drops:
        chart.note = ("No drop counters in metrics.jsonl. " + chart.note).strip()
        return chart
    fig = go.Figure()
    for (where, label), series in sorted(drops.items()):
        fig.add_trace(go.Scatter(x=[_ts(t) for t, _ in series], y=[v for _, v in series],
                                 mode="lines+markers",
                                 name=f"{where} — {label}"))
    fig.update_yaxes(title_text="dropped so far", rangemode="tozero")
    fig.update_xaxes(title_text="time (UTC)")
    chart.figure = _layout(fig, height=420)
    return chart


def build_charts(data: d.TelemetryData) -> list[Chart]:
    """Every chart of the report, in page order."""
    return [latency_chart(data), burst_chart(data), rate_chart(data), load_chart(data),
            drop_chart(data)]
