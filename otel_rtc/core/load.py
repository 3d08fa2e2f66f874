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
from collections.abc import Callable
from dataclasses import dataclass, field

from otel_rtc.core.clock import Clock, wall_clock_ns
from otel_rtc.core.rates import RateConfig, RateEngine, SeriesRates

DIRECTIONS = ("up", "down")
MEDIA = ("audio", "video", "data")
UNITS = ("packets", "bytes")
OTHERS = "_others"
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
    """Configuration of a :class:`TrafficLoadCalculator`.

    Attributes:
        top_n: Participants listed individually per room; the rest form ``others``.
        window_s: Trailing window of the rates used; must be one of ``rate.windows_s``.
            A series with no interval inside it falls back to its mean over its own
            span (never to a rate over a window it was not accumulated over).
        rate: Configuration of the underlying :class:`~otel_rtc.core.rates.RateEngine`.
        weights: Load score weights.
    """

    top_n: int = 5
    window_s: float = 10.0
    rate: RateConfig = field(default_factory=RateConfig)
    weights: LoadWeights = field(default_factory=LoadWeights)

    def __post_init__(self) -> None:
        if not isinstance(self.top_n, int) or isinstance(self.top_n, bool) or self.top_n < 0:
            raise ValueError("top_n must be an int >= 0")
        if not isinstance(self.rate, RateConfig) or not isinstance(self.weights, LoadWeights):
            raise ValueError("rate must be a RateConfig and weights a LoadWeights")
        if self.window_s not in self.rate.windows_s:
            raise ValueError("window_s must be one of rate.windows_s")


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
        participants: Participants with at least one rate.
        top: The ``top_n`` heaviest participants, heaviest first.
        others: Aggregate of everyone else (``participants == 0`` when empty).
    """

    room: str
    by_stream: dict[StreamKey, float]
    bytes_per_s: float
    packets_per_s: float
    score: float
    participants: int
    top: tuple[ParticipantLoad, ...]
    others: ParticipantLoad


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


class TrafficLoadCalculator:
    """Turns participant traffic counters into per-room load with a bounded top-N.

    Args:
        config: Top-N, window, rate engine and weights.
        clock: Default ``now`` for :meth:`snapshot`.
        on_drop: Reason callback, as for :class:`~otel_rtc.core.rates.RateEngine`
            (plus ``invalid`` for an unknown direction, media or unit).
    """

    def __init__(self, config: TrafficLoadConfig = TrafficLoadConfig(), *,
                 clock: Clock = wall_clock_ns,
                 on_drop: Callable[[str], None] | None = None) -> None:
        if not isinstance(config, TrafficLoadConfig):
            raise ValueError("config must be a TrafficLoadConfig")
        self.config = config
        self._clock = clock
        self._on_drop = on_drop
        self.engine = RateEngine(config.rate, clock=clock, on_drop=on_drop)

    def update(self, room: str, participant: str, direction: str, media: str, unit: str,
               value: float, time_ns: int, *, start_ns: int | None = None,
               cumulative: bool = True) -> bool:
        """Feed one counter point (see :meth:`RateEngine.observe`).

        Returns:
            ``False`` if rejected (reported through ``on_drop``).
        """
        if direction not in DIRECTIONS or media not in MEDIA or unit not in UNITS:
            if self._on_drop is not None:
                try:
                    self._on_drop("invalid")
                except Exception:  # a broken callback must not break the caller
                    pass
            return False
        return self.engine.observe((room, participant, direction, media, unit), value,
                                   time_ns, start_ns=start_ns, cumulative=cumulative)

    def _rate(self, r: SeriesRates) -> float | None:
        w = r.window_rates.get(self.config.window_s)
        return w if w is not None else r.mean_rate

    def snapshot(self, now_ns: int | None = None) -> dict[str, RoomLoad]:
        """Evict stale series and return the load of every room at ``now_ns``."""
        now = self._clock() if now_ns is None else now_ns
        self.engine.evict_stale(now)
        per: dict[str, dict[str, dict[StreamKey, float]]] = {}
        # Only the window rate and the mean are used: the engine skips the peaks.
        for key, w, mean in self.engine.window_items(self.config.window_s, now):
            rate = w if w is not None else mean
            if rate is None:
                continue
            room, pid, direction, media, unit = key  # type: ignore[misc]
            streams = per.setdefault(room, {}).setdefault(pid, {})
            streams[(direction, media, unit)] = rate
        return {room: self._room(room, parts) for room, parts in per.items()}

    def _room(self, room: str, parts: dict[str, dict[StreamKey, float]]) -> RoomLoad:
        w = self.config.weights
        scored = [(w.score(s), pid, s) for pid, s in parts.items()]
        # Heaviest first; ties broken by id so the output is deterministic.
        scored.sort(key=lambda x: (-x[0], x[1]))
        room_score = sum(x[0] for x in scored)
        n = len(scored)

        def load(pid: str, s: dict[StreamKey, float], score: float, count: int
                 ) -> ParticipantLoad:
            b, p = _split(s)
            # An idle room (score 0) is split evenly so that shares still sum to 1.
            sh = score / room_score if room_score > 0 else count / n
            return ParticipantLoad(pid, s, b, p, score, min(1.0, max(0.0, sh)), count)

        k = self.config.top_n
        top = tuple(load(pid, s, sc, 1) for sc, pid, s in scored[:k])
        rest = scored[k:]
        rest_streams = _sum_streams([s for _, _, s in rest])
        rest_score = sum(sc for sc, _, _ in rest)
        if rest:
            others = load(OTHERS, rest_streams, rest_score, len(rest))
        else:
            others = ParticipantLoad(OTHERS, {}, 0.0, 0.0, 0.0, 0.0, 0)
        all_streams = _sum_streams([s for _, _, s in scored])
        b, p = _split(all_streams)
        return RoomLoad(room, all_streams, b, p, room_score, n, top, others)
