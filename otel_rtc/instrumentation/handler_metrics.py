"""The metrics of message handlers: instruments, attribute sets and their cap.

Per message, a :class:`~otel_rtc.instrumentation.handler.MessageHandler` records the
process duration, the queue wait and the receive-to-finish latency (histograms) and
counts the message, under the handler's messaging attributes, its attempt label
(``first`` / ``retry``) and, for a failure, ``error.type``. The attribute sets are built
once per handler and capped process-wide (:data:`HANDLER_SERIES_LIMIT`), the error types
per handler, so that no number of destinations or exception types exceeds the SDK's
series limit.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from otel_rtc.core import names
from otel_rtc.instrumentation.attributes import AttrSet, intern_attrs
from otel_rtc.instrumentation.recording import (
    MESSAGING_DURATION_BUCKETS,
    CounterSpec,
    HistogramSpec,
)
from otel_rtc.instrumentation.self_telemetry import count_drop

__all__ = [
    "HANDLER_COUNTERS",
    "HANDLER_HISTOGRAMS",
    "HANDLER_SERIES_LIMIT",
    "MESSAGE_LATENCY_BUCKETS",
    "HandlerSeries",
    "classify_attempt",
]

_COMPONENT = "handler"

MESSAGE_LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
    0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
)
"""Seconds, for queue wait and receive-to-finish: finer than the semconv buckets at the
low end (a healthy queue wait is well under 5 ms) and longer at the top (bursts of
several seconds)."""

PROCESS_DURATION = HistogramSpec(
    names.PROCESS_DURATION, "s", "Duration of processing operation.",
    MESSAGING_DURATION_BUCKETS)
QUEUE_WAIT = HistogramSpec(
    names.QUEUE_WAIT_DURATION, "s",
    "Time from a message being received (enqueued) to its processing starting. Only "
    "messages whose received time is known.", MESSAGE_LATENCY_BUCKETS)
RECEIVE_TO_FINISH = HistogramSpec(
    names.RECEIVE_TO_FINISH_DURATION, "s",
    "Time from a message being received (enqueued) to its processing finishing. Only "
    "messages whose received time is known.", MESSAGE_LATENCY_BUCKETS)
CONSUMED = CounterSpec(
    names.CONSUMED_MESSAGES, "{message}",
    "Number of messages that were delivered to the application (processed).")

HANDLER_HISTOGRAMS: tuple[HistogramSpec, ...] = (PROCESS_DURATION, QUEUE_WAIT,
                                                  RECEIVE_TO_FINISH)
HANDLER_COUNTERS: tuple[CounterSpec, ...] = (CONSUMED,)

HANDLER_SERIES_LIMIT = 1000
"""Distinct attribute sets of the handler metrics, process-wide (below the SDK's own
limit of 2,000 series per metric). Beyond it a handler's series fold into one overflow
set whose free-form attributes (system, destination, operation) are ``_other``."""

_MAX_ERROR_TYPES = 64


class _SeriesCap:
    """Process-wide cap on the attribute sets of the handler metrics."""

    # The overflow sets (2 attempt labels x with or without error.type) are kept out of
    # the cap's count, so the total never exceeds the limit.
    _RESERVED = 4

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._admitted: set[tuple[Any, ...]] = set()
        self._lock = threading.Lock()

    def attrs(self, base: Mapping[str, str], label: str, etype: str | None) -> AttrSet:
        """The attribute set for ``base`` + attempt ``label`` (+ ``error.type``)."""
        key = (*base.values(), label, etype)
        with self._lock:
            admit = key in self._admitted or len(self._admitted) < self.limit - self._RESERVED
            if admit:
                self._admitted.add(key)
        extra: dict[str, str] = {names.ATTR_ATTEMPT: label}
        if not admit:
            count_drop(_COMPONENT, "series_cap")
            base = dict.fromkeys(base, names.OTHER)
            etype = None if etype is None else names.ERROR_TYPE_OTHER
        if etype is not None:
            extra[names.ATTR_ERROR_TYPE] = etype
        return intern_attrs({**base, **extra})


_series = _SeriesCap(HANDLER_SERIES_LIMIT)


class HandlerSeries:
    """The attribute sets of one handler's metrics, each built once.

    Args:
        base: The handler's messaging attributes (system, destination, operation).

    Attributes:
        by_label: The sets of messages processed without an exception, by attempt label.
    """

    __slots__ = ("_base", "_errors", "_lock", "by_label")

    def __init__(self, base: Mapping[str, str]) -> None:
        self._base = base
        self.by_label: dict[str, AttrSet] = {
            label: _series.attrs(base, label, None) for label in ("first", "retry")}
        self._errors: dict[tuple[str, str], AttrSet] = {}
        self._lock = threading.Lock()

    def error(self, label: str, etype: str) -> AttrSet:
        """The set of a failed message: attempt ``label``, ``error.type`` ``etype``.

        Beyond 64 error types per handler the type is ``_OTHER`` (counted, reason
        ``error_type_cap``).
        """
        key = (label, etype)
        found = self._errors.get(key)
        if found is not None:
            return found
        with self._lock:
            if len(self._errors) >= _MAX_ERROR_TYPES:
                count_drop(_COMPONENT, "error_type_cap")
                key = (label, names.ERROR_TYPE_OTHER)
                found = self._errors.get(key)
                if found is not None:
                    return found
            attrs = self._errors[key] = _series.attrs(self._base, label, key[1])
            return attrs


def classify_attempt(a: Any) -> tuple[str, int | None]:
    """``(otel_rtc.attempt, messaging.message.retry.count)`` for an attempt value."""
    if a is None or a is False:
        return "first", None
    if a is True:
        return "retry", 1  # a resend flag: at least one retry, exact count unknown
    if type(a) is int and a >= 0:
        return ("first", None) if a <= 1 else ("retry", a - 1)
    count_drop(_COMPONENT, "invalid_attempt")
    return "first", None

