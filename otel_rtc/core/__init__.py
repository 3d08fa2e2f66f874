"""The pure core: bursts, rates, traffic load, session state, switches and clocks.

Standard library only, driven by explicit timestamps and an injectable clock, so the same
code runs in-process, inside a collector's embedded interpreter (Rotel) and in replays of
recorded timelines. Nothing here imports OpenTelemetry.

Metric and attribute names are in :mod:`otel_rtc.core.names`; the one reader of
environment variables is :mod:`otel_rtc.core.env`. The names below load lazily, so
importing one core module does not import the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module of otel_rtc.core that defines it
_EXPORTS: dict[str, str] = {
    "BurstRecord": "burst_stats",
    "BurstTracker": "bursts",
    "FrameStats": "burst_stats",
    "Clock": "clock",
    "ManualClock": "clock",
    "wall_clock_ns": "clock",
    "LoadWeights": "load",
    "ParticipantLoad": "load",
    "RoomLoad": "load",
    "TrafficLoadCalculator": "load",
    "TrafficLoadConfig": "load",
    "RateConfig": "rates",
    "RateEngine": "rates",
    "BurstSwitches": "switch",
    "burst_switches": "switch",
}

__all__ = [
    "BurstRecord",
    "BurstSwitches",
    "BurstTracker",
    "Clock",
    "FrameStats",
    "LoadWeights",
    "ManualClock",
    "ParticipantLoad",
    "RateConfig",
    "RateEngine",
    "RoomLoad",
    "TrafficLoadCalculator",
    "TrafficLoadConfig",
    "burst_switches",
    "wall_clock_ns",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from otel_rtc.core.burst_stats import BurstRecord, FrameStats
    from otel_rtc.core.bursts import BurstTracker
    from otel_rtc.core.clock import Clock, ManualClock, wall_clock_ns
    from otel_rtc.core.load import (
        LoadWeights,
        ParticipantLoad,
        RoomLoad,
        TrafficLoadCalculator,
        TrafficLoadConfig,
    )
    from otel_rtc.core.rates import RateConfig, RateEngine
    from otel_rtc.core.switch import BurstSwitches, burst_switches


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_rtc.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"otel_rtc.core.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
