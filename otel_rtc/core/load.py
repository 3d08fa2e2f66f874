"""Participant and room traffic load: rates, a load score, shares and a bounded top-N.

Input: traffic counters keyed by ``(room, participant, direction, media, unit)`` with
``direction`` in ``up``/``down``, ``media`` in ``audio``/``video``/``data`` and ``unit``
in ``packets``/``bytes``. Output per room: bytes/s and packets/s per direction and media,
a load score, each participant's share of the room's score, and the ``top_n`` heaviest
participants plus one ``others`` aggregate, so an exporter never needs one series per
participant.

Load score (per second, documented in ``docs/rates.md``)::

    score = sum over (direction, media) of
            direction_weight * media_weight * (bit_weight * 8 * bytes/s
                                               + packet_weight * packets/s)

An SFU's cost has a bandwidth part (copying, SRTP, NIC) and a per-packet part (syscalls,
header rewriting, per-packet crypto setup). ``packet_weight`` expresses the per-packet
part in bit-equivalents: the default 4000 says one packet costs as much as 500 bytes of
payload, so 50 packets/s of 100-byte audio weigh about as much as 200 kbit/s. It is a
relative score for ranking and allocation, not a measured CPU cost: calibrate the weights
against your own CPU profile.

Pure module: stdlib, :mod:`otel_rtc.core.clock` and :mod:`otel_rtc.core.rates` only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from otel_rtc.core import names
from otel_rtc.core.clock import Clock, wall_clock_ns
from otel_rtc.core.rates import RateConfig, RateEngine

DIRECTIONS = ("up", "down")
MEDIA = ("audio", "video", "data")
UNITS = ("packets", "bytes")
OTHERS = names.OTHER
"""Participant id of the aggregate of everyone outside the top-N."""

StreamKey = tuple[str, str, str]
"""``(direction, media, unit)``."""


@dataclass(frozen=True)
class LoadWeights:
    """Weights of the load score (see the module docstring for the formula).

    Attributes:
        bit_weight: Score per bit/s.
        packet_weight: Score per packet/s (bit-equivalents of one packet's fixed cost).
        up_weight: Multiplier for upstream (participant → server) traffic.
        down_weight: Multiplier for downstream (server → participant) traffic.
        audio_weight: Multiplier for audio.
        video_weight: Multiplier for video.
        data_weight: Multiplier for data channels.
    """

    bit_weight: float = 1.0
    packet_weight: float = 4000.0
    up_weight: float = 1.0
    down_weight: float = 1.0
    audio_weight: float = 1.0
    video_weight: float = 1.0
    data_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("bit_weight", "packet_weight", "up_weight", "down_weight",
                     "audio_weight", "video_weight", "data_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0")

    def factor(self, direction: str, media: str) -> float:
        """Combined direction x media multiplier."""
        d = self.up_weight if direction == "up" else self.down_weight
        m = (self.audio_weight if media == "audio" else
             self.video_weight if media == "video" else self.data_weight)
        return d * m

    def score(self, by_stream: dict[StreamKey, float]) -> float:
        """Score of a mapping ``(direction, media, unit) -> rate per second``."""
        total = 0.0
        factor = self.factor
        per_byte = self.bit_weight * 8.0
        for (direction, media, unit), rate in by_stream.items():
            per = per_byte if unit == "bytes" else self.packet_weight
            total += factor(direction, media) * per * rate
        return total


@dataclass(frozen=True)
class TrafficLoadConfig:
    """Configuration of the traffic load.

    Attributes:
        top_n: Participants listed individually per room (score and share); the rest
            form ``others``. 0 (the default) gives the room load only: participant
            scores and shares are opt-in.
        rate: Configuration of the underlying :class:`~otel_rtc.core.rates.RateEngine`
            (used by :class:`TrafficLoadCalculator`).
        weights: Load score weights.
    """

    top_n: int = 0
    rate: RateConfig = field(default_factory=RateConfig)
    weights: LoadWeights = field(default_factory=LoadWeights)

    def __post_init__(self) -> None:
        if not isinstance(self.top_n, int) or isinstance(self.top_n, bool) or self.top_n < 0:
            raise ValueError("top_n must be an int >= 0")
        if not isinstance(self.rate, RateConfig) or not isinstance(self.weights, LoadWeights):
            raise ValueError("rate must be a RateConfig and weights a LoadWeights")


@dataclass(frozen=True)
class ParticipantLoad:
    """Load of one participant (or of the ``others`` aggregate).

    Attributes:
        participant: Participant id, or :data:`OTHERS`.
        by_stream: Rate per ``(direction, media, unit)`` (bytes/s or packets/s).
        bytes_per_s: Sum of byte rates, both directions, all media.
        packets_per_s: Sum of packet rates.
        score: Load score per second.
        share: Fraction of the room's score (0..1).
        participants: Participants aggregated here (1, or the size of ``others``).
    """

    participant: str
    by_stream: dict[StreamKey, float]
    bytes_per_s: float
    packets_per_s: float
    score: float
    share: float
    participants: int = 1


@dataclass(frozen=True)
class RoomLoad:
    """Load of one room.

    Attributes:
        room: Room id.
        by_stream: Rate per ``(direction, media, unit)`` over all participants.
        bytes_per_s: Sum of byte rates.
        packets_per_s: Sum of packet rates.
        score: Room score: the sum of its participants' scores.
        participants: Participants (non-empty ids) with a reading.
        top: The ``top_n`` heaviest participants, heaviest first.
        others: Aggregate of everyone else (``participants == 0`` when empty).
        start_ns: Earliest start of the readings it sums.
        time_ns: Latest end of the readings it sums.
    """

    room: str
    by_stream: dict[StreamKey, float]
    bytes_per_s: float
    packets_per_s: float
    score: float
    participants: int
    top: tuple[ParticipantLoad, ...]
    others: ParticipantLoad
    start_ns: int = 0
    time_ns: int = 0


def _sum_streams(items: list[dict[StreamKey, float]]) -> dict[StreamKey, float]:
    out: dict[StreamKey, float] = {}
    for d in items:
        for k, v in d.items():
            out[k] = out.get(k, 0.0) + v
    return out


def _split(by_stream: dict[StreamKey, float]) -> tuple[float, float]:
    b = sum(v for (_, _, u), v in by_stream.items() if u == "bytes")
    p = sum(v for (_, _, u), v in by_stream.items() if u == "packets")
    return b, p


LoadRow = tuple[tuple[str, str, str, str, str], float, int, int]
"""``((room, participant, direction, media, unit), rate, start_ns, time_ns)``."""


def room_loads(rows: Iterable[LoadRow], config: TrafficLoadConfig) -> dict[str, RoomLoad]:
    """Per-room load of one reading of the traffic series.

    Args:
        rows: The mean rate of each traffic series over its reading's span.
        config: Top-N and weights.
    """
    k = config.top_n
    # room -> [rate per stream, participant ids, start, end, per-participant streams]
    rooms: dict[str, list[Any]] = {}
    for (room, pid, direction, media, unit), rate, t0, t1 in rows:
        r = rooms.get(room)
        if r is None:
            r = rooms[room] = [{}, set(), t0, t1, {}]
        else:
            if t0 < r[2]:
                r[2] = t0
            if t1 > r[3]:
                r[3] = t1
        key = (direction, media, unit)
        streams = r[0]
        streams[key] = streams.get(key, 0.0) + rate
        if pid:
            r[1].add(pid)
        if k:
            ps = r[4].get(pid)
            if ps is None:
                ps = r[4][pid] = {}
            ps[key] = ps.get(key, 0.0) + rate
    out = {}
    score = config.weights.score
    for room, (streams, pids, t0, t1, parts) in rooms.items():
        b, p = _split(streams)
        if k:
            out[room] = _room_with_top(room, streams, parts, len(pids), config, t0, t1)
        else:
            out[room] = RoomLoad(room, streams, b, p, score(streams), len(pids), (),
                                 _NO_OTHERS, t0, t1)
    return out


_NO_OTHERS = ParticipantLoad(OTHERS, {}, 0.0, 0.0, 0.0, 0.0, 0)


def _room_with_top(room: str, streams: dict[StreamKey, float],
                   parts: dict[str, dict[StreamKey, float]], named: int,
                   config: TrafficLoadConfig, t0: int, t1: int) -> RoomLoad:
    """A room's load with its ``top_n`` heaviest participants and the rest as ``_other``."""
    w = config.weights
    scored = [(w.score(s), pid, s) for pid, s in parts.items()]
    # Heaviest first; ties broken by id so the output is deterministic.
    scored.sort(key=lambda x: (-x[0], x[1]))
    room_score = sum(x[0] for x in scored)
    # Traffic without a participant id (per-room series) is never listed, only summed.
    top_src = [x for x in scored if x[1] != ""][:config.top_n]
    listed = {x[1] for x in top_src}
    rest = [x for x in scored if x[1] not in listed]

    def load(pid: str, s: dict[StreamKey, float], score: float, count: int
             ) -> ParticipantLoad:
        b, p = _split(s)
        # An idle room (score 0) is split evenly so that shares still sum to 1.
        sh = score / room_score if room_score > 0 else count / max(named, 1)
        return ParticipantLoad(pid, s, b, p, score, min(1.0, max(0.0, sh)), count)

    top = tuple(load(pid, s, sc, 1) for sc, pid, s in top_src)
    if rest:
        others = load(OTHERS, _sum_streams([s for _, _, s in rest]),
                      sum(sc for sc, _, _ in rest), sum(1 for x in rest if x[1] != ""))
    else:
        others = _NO_OTHERS
    b, p = _split(streams)
    return RoomLoad(room, streams, b, p, room_score, named, top, others, t0, t1)


class TrafficLoadCalculator:
    """Turns participant traffic counters into per-room load, one reading at a time.

    A convenience over :class:`~otel_rtc.core.rates.RateEngine` and :func:`room_loads`
    (the processors feed one shared engine instead).

    Args:
        config: Top-N, rate engine and weights.
        clock: Default ``now`` for :meth:`snapshot`.
        on_anomaly: Reason callback, as for :class:`~otel_rtc.core.rates.RateEngine`
            (plus ``invalid`` for an unknown direction, media or unit).
    """

    def __init__(self, config: TrafficLoadConfig = TrafficLoadConfig(), *,
                 clock: Clock = wall_clock_ns,
                 on_anomaly: Callable[[str], None] | None = None) -> None:
        if not isinstance(config, TrafficLoadConfig):
            raise ValueError("config must be a TrafficLoadConfig")
        self.config = config
        self._clock = clock
        self._on_anomaly = on_anomaly
        self.engine = RateEngine(config.rate, clock=clock, on_anomaly=on_anomaly)

    def update(self, room: str, participant: str, direction: str, media: str, unit: str,
               value: float, time_ns: int, *, start_ns: int = 0, cumulative: bool = True,
               flags: int = 0) -> bool:
        """Feed one counter point (see :meth:`RateEngine.observe`).

        Returns:
            ``False`` if rejected (reported through ``on_anomaly``).
        """
        if direction not in DIRECTIONS or media not in MEDIA or unit not in UNITS:
            if self._on_anomaly is not None:
                try:
                    self._on_anomaly("invalid")
                except Exception:  # a broken callback must not break the caller
                    pass
            return False
        key = (room, participant, direction, media, unit)
        return self.engine.observe(key, value, time_ns, start_ns, cumulative, flags, key)

    def snapshot(self, now_ns: int | None = None) -> dict[str, RoomLoad]:
        """Read every series (closing its span) and return the load of every room."""
        now = self._clock() if now_ns is None else now_ns
        return room_loads(((r.tag, r.mean, r.start_ns, r.time_ns)
                           for r in self.engine.read(now)), self.config)
