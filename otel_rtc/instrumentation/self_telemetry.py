"""Self-telemetry: internal errors, dropped input and clamped durations.

Nothing on the telemetry path may raise into the application. Every failure inside
otel_rtc goes through :func:`report_error` (logged once per component and exception
type, then counted) and every piece of input that is rejected goes through
:func:`count_drop`. The counts are exported as observable counters by
:func:`register_self_metrics`, so no loss is ever silent.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
from collections.abc import Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.trace import Status, StatusCode

from otel_rtc.core import names
from otel_rtc.core.env import env_bool

_logger = logging.getLogger("otel_rtc")

ENV_RECORD_EXCEPTION_MESSAGES = "OTEL_RTC_RECORD_EXCEPTION_MESSAGES"
"""The one opt-in for exception text (see :func:`exception_messages_allowed`)."""

_opt_in: tuple[str | None, bool] = (None, False)

_lock = threading.Lock()
_errors: dict[tuple[str, str], int] = {}
_drops: dict[tuple[str, str], int] = {}
_clamps: dict[str, int] = {}
_logged: set[tuple[str, str]] = set()


def exception_messages_allowed() -> bool:
    """Whether exception messages and stack traces may leave the process.

    Off by default: an exception's message (and so a formatted stack trace) can quote
    the payload being processed. Only ``OTEL_RTC_RECORD_EXCEPTION_MESSAGES=true`` turns
    it on, for handler and pub/sub spans (status description, ``exception.message`` and
    ``exception.stacktrace``) and for otel_rtc's log lines about errors raised by user
    callbacks (extractors) and inside otel_rtc. Without it only the exception's type
    (and, in logs, the code locations of the traceback) is recorded. Read on every
    call, so it can be switched at run time.
    """
    global _opt_in
    raw = os.environ.get(ENV_RECORD_EXCEPTION_MESSAGES)
    if raw != _opt_in[0]:  # parse (and warn about a bad value) once per value
        _opt_in = (raw, env_bool(ENV_RECORD_EXCEPTION_MESSAGES, False))
    return _opt_in[1]


def record_failure(span: Any, exc: BaseException | str, t_ns: int) -> None:
    """Mark ``span`` failed by ``exc`` (an exception, or an ``error.type`` value).

    Always: ``error.type``, ERROR status described by the type, and an ``exception``
    event with ``exception.type``. The exception's message and stack trace only with
    ``OTEL_RTC_RECORD_EXCEPTION_MESSAGES=true``
    (:func:`~otel_rtc.instrumentation.self_telemetry.exception_messages_allowed`): a
    message can quote the payload.
    """
    etype = exc if isinstance(exc, str) else type(exc).__qualname__
    span.set_attribute(names.ATTR_ERROR_TYPE, etype)
    if isinstance(exc, BaseException) and exception_messages_allowed():
        span.set_status(Status(StatusCode.ERROR, f"{etype}: {exc}"))
        span.record_exception(exc, timestamp=t_ns)
    else:
        span.set_status(Status(StatusCode.ERROR, etype))
        span.add_event("exception", {"exception.type": etype}, timestamp=t_ns)


def report_error(component: str, exc: BaseException) -> None:
    """Count an internal error and log it the first time it is seen.

    The log line names the exception's type and the code locations of its traceback;
    its message only with :func:`exception_messages_allowed`. Never raises.
    """
    try:
        etype = type(exc).__qualname__
        key = (component, etype)
        with _lock:
            _errors[key] = _errors.get(key, 0) + 1
            first = key not in _logged
            if first:
                _logged.add(key)
        if not first:
            return
        if exception_messages_allowed():
            _logger.warning("otel_rtc: internal error in %s (%s: %s); further ones are only "
                            "counted in otel_rtc.internal.errors", component, etype, exc,
                            exc_info=exc)
        else:
            # Locations only: a source line could hold a literal worth hiding too.
            where = "".join(f'  File "{f.filename}", line {f.lineno}, in {f.name}\n'
                            for f in traceback.extract_tb(exc.__traceback__))
            _logger.warning("otel_rtc: internal error in %s (%s; message not shown, set %s=true "
                            "to show it); further ones are only counted in "
                            "otel_rtc.internal.errors\nRaised at (locations only):\n%s",
                            component, etype, ENV_RECORD_EXCEPTION_MESSAGES, where.rstrip())
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
        Observation(v, {names.ATTR_COMPONENT: c, names.ATTR_ERROR_TYPE: t}) for (c, t), v in items
    ]


def _observe_drops(_options: CallbackOptions) -> Iterable[Observation]:
    with _lock:
        items = list(_drops.items())
    return [
        Observation(v, {names.ATTR_COMPONENT: c, names.ATTR_DROP_REASON: r})
        for (c, r), v in items
    ]


def _observe_clamps(_options: CallbackOptions) -> Iterable[Observation]:
    with _lock:
        items = list(_clamps.items())
    return [Observation(v, {names.ATTR_COMPONENT: c}) for c, v in items]


_registered: set[int] = set()


def register_self_metrics(meter: Meter) -> None:
    """Create the self-telemetry observable counters on ``meter`` (once per meter)."""
    if id(meter) in _registered:
        return
    _registered.add(id(meter))
    meter.create_observable_counter(
        names.INTERNAL_ERRORS,
        callbacks=[_observe_errors],
        unit="{error}",
        description="Errors inside otel_rtc that were contained instead of raised.",
    )
    meter.create_observable_counter(
        names.TELEMETRY_DROPPED,
        callbacks=[_observe_drops],
        unit="{item}",
        description="Telemetry input rejected by otel_rtc (invalid, over a cap, ...).",
    )
    meter.create_observable_counter(
        names.INTERNAL_CLAMPED,
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
