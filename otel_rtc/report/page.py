"""The report page: one self-contained HTML file with plotly.js embedded.

The page needs no server and no network. Once its charts are drawn, its own script
counts, per chart, the data points given to Plotly and the marks Plotly drew (markers,
line paths, bars) into ``<pre id="otel-rtc-chart-check">`` as JSON, and appends
``[charts ok]`` or ``[charts EMPTY: ...]`` to the title: a person and a headless browser
see at a glance whether every chart drew data.
"""

from __future__ import annotations

import html
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import plotly
from plotly.offline import get_plotlyjs

from otel_rtc.report import data as d
from otel_rtc.report.charts import Chart, build_charts
from otel_rtc.version import __version__

__all__ = ["render_html", "write"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1280px; padding: 16px 24px; color: #222; }
h1 { font-size: 1.5em; margin: 0.2em 0; }
h2 { font-size: 1.15em; margin: 1.4em 0 0.2em; border-top: 1px solid #ddd; padding-top: 0.8em; }
.meta { color: #555; font-size: 0.9em; margin: 0; }
.explain { color: #444; font-size: 0.92em; margin: 0.2em 0 0.4em; max-width: 75em; }
.note { color: #8a4b00; background: #fff6e5; padding: 4px 8px; font-size: 0.9em; }
pre#otel-rtc-chart-check { color: #555; font-size: 0.8em; white-space: pre-wrap; }
"""

# Renders every figure, then counts what was drawn. Plotly.newPlot returns a promise;
# the check runs once all of them settled, so a failed chart shows as empty.
_SCRIPT = """
(function () {
  var keys = %(keys)s;
  var config = {responsive: true, displaylogo: false};
  function count(gd) {
    var points = 0, drawn = 0;
    (gd.data || []).forEach(function (t) {
      var vals = t.orientation === 'h' ? t.x : t.y;
      (vals || []).forEach(function (v) { if (typeof v === 'number' && isFinite(v)) points++; });
    });
    gd.querySelectorAll('.scatterlayer .trace .points path, .scatterlayer .trace path.js-line,'
                        + ' .barlayer .trace .point path').forEach(function (m) {
      var dd = m.getAttribute('d');
      if (dd && dd.length > 4 && dd !== 'M0,0Z') drawn++;
    });
    return {points: points, drawn: drawn};
  }
  var runs = keys.map(function (k) {
    var el = document.getElementById('chart-' + k);
    var src = document.getElementById('fig-' + k);
    if (!src || typeof Plotly === 'undefined') return Promise.resolve();
    var fig = JSON.parse(src.textContent);
    return Plotly.newPlot(el, fig.data, fig.layout, config);
  });
  Promise.allSettled(runs).then(function () {
    var result = {}, empty = [];
    keys.forEach(function (k) {
      var el = document.getElementById('chart-' + k);
      var c = el && el.data ? count(el) : {points: 0, drawn: 0};
      result[k] = c;
      if (!(c.points > 0 && c.drawn > 0)) empty.push(k);
    });
    document.getElementById('otel-rtc-chart-check').textContent = JSON.stringify(result);
    document.title += empty.length ? ' [charts EMPTY: ' + empty.join(', ') + ']'
                                   : ' [charts ok]';
  });
})();
"""


def _json_for_script(text: str) -> str:
    # Inside <script>, "</" could close the element early.
    return text.replace("</", "<\\/")


def _utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _section(c: Chart) -> str:
    parts = [f'<section id="{c.key}"><h2>{html.escape(c.title)}</h2>',
             f'<p class="explain">{html.escape(c.explanation)}</p>']
    if c.note:
        parts.append(f'<p class="note">{html.escape(c.note)}</p>')
    parts.append(f'<div class="chart" id="chart-{c.key}"></div>')
    if c.figure is not None:
        parts.append(f'<script type="application/json" id="fig-{c.key}">'
                     f"{_json_for_script(c.figure.to_json())}</script>")
    parts.append("</section>")
    return "\n".join(parts)


def render_html(data: d.TelemetryData) -> str:
    """The whole page for ``data``, as one string."""
    charts = build_charts(data)
    span = data.time_range_ns()
    when = f"{_utc(span[0])} to {_utc(span[1])} UTC" if span else "no timestamps"
    n_points = sum(len(p) for p in data.points.values())
    counts = (f"{n_points:,} metric points, {len(data.spans):,} spans, "
              f"{len(data.logs):,} log records")
    title = f"otel_rtc report — {data.directory.name}"
    body = "\n".join(_section(c) for c in charts)
    keys = json.dumps([c.key for c in charts])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
<script>{get_plotlyjs()}</script>
</head><body>
<h1>otel_rtc report</h1>
<p class="meta">{html.escape(str(data.directory))} · {html.escape(when)} · {counts}</p>
<p class="meta">Generated {_utc(datetime.now(timezone.utc).timestamp() * 1e9)} UTC by otel_rtc
{html.escape(__version__)} (plotly {html.escape(plotly.__version__)}); interactive: hover,
zoom, click a legend entry to hide a series. Works offline.</p>
{body}
<h2>Chart check</h2>
<p class="explain">Data points given to each chart and marks drawn, counted by this page
after rendering.</p>
<pre id="otel-rtc-chart-check">not run (JavaScript disabled?)</pre>
<script>{_SCRIPT % {"keys": keys}}</script>
</body></html>
"""


def write(directory: str | Path, output: str | Path | None = None) -> Path:
    """:func:`otel_rtc.report.write_report`, once plotly is known to be there."""
    data = d.load(directory)
    out = Path(output).expanduser() if output is not None else data.directory / "report.html"
    out = out.resolve()
    page = render_html(data)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target, then rename: a reader never sees half a page.
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(page, encoding="utf-8")
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise d.ReportError(f"{out}: cannot write the report ({exc.strerror or exc})"
                            ) from None
    return out
