"""Reading the OTLP JSON files of otel_rtc's embedded default into :class:`TelemetryData`.

Stdlib only: the demo's summary uses it without the ``report`` extra. The input is the
folder that :func:`otel_rtc.configure` writes in file mode: ``metrics.jsonl``,
``traces.jsonl`` and ``logs.jsonl``, one OTLP JSON export request per line (the
``otlpjsonfile`` format of the OpenTelemetry Collector). What the report shows is
computed from it in :mod:`otel_rtc.report.analysis`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "SIGNAL_FILES",
    "Attrs",
    "Hist",
    "Point",
    "ReportError",
    "Span",
    "TelemetryData",
    "load",
]

SIGNAL_FILES: dict[str, str] = {"metrics": "metrics.jsonl", "traces": "traces.jsonl",
                                "logs": "logs.jsonl"}
"""The files of the embedded default, by signal."""

_DELTA = 1

Attrs = tuple[tuple[str, Any], ...]


class ReportError(Exception):
    """The folder cannot be read as otel_rtc telemetry; the message is one line."""


@dataclass(frozen=True)
class Hist:
    """A histogram's buckets and moments (explicit bounds, OTLP style).

    Attributes:
        bounds: Upper bounds of all buckets but the last (which is unbounded).
        counts: Count per bucket (``len(bounds) + 1`` of them).
        count: Number of measurements.
        total: Sum of the measurements.
        min: Smallest measurement, if the exporter recorded it.
        max: Largest measurement, if the exporter recorded it.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    count: int
    total: float
    min: float | None = None
    max: float | None = None

    @property
    def mean(self) -> float | None:
        """``total / count``; ``None`` without measurements."""
        return self.total / self.count if self.count else None

    def merged(self, other: Hist) -> Hist:
        """Both histograms as one (they must have the same bounds)."""
        if other.bounds != self.bounds:
            raise ValueError("different bucket bounds")
        mins = [v for v in (self.min, other.min) if v is not None]
        maxs = [v for v in (self.max, other.max) if v is not None]
        counts = tuple(a + b for a, b in zip(self.counts, other.counts, strict=True))
        return Hist(self.bounds, counts, self.count + other.count, self.total + other.total,
                    min(mins) if mins else None, max(maxs) if maxs else None)


@dataclass(frozen=True)
class Point:
    """One exported metric point.

    Attributes:
        name: Metric name.
        kind: ``"sum"``, ``"gauge"`` or ``"histogram"``.
        attrs: Point attributes, sorted by key.
        run: Identifies the accumulation run: the exporting process
            (``service.instance.id``) and the point's start time.
        delta: Delta temporality (else cumulative, or a gauge).
        time_ns: The point's time.
        value: The value (a histogram's count).
        hist: The buckets of a histogram point.
    """

    name: str
    kind: str
    attrs: Attrs
    run: tuple[str, int]
    delta: bool
    time_ns: int
    value: float
    hist: Hist | None = None


@dataclass(frozen=True)
class Span:
    """One span: name, times and attributes."""

    name: str
    start_ns: int
    end_ns: int
    attrs: dict[str, Any]


@dataclass
class TelemetryData:
    """What one folder of OTLP JSON files holds.

    Attributes:
        directory: The folder.
        points: Metric points by metric name, in file order.
        spans: All spans, in file order.
        logs: ``(time_ns, body)`` of every log record, in file order.
        files: ``{signal: path}`` of the files found.
        since_ns: What was stamped earlier was skipped.
    """

    directory: Path
    points: dict[str, list[Point]] = field(default_factory=lambda: defaultdict(list))
    spans: list[Span] = field(default_factory=list)
    logs: list[tuple[int, str]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    since_ns: int = 0

    @property
    def empty(self) -> bool:
        """No point, span or log record at all."""
        return not (any(self.points.values()) or self.spans or self.logs)

    def series(self, name: str) -> dict[Attrs, list[Point]]:
        """Points of one metric grouped by attributes, each group in time order."""
        out: dict[Attrs, list[Point]] = defaultdict(list)
        for p in self.points.get(name, ()):
            out[p.attrs].append(p)
        for pts in out.values():
            pts.sort(key=lambda p: p.time_ns)
        return dict(out)

    def time_range_ns(self) -> tuple[int, int] | None:
        """First and last timestamp of any point, span or log record."""
        times = [p.time_ns for pts in self.points.values() for p in pts]
        times += [s.start_ns for s in self.spans] + [s.end_ns for s in self.spans]
        times += [t for t, _ in self.logs if t]
        return (min(times), max(times)) if times else None


# -- reading ---------------------------------------------------------------------------


def load(directory: str | Path, since_ns: int = 0) -> TelemetryData:
    """Read the OTLP JSON files in ``directory``.

    Args:
        directory: A folder written by ``otel_rtc.configure()`` in file mode.
        since_ns: Skip points, spans and log records stamped earlier (e.g. the earlier
            runs in a folder that several runs appended to).

    Returns:
        Its points, spans and log records.

    Raises:
        ReportError: The folder is missing, holds no telemetry, or a line is not OTLP
            JSON (the message names the file and line).
    """
    path = Path(directory).expanduser()
    if not path.exists():
        raise ReportError(f"{path}: no such folder")
    if not path.is_dir():
        raise ReportError(f"{path}: not a folder")
    data = TelemetryData(path.resolve())
    for signal, filename in SIGNAL_FILES.items():
        f = data.directory / filename
        if f.is_file():
            data.files[signal] = f
    if not data.files:
        raise ReportError(
            f"{data.directory}: no telemetry files ({', '.join(SIGNAL_FILES.values())}); "
            "otel_rtc.configure() writes them when no OTLP endpoint is set (./demo.sh does)")
    data.since_ns = since_ns
    readers = {"metrics": _read_metrics, "traces": _read_spans, "logs": _read_logs}
    for signal, f in data.files.items():
        for lineno, doc in _lines(f):
            try:
                readers[signal](doc, data)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                raise ReportError(f"{f}:{lineno}: not an OTLP JSON {signal} export "
                                  f"({type(exc).__name__}: {_one_line(exc)})") from None
    if data.empty:
        raise ReportError(f"{data.directory}: the telemetry files hold no data yet")
    return data


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    doc = json.loads(raw)
                except ValueError as exc:  # includes UnicodeDecodeError
                    raise ReportError(f"{path}:{lineno}: not JSON ({_one_line(exc)})"
                                      ) from None
                if not isinstance(doc, dict):
                    raise ReportError(f"{path}:{lineno}: not an OTLP JSON export "
                                      f"(a {type(doc).__name__}, not an object)")
                yield lineno, doc
    except OSError as exc:
        raise ReportError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _any_value(v: dict[str, Any]) -> Any:
    if "stringValue" in v:
        return str(v["stringValue"])
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return tuple(_any_value(x) for x in v["arrayValue"].get("values", ()))
    return json.dumps(v, sort_keys=True)


def _attrs(items: Iterable[dict[str, Any]] | None) -> Attrs:
    return tuple(sorted((str(a["key"]), _any_value(a.get("value", {}))) for a in items or ()))


def _number(p: dict[str, Any]) -> float:
    if "asInt" in p:
        return float(int(p["asInt"]))
    if "asDouble" in p:
        return float(p["asDouble"])
    return 0.0  # OTLP JSON omits a zero value


def _read_metrics(doc: dict[str, Any], data: TelemetryData) -> None:
    for rm in doc["resourceMetrics"]:
        resource = dict(_attrs(rm.get("resource", {}).get("attributes")))
        instance = str(resource.get("service.instance.id", ""))
        for sm in rm.get("scopeMetrics", ()):
            for m in sm.get("metrics", ()):
                name = str(m["name"])
                for kind in ("sum", "gauge", "histogram"):
                    if kind in m:
                        body = m[kind]
                        break
                else:
                    continue  # exponential histograms and summaries are not used here
                delta = body.get("aggregationTemporality") == _DELTA
                bucket = data.points[name]
                for p in body.get("dataPoints", ()):
                    start = int(p.get("startTimeUnixNano", 0))
                    hist = None
                    if kind == "histogram":
                        hist = Hist(tuple(float(b) for b in p.get("explicitBounds", ())),
                                    tuple(int(c) for c in p.get("bucketCounts", ())),
                                    int(p.get("count", 0)), float(p.get("sum", 0.0)),
                                    float(p["min"]) if "min" in p else None,
                                    float(p["max"]) if "max" in p else None)
                        if len(hist.counts) != len(hist.bounds) + 1:
                            raise ValueError(f"{name}: {len(hist.counts)} bucket counts for "
                                             f"{len(hist.bounds)} bounds")
                        value = float(hist.count)
                    else:
                        value = _number(p)
                    t = int(p["timeUnixNano"])
                    if t >= data.since_ns:
                        bucket.append(Point(name, kind, _attrs(p.get("attributes")),
                                            (instance, start), delta, t, value, hist))


def _read_spans(doc: dict[str, Any], data: TelemetryData) -> None:
    for rs in doc["resourceSpans"]:
        for ss in rs.get("scopeSpans", ()):
            for s in ss.get("spans", ()):
                span = Span(str(s["name"]), int(s["startTimeUnixNano"]),
                            int(s["endTimeUnixNano"]), dict(_attrs(s.get("attributes"))))
                if span.start_ns >= data.since_ns:
                    data.spans.append(span)


def _read_logs(doc: dict[str, Any], data: TelemetryData) -> None:
    for rl in doc["resourceLogs"]:
        for sl in rl.get("scopeLogs", ()):
            for r in sl.get("logRecords", ()):
                body = r.get("body", {})
                text = _any_value(body) if isinstance(body, dict) and body else ""
                t = int(r.get("timeUnixNano", 0) or 0)
                if t >= data.since_ns:
                    data.logs.append((t, str(text)))
