"""A Rotel metrics processor that reads like the read-only one and emits otel_rtc's output.

It derives nothing. Every 10th batch of a resource (the 10 s reading span of the
benchmark's 1 s batches) it appends the points ``otel_rtc.collector.processor`` appends at
that instant, with the same names and attributes, built by the same
:mod:`otel_rtc.collector.rotel_output`: a ``.rate`` and a ``.rate.peak`` point per series
and the room load (six ``load.bytes.rate`` points, a score and a participant count per
room). ``bench_processor`` runs it as the floor of any processor that emits these
outputs through ``rotel_sdk``: what reading and emitting cost, with no derivation at all.
"""

import sys
from operator import attrgetter
from pathlib import Path
from typing import Any

try:  # the agent's interpreter uses the system sys.path: reach the package next to us
    import otel_rtc  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otel_rtc.collector.rotel_output import RotelSdk, append_scope, to_metrics

_KEY_AND_VALUE = attrgetter("key", "value.value")
_SPAN_NS = 10 * 1_000_000_000
_sdk: RotelSdk | None = None
_batches: dict[tuple[Any, ...], int] = {}


def process_metrics(resource_metrics: Any) -> None:
    """Read every point; on every 10th batch of the resource, append the derived points."""
    global _sdk
    if _sdk is None:
        _sdk = RotelSdk()
    read = []
    for sm in list(resource_metrics.scope_metrics or ()):
        for m in list(sm.metrics or ()):
            _name = m.name
            inner = m.data[0]
            for p in list(inner.data_points or ()):
                t = p.time_unix_nano
                _start = p.start_time_unix_nano
                _value = p.value
                read.append((tuple(map(_KEY_AND_VALUE, p.attributes)), t))
    res = tuple(map(_KEY_AND_VALUE, resource_metrics.resource.attributes))
    n = _batches[res] = _batches.get(res, 0) + 1
    if n % 10 or not read:
        return
    t = read[0][1]
    t0 = t - _SPAN_NS
    rooms = sorted({dict(a)["otel_rtc.room"] for a, _t in read})
    groups = {
        "otel_rtc.traffic.bytes.rate": ("By/s", "", [
            ((*a, ("otel_rtc.rate.window", "span")), 1.0, t0, t) for a, _t in read]),
        "otel_rtc.traffic.bytes.rate.peak": ("By/s", "", [
            ((*a, ("otel_rtc.rate.subwindow", "1s")), 2.0, t0, t) for a, _t in read]),
        "otel_rtc.traffic.load.bytes.rate": ("By/s", "", [
            ((("otel_rtc.direction", d), ("otel_rtc.media.kind", k), ("otel_rtc.room", r)),
             3.0, t0, t) for r in rooms for d in ("up", "down")
            for k in ("audio", "video", "data")]),
        "otel_rtc.traffic.load.score": ("1", "", [
            ((("otel_rtc.room", r),), 4.0, t0, t) for r in rooms]),
        "otel_rtc.traffic.load.participants": ("{participant}", "", [
            ((("otel_rtc.room", r),), 5.0, t0, t) for r in rooms]),
    }
    append_scope(_sdk, resource_metrics, to_metrics(_sdk, groups))
