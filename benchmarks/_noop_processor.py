"""A Rotel metrics processor that does nothing: the cost of Rotel's Python hook itself.

``bench_processor`` runs the collector with it as a second baseline, next to no processor
at all, to separate what calling into the embedded interpreter costs from what
``otel_rtc.collector.processor`` adds.
"""

from typing import Any


def process_metrics(resource_metrics: Any) -> None:
    """Leave the ``ResourceMetrics`` unchanged."""
    return None
