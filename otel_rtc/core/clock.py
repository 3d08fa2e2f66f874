"""Injectable clocks.

All otel_rtc trackers work in integer nanoseconds since the Unix epoch (the
``time.time_ns()`` domain) so that measured timestamps can be used directly as span
start and end times. Wall clocks can step backwards; every duration computed from two
readings is clamped at zero by :func:`clamp_duration_ns`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]
"""A zero-argument callable returning integer nanoseconds since the Unix epoch."""

wall_clock_ns: Clock = time.time_ns
"""The default clock."""

NS_PER_S = 1_000_000_000


def clamp_duration_ns(start_ns: int, end_ns: int) -> int:
    """Return ``end_ns - start_ns``, or 0 when the clock went backwards."""
    d = end_ns - start_ns
    return d if d > 0 else 0


class ManualClock:
    """A clock for replaying recorded timelines and for tests.

    Args:
        start_ns: Initial reading.
    """

    __slots__ = ("now_ns",)

    def __init__(self, start_ns: int = 0) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        """The current reading, in nanoseconds."""
        return self.now_ns

    def advance(self, delta_ns: int) -> int:
        """Move the clock forward by ``delta_ns`` and return the new reading."""
        self.now_ns += delta_ns
        return self.now_ns

    def set(self, now_ns: int) -> None:
        """Set the reading (may go backwards, to test clamping)."""
        self.now_ns = now_ns
