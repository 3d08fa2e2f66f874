"""The span of one message a handler processes (``spans`` and ``retroactive`` modes).

A ``CONSUMER`` span named ``{operation} {destination}`` from the processing start to
its end, with the message id and attempt, linked to the trace context the message's
headers carry and to the burst in progress. At its end it gets the message's queue wait
and receive-to-finish latency (or that the received time was unknown) and, on a
failure, ``error.type``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanContext, SpanKind

from otel_rtc.core import names
from otel_rtc.instrumentation.self_telemetry import record_failure, report_error
from otel_rtc.version import __version__

__all__ = [
    "ATTR_QUEUE_WAIT",
    "ATTR_RECEIVED_KNOWN",
    "ATTR_RECEIVE_TO_FINISH",
    "NO_MESSAGE",
    "MessageSpans",
    "call_extractor",
    "end_span",
]

ATTR_QUEUE_WAIT = "otel_rtc.message.queue_wait"
ATTR_RECEIVE_TO_FINISH = "otel_rtc.message.receive_to_finish"
ATTR_RECEIVED_KNOWN = "otel_rtc.message.received_known"

NO_MESSAGE: Any = object()
"""The message of a call without arguments: nothing to extract values from."""

_CONSUMER = SpanKind.CONSUMER


def call_extractor(extractor: Callable[[Any], Any], msg: Any) -> Any:
    """A user extractor's value; ``None`` when it raises (reported, text withheld)."""
    try:
        return extractor(msg)
    except Exception as exc:
        report_error("handler.extractor", exc)
        return None


class MessageSpans:
    """Starts the spans of one handler's messages.

    Args:
        tracer_provider: Tracer provider (``None``: global).
        name: The span name.
        attributes: The handler's messaging attributes, set on every span.
        message_id: Extracts ``messaging.message.id`` from a message, or ``None``.
        headers: Extracts headers carrying a propagated trace context, or ``None``.
        monitor: The handler's burst monitor (its burst span becomes a link), or ``None``.
    """

    __slots__ = ("_attributes", "_headers", "_message_id", "_monitor", "_name", "_tracer")

    def __init__(self, tracer_provider: Any, name: str, attributes: Mapping[str, Any],
                 message_id: Callable[[Any], str | None] | None,
                 headers: Callable[[Any], Mapping[str, str] | None] | None,
                 monitor: Any) -> None:
        self._tracer = trace.get_tracer("otel_rtc", __version__, tracer_provider)
        self._name = name
        self._attributes = attributes
        self._message_id = message_id
        self._headers = headers
        self._monitor = monitor

    def start(self, start_ns: int, msg: Any, message_id: str | None,
              headers: Mapping[str, str] | None, label: str, retry: int | None) -> Any:
        """Start the span of ``msg`` at ``start_ns``.

        ``message_id`` and ``headers`` are explicit values; when ``None`` they are
        extracted from ``msg`` (only for a span that records).
        """
        span = self._tracer.start_span(
            self._name, kind=_CONSUMER, attributes=self._attributes,
            start_time=start_ns, record_exception=False, set_status_on_exception=False)
        if not span.is_recording():
            return span
        if message_id is None and self._message_id is not None and msg is not NO_MESSAGE:
            message_id = call_extractor(self._message_id, msg)
        if message_id is not None:
            span.set_attribute(names.ATTR_MESSAGE_ID, str(message_id))
        span.set_attribute(names.ATTR_ATTEMPT, label)
        if retry is not None:
            span.set_attribute(names.ATTR_RETRY_COUNT, retry)
        if headers is None and self._headers is not None and msg is not NO_MESSAGE:
            headers = call_extractor(self._headers, msg)
        if headers:
            ctx = trace.get_current_span(propagate.extract(headers)).get_span_context()
            if ctx.is_valid:
                span.add_link(ctx)
        mon = self._monitor
        if mon is not None and mon.enabled:
            bctx = mon.current_span_context()
            if bctx is not None:
                span.add_link(bctx)
        return span


def end_span(span: Any, t_f: int, wait_s: float | None, r2f_s: float | None,
             exc: BaseException | None) -> SpanContext | None:
    """End ``span`` at ``t_f``; its context when sampled (for an exemplar)."""
    ctx = None
    if span.is_recording():
        if wait_s is not None:
            span.set_attribute(ATTR_QUEUE_WAIT, wait_s)
            span.set_attribute(ATTR_RECEIVE_TO_FINISH, r2f_s)
        else:
            span.set_attribute(ATTR_RECEIVED_KNOWN, False)
        if exc is not None:
            record_failure(span, exc, t_f)
        sc = span.get_span_context()
        if sc.trace_flags.sampled:
            ctx = sc
    span.end(end_time=t_f)
    return ctx
