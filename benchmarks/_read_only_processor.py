"""A Rotel metrics processor that only reads what any rate processor must read.

For every point of every monotonic sum it reads the time, the start time, the value and
the attributes (key and value of each, once, as ``otel_rtc.collector.processor`` does),
and computes nothing. ``bench_processor`` runs it as the floor of a Python processor:
what knowing each point's series and value costs through Rotel's pyo3 objects, before
any rate is derived.
"""

from operator import attrgetter
from typing import Any

_KEY_AND_VALUE = attrgetter("key", "value.value")
read = 0
"""Points read so far (kept so the reads cannot be skipped as unused)."""


def process_metrics(resource_metrics: Any) -> None:
    """Read every point's identity and value; leave the ``ResourceMetrics`` unchanged."""
    global read
    for sm in list(resource_metrics.scope_metrics or ()):
        for m in list(sm.metrics or ()):
            _name = m.name
            inner = m.data[0]
            for p in list(inner.data_points or ()):
                _t = p.time_unix_nano
                _s = p.start_time_unix_nano
                _v = p.value
                _a = list(map(_KEY_AND_VALUE, p.attributes))
                read += 1
