"""What the report shows, computed from the exported points alone (stdlib only).

Latency by attempt kind, per-stream true rates and peaks against the naive rate, the
traffic load by room, and drops over time, from the :class:`~otel_rtc.report.data.TelemetryData`
that :func:`~otel_rtc.report.data.load` reads; the demo's summary prints them and
:mod:`otel_rtc.report.charts` draws them.

Every figure here is built from exported points only, the way a backend would see them:
cumulative sums and histograms are read at their last point per run (a new start time or
a new process starts a new run, whose total adds to the earlier ones), delta points are
summed.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from otel_rtc.core import names as n
from otel_rtc.core.load import OTHERS
from otel_rtc.report.data import Attrs, Hist, Point, TelemetryData

__all__ = [
    "LATENCIES",
    "NAIVE_WINDOW_S",
    "RoomLoadSeries",
    "StreamRate",
    "counter_totals",
    "drop_where",
    "drops_over_time",
    "histograms_by",
    "is_kernel_drop",
    "kernel_measured",
    "latency_by_attempt",
    "over_time",
    "quantile",
    "room_loads",
    "stream_rates",
]

NAIVE_WINDOW_S = 2.0
"""The short read window of the naive rate: bytes since the previous export ÷ 2 s, the
mistake ``docs/rates.md`` describes (a report's bytes divided by a shorter window)."""


LATENCIES: tuple[tuple[str, str, str, dict[str, Any] | None], ...] = (
    ("queue_wait", n.QUEUE_WAIT_DURATION, "queue wait", None),
    ("processing", n.PROCESS_DURATION, "processing", None),
    ("receive_to_finish", n.RECEIVE_TO_FINISH_DURATION, "receive → finish", None),
    ("subscription", n.SUBSCRIPTION + ".duration", "subscription (successful attempts)",
     {n.ATTR_OUTCOME: "success"}),
)
"""``(key, histogram, label, only series with these attributes)`` of the latencies shown
by attempt kind (subscriptions: the attempts that succeeded)."""

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
