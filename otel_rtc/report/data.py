"""Reading the OTLP JSON files of otel_rtc's embedded default, and the figures built on them.

Stdlib only: the demo's summary uses it without the ``report`` extra. The input is the
folder that :func:`otel_rtc.configure` writes in file mode: ``metrics.jsonl``,
``traces.jsonl`` and ``logs.jsonl``, one OTLP JSON export request per line (the
``otlpjsonfile`` format of the OpenTelemetry Collector).

Every figure here is built from exported points only, the way a backend would see them:
cumulative sums and histograms are read at their last point per run (a new start time or
a new process starts a new run, whose total adds to the earlier ones), delta points are
summed.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_rtc.core import names as n
from otel_rtc.core.load import OTHERS

__all__ = [
    "LATENCIES",
    "NAIVE_WINDOW_S",
    "SIGNAL_FILES",
    "Hist",
    "Point",
    "ReportError",
    "RoomLoadSeries",
    "Span",
    "StreamRate",
    "TelemetryData",
    "counter_totals",
    "drops_over_time",
    "histograms_by",
    "kernel_measured",
    "latency_by_attempt",
    "load",
    "quantile",
    "room_loads",
    "stream_rates",
]

SIGNAL_FILES: dict[str, str] = {"metrics": "metrics.jsonl", "traces": "traces.jsonl",
                                "logs": "logs.jsonl"}
"""The files of the embedded default, by signal."""

NAIVE_WINDOW_S = 2.0
"""The short read window of the naive rate: bytes since the previous export ÷ 2 s, the
mistake ``docs/rates.md`` describes (a report's bytes divided by a shorter window)."""


_KERNEL_WORDS = ("kernel", "socket", "rxq", "ovfl", "receive_buffer", "rcvbuf")
_DROP_WORDS = ("drop", "overflow", "ovfl")


def is_kernel_drop(name: str, attrs: Attrs = ()) -> bool:
    """Whether a counter counts packets the kernel dropped before the application read them.

    A socket's receive-queue overflow (``SO_RXQ_OVFL``) is counted by the application
    that reads it, under a name of its choosing: a counter whose name speaks of the
    kernel, the socket or its receive buffer and of drops or overflows
    (``chat.udp.receive_buffer.dropped`` in the example message server,
    ``otel_rtc.socket.dropped``, ``…kernel.rxq_overflow``…), or an
    ``otel_rtc.telemetry.dropped`` series whose component or reason does. Shown when
    present; otherwise the summary and the report say that the kernel's drops were not
    measured.
    """
    low = name.lower()
    if any(w in low for w in _KERNEL_WORDS) and any(w in low for w in _DROP_WORDS):
        return True
    if name == n.TELEMETRY_DROPPED:
        a = dict(attrs)
        text = f"{a.get(n.ATTR_COMPONENT, '')} {a.get(n.ATTR_DROP_REASON, '')}".lower()
        return any(w in text for w in _KERNEL_WORDS)
    return False

LATENCIES: tuple[tuple[str, str, str, dict[str, Any] | None], ...] = (
    ("queue_wait", n.QUEUE_WAIT_DURATION, "queue wait", None),
    ("processing", n.PROCESS_DURATION, "processing", None),
    ("receive_to_finish", n.RECEIVE_TO_FINISH_DURATION, "receive → finish", None),
    ("subscription", n.SUBSCRIPTION + ".duration", "subscription (successful attempts)",
     {n.ATTR_OUTCOME: "success"}),
)
"""``(key, histogram, label, only series with these attributes)`` of the latencies shown
by attempt kind (subscriptions: the attempts that succeeded)."""

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


# -- figures ---------------------------------------------------------------------------


def _runs(points: list[Point]) -> Iterator[list[Point]]:
    """Consecutive points of one series split where a new accumulation run starts."""
    run: list[Point] = []
    for p in points:
        if run and p.run != run[-1].run:
            yield run
            run = []
        run.append(p)
    if run:
        yield run


def over_time(points: list[Point]) -> list[tuple[int, float]]:
    """``(time_ns, total so far)`` of a counter's points (one series, time order).

    Cumulative points: each run's value adds to the totals of the runs before it. Delta
    points are summed.
    """
    out: list[tuple[int, float]] = []
    base = 0.0
    for run in _runs(points):
        if run[0].delta:
            for p in run:
                base += p.value
                out.append((p.time_ns, base))
        else:
            out.extend((p.time_ns, base + p.value) for p in run)
            base += run[-1].value
    return out


def counter_totals(data: TelemetryData, name: str, by: str | None = None
                   ) -> dict[Any, float]:
    """Final totals of a counter, summed by the value of attribute ``by``.

    With ``by=None`` (or a series without it) the key is ``None``.
    """
    out: dict[Any, float] = defaultdict(float)
    for attrs, pts in data.series(name).items():
        timeline = over_time(pts)
        if timeline:
            out[dict(attrs).get(by) if by else None] += timeline[-1][1]
    return dict(out)


def _final_hist(points: list[Point]) -> Hist | None:
    total: Hist | None = None
    for run in _runs(points):
        parts = [p.hist for p in run] if run[0].delta else [run[-1].hist]
        for h in parts:
            if h is None:
                continue
            if total is None:
                total = h
            elif h.bounds == total.bounds:
                total = total.merged(h)
    return total


def histograms_by(data: TelemetryData, name: str, by: str,
                  where: dict[str, Any] | None = None) -> dict[Any, Hist]:
    """Final histograms of metric ``name``, merged by the value of attribute ``by``.

    Args:
        data: The telemetry.
        name: Histogram metric name.
        by: Attribute whose value keys the result (``None`` where a series lacks it).
        where: Only series whose attributes have these values.
    """
    out: dict[Any, Hist] = {}
    for attrs, pts in data.series(name).items():
        a = dict(attrs)
        if where and any(a.get(k) != v for k, v in where.items()):
            continue
        h = _final_hist(pts)
        if h is None or not h.count:
            continue
        key = a.get(by)
        if key not in out:
            out[key] = h
        elif out[key].bounds == h.bounds:
            out[key] = out[key].merged(h)
    return out


def quantile(h: Hist, q: float) -> float | None:
    """The ``q`` quantile of a histogram, interpolated inside its bucket.

    Bounded by the recorded min and max; an estimate, as from any bucketed histogram.
    """
    if not h.count or not h.counts:
        return None
    rank = q * h.count
    seen = 0
    for i, c in enumerate(h.counts):
        if c and seen + c >= rank:
            lo = h.bounds[i - 1] if i > 0 else (h.min if h.min is not None else 0.0)
            hi = h.bounds[i] if i < len(h.bounds) else (h.max if h.max is not None else lo)
            if h.min is not None:
                lo = max(lo, h.min)
            if h.max is not None:
                hi = min(hi, h.max)
            return lo + (hi - lo) * max(0.0, rank - seen) / c
        seen += c
    return h.max


def latency_by_attempt(data: TelemetryData) -> dict[str, dict[Any, Hist]]:
    """Final histograms by attempt kind (``otel_rtc.attempt``) of each latency found.

    Returns:
        ``{key: {attempt kind: histogram}}``, keys in :data:`LATENCIES` order:
        ``queue_wait``, ``processing``, ``receive_to_finish`` (message handlers) and
        ``subscription`` (successful subscription attempts).
    """
    out: dict[str, dict[Any, Hist]] = {}
    for key, name, _, where in LATENCIES:
        by_kind = histograms_by(data, name, n.ATTR_ATTEMPT, where)
        if by_kind:
            out[key] = by_kind
    return out


@dataclass
class StreamRate:
    """Rates of one traffic stream (one series of ``otel_rtc.traffic.bytes``).

    Attributes:
        attrs: The stream's attributes (room, participant, direction, kind).
        mean: ``(time_ns, B/s)``: the processor's true rate: the increase since the
            previous export ÷ the time it covers (``window=span``).
        peak_1s: ``(time_ns, B/s)``: the processor's 1 s peak within that span.
        peak_5s: ``(time_ns, B/s)``: the 5 s peak (opt-in: ``OTEL_RTC_RATE_PEAKS``).
        naive: ``(time_ns, B/s)``: bytes since the previous export ÷
            :attr:`naive_window_s`.
        naive_window_s: The naive reader's short window (:data:`NAIVE_WINDOW_S`).
    """

    attrs: Attrs
    mean: list[tuple[int, float]] = field(default_factory=list)
    peak_1s: list[tuple[int, float]] = field(default_factory=list)
    peak_5s: list[tuple[int, float]] = field(default_factory=list)
    naive: list[tuple[int, float]] = field(default_factory=list)
    naive_window_s: float = NAIVE_WINDOW_S

    @property
    def label(self) -> str:
        """``room/participant direction kind``."""
        a = dict(self.attrs)
        who = "/".join(str(a[k]) for k in (n.ATTR_ROOM, n.ATTR_PARTICIPANT) if k in a)
        rest = " ".join(str(a[k]) for k in (n.ATTR_DIRECTION, n.ATTR_MEDIA_KIND)
                        if k in a)
        return f"{who} {rest}".strip() or "(all)"


def stream_rates(data: TelemetryData, source: str = n.TRAFFIC_BYTES
                 ) -> list[StreamRate]:
    """Per-stream true rates, peaks and the naive rate, busiest stream first.

    The busiest stream has the highest true rate of any export (each export's rate covers
    the data since the previous export).
    """
    streams: dict[Attrs, StreamRate] = {}

    def stream(attrs: Attrs) -> StreamRate:
        key = tuple(kv for kv in attrs if kv[0] not in (n.ATTR_RATE_WINDOW, n.ATTR_RATE_SUBWINDOW))
        if key not in streams:
            streams[key] = StreamRate(key)
        return streams[key]

    for attrs, pts in data.series(source + ".rate").items():
        if dict(attrs).get(n.ATTR_RATE_WINDOW) == "span":
            stream(attrs).mean = [(p.time_ns, p.value) for p in pts]
    for attrs, pts in data.series(source + ".rate.peak").items():
        sub = dict(attrs).get(n.ATTR_RATE_SUBWINDOW)
        if sub in ("1s", "5s"):
            setattr(stream(attrs), "peak_" + sub, [(p.time_ns, p.value) for p in pts])
    for attrs, pts in data.series(source).items():
        if attrs in streams:
            streams[attrs].naive = [(t1, max(0.0, v1 - v0) / NAIVE_WINDOW_S) for (_, v0), (t1, v1)
                                    in itertools.pairwise(over_time(pts))]
    # A stream whose every rate is 0 was only measured while idle (e.g. between a final
    # flush and the shutdown export): nothing to show for it.
    found = [s for s in streams.values() if any(v > 0 for _, v in s.mean)]
    found.sort(key=lambda s: max(v for _, v in s.mean), reverse=True)
    return found


@dataclass
class RoomLoadSeries:
    """Traffic load of one room.

    Attributes:
        room: The room.
        score: ``(time_ns, score/s)`` of the room, one point per export.
        at_ns: The export the snapshot fields describe: the one where the rooms' scores
            summed highest (each export's load covers only the data since the previous
            one, so the last export of a run that wound down may be idle).
        shares: The top participants at ``at_ns`` as ``(participant, share)``, largest
            first (opt-in output: ``OTEL_RTC_LOAD_TOP_N``).
        others: The share of everyone else at ``at_ns``, if reported.
        participants: Participants with traffic at ``at_ns``, if reported.
    """

    room: str
    score: list[tuple[int, float]] = field(default_factory=list)
    at_ns: int = 0
    shares: list[tuple[str, float]] = field(default_factory=list)
    others: float | None = None
    participants: int | None = None

    @property
    def score_at(self) -> float:
        """The room's score at :attr:`at_ns` (0 when it had no point then)."""
        return next((v for t, v in self.score if t == self.at_ns), 0.0)


def room_loads(data: TelemetryData) -> list[RoomLoadSeries]:
    """Rooms by their score at the busiest export, highest first."""
    rooms: dict[str, RoomLoadSeries] = {}
    for attrs, pts in data.series(n.LOAD_SCORE).items():
        a = dict(attrs)
        if n.ATTR_ROOM in a and n.ATTR_PARTICIPANT not in a:
            room = str(a[n.ATTR_ROOM])
            rooms.setdefault(room, RoomLoadSeries(room)).score = [(p.time_ns, p.value) for p in pts]
    totals: dict[int, float] = defaultdict(float)
    for r in rooms.values():
        for t, v in r.score:
            totals[t] += v
    if not any(v > 0 for v in totals.values()):
        return []  # no export measured any traffic
    # The busiest export; the latest of equals (an idle run ends with zeros).
    at = max(totals, key=lambda t: (totals[t], t))
    for attrs, pts in data.series(n.LOAD_SHARE).items():
        a = dict(attrs)
        room, who = str(a.get(n.ATTR_ROOM)), str(a.get(n.ATTR_PARTICIPANT))
        share = next((p.value for p in pts if p.time_ns == at), None)
        if room not in rooms or share is None:
            continue
        if who == OTHERS:
            rooms[room].others = share
        else:
            rooms[room].shares.append((who, share))
    for attrs, pts in data.series(n.LOAD_PARTICIPANTS).items():
        room = str(dict(attrs).get(n.ATTR_ROOM))
        count = next((p.value for p in pts if p.time_ns == at), None)
        if room in rooms and count is not None:
            rooms[room].participants = int(count)
    for r in rooms.values():
        r.at_ns = at
        r.shares.sort(key=lambda kv: -kv[1])
    return sorted(rooms.values(), key=lambda r: r.score_at, reverse=True)


def drop_where(name: str, attrs: Attrs) -> str | None:
    """Where a drop series happened: ``buffer``, ``kernel``, ``exporter`` or ``other``.

    ``None`` for the series of ``otel_rtc.telemetry.dropped`` that repeat
    ``otel_rtc.buffer.dropped`` (component ``buffer``), so nothing is counted twice.
    """
    if name == n.BUFFER_DROPPED:
        return "buffer"
    if is_kernel_drop(name, attrs):
        return "kernel"
    component = str(dict(attrs).get(n.ATTR_COMPONENT, ""))
    if component == "buffer":
        return None
    return "exporter" if component.startswith("export") else "other"


def drops_over_time(data: TelemetryData) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """``{(where, label): [(time_ns, total so far)]}`` of every drop counter."""
    out: dict[tuple[str, str], list[tuple[int, float]]] = {}
    kernel = sorted(name for name in data.points
                    if name != n.TELEMETRY_DROPPED and is_kernel_drop(name))
    for name in (n.BUFFER_DROPPED, *kernel, n.TELEMETRY_DROPPED):
        for attrs, pts in data.series(name).items():
            where = drop_where(name, attrs)
            if where is None:
                continue
            a = dict(attrs)
            what = a.get(n.ATTR_BUFFER_NAME) or a.get(n.ATTR_COMPONENT) or name
            reason = a.get(n.ATTR_DROP_REASON)
            label = f"{what}: {reason}" if reason else str(what)
            timeline = over_time(pts)
            first = pts[0]
            if not first.delta and 0 < first.run[1] < first.time_ns:
                # A cumulative series was 0 at its start time: the drops happened after.
                timeline.insert(0, (first.run[1], 0.0))
            out[(where, label)] = timeline
    return out


def kernel_measured(data: TelemetryData) -> bool:
    """Whether the telemetry has a kernel drop counter at all."""
    return any(is_kernel_drop(name) for name, pts in data.points.items() if pts) or any(
        is_kernel_drop(n.TELEMETRY_DROPPED, p.attrs)
        for p in data.points.get(n.TELEMETRY_DROPPED, ()))
