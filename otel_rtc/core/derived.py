"""Derived metrics shared by the in-process and the collector processors (pure).

Turns counter points into the derived series both processors emit, with stable names,
units and attributes (``docs/processor.md`` has the table):

* ``<source>.rate`` (gauge, ``<unit>/s``): mean rate per trailing window, attribute
  ``otel_rtc.rate.window`` = ``"10s"``, ``"60s"``, ... plus ``"span"`` for the mean over
  the series' own span (start of accumulation → last point);
* ``<source>.rate.peak`` (gauge, ``<unit>/s``): peak rate over each sub-window, attribute
  ``otel_rtc.rate.subwindow`` = ``"1s"``, ``"5s"``, ...;
* ``otel_rtc.traffic.load.*``: per-room load rates, score, participant count, and the
  score and share of the top-N participants plus ``_others``.

Every derived point keeps the source point's attributes. A window, peak or share the
data cannot support (``None`` in the core) is simply not emitted.

Pure module: stdlib and otel_rtc's pure core only (it runs inside Rotel's embedded
interpreter). Not thread-safe: callers hold a lock.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

from otel_rtc.core.clock import NS_PER_S, Clock, wall_clock_ns
from otel_rtc.core.env import env_value, parse_bool
from otel_rtc.core.load import (
    DIRECTIONS,
    MEDIA,
    LoadWeights,
    TrafficLoadCalculator,
    TrafficLoadConfig,
)
from otel_rtc.core.rates import REJECT_REASONS, RateConfig, RateEngine

_logger = logging.getLogger("otel_rtc")

RATE_SUFFIX = ".rate"
PEAK_SUFFIX = ".rate.peak"
ATTR_WINDOW = "otel_rtc.rate.window"
ATTR_SUBWINDOW = "otel_rtc.rate.subwindow"
SPAN_LABEL = "span"
"""``otel_rtc.rate.window`` value of the mean over the series' own span."""

ATTR_ROOM = "otel_rtc.room"
ATTR_PARTICIPANT = "otel_rtc.participant"
ATTR_DIRECTION = "otel_rtc.direction"
ATTR_MEDIA = "otel_rtc.media.kind"

TRAFFIC_PACKETS = "otel_rtc.traffic.packets"
TRAFFIC_BYTES = "otel_rtc.traffic.bytes"
_TRAFFIC_UNITS = {TRAFFIC_PACKETS: "packets", TRAFFIC_BYTES: "bytes"}

LOAD_SCORE = "otel_rtc.traffic.load.score"
LOAD_SHARE = "otel_rtc.traffic.load.share"
LOAD_BYTES_RATE = "otel_rtc.traffic.load.bytes.rate"
LOAD_PACKETS_RATE = "otel_rtc.traffic.load.packets.rate"
LOAD_PARTICIPANTS = "otel_rtc.traffic.load.participants"

DEFAULT_INCLUDE: tuple[str, ...] = ("otel_rtc.traffic.packets", "otel_rtc.traffic.bytes")
"""Source metrics (fnmatch patterns) that get ``.rate``/``.rate.peak`` by default."""

Attrs = tuple[tuple[str, object], ...]
"""Attributes as a sorted tuple of ``(key, value)`` pairs (hashable)."""


@dataclass(frozen=True)
class DerivedPoint:
    """One derived gauge point.

    Attributes:
        name: Metric name.
        unit: UCUM unit.
        description: Metric description.
        attrs: Attributes (source attributes plus the derived ones).
        value: The value.
        start_ns: Start of the span the value describes.
        time_ns: Time of the point.
    """

    name: str
    unit: str
    description: str
    attrs: Attrs
    value: float
    start_ns: int
    time_ns: int


DerivedGroups = dict[str, tuple[str, str, list[tuple[Attrs, float, int, int]]]]
"""Derived points grouped by metric name: ``name -> (unit, description, points)`` with
each point ``(attrs, value, start_ns, time_ns)``; names in order of first appearance.
The cheap form the processors build their output from (no :class:`DerivedPoint`)."""


def flatten(groups: DerivedGroups) -> list[DerivedPoint]:
    """:class:`DerivedPoint` s of ``groups``, metric by metric."""
    return [DerivedPoint(name, unit, desc, a, v, start, t)
            for name, (unit, desc, pts) in groups.items() for a, v, start, t in pts]


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


class NameFilter:
    """Matches metric names against fnmatch patterns (cached per name).

    Args:
        patterns: e.g. ``("otel_rtc.traffic.*", "app.bytes")``; empty matches nothing.
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        self._re = (re.compile("|".join(fnmatch.translate(p) for p in self.patterns))
                    if self.patterns else None)
        self._cache: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        """Whether ``name`` is selected (derived names never are)."""
        hit = self._cache.get(name)
        if hit is None:
            hit = (self._re is not None and self._re.match(name) is not None
                   and not name.endswith((RATE_SUFFIX, PEAK_SUFFIX))
                   and not name.startswith("otel_rtc.traffic.load."))
            if len(self._cache) < 10_000:
                self._cache[name] = hit
        return hit


class RateDeriver:
    """A :class:`RateEngine` plus the naming of its ``.rate`` / ``.rate.peak`` outputs.

    Args:
        config: Windows, peaks and bounds of the engine.
        include: Source metric name patterns.
        clock: Clock of the engine (eviction, default ``now``).
        on_drop: Reason callback (rejected points and anomalies of accepted ones).
    """

    def __init__(self, config: RateConfig | None = None, include: Sequence[str] = DEFAULT_INCLUDE,
                 *, clock: Clock = wall_clock_ns,
                 on_drop: Callable[[str], None] | None = None) -> None:
        config = config if config is not None else RateConfig()
        self.engine = RateEngine(config, clock=clock, on_drop=on_drop)
        self.selects = NameFilter(include)
        # key -> (name, unit, description, attrs, histogram)
        self._meta: dict[Hashable, tuple[str, str, str, Attrs, bool]] = {}
        # key -> everything derive() needs, built once per series (see _output)
        self._out: dict[Hashable, tuple] = {}
        self._windows = [(w, seconds_label(w), int(w * NS_PER_S)) for w in config.windows_s]
        self._peaks = [(p, seconds_label(p)) for p in config.peak_subwindows_s]
        self._names: dict[tuple[str, str, bool], tuple[str, str, str, str, str]] = {}
        self._span_pair = (ATTR_WINDOW, SPAN_LABEL)
        self._window_pairs = [(ATTR_WINDOW, label) for _w, label, _ns in self._windows]
        self._peak_pairs = [(ATTR_SUBWINDOW, label) for _p, label in self._peaks]

    def observe(self, key: Hashable, name: str, unit: str, description: str, attrs: Attrs,
                value: float, time_ns: int, start_ns: int | None, cumulative: bool,
                histogram: bool = False) -> bool:
        """Feed one point of series ``key`` (its name/unit/attrs are remembered)."""
        ok = self.engine.observe(key, value, time_ns, start_ns=start_ns, cumulative=cumulative)
        if ok and key not in self._meta:
            self._meta[key] = (name, unit, description, attrs, histogram)
        return ok

    def evict(self, now_ns: int) -> None:
        """Forget stale series (and their names)."""
        if self.engine.evict_stale(now_ns):
            live = self.engine._series  # same-package access: keys still tracked
            for k in [k for k in self._meta if k not in live]:
                del self._meta[k]
                self._out.pop(k, None)

    def _output(self, key: Hashable) -> tuple | None:
        """Names, unit, descriptions and attribute tuples of ``key``'s derived points.

        Built on the first derive and reused, so every emission of a series carries the
        very same attribute tuples (the processors cache their converted forms by them).
        """
        meta = self._meta.get(key)
        if meta is None:
            return None
        name, unit, _desc, attrs, hist = meta
        names = self._names.get((name, unit, hist))
        if names is None:  # shared by every series of the metric
            if len(self._names) >= 1024:
                self._names.clear()
            names = self._names[(name, unit, hist)] = (
                name + RATE_SUFFIX, rate_unit(unit, hist),
                f"Rate of {name}: mean per trailing window and over the series' own span.",
                name + PEAK_SUFFIX,
                f"Peak rate of {name} over short sub-windows, from real samples.")
        out = (*names, (*attrs, self._span_pair),
               [(*attrs, pair) for pair in self._window_pairs],
               [(*attrs, pair) for pair in self._peak_pairs])
        if len(self._out) < 2 * self.engine.config.max_series + 16:
            self._out[key] = out
        return out

    def derive_into(self, groups: DerivedGroups, keys: Iterable[Hashable] | None, now_ns: int,
                    times: Mapping[Hashable, int] | None = None) -> int:
        """Append the derived points of ``keys`` (``None``: every series) to ``groups``.

        Args:
            groups: Output, by metric name (see :data:`DerivedGroups`).
            keys: Series to derive.
            now_ns: Evaluation time.
            times: Per-series evaluation time overriding ``now_ns`` (the collector uses
                each series' last point, so replayed timestamps work).

        Returns:
            The number of points appended.
        """
        values = self.engine.rate_values
        outs = self._out
        windows = [w_ns for _w, _l, w_ns in self._windows]
        horizon = windows[-1]
        added = 0
        for key in (list(self._meta) if keys is None else keys):
            out = outs.get(key)
            if out is None:
                out = self._output(key)
                if out is None:
                    continue
            now = times.get(key, now_ns) if times is not None else now_ns
            r = values(key, now)
            if r is None:
                continue
            mean, span_s, wvals, pvals, _total = r
            rname, runit, rdesc, pname, pdesc, span_attrs, wattrs, pattrs = out
            pts = [(a, v, now - w_ns, now)
                   for a, v, w_ns in zip(wattrs, wvals, windows, strict=True) if v is not None]
            if mean is not None:
                pts.insert(0, (span_attrs, mean, now - int(span_s * NS_PER_S), now))
            if pts:
                g = groups.get(rname)
                if g is None:
                    g = groups[rname] = (runit, rdesc, [])
                g[2].extend(pts)
                added += len(pts)
            start = now - horizon
            pts = [(a, v, start, now) for a, v in zip(pattrs, pvals, strict=True)
                   if v is not None]
            if pts:
                g = groups.get(pname)
                if g is None:
                    g = groups[pname] = (runit, pdesc, [])
                g[2].extend(pts)
                added += len(pts)
        return added

    def derive(self, keys: Iterable[Hashable] | None, now_ns: int,
               times: Mapping[Hashable, int] | None = None) -> list[DerivedPoint]:
        """Derived points of ``keys`` (``None``: every series) at ``now_ns``, series by series.

        Args:
            keys: Series to derive.
            now_ns: Evaluation time.
            times: Per-series evaluation time overriding ``now_ns``.
        """
        out: list[DerivedPoint] = []
        for key in (list(self._meta) if keys is None else keys):
            groups: DerivedGroups = {}
            self.derive_into(groups, (key,), now_ns, times)
            out.extend(flatten(groups))
        return out

    def __len__(self) -> int:
        return len(self.engine)


class LoadDeriver:
    """A :class:`TrafficLoadCalculator` fed from ``otel_rtc.traffic.{packets,bytes}``.

    Args:
        config: Top-N, window, rate engine and weights.
        clock: Clock of the calculator.
        on_drop: Reason callback.
    """

    def __init__(self, config: TrafficLoadConfig | None = None, *,
                 clock: Clock = wall_clock_ns,
                 on_drop: Callable[[str], None] | None = None) -> None:
        config = config if config is not None else TrafficLoadConfig()
        self.calc = TrafficLoadCalculator(config, clock=clock, on_drop=on_drop)
        self.config = config
        self._on_drop = on_drop
        self._attr_cache: dict[Hashable, Attrs] = {}

    @staticmethod
    def selects(name: str) -> bool:
        """Whether metric ``name`` feeds the load (packets and bytes counters)."""
        return name in _TRAFFIC_UNITS

    def observe(self, name: str, attrs: Mapping[str, object], value: float, time_ns: int,
                start_ns: int | None, cumulative: bool) -> bool:
        """Feed one traffic counter point.

        Returns:
            ``False`` if rejected; a point without room, direction or media kind is
            reported as ``missing_attributes``.
        """
        unit = _TRAFFIC_UNITS.get(name)
        room = attrs.get(ATTR_ROOM)
        direction = attrs.get(ATTR_DIRECTION)
        media = attrs.get(ATTR_MEDIA)
        if unit is None or not isinstance(room, str) or direction not in DIRECTIONS \
                or media not in MEDIA:
            if self._on_drop is not None:
                self._on_drop("missing_attributes")
            return False
        participant = attrs.get(ATTR_PARTICIPANT, "")
        return self.calc.update(room, str(participant), str(direction), str(media), unit,
                                value, time_ns, start_ns=start_ns, cumulative=cumulative)

    def series_key(self, name: str, attrs: Mapping[str, object]) -> Hashable | str:
        """The calculator's series key of a point, or the reason it would be rejected.

        For callers that see the same series again and again (the collector): they
        resolve the key once and feed each point with :meth:`observe_key`, which is
        exactly :meth:`observe` without re-reading the attributes.
        """
        unit = _TRAFFIC_UNITS.get(name)
        room = attrs.get(ATTR_ROOM)
        direction = attrs.get(ATTR_DIRECTION)
        media = attrs.get(ATTR_MEDIA)
        if unit is None or not isinstance(room, str) or direction not in DIRECTIONS \
                or media not in MEDIA:
            return "missing_attributes"
        return (room, str(attrs.get(ATTR_PARTICIPANT, "")), str(direction), str(media), unit)

    def observe_key(self, key: Hashable | str, value: float, time_ns: int,
                    start_ns: int | None, cumulative: bool) -> bool:
        """:meth:`observe` of a point whose :meth:`series_key` is ``key``."""
        if isinstance(key, str):
            if self._on_drop is not None:
                self._on_drop(key)
            return False
        return self.calc.engine.observe(key, value, time_ns, start_ns=start_ns,
                                        cumulative=cumulative)

    def derive(self, now_ns: int) -> list[DerivedPoint]:
        """Load points of every room at ``now_ns``, room by room."""
        order: list[DerivedPoint] = []
        self.derive_into({}, now_ns, order)
        return order

    def derive_into(self, groups: DerivedGroups, now_ns: int,
                    order: list[DerivedPoint] | None = None) -> int:
        """Append the load points of every room at ``now_ns`` to ``groups``.

        Args:
            groups: Output, by metric name (see :data:`DerivedGroups`).
            now_ns: Evaluation time.
            order: If given, also receives every point as a :class:`DerivedPoint`, in
                the order they were made (room by room).

        Returns:
            The number of points appended.
        """
        start = now_ns - int(self.config.window_s * NS_PER_S)
        added = 0
        isfinite = math.isfinite

        def add(name: str, unit: str, desc: str, attrs: Attrs, value: float) -> None:
            nonlocal added
            if isfinite(value):
                g = groups.get(name)
                if g is None:
                    g = groups[name] = (unit, desc, [])
                g[2].append((attrs, value, start, now_ns))
                added += 1
                if order is not None:
                    order.append(DerivedPoint(name, unit, desc, attrs, value, start, now_ns))

        cache = self._attr_cache
        if len(cache) >= _MAX_ATTR_CACHE:
            cache.clear()
        for room, load in sorted(self.calc.snapshot(now_ns).items()):
            # The same attribute tuples for the same room / stream / participant on every
            # emission (the processors cache their converted forms by them).
            r = cache.get(room)
            if r is None:
                r = cache[room] = ((ATTR_ROOM, room),)
            for (direction, media, u), v in sorted(load.by_stream.items()):
                attrs = cache.get((room, direction, media))
                if attrs is None:
                    attrs = cache[(room, direction, media)] = (
                        *r, (ATTR_DIRECTION, direction), (ATTR_MEDIA, media))
                if u == "bytes":
                    add(LOAD_BYTES_RATE, "By/s", "Room traffic rate in bytes.", attrs, v)
                else:
                    add(LOAD_PACKETS_RATE, "{packet}/s", "Room traffic rate in packets.",
                        attrs, v)
            add(LOAD_SCORE, "{score}/s", _SCORE_DESC, r, load.score)
            named = [p for p in load.top if p.participant != ""]
            add(LOAD_PARTICIPANTS, "{participant}", "Participants with traffic in the room.",
                r, float(load.participants if named or load.others.participants else 0))
            parts = list(named)
            if load.others.participants:
                parts.append(load.others)
            for p in parts:
                pa = cache.get((p.participant, room, None))
                if pa is None:
                    pa = cache[(p.participant, room, None)] = (
                        (ATTR_PARTICIPANT, p.participant), (ATTR_ROOM, room))
                add(LOAD_SCORE, "{score}/s", _SCORE_DESC, pa, p.score)
                add(LOAD_SHARE, "1", "Participant's share of the room's load score.", pa,
                    p.share)
        return added

    def evict(self, now_ns: int) -> None:
        """Forget stale series."""
        self.calc.engine.evict_stale(now_ns)


_MAX_ATTR_CACHE = 50_000
"""Attribute tuples a :class:`LoadDeriver` keeps for reuse (cleared when full)."""

_SCORE_DESC = ("Traffic load score per second: weighted bits/s plus weighted packets/s "
               "(see docs/rates.md).")


# -- configuration from the environment -----------------------------------------------

@dataclass(frozen=True)
class ProcessorSettings:
    """Settings shared by both processors (``OTEL_RTC_*`` environment variables).

    Attributes:
        include: Source metric patterns for rates (``OTEL_RTC_RATE_METRICS``).
        rate: Engine config (``OTEL_RTC_RATE_WINDOWS``, ``OTEL_RTC_RATE_PEAKS``,
            ``OTEL_RTC_RATE_MAX_SERIES``, ``OTEL_RTC_RATE_MAX_SAMPLES``,
            ``OTEL_RTC_RATE_STALE_AFTER``, ``OTEL_RTC_RATE_WRAP_MODULUS``).
        load: Traffic load config (``OTEL_RTC_LOAD_TOP_N``, ``OTEL_RTC_LOAD_WINDOW``).
        rates_enabled: ``OTEL_RTC_RATES`` (``true``/``false``).
        load_enabled: ``OTEL_RTC_LOAD`` (``true``/``false``).
        sample_period_s: In-process sampler period (``OTEL_RTC_SAMPLE_PERIOD``); default
            the shortest peak sub-window.
        emit_interval_s: Collector only: a series' derived points are emitted at most
            once per this many seconds of data time (``OTEL_RTC_EMIT_INTERVAL``, default
            10; 0 = on every point). Its input is still read on every point, so means
            and peaks stay exact; only the output rate is bounded.
    """

    include: tuple[str, ...] = DEFAULT_INCLUDE
    rate: RateConfig = field(default_factory=RateConfig)
    load: TrafficLoadConfig = field(default_factory=TrafficLoadConfig)
    rates_enabled: bool = True
    load_enabled: bool = True
    sample_period_s: float = 1.0
    emit_interval_s: float = 10.0


def _floats(raw: str) -> tuple[float, ...]:
    vals = tuple(float(x) for x in raw.split(",") if x.strip())
    if not vals:
        raise ValueError("empty list")
    return vals


def settings_from_env(environ: Mapping[str, str]) -> ProcessorSettings:
    """Read :class:`ProcessorSettings`; a bad value logs a warning and uses the default."""
    d = RateConfig()
    ld = TrafficLoadConfig()

    def get(name: str, parse: Callable[[str], object], default: object) -> object:
        return env_value(name, parse, default, environ)

    include = get("OTEL_RTC_RATE_METRICS",
                  lambda r: tuple(p.strip() for p in r.split(",") if p.strip()), DEFAULT_INCLUDE)
    windows = get("OTEL_RTC_RATE_WINDOWS", _floats, d.windows_s)
    peaks = get("OTEL_RTC_RATE_PEAKS", _floats, d.peak_subwindows_s)
    max_series = get("OTEL_RTC_RATE_MAX_SERIES", int, d.max_series)
    max_samples = get("OTEL_RTC_RATE_MAX_SAMPLES", int, d.max_samples_per_series)
    stale = get("OTEL_RTC_RATE_STALE_AFTER", float, d.stale_after_s)
    wrap = get("OTEL_RTC_RATE_WRAP_MODULUS", float, d.wrap_modulus)
    try:
        rate = RateConfig(windows_s=windows, peak_subwindows_s=peaks,  # type: ignore[arg-type]
                          max_series=max_series, max_samples_per_series=max_samples,  # type: ignore[arg-type]
                          stale_after_s=stale, wrap_modulus=wrap)  # type: ignore[arg-type]
    except ValueError as exc:
        _logger.warning("otel_rtc: invalid OTEL_RTC_RATE_* settings (%s); using defaults", exc)
        rate = d
    top_n = get("OTEL_RTC_LOAD_TOP_N", int, ld.top_n)
    lwin = get("OTEL_RTC_LOAD_WINDOW", float, rate.windows_s[0])
    try:
        load = TrafficLoadConfig(top_n=top_n, window_s=lwin, rate=rate,  # type: ignore[arg-type]
                                 weights=LoadWeights())
    except ValueError as exc:
        _logger.warning("otel_rtc: invalid OTEL_RTC_LOAD_* settings (%s); using defaults", exc)
        load = TrafficLoadConfig(window_s=rate.windows_s[0], rate=rate)
    period = get("OTEL_RTC_SAMPLE_PERIOD", float, rate.peak_subwindows_s[0])
    if not (isinstance(period, float) and math.isfinite(period) and period > 0):
        _logger.warning("otel_rtc: ignoring OTEL_RTC_SAMPLE_PERIOD=%r", period)
        period = rate.peak_subwindows_s[0]
    return ProcessorSettings(
        include=include,  # type: ignore[arg-type]
        rate=rate, load=load,
        rates_enabled=get("OTEL_RTC_RATES", parse_bool, True),  # type: ignore[arg-type]
        load_enabled=get("OTEL_RTC_LOAD", parse_bool, True),  # type: ignore[arg-type]
        sample_period_s=float(period),
        emit_interval_s=_emit_interval(get("OTEL_RTC_EMIT_INTERVAL", float, 10.0)),
    )


def _emit_interval(v: object) -> float:
    if isinstance(v, float) and math.isfinite(v) and v >= 0:
        return v
    _logger.warning("otel_rtc: ignoring OTEL_RTC_EMIT_INTERVAL=%r; using 10", v)
    return 10.0


def is_rejection(reason: str) -> bool:
    """Whether a reason means the point was dropped (vs an accepted anomaly)."""
    return reason in REJECT_REASONS or reason == "missing_attributes"
