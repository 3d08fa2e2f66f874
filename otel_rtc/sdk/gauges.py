"""The derived points of the in-process processors as SDK gauges.

:func:`derived_gauges` turns a :class:`~otel_rtc.core.derived.Deriver`'s output
(``DerivedGroups``) into SDK ``Metric`` s: one gauge per derived metric name, its points
built by :data:`build_point`, the fast equivalent of the ``NumberDataPoint``
constructor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics.export import Gauge, Metric, NumberDataPoint

from otel_rtc.core.derived import Attrs, DerivedGroups

__all__ = ["MAX_CACHED_ATTRS", "build_point", "derived_gauges"]

MAX_CACHED_ATTRS = 100_000
"""Attribute dicts a processor keeps for reuse between exports (cleared when full)."""


_NDP_FIELDS = ("attributes", "start_time_unix_nano", "time_unix_nano", "value", "exemplars")


def _point_builder() -> Callable[[dict[str, Any], int, int, float], NumberDataPoint]:
    """A builder of SDK ``NumberDataPoint`` s, several times cheaper than its constructor.

    The SDK's frozen dataclass sets each field through ``object.__setattr__`` (about
    2 us a point, more than half the processor's transform). When the class has exactly
    the fields this module knows, the builder fills the instance's ``__dict__`` in one
    step instead: an equal object (``tests/test_rate_processor.py`` checks). Any other
    SDK version gets the constructor.
    """
    import dataclasses

    try:
        names = tuple(f.name for f in dataclasses.fields(NumberDataPoint))
        probe = NumberDataPoint({}, 0, 0, 0.0)
        plain = type(vars(probe)) is dict and not hasattr(NumberDataPoint, "__slots__")
    except Exception:  # not a dataclass, or instances without a __dict__
        names, plain = (), False
    if names != _NDP_FIELDS or not plain:
        return NumberDataPoint
    new = object.__new__

    def build(attributes: dict[str, Any], start: int, time: int, value: float
              ) -> NumberDataPoint:
        p = new(NumberDataPoint)
        p.__dict__.update(attributes=attributes, start_time_unix_nano=start,
                          time_unix_nano=time, value=value, exemplars=[])
        return p

    return build


build_point = _point_builder()


def derived_gauges(groups: DerivedGroups,
                cache: dict[int, tuple[Attrs, dict[str, Any]]]) -> list[Metric]:
    """SDK gauges of ``groups``.

    ``cache`` maps ``id(attrs)`` to ``(attrs, dict(attrs))``: the deriver hands out the
    same attribute tuple for the same series on every export, so its dict is built once.
    The entry holds the tuple itself, so its id cannot be reused while cached. The dicts
    are shared between exports; exporters only read them.
    """
    if len(cache) >= MAX_CACHED_ATTRS:
        cache.clear()
    out = []
    ndp = build_point
    for name, (unit, desc, pts) in groups.items():
        if not pts:
            continue
        dps = []
        for a, v, start, t in pts:
            e = cache.get(id(a))
            if e is None or e[0] is not a:
                e = cache[id(a)] = (a, dict(a))
            dps.append(ndp(e[1], start, t, float(v)))
        out.append(Metric(name=name, description=desc, unit=unit, data=Gauge(data_points=dps)))
    return out
