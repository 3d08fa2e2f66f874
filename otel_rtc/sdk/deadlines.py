"""One deadline for many calls: how the Telemetry handle flushes and shuts down.

Every provider's flush or shutdown runs at once, each bounded by the same deadline, and
the caller returns by it even if one of them (an injected provider's, say) does not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from otel_rtc.instrumentation.self_telemetry import report_error

__all__ = ["deadlines", "ms_left", "run_until"]

_logger = logging.getLogger("otel_rtc")

# A call bounded by a deadline returns a few ms after it (thread switches, counting
# what it abandons, stopping the exporters); this margin keeps that inside timeout_s.
_DEADLINE_SLACK_S = 0.05


def deadlines(timeout_s: float) -> tuple[float, float]:
    """``(end, deadline)``: the caller returns by ``end``; the work stops at ``deadline``.

    Both are ``time.monotonic()`` values, ``timeout_s`` from now and a little before.
    """
    timeout_s = max(timeout_s, 0.0)
    end = time.monotonic() + timeout_s
    return end, end - min(_DEADLINE_SLACK_S, timeout_s / 10)


def ms_left(deadline: float) -> float:
    """Milliseconds until ``deadline`` (monotonic), at least 0."""
    return max(deadline - time.monotonic(), 0.0) * 1000


def run_until(end: float, calls: Sequence[Callable[[], Any]], component: str) -> list[Any]:
    """Run ``calls`` concurrently in daemon threads; wait for them until ``end``.

    Each call is bounded by the same deadline itself; this keeps one that is not (an
    injected provider's, say) from holding the caller up. Returns each call's result,
    ``None`` for one that raised or had not finished.
    """
    results: list[Any] = [None] * len(calls)

    def run(i: int, fn: Callable[[], Any]) -> None:
        try:
            results[i] = fn()
        except Exception as exc:
            report_error(component, exc)

    threads = [threading.Thread(target=run, args=(i, fn), name="otel_rtc-shutdown", daemon=True)
               for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(end - time.monotonic(), 0.0))
    if any(t.is_alive() for t in threads):
        _logger.warning("otel_rtc: telemetry flush/shutdown did not finish by its deadline; "
                        "leaving it to a background thread")
    return results
