"""Derived metrics shared by the in-process and the collector processors (pure).

One :class:`Deriver` (one :class:`~otel_rtc.core.rates.RateEngine`) serves the rates and
the traffic load: every source point is observed once. It holds the rules for which
points feed it (:meth:`Deriver.selects`, :func:`source_kind`), names the outputs, and
turns each emission's readings into derived gauges with stable names, units and
attributes (``docs/processor.md`` has the table):

* ``<source>.rate`` (``<unit>/s``): attribute ``otel_rtc.rate.window`` = ``"span"`` for
  the mean over the reading's span (the data since the previous emission; the point's
  start and time are that span), plus opt-in trailing windows (``"60s"``, ...);
* ``<source>.rate.peak`` (``<unit>/s``): attribute ``otel_rtc.rate.subwindow`` = ``"1s"``
  (more sub-windows are opt-in), the peak within the reading's span;
* ``otel_rtc.traffic.load.*``: per-room load rates, score and participant count, and
  (opt-in) the score and share of the top-N participants plus ``_other``;
* ``otel_rtc.rates.anomalies`` (a cumulative sum): anomalies of accepted points and of
  series, by kind (rejections go to ``otel_rtc.telemetry.dropped``).

Every derived point keeps the source point's attributes. A peak or window the data
cannot support is not emitted. The settings a deriver follows (and how they are read from
the environment) are :mod:`otel_rtc.core.processor_settings`.

Pure module: stdlib and otel_rtc's pure core only (it runs inside Rotel's embedded
interpreter). Not thread-safe: callers hold a lock.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from otel_rtc.core import names
from otel_rtc.core.clock import Clock, wall_clock_ns
from otel_rtc.core.load import DIRECTIONS, MEDIA, room_loads
from otel_rtc.core.processor_settings import ProcessorSettings
from otel_rtc.core.rates import ACCEPT_REASONS, REJECT_REASONS, RateEngine

RATE_SUFFIX = ".rate"
PEAK_SUFFIX = ".rate.peak"
ATTR_WINDOW = names.ATTR_RATE_WINDOW
ATTR_SUBWINDOW = names.ATTR_RATE_SUBWINDOW
ATTR_ANOMALY = "otel_rtc.rate.anomaly"
ATTR_COMPONENT = names.ATTR_COMPONENT
SPAN_LABEL = "span"
"""``otel_rtc.rate.window`` value of the mean over the reading's span."""

ATTR_ROOM = names.ATTR_ROOM
ATTR_PARTICIPANT = names.ATTR_PARTICIPANT
ATTR_DIRECTION = names.ATTR_DIRECTION
ATTR_MEDIA = names.ATTR_MEDIA_KIND

TRAFFIC_PACKETS = names.TRAFFIC_PACKETS
TRAFFIC_BYTES = names.TRAFFIC_BYTES
_TRAFFIC_UNITS = {TRAFFIC_PACKETS: "packets", TRAFFIC_BYTES: "bytes"}

LOAD_PREFIX = names.LOAD_PREFIX
LOAD_SCORE = names.LOAD_SCORE
LOAD_SHARE = names.LOAD_SHARE
LOAD_BYTES_RATE = names.LOAD_BYTES_RATE
LOAD_PACKETS_RATE = names.LOAD_PACKETS_RATE
LOAD_PARTICIPANTS = names.LOAD_PARTICIPANTS
ANOMALIES = "otel_rtc.rates.anomalies"
SERIES = "otel_rtc.rates.series"
"""Gauge: series the engine tracks. The in-process processor emits it on every export, so
its scope marks a resource whose app derives in-process (the collector then passes it
through instead of deriving the same series again)."""

RATE = 1
"""Bit of :meth:`Deriver.selects`: the metric gets ``.rate`` / ``.rate.peak``."""
LOAD = 2
"""Bit of :meth:`Deriver.selects`: the metric feeds the traffic load."""

Attrs = tuple[tuple[str, object], ...]
"""Attributes as a sorted tuple of ``(key, value)`` pairs (hashable)."""

DerivedGroups = dict[str, tuple[str, str, list[tuple[Attrs, float, int, int]]]]
"""Derived gauge points grouped by metric name: ``name -> (unit, description, points)``
with each point ``(attrs, value, start_ns, time_ns)``; names in order of first appearance."""


def rate_unit(unit: str, histogram: bool = False) -> str:
    """Unit of a rate of ``unit``: ``By`` → ``By/s``, ``{packet}`` → ``{packet}/s``.

    Histograms count measurements: ``{measurement}/s``. A dimensionless or empty unit
    becomes ``1/s``.
    """
    if histogram:
        return "{measurement}/s"
    if not unit or unit == "1":
        return "1/s"
    return f"{unit}/s"


def seconds_label(seconds: float) -> str:
    """``10.0`` → ``"10s"``, ``0.5`` → ``"0.5s"`` (stable attribute values)."""
    return f"{seconds:g}s"


def attrs_key(mapping: Mapping[str, object] | Iterable[tuple[str, object]]) -> Attrs:
    """Sorted, hashable form of attributes; unhashable values become ``str``."""
    if isinstance(mapping, Mapping):
        # Fast path, same result: string keys (unique in a mapping, so the sort never
        # compares values) and hashable values are kept as they are.
        try:
            out = tuple(sorted(mapping.items()))
            hash(out)
        except TypeError:
            pass
        else:
            if all(isinstance(k, str) for k, _ in out):
                return out
        items: Iterable[tuple[object, object]] = mapping.items()
    else:
        items = mapping
    res = []
    for k, v in items:
        if isinstance(v, list):
            v = tuple(v)
        try:
            hash(v)
        except TypeError:
            v = str(v)
        res.append((str(k), v))
    res.sort(key=_first)
    return tuple(res)


_first = itemgetter(0)


def source_kind(is_sum: bool, monotonic: bool, is_histogram: bool, temporality: int
                ) -> tuple[bool, bool] | None:
    """Whether a metric's points can feed the engine: ``(cumulative, histogram)`` or ``None``.

    Monotonic sums and histograms (their count) with a cumulative (2) or delta (1) OTLP
    temporality qualify; gauges, non-monotonic sums and anything else do not.
    """
    if temporality not in (1, 2):
        return None
    if is_sum:
        return (temporality == 2, False) if monotonic else None
    if is_histogram:
        return temporality == 2, True
    return None


def is_rejection(reason: str) -> bool:
    """Whether a reason means the point was dropped (vs an accepted anomaly)."""
    return reason in REJECT_REASONS or reason == "missing_attributes"


class Deriver:
    """One engine, the selection rules and the naming of every derived output.

    Args:
        settings: Rates, load and selection settings.
        clock: Clock of the engine (default reading time).
        on_anomaly: Called with every rejection and anomaly reason (the engine's, plus
            ``missing_attributes`` for a traffic point without room, direction or media).
    """

    def __init__(self, settings: ProcessorSettings | None = None, *,
                 clock: Clock = wall_clock_ns,
                 on_anomaly: Callable[[str], None] | None = None) -> None:
        st = settings if settings is not None else ProcessorSettings()
        self.settings = st
        self._on_anomaly = on_anomaly
        self.engine = RateEngine(st.rate, clock=clock, on_anomaly=on_anomaly)
        self._include = _NameFilter(st.include if st.rates_enabled else ())
        self._load = st.load_enabled
        self._selects: dict[str, int] = {}
        self._names: dict[tuple[str, str, bool], tuple[str, str, str, str, str]] = {}
        self._span_pair = (ATTR_WINDOW, SPAN_LABEL)
        self._peak_pairs = [(ATTR_SUBWINDOW, seconds_label(p))
                            for p in st.rate.peak_subwindows_s]
        self._window_pairs = [(ATTR_WINDOW, seconds_label(w)) for w in st.rate.windows_s]
        self._room_attrs: dict[Hashable, Attrs] = {}

    def selects(self, name: str) -> int:
        """:data:`RATE` / :data:`LOAD` bits of metric ``name`` (0: not used; cached)."""
        sel = self._selects.get(name)
        if sel is None:
            sel = 0
            if self._include(name):
                sel |= RATE
            if self._load and name in _TRAFFIC_UNITS:
                sel |= LOAD
            if len(self._selects) < 4096:
                self._selects[name] = sel
        return sel

    def tag(self, name: str, unit: str, description: str, attrs: Attrs, histogram: bool,
            sel: int, group: Hashable = ()) -> tuple[Any, ...] | None:
        """What a new series' readings become.

        ``(metric names and units or None, span attributes, peak attributes, window
        attributes, load key or None)``: one small tuple per series, the names shared by
        every series of the metric. Built once per series (on its first point) and
        attached to it in the engine.
        ``None`` (counted ``missing_attributes``) when the series only feeds the load
        and lacks room, direction or media kind. ``group`` (the resource in a collector)
        is part of the load key: rooms are per group.
        """
        names = None
        span_attrs: Attrs = ()
        peak_attrs: tuple[Attrs, ...] = ()
        win_attrs: tuple[Attrs, ...] = ()
        if sel & RATE:
            names = self._names.get((name, unit, histogram))
            if names is None:  # shared by every series of the metric
                if len(self._names) >= 1024:
                    self._names.clear()
                names = self._names[(name, unit, histogram)] = (
                    name + RATE_SUFFIX, rate_unit(unit, histogram),
                    f"Rate of {name}: mean over the data since the previous export.",
                    name + PEAK_SUFFIX,
                    f"Peak rate of {name} over short sub-windows, from real samples.")
            span_attrs = (*attrs, self._span_pair)
            peak_attrs = tuple((*attrs, p) for p in self._peak_pairs)
            if self._window_pairs:
                win_attrs = tuple((*attrs, p) for p in self._window_pairs)
        lkey = None
        if sel & LOAD and not histogram:
            lkey = _load_key(name, attrs, group)
            if lkey is None:
                self._note("missing_attributes")
        if names is None and lkey is None:
            return None
        return names, span_attrs, peak_attrs, win_attrs, lkey

    def _note(self, reason: str) -> None:
        if self._on_anomaly is not None:
            try:
                self._on_anomaly(reason)
            except Exception:  # a broken callback must not break the caller
                pass

    def derive_into(self, groups: DerivedGroups, now_ns: int,
                    keys: Iterable[Hashable] | None = None, min_span_s: float = 0.0) -> int:
        """Read the engine (``keys``: these series only) and append the derived points.

        ``min_span_s`` is :meth:`RateEngine.read`'s (a collector's reading span).

        Returns:
            The number of points appended.
        """
        added = 0
        rows = []
        for r in self.engine.read(now_ns, keys, min_span_s):
            names, span_attrs, peak_attrs, win_attrs, lkey = r.tag
            if names is not None:
                rname, runit, rdesc, pname, pdesc = names
                start, end = r.start_ns, r.time_ns
                g = groups.get(rname)
                if g is None:
                    g = groups[rname] = (runit, rdesc, [])
                pts = g[2]
                pts.append((span_attrs, r.mean, start, end))
                added += 1
                for a, w in zip(win_attrs, r.windows, strict=True):
                    if w is not None:
                        pts.append((a, w[0], w[1], w[2]))
                        added += 1
                g = groups.get(pname)
                if g is None:
                    g = groups[pname] = (runit, pdesc, [])
                pts = g[2]
                for a, p in zip(peak_attrs, r.peaks, strict=True):
                    if p is not None:
                        pts.append((a, p, start, end))
                        added += 1
            if lkey is not None:
                rows.append((lkey, r.mean, r.start_ns, r.time_ns))
        if rows:
            added += self._load_into(groups, rows)
        return added

    def _load_into(self, groups: DerivedGroups, rows: list[Any]) -> int:
        """Per-room load points of one reading (rooms keyed per group)."""
        by_group: dict[Hashable, list[Any]] = {}
        for (group, *key), rate, t0, t1 in rows:
            by_group.setdefault(group, []).append((tuple(key), rate, t0, t1))
        cache = self._room_attrs
        if len(cache) >= 50_000:
            cache.clear()
        added = 0
        isfinite = math.isfinite

        def add(name: str, unit: str, desc: str, attrs: Attrs, value: float, t0: int,
                t1: int) -> None:
            nonlocal added
            if isfinite(value):
                g = groups.get(name)
                if g is None:
                    g = groups[name] = (unit, desc, [])
                g[2].append((attrs, value, t0, t1))
                added += 1

        cfg = self.settings.load
        for group_rows in by_group.values():
            for room, load in sorted(room_loads(group_rows, cfg).items()):
                t0, t1 = load.start_ns, load.time_ns
                r = cache.get(room)
                if r is None:
                    r = cache[room] = ((ATTR_ROOM, room),)
                for (direction, media, u), v in sorted(load.by_stream.items()):
                    attrs = cache.get((room, direction, media))
                    if attrs is None:
                        attrs = cache[(room, direction, media)] = (
                            (ATTR_DIRECTION, direction), (ATTR_MEDIA, media), *r)
                    if u == "bytes":
                        add(LOAD_BYTES_RATE, "By/s", "Room traffic rate in bytes.", attrs, v,
                            t0, t1)
                    else:
                        add(LOAD_PACKETS_RATE, "{packet}/s", "Room traffic rate in packets.",
                            attrs, v, t0, t1)
                add(LOAD_SCORE, "{score}/s", _SCORE_DESC, r, load.score, t0, t1)
                add(LOAD_PARTICIPANTS, "{participant}",
                    "Participants with traffic in the room.", r, float(load.participants),
                    t0, t1)
                parts = list(load.top)
                if load.others.participants or load.others.score:
                    parts.append(load.others)
                for p in parts:
                    pa = cache.get((p.participant, room, None))
                    if pa is None:
                        pa = cache[(p.participant, room, None)] = (
                            (ATTR_PARTICIPANT, p.participant), (ATTR_ROOM, room))
                    add(LOAD_SCORE, "{score}/s", _SCORE_DESC, pa, p.score, t0, t1)
                    add(LOAD_SHARE, "1", "Participant's share of the room's load score.", pa,
                        p.share, t0, t1)
        return added

    def anomaly_points(self, component: str) -> list[tuple[Attrs, int]]:
        """``otel_rtc.rates.anomalies`` points: ``(attrs, count)`` per anomaly kind so far."""
        counts = self.engine.anomaly_counts()
        return [(((ATTR_COMPONENT, component), (ATTR_ANOMALY, k)), n)
                for k, n in sorted(counts.items()) if k in ACCEPT_REASONS]

    def __len__(self) -> int:
        return len(self.engine)


SERIES_DESC = ("Series the rate engine tracks (bounded by OTEL_RTC_RATE_MAX_SERIES); emitted "
               "on every export.")
ANOMALIES_UNIT = "{anomaly}"
ANOMALIES_DESC = ("Anomalies of the rate processor's input, by kind (reset, gap, short_span, "
                  "start_time_change, stale, quiet, wrap); rejections are in "
                  "otel_rtc.telemetry.dropped.")

_SCORE_DESC = ("Traffic load score per second: weighted bits/s plus weighted packets/s "
               "(see docs/rates.md).")


def _load_key(name: str, attrs: Attrs, group: Hashable) -> tuple[Any, ...] | None:
    unit = _TRAFFIC_UNITS.get(name)
    d = dict(attrs)
    room = d.get(ATTR_ROOM)
    direction = d.get(ATTR_DIRECTION)
    media = d.get(ATTR_MEDIA)
    if unit is None or not isinstance(room, str) or direction not in DIRECTIONS \
            or media not in MEDIA:
        return None
    return (group, room, str(d.get(ATTR_PARTICIPANT, "")), direction, media, unit)


class _NameFilter:
    """Matches metric names against fnmatch patterns; derived names never match."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        self._re = (re.compile("|".join(fnmatch.translate(p) for p in self.patterns))
                    if self.patterns else None)

    def __call__(self, name: str) -> bool:
        return (self._re is not None and self._re.match(name) is not None
                and not name.endswith((RATE_SUFFIX, PEAK_SUFFIX))
                and not name.startswith(LOAD_PREFIX) and name not in (ANOMALIES, SERIES))
