"""Default processor chain of the export stage (filled in by the processor module)."""

from __future__ import annotations

from otel_rtc._exporter import MetricsProcessor


def default_processors() -> list[MetricsProcessor]:
    """Processors that ``configure()`` and the entry-point exporter install."""
    return []
