"""Self-telemetry: internal errors, dropped input and clamped durations.

Nothing on the telemetry path may raise into the application. Every failure inside
otel_rtc goes through :func:`report_error` (logged once per component and exception
type, then counted) and every piece of input that is rejected goes through
:func:`count_drop`. The counts are exported as observable counters by
:func:`register_self_metrics`, so no loss is ever silent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

_logger = logging.getLogger("otel_rtc")

_lock = threading.Lock()
_errors: dict[tuple[str, str], int] = {}
_drops: dict[tuple[str, str], int] = {}
_clamps: dict[str, int] = {}
_logged: set[tuple[str, str]] = set()


def report_error(component: str, exc: BaseException) -> None:
    """Count an internal error and log it the first time it is seen.

    Never raises.
    """
    try:
        key = (component, type(exc).__qualname__)
        with _lock:
            _errors[key] = _errors.get(key, 0) + 1
            first = key not in _logged
            if first:
                _logged.add(key)
        if first:
            _logger.warning(
                "otel_rtc: internal error in %s (%s: %s); further ones are only counted "
                "in otel_rtc.internal.errors",
                component,
                type(exc).__qualname__,
                exc,
                exc_info=exc,
            )
    except Exception:  # pragma: no cover - last-resort guard
        pass


def count_drop(component: str, reason: str, n: int = 1) -> None:
    """Count ``n`` rejected items. Logged once per (component, reason). Never raises."""
    key = (component, reason)
    with _lock:
        _drops[key] = _drops.get(key, 0) + n
        first = ("drop", component + "/" + reason) not in _logged
        if first:
            _logged.add(("drop", component + "/" + reason))
    if first:
        _logger.info(
            "otel_rtc: %s dropped input (%s); counted in otel_rtc.telemetry.dropped",
            component,
            reason,
        )


def count_clamp(component: str, n: int = 1) -> None:
    """Count a duration clamped at zero because the clock went backwards."""
    with _lock:
        _clamps[component] = _clamps.get(component, 0) + n


def error_count(component: str | None = None) -> int:
    """Total internal errors, optionally for one component (for tests and the demo)."""
    with _lock:
        return sum(v for (c, _), v in _errors.items() if component is None or c == component)


def drop_count(component: str | None = None, reason: str | None = None) -> int:
    """Total dropped items, optionally filtered (for tests and the demo)."""
    with _lock:
        return sum(
            v
            for (c, r), v in _drops.items()
            if (component is None or c == component) and (reason is None or r == reason)
        )


def _observe_errors(_options: CallbackOptions) -> Iterable[Observation]:
    with _lock:
        items = list(_errors.items())
    return [
        Observation(v, {"otel_rtc.component": c, "error.type": t}) for (c, t), v in items
    ]


def _observe_drops(_options: CallbackOptions) -> Iterable[Observation]:
    with _lock:
        items = list(_drops.items())
    return [
        Observation(v, {"otel_rtc.component": c, "otel_rtc.drop.reason": r})
        for (c, r), v in items
    ]


def _observe_clamps(_options: CallbackOptions) -> Iterable[Observation]:
    with _lock:
        items = list(_clamps.items())
    return [Observation(v, {"otel_rtc.component": c}) for c, v in items]


_registered: set[int] = set()


def register_self_metrics(meter: Meter) -> None:
    """Create the self-telemetry observable counters on ``meter`` (once per meter)."""
    if id(meter) in _registered:
        return
    _registered.add(id(meter))
    meter.create_observable_counter(
        "otel_rtc.internal.errors",
        callbacks=[_observe_errors],
        unit="{error}",
        description="Errors inside otel_rtc that were contained instead of raised.",
    )
    meter.create_observable_counter(
        "otel_rtc.telemetry.dropped",
        callbacks=[_observe_drops],
        unit="{item}",
        description="Telemetry input rejected by otel_rtc (invalid, over a cap, ...).",
    )
    meter.create_observable_counter(
        "otel_rtc.internal.clamped",
        callbacks=[_observe_clamps],
        unit="{duration}",
        description="Durations clamped at zero because the clock went backwards.",
    )


def _reset_for_tests() -> None:
    with _lock:
        _errors.clear()
        _drops.clear()
        _clamps.clear()
        _logged.clear()
