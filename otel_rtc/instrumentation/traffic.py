"""Per-participant traffic accounting from cumulative transport counters.

Callers report the *totals* their transport shows for one participant, direction
(``up`` = participant → server, ``down`` = server → participant) and media kind
(``audio``/``video``/``data``): packets, bytes, packets lost, packets out of order and
padding bytes. :class:`TrafficAccounting` turns successive totals into deltas, safely:

* a total that went backwards by less than half the ``modulus`` is a wrap-around of a
  fixed-width counter (``2**32`` by default) and counts the wrapped delta;
* any other decrease, or an increase larger than ``max_delta``, is rejected, counted in
  ``otel_rtc.telemetry.dropped{otel_rtc.component="traffic"}`` (reasons
  ``negative_delta`` / ``implausible_delta``) and becomes the new baseline;
* ``reset=True`` tells it the transport restarted its counters (baseline 0).

The first report of a stream (a new stream, or the first after :meth:`forget`) is only
its **baseline** by default: its totals are not counted as traffic. They are what the
counters carried when tracking began, accumulated at unknown times (a transport that ran
for 5 minutes before instrumentation attached); counting them now would put 5 minutes of
bytes into one short interval, the fake rate spike this library exists to prevent.
Baselined first reports with non-zero totals are counted in
``otel_rtc.traffic.baselined_reports``, never silently. A caller who knows the counters
started at zero when tracking started (the transport was created just now and is
reported from its first packet) says so with ``from_zero=True`` (or ``reset=True``),
and that first report counts in full.

Deltas are summed into per-series accumulators under one short lock. Nothing is exported
on :meth:`TrafficAccounting.add`: the accumulated totals are read by observable counters
when the metric reader collects, i.e. once per export interval, and by
:meth:`TrafficAccounting.snapshot` for the rate processor's sampler.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping
from itertools import chain
from operator import attrgetter
from types import MappingProxyType
from typing import Any

from opentelemetry import metrics as metrics_api
from opentelemetry.metrics import CallbackOptions, Observation

from otel_rtc.core import names
from otel_rtc.core.clock import Clock, wall_clock_ns
from otel_rtc.core.names import OTHER
from otel_rtc.core.sample_sources import SampleColumns, register_sample_source
from otel_rtc.instrumentation.self_telemetry import count_drop, report_error
from otel_rtc.version import __version__

__all__ = ["TRAFFIC_METRICS", "TrafficAccounting"]

DIRECTIONS = ("up", "down")
MEDIA_KINDS = ("audio", "video", "data")

SDK_SERIES_LIMIT = 2000
"""The SDK's default cardinality limit: attribute sets kept per metric per collection
(beyond it the SDK folds points into an ``otel.metric.overflow`` series otel_rtc does
not see)."""
_PER_KEY = len(DIRECTIONS) * len(MEDIA_KINDS)
MAX_KEYS = (SDK_SERIES_LIMIT - 1) // _PER_KEY - 1
"""Largest ``max_rooms`` / ``max_participants``: each room (or room and participant)
makes one series per direction and kind, plus the overflow ones, all under the SDK's
limit (331)."""
DEFAULT_MAX_STREAMS = 12_000
"""Participant streams whose baselines are kept (about 0.3 KB each)."""

# (metric name, unit, description), in the order of the fields of add().
TRAFFIC_METRICS: tuple[tuple[str, str, str], ...] = (
    (names.TRAFFIC_PACKETS, "{packet}", "Packets sent or received for participants."),
    (names.TRAFFIC_BYTES, "By", "Bytes sent or received for participants."),
    (names.TRAFFIC_PACKETS_LOST, "{packet}", "Packets lost, as seen by the transport."),
    (names.TRAFFIC_PACKETS_OUT_OF_ORDER, "{packet}", "Packets received out of order."),
    (names.TRAFFIC_PADDING_BYTES, "By", "Padding bytes (probing, RTP padding)."),
)
_N = len(TRAFFIC_METRICS)
_NAMES = tuple(name for name, _u, _d in TRAFFIC_METRICS)
_TOTALS = attrgetter("totals")
BASELINED_METRIC = names.TRAFFIC_BASELINED_REPORTS
"""Reports taken as a baseline (not counted as traffic) with non-zero totals."""


class _Series:
    __slots__ = ("attrs", "baselined", "start_ns", "totals", "view")

    def __init__(self, attrs: dict[str, str], start_ns: int) -> None:
        self.attrs = attrs
        # Handed out by snapshot() on every sampler tick: one read-only view per series
        # instead of a dict copy per row, and a stable identity readers can cache by.
        self.view: Mapping[str, str] = MappingProxyType(attrs)
        self.start_ns = start_ns
        self.totals = [0] * _N
        self.baselined = 0


class _Stream:
    __slots__ = ("fresh", "last", "series")

    def __init__(self, series: _Series) -> None:
        self.series = series
        self.last = [0] * _N
        self.fresh = True


class TrafficAccounting:
    """Accumulates per-room (optionally per-participant) traffic from cumulative totals.

    Args:
        meter_provider: Where the observable counters are created; the global provider
            by default. ``False`` creates none (use :meth:`snapshot` only).
        per_participant: Add ``otel_rtc.participant`` to the series (off by default).
        max_participants: Cap on distinct ``(room, participant)`` with
            ``per_participant``; participants beyond it fold into one overflow series
            (``otel_rtc.room`` and ``otel_rtc.participant`` both ``"_other"``), each
            counted as dropped per stream (reason ``cardinality_cap``). At most
            :data:`MAX_KEYS`, so that every series stays under the SDK's 2,000 limit.
        max_rooms: Cap on distinct rooms (at most :data:`MAX_KEYS`); rooms beyond it
            fold into ``otel_rtc.room="_other"``, counted per stream (``cardinality_cap``).
        max_streams: Cap on the participant streams (room, participant, direction,
            kind) whose baselines are kept until :meth:`forget`; a report of a new
            stream beyond it is dropped and counted (reason ``stream_cap``). Bounds the
            bookkeeping memory.
        modulus: Width of the transport's counters (``None``: they never wrap).
        max_delta: Largest plausible increase between two reports; by default half the
            modulus (or unlimited with no modulus).
        sample_source: Let the default metric processors' sampler read this object's
            running totals every peak sub-window (1 s by default), so the derived peak
            rates of its series come from real short intervals rather than from export
            intervals (see ``docs/processor.md``). Only processors whose export batches
            contain these series use the samples.
        clock: Injectable clock (series start times).

    Raises:
        ValueError: a non-positive cap, modulus or ``max_delta``.
    """

    def __init__(
        self,
        *,
        meter_provider: Any = None,
        per_participant: bool = False,
        max_participants: int = 300,
        max_rooms: int = 300,
        max_streams: int = DEFAULT_MAX_STREAMS,
        modulus: int | None = 2**32,
        max_delta: int | None = None,
        sample_source: bool = True,
        clock: Clock = wall_clock_ns,
    ) -> None:
        for name, cap, top in (("max_participants", max_participants, MAX_KEYS),
                               ("max_rooms", max_rooms, MAX_KEYS),
                               ("max_streams", max_streams, None)):
            if isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0:
                raise ValueError(f"{name} must be a positive int, got {cap!r}")
            if top is not None and cap > top:
                raise ValueError(
                    f"{name} must be <= {top}: each one makes {_PER_KEY} series per metric "
                    f"(directions x kinds) and the SDK keeps at most {SDK_SERIES_LIMIT}")
        if modulus is not None and modulus <= 1:
            raise ValueError("modulus must be > 1")
        if max_delta is not None and max_delta <= 0:
            raise ValueError("max_delta must be > 0")
        self.per_participant = per_participant
        self.max_participants = max_participants
        self.max_rooms = max_rooms
        self.max_streams = max_streams
        self.modulus = modulus
        self.max_delta = max_delta if max_delta is not None else (
            modulus // 2 if modulus is not None else None)
        self._clock = clock
        self._lock = threading.Lock()
        self._streams: dict[tuple[str, str, str, str], _Stream] = {}
        self._series: dict[tuple[str, str, str, str], _Series] = {}
        self._rooms: set[str] = set()
        self._participants: set[tuple[str, str]] = set()
        self._columns = SampleColumns((), (), [], ())  # snapshot()'s layout, kept
        if meter_provider is not False:
            self._register(meter_provider)
        if sample_source:
            register_sample_source(self.snapshot)  # held weakly: dies with this object

    # -- hot path --------------------------------------------------------------------
    def add(
        self,
        room: str,
        participant: str,
        direction: str,
        kind: str,
        packets: int,
        bytes_: int,
        packets_lost: int = 0,
        out_of_order: int = 0,
        padding_bytes: int = 0,
        *,
        reset: bool = False,
        baseline: bool = False,
        from_zero: bool = False,
    ) -> None:
        """Report the transport's cumulative totals for one participant stream.

        Args:
            room: Room identifier.
            participant: Participant identifier.
            direction: ``up`` or ``down``.
            kind: ``audio``, ``video`` or ``data``.
            packets: Cumulative packets.
            bytes_: Cumulative bytes.
            packets_lost: Cumulative packets lost.
            out_of_order: Cumulative packets received out of order.
            padding_bytes: Cumulative padding bytes.
            reset: The transport restarted its counters at zero since the previous
                report: totals count from zero (on a first report: as ``from_zero``).
            baseline: These totals are where tracking starts, not traffic to count;
                later reports count from here. A stream's first report is a baseline
                anyway unless ``from_zero``; this forces one mid-stream.
            from_zero: Only for a stream's first report: its counters started at zero
                when tracking started (the transport was created since the previous
                report period), so these first totals are recent traffic and count in
                full. Without it a first report is the baseline: counters whose history
                is unknown (instrumentation attached to a running transport, a rejoin
                after :meth:`forget` on the same transport) carry traffic that happened
                at unknown times, which no rate can place.
        """
        key = (room, participant, direction, kind)
        try:
            with self._lock:
                st = self._streams.get(key)
                first = st is None
                if st is None:
                    st = self._new_stream(key)
                    if st is None:
                        return
                last = st.last
                if reset:
                    last[:] = (0, 0, 0, 0, 0)
                    st.fresh = True
                new = (packets, bytes_, packets_lost, out_of_order, padding_bytes)
                if baseline or (first and not (from_zero or reset)):
                    last[:] = new
                    st.fresh = False
                    if any(new):
                        st.series.baselined += 1
                    return
                totals = st.series.totals
                check = not st.fresh
                st.fresh = False
                for i in range(_N):
                    d = new[i] - last[i]
                    if d < 0 or (check and self.max_delta is not None and d > self.max_delta):
                        d = self._fix_delta(d)
                    if d:
                        totals[i] += d
                    last[i] = new[i]
        except Exception as exc:
            report_error("traffic", exc)

    def _fix_delta(self, d: int) -> int:
        m = self.modulus
        if d < 0 and m is not None:
            wrapped = d % m
            if wrapped <= (self.max_delta if self.max_delta is not None else m // 2):
                return wrapped
        count_drop("traffic", "negative_delta" if d < 0 else "implausible_delta")
        return 0

    def _new_stream(self, key: tuple[str, str, str, str]) -> _Stream | None:
        room, participant, direction, kind = key
        if direction not in DIRECTIONS or kind not in MEDIA_KINDS:
            count_drop("traffic", "invalid")
            return None
        if len(self._streams) >= self.max_streams:
            count_drop("traffic", "stream_cap")
            return None
        folded = False
        if room not in self._rooms:
            if len(self._rooms) >= self.max_rooms:
                folded = True
                room = OTHER
            else:
                self._rooms.add(room)
        p: str | None = None
        if self.per_participant:
            p = participant
            pk = (room, participant)
            if pk not in self._participants:
                if len(self._participants) >= self.max_participants:
                    folded = True
                    # One overflow series for all of them: a per-room one would multiply
                    # the series by the rooms again.
                    room, p = OTHER, OTHER
                else:
                    self._participants.add(pk)
        if folded:
            count_drop("traffic", "cardinality_cap")  # once per stream, whatever folded
        skey = (room, p or "", direction, kind)
        series = self._series.get(skey)
        if series is None:
            attrs = {names.ATTR_ROOM: room, names.ATTR_DIRECTION: direction,
                     names.ATTR_MEDIA_KIND: kind}
            if p is not None:
                attrs[names.ATTR_PARTICIPANT] = p
            series = self._series[skey] = _Series(attrs, self._clock())
        st = self._streams[key] = _Stream(series)
        return st

    def forget(self, room: str, participant: str) -> None:
        """Drop the per-transport baselines of a participant that left.

        Its accumulated totals stay in the (cumulative) series; the next report after a
        rejoin is a first report again: a baseline, unless ``from_zero=True``.
        """
        try:
            with self._lock:
                for key in [k for k in self._streams if k[0] == room and k[1] == participant]:
                    del self._streams[key]
        except Exception as exc:
            report_error("traffic", exc)

    # -- reading ---------------------------------------------------------------------
    def snapshot(self) -> SampleColumns:
        """Running totals of every series, column by column (the rate sampler's source).

        ``names``, ``attrs`` (a read-only view per series) and ``starts`` are the same
        objects on every call until a series is added; ``values`` is a new list. The rate
        sampler reads this every second and recognises the layout by that identity.
        """
        with self._lock:
            series = self._series
            values = list(chain.from_iterable(map(_TOTALS, series.values())))
            cols = self._columns
            if len(cols.names) != len(values):  # series are only ever added
                cols = self._columns = SampleColumns(
                    _NAMES * len(series),
                    tuple(s.view for s in series.values() for _ in _NAMES),
                    [], tuple(s.start_ns for s in series.values() for _ in _NAMES))
        return SampleColumns(cols.names, cols.attrs, values, cols.starts)

    @property
    def baselined(self) -> int:
        """Reports taken as a baseline with non-zero totals (traffic not counted)."""
        with self._lock:
            return sum(s.baselined for s in self._series.values())

    @property
    def streams(self) -> int:
        """Participant streams with a baseline (bounded by :meth:`forget`)."""
        return len(self._streams)

    def _observe(self, index: int) -> list[Observation]:
        with self._lock:
            if index < 0:
                rows = [(s.attrs, s.baselined) for s in self._series.values() if s.baselined]
            else:
                rows = [(s.attrs, s.totals[index]) for s in self._series.values()]
        return [Observation(v, a) for a, v in rows]

    def _register(self, meter_provider: Any) -> None:
        try:
            mp = meter_provider if meter_provider is not None else metrics_api.get_meter_provider()
            meter = mp.get_meter("otel_rtc.traffic", __version__)
            ref = weakref.ref(self)
            for i, (name, unit, desc) in enumerate(TRAFFIC_METRICS):
                meter.create_observable_counter(
                    name, callbacks=[_make_callback(ref, i)], unit=unit, description=desc)
            meter.create_observable_counter(
                BASELINED_METRIC, callbacks=[_make_callback(ref, -1)], unit="{report}",
                description="First reports of streams taken as the baseline (their totals, "
                            "accumulated at unknown times, not counted as traffic).")
        except Exception as exc:
            report_error("traffic", exc)


def _make_callback(ref: weakref.ref[TrafficAccounting], index: int) -> Any:
    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        acc = ref()
        if acc is None:
            return []
        try:
            return acc._observe(index)
        except Exception as exc:
            report_error("traffic", exc)
            return []

    return callback
