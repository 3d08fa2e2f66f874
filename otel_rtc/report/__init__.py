"""``otel-rtc report``: one self-contained HTML page from the embedded default's files.

:func:`write_report` reads the OTLP JSON files that :func:`otel_rtc.configure` writes
when no OTLP endpoint is set (``metrics.jsonl``, ``traces.jsonl``, ``logs.jsonl``) and
writes one interactive page that opens offline (plotly.js embedded): latency by attempt
kind, the burst timeline, true rates and peaks against the naive rate, the traffic load
by room, and drops over time. It needs the ``report`` extra
(``pip install 'otel-rtc[report]'``).

The reader and the figures the page is built on need only the standard library:
:func:`load` a folder, then ask it for :func:`latency_by_attempt`, :func:`stream_rates`,
:func:`room_loads`, :func:`drops_over_time` (the demo's summary does).
"""

from __future__ import annotations

from pathlib import Path

from otel_rtc.report.analysis import (
    RoomLoadSeries,
    StreamRate,
    drops_over_time,
    kernel_measured,
    latency_by_attempt,
    quantile,
    room_loads,
    stream_rates,
)
from otel_rtc.report.data import Hist, ReportError, TelemetryData, load

__all__ = [
    "Hist",
    "ReportError",
    "ReportExtraMissing",
    "RoomLoadSeries",
    "StreamRate",
    "TelemetryData",
    "drops_over_time",
    "kernel_measured",
    "latency_by_attempt",
    "load",
    "quantile",
    "room_loads",
    "stream_rates",
    "write_report",
]

EXTRA_HINT = "pip install 'otel-rtc[report]'"
"""How to install what the page needs."""


class ReportExtraMissing(ReportError):
    """The ``report`` extra (plotly) is not installed."""


def write_report(directory: str | Path, output: str | Path | None = None) -> Path:
    """Read the telemetry folder ``directory`` and write the report page.

    Args:
        directory: A folder of OTLP JSON files written by ``otel_rtc.configure()``.
        output: The HTML file to write (default: ``report.html`` in ``directory``).

    Returns:
        The absolute path of the page.

    Raises:
        ReportExtraMissing: plotly is not installed (the message says which extra).
        ReportError: The folder cannot be read as telemetry, or the page cannot be
            written; the message is one line.
    """
    try:
        from otel_rtc.report import page
    except ImportError as exc:
        if (exc.name or "").split(".")[0] != "plotly":
            raise
        raise ReportExtraMissing(f"the report needs plotly, from the 'report' extra: "
                                 f"{EXTRA_HINT}") from None
    return page.write(directory, output)
