"""The processors' settings, and how they are read from the ``OTEL_RTC_*`` variables (pure).

:class:`ProcessorSettings` configures a :class:`~otel_rtc.core.derived.Deriver`: which
source metrics get rates, the rate engine's and the traffic load's configuration, and
what only the in-process or only the collector processor uses. :func:`settings_from_env`
reads them for both (the collector processor in Rotel's interpreter, and
``default_processors()`` in-process), so the two follow the same variables with the same
parser; each is listed in ``docs/configuration.md``.

Pure module: stdlib and otel_rtc's pure core only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from otel_rtc.core import names
from otel_rtc.core.env import env_value, parse_bool
from otel_rtc.core.load import LoadWeights, TrafficLoadConfig
from otel_rtc.core.rates import RateConfig

_logger = logging.getLogger("otel_rtc")

DEFAULT_INCLUDE: tuple[str, ...] = (names.TRAFFIC_PACKETS, names.TRAFFIC_BYTES)
"""Source metrics (fnmatch patterns) that get ``.rate``/``.rate.peak`` by default."""


@dataclass(frozen=True)
class ProcessorSettings:
    """Settings of the processors (``OTEL_RTC_*`` environment variables).

    Attributes:
        include: Source metric patterns for rates (``OTEL_RTC_RATE_METRICS``).
        rate: Engine config (``OTEL_RTC_RATE_PEAKS``, ``OTEL_RTC_RATE_WINDOWS``,
            ``OTEL_RTC_RATE_MAX_SERIES``, ``OTEL_RTC_RATE_QUIET_INTERVALS``,
            ``OTEL_RTC_RATE_WRAP_MODULUS``).
        load: Traffic load config (``OTEL_RTC_LOAD_TOP_N``).
        rates_enabled: ``OTEL_RTC_RATES`` (``true``/``false``).
        load_enabled: ``OTEL_RTC_LOAD`` (``true``/``false``).
        sample_period_s: In-process sampler period (``OTEL_RTC_SAMPLE_PERIOD``); default
            the shortest peak sub-window.
        resource_idle_s: Collector only: the series of a resource that sent nothing for
            this many seconds of data time are forgotten (``OTEL_RTC_RESOURCE_IDLE``).
        reading_min_span_s: Collector only: a series is read once its new data spans
            this many seconds, or when a batch of its resource comes without it
            (``OTEL_RTC_RATE_READING_SPAN``; ``0``: at every batch). In-process, the
            exports are the reading instants.
    """

    include: tuple[str, ...] = DEFAULT_INCLUDE
    rate: RateConfig = field(default_factory=RateConfig)
    load: TrafficLoadConfig = field(default_factory=TrafficLoadConfig)
    rates_enabled: bool = True
    load_enabled: bool = True
    sample_period_s: float = 1.0
    resource_idle_s: float = 600.0
    reading_min_span_s: float = 10.0


def _floats(raw: str) -> tuple[float, ...]:
    if raw.strip().lower() == "none":
        return ()
    return tuple(float(x) for x in raw.split(",") if x.strip())


def settings_from_env(environ: Mapping[str, str]) -> ProcessorSettings:
    """Read :class:`ProcessorSettings`; a bad value logs a warning and uses the default."""
    d = RateConfig()
    ld = TrafficLoadConfig()

    def get(name: str, parse: Callable[[str], object], default: object) -> object:
        return env_value(name, parse, default, environ)

    include = get("OTEL_RTC_RATE_METRICS",
                  lambda r: tuple(p.strip() for p in r.split(",") if p.strip()), DEFAULT_INCLUDE)
    try:
        rate = RateConfig(
            peak_subwindows_s=get("OTEL_RTC_RATE_PEAKS", _floats,  # type: ignore[arg-type]
                                  d.peak_subwindows_s),
            windows_s=get("OTEL_RTC_RATE_WINDOWS", _floats, d.windows_s),  # type: ignore[arg-type]
            max_series=get("OTEL_RTC_RATE_MAX_SERIES", int, d.max_series),  # type: ignore[arg-type]
            quiet_intervals=get("OTEL_RTC_RATE_QUIET_INTERVALS", int,  # type: ignore[arg-type]
                                d.quiet_intervals),
            wrap_modulus=get("OTEL_RTC_RATE_WRAP_MODULUS", float, d.wrap_modulus))  # type: ignore[arg-type]
    except ValueError as exc:
        _logger.warning("otel_rtc: invalid OTEL_RTC_RATE_* settings (%s); using defaults", exc)
        rate = d
    try:
        load = TrafficLoadConfig(top_n=get("OTEL_RTC_LOAD_TOP_N", int, ld.top_n),  # type: ignore[arg-type]
                                 rate=rate, weights=LoadWeights())
    except ValueError as exc:
        _logger.warning("otel_rtc: invalid OTEL_RTC_LOAD_* settings (%s); using defaults", exc)
        load = TrafficLoadConfig(rate=rate)
    period = get("OTEL_RTC_SAMPLE_PERIOD", float, rate.peak_subwindows_s[0])
    if not (isinstance(period, float) and math.isfinite(period) and period > 0):
        _logger.warning("otel_rtc: ignoring OTEL_RTC_SAMPLE_PERIOD=%r", period)
        period = rate.peak_subwindows_s[0]
    idle = get("OTEL_RTC_RESOURCE_IDLE", float, 600.0)
    if not (isinstance(idle, float) and math.isfinite(idle) and idle > 0):
        _logger.warning("otel_rtc: ignoring OTEL_RTC_RESOURCE_IDLE=%r", idle)
        idle = 600.0
    span = get("OTEL_RTC_RATE_READING_SPAN", float, 10.0)
    if not (isinstance(span, float) and math.isfinite(span) and span >= 0):
        _logger.warning("otel_rtc: ignoring OTEL_RTC_RATE_READING_SPAN=%r", span)
        span = 10.0
    return ProcessorSettings(
        include=include,  # type: ignore[arg-type]
        rate=rate, load=load,
        rates_enabled=get("OTEL_RTC_RATES", parse_bool, True),  # type: ignore[arg-type]
        load_enabled=get("OTEL_RTC_LOAD", parse_bool, True),  # type: ignore[arg-type]
        sample_period_s=float(period),
        resource_idle_s=idle,
        reading_min_span_s=span,
    )
