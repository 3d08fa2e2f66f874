"""What a burst and a frame of bursts measure: the records and the frame statistics.

A :class:`BurstRecord` is one completed burst (``docs/bursts.md``): its start, its end,
its messages and the break before it. Frame statistics (:class:`FrameStats`) reproduce
the fields of the LLMessageSystem ``logMessageBurstStats`` log line over the bursts that
*ended* in a frame (one stats interval): a burst is counted, whole, in the frame in which
it ends; a burst still in progress when a frame is taken is carried into the next frame
and only shows up in the frame's :attr:`FrameStats.worst_case_latency_s`.
:class:`FrameAccumulator` keeps the running sums they are computed from, one update per
burst. :class:`~otel_rtc.core.bursts.BurstTracker` detects the bursts and takes the
frames.

Pure core: stdlib and :mod:`otel_rtc.core.clock` only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from otel_rtc.core.clock import NS_PER_S

__all__ = ["REFERENCE_FIELDS", "BurstRecord", "FrameAccumulator", "FrameStats"]


@dataclass(frozen=True)
class BurstRecord:
    """One completed burst.

    Attributes:
        start_ns: When the first message of the burst began processing (epoch ns).
        end_ns: When the input buffer was found empty (epoch ns).
        message_count: Messages that began processing during the burst (at least 1).
        break_before_ns: Idle gap between the previous burst's end and this burst's
            start, clamped at 0; ``None`` for the first burst of a tracker (or the first
            after tracking was interrupted).
        seq: 1-based sequence number of the burst within its tracker.
    """

    start_ns: int
    end_ns: int
    message_count: int
    break_before_ns: int | None
    seq: int = 0

    @property
    def duration_ns(self) -> int:
        """``end_ns - start_ns``, clamped at 0."""
        d = self.end_ns - self.start_ns
        return d if d > 0 else 0

    @property
    def duration_s(self) -> float:
        """Burst duration in seconds."""
        return self.duration_ns / NS_PER_S

    @property
    def break_before_s(self) -> float | None:
        """The break before this burst in seconds, or ``None``."""
        b = self.break_before_ns
        return None if b is None else b / NS_PER_S

    @property
    def throughput_rate(self) -> float | None:
        """Messages per second over the burst; ``None`` when the duration is 0."""
        d = self.duration_ns
        return self.message_count * NS_PER_S / d if d > 0 else None

    @property
    def worst_case_latency_s(self) -> float:
        """Upper bound on any message's buffer-to-finish latency within this burst.

        Equal to the burst duration: the wait of the last message had every message of
        the burst arrived when the burst started. It does not cover time a message
        spent buffered *before* the burst started (the consumer was busy elsewhere).
        """
        return self.duration_s


REFERENCE_FIELDS: tuple[str, ...] = (
    "avg_message_burst_throughput_rate", "data_points", "frame_time_dur",
    "max_message_break_duration", "max_message_burst_count", "max_message_burst_duration",
    "max_message_burst_throughput_rate", "min_message_burst_throughput_rate", "mode",
    "total_message_break_duration", "total_message_burst_duration", "total_message_count",
    "total_message_throughput_rate",
)
"""The fields of the reference's ``logMessageBurstStats`` line, in its order."""


@dataclass(frozen=True)
class FrameStats:
    """Statistics over the bursts that *ended* during one frame (one stats interval).

    Field names are those of the ``logMessageBurstStats`` log line. Durations are in
    seconds, rates in messages per second. With ``N`` the bursts that ended in the frame,
    ``c_i`` their message counts, ``d_i`` their durations and ``b_i`` their breaks:

    Attributes:
        avg_message_burst_throughput_rate: Mean over bursts with ``d_i > 0`` of
            ``c_i / d_i`` (a mean of per-burst rates, *not* ``sum c / sum d``); 0.0 when
            there are none.
        data_points: ``N``.
        frame_time_dur: Time since the previous frame was taken (or the tracker was
            created), clamped at 0.
        max_message_break_duration: ``max b_i`` (0.0 when none).
        max_message_burst_count: ``max c_i`` (0 when ``N == 0``).
        max_message_burst_duration: ``max d_i`` (0.0 when ``N == 0``).
        max_message_burst_throughput_rate: ``max c_i / d_i`` over ``d_i > 0`` (0.0 when
            none).
        min_message_burst_throughput_rate: ``min c_i / d_i`` over ``d_i > 0`` (0.0 when
            none).
        mode: Free-form label of the consumer (``"worker"`` in the reference).
        total_message_break_duration: ``sum b_i`` (first bursts have no break).
        total_message_burst_duration: ``sum d_i``.
        total_message_count: ``sum c_i``.
        total_message_throughput_rate: ``total_message_count / frame_time_dur`` (0.0 for
            an empty frame duration).
        worst_case_latency_s: ``max(max_message_burst_duration, elapsed time of the burst
            in progress at the end of the frame)``: the worst-case latency bound, kept
            visible while a long burst has not ended yet.
    """

    avg_message_burst_throughput_rate: float
    data_points: int
    frame_time_dur: float
    max_message_break_duration: float
    max_message_burst_count: int
    max_message_burst_duration: float
    max_message_burst_throughput_rate: float
    min_message_burst_throughput_rate: float
    mode: str
    total_message_break_duration: float
    total_message_burst_duration: float
    total_message_count: int
    total_message_throughput_rate: float
    worst_case_latency_s: float = 0.0

    def to_dict(self) -> dict[str, float | int | str]:
        """The fields as a plain dict, in declaration (alphabetical, reference) order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_log_line(self) -> str:
        """``logMessageBurstStats {...}``: exactly the reference's fields, as JSON.

        :attr:`worst_case_latency_s` (an otel_rtc addition) and the monitor's name are
        not in the line; :class:`~otel_rtc.BurstMonitor` attaches them to the log
        record as attributes.
        """
        import json

        d = {k: getattr(self, k) for k in REFERENCE_FIELDS}
        return "logMessageBurstStats " + json.dumps(d, separators=(", ", ":"))


class FrameAccumulator:
    """Running sums of one frame, updated once per burst (under the tracker's lock)."""

    __slots__ = ("brk_max", "brk_ns", "count", "count_max", "dur_max", "dur_ns", "n",
                 "rate_max", "rate_min", "rate_n", "rate_sum")

    def __init__(self) -> None:
        self.n = 0
        self.count = 0
        self.count_max = 0
        self.dur_ns = 0
        self.dur_max = 0
        self.brk_ns = 0
        self.brk_max = 0
        self.rate_n = 0
        self.rate_sum = 0.0
        self.rate_min = math.inf
        self.rate_max = 0.0

    def add(self, rec: BurstRecord) -> None:
        """Count a burst that ended in this frame."""
        self.n += 1
        c = rec.message_count
        self.count += c
        if c > self.count_max:
            self.count_max = c
        d = rec.duration_ns
        self.dur_ns += d
        if d > self.dur_max:
            self.dur_max = d
        b = rec.break_before_ns
        if b is not None:
            self.brk_ns += b
            if b > self.brk_max:
                self.brk_max = b
        if d > 0:
            r = c * NS_PER_S / d
            self.rate_n += 1
            self.rate_sum += r
            if r < self.rate_min:
                self.rate_min = r
            if r > self.rate_max:
                self.rate_max = r

    def stats(self, mode: str, frame_ns: int, open_ns: int) -> FrameStats:
        """The frame's statistics.

        Args:
            mode: The consumer's label.
            frame_ns: The frame's duration (clamped at 0 by the caller).
            open_ns: Elapsed time of the burst in progress at the end of the frame (0:
                none).
        """
        s = NS_PER_S
        frame_s = frame_ns / s
        rn = self.rate_n
        return FrameStats(
            avg_message_burst_throughput_rate=self.rate_sum / rn if rn else 0.0,
            data_points=self.n,
            frame_time_dur=frame_s,
            max_message_break_duration=self.brk_max / s,
            max_message_burst_count=self.count_max,
            max_message_burst_duration=self.dur_max / s,
            max_message_burst_throughput_rate=self.rate_max if rn else 0.0,
            min_message_burst_throughput_rate=self.rate_min if rn else 0.0,
            mode=mode,
            total_message_break_duration=self.brk_ns / s,
            total_message_burst_duration=self.dur_ns / s,
            total_message_count=self.count,
            total_message_throughput_rate=self.count / frame_s if frame_ns > 0 else 0.0,
            worst_case_latency_s=max(self.dur_max, open_ns) / s,
        )
