"""Message-handler telemetry: three timestamps per message, spans, metrics and bursts.

A message server takes a message from its receive buffer, processes it, and takes the
next one. Per message, :class:`MessageHandler` knows three timestamps (epoch ns):

* **received** ``t_r``: an explicit ``received_ns``, else what the ``received``
  extractor returns for the message, else the enqueue stamp of the item last taken
  from an instrumented buffer (:mod:`otel_rtc.instrumentation.buffers`) in this thread or
  task. Often it is *unknown* (nothing stamped the message); then queue wait and receive-to-finish
  are not recorded for that message, never guessed;
* **processing started** ``t_s``: entry of the decorated call / ``with`` block;
* **processing finished** ``t_f``: its exit, normal or by exception.

From them: queue wait ``t_s - t_r``, process duration ``t_f - t_s`` and
receive-to-finish latency ``t_f - t_r`` (each clamped at 0, clamps counted).

One object is both a decorator (sync and async functions and methods, through
``wrapt``; the wrapper kind is chosen once at decoration time) and a reentrant,
thread- and task-safe context manager (``with handler:`` / ``async with handler:``).
:meth:`MessageHandler.message` takes per-message values explicitly.

Modes, cheapest first:

* ``"bursts"``: only feeds the burst monitor (two clock reads and two calls per
  message while burst tracking is enabled, nothing otherwise);
* ``"metrics"``: the histograms and the consumed counter, one ``deque.append`` per
  message through local aggregation;
* ``"retroactive"``: metrics, plus a span emitted *after the fact* (explicit start
  and end times) only for messages slower than ``slow_threshold_s`` or failed;
* ``"spans"``: metrics plus a ``CONSUMER`` span per message, made current while the
  handler runs.

Spans follow the messaging semantic conventions (name ``{operation} {destination}``,
``messaging.operation.type=process``). A trace context propagated in the message's
headers becomes a *link* (not the parent), as does the burst in progress. Payloads are
never read or recorded: extractors return only what they are asked for.
"""

from __future__ import annotations

import contextvars
import inspect
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import wrapt
from opentelemetry import context as context_api
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_rtc.core.clock import NS_PER_S
from otel_rtc.instrumentation.attributes import AttrSet, intern_attrs
from otel_rtc.instrumentation.buffers import _last_enqueue, _take_enqueue_stamp, resolve_monitor
from otel_rtc.instrumentation.self_telemetry import count_clamp, count_drop, report_error
from otel_rtc.sdk import aggregation as _local_aggregation
from otel_rtc.sdk.aggregation import (
    MESSAGING_DURATION_BUCKETS,
    CounterSpec,
    HistogramSpec,
    Recorder,
    get_recorder,
)
from otel_rtc.version import __version__

__all__ = [
    "HANDLER_COUNTERS",
    "HANDLER_HISTOGRAMS",
    "MESSAGE_LATENCY_BUCKETS",
    "MODES",
    "MessageHandler",
    "MessageScope",
]

_COMPONENT = "handler"

MODES = ("bursts", "metrics", "spans", "retroactive")

MESSAGE_LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
    0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
)
"""Seconds, for queue wait and receive-to-finish: finer than the semconv buckets at the
low end (a healthy queue wait is well under 5 ms) and longer at the top (bursts of
several seconds)."""

PROCESS_DURATION = HistogramSpec(
    "messaging.process.duration", "s",
    "Duration of processing operation.", MESSAGING_DURATION_BUCKETS)
QUEUE_WAIT = HistogramSpec(
    "otel_rtc.message.queue_wait.duration", "s",
    "Time from a message being received (enqueued) to its processing starting. Only "
    "messages whose received time is known.", MESSAGE_LATENCY_BUCKETS)
RECEIVE_TO_FINISH = HistogramSpec(
    "otel_rtc.message.receive_to_finish.duration", "s",
    "Time from a message being received (enqueued) to its processing finishing. Only "
    "messages whose received time is known.", MESSAGE_LATENCY_BUCKETS)
CONSUMED = CounterSpec(
    "messaging.client.consumed.messages", "{message}",
    "Number of messages that were delivered to the application (processed).")

HANDLER_HISTOGRAMS: tuple[HistogramSpec, ...] = (PROCESS_DURATION, QUEUE_WAIT,
                                                  RECEIVE_TO_FINISH)
HANDLER_COUNTERS: tuple[CounterSpec, ...] = (CONSUMED,)

ATTR_ATTEMPT = "otel_rtc.attempt"
ATTR_QUEUE_WAIT = "otel_rtc.message.queue_wait"
ATTR_RECEIVE_TO_FINISH = "otel_rtc.message.receive_to_finish"
ATTR_RECEIVED_KNOWN = "otel_rtc.message.received_known"
ATTR_RETRY_COUNT = "messaging.message.retry.count"
ATTR_MESSAGE_ID = "messaging.message.id"

_MAX_ERROR_TYPES = 64
_OTHER = "_OTHER"
_NO_MSG: Any = object()
_CONSUMER = SpanKind.CONSUMER


def _classify_attempt(a: Any) -> tuple[str, int | None]:
    """``(otel_rtc.attempt, messaging.message.retry.count)`` for an attempt value."""
    if a is None or a is False:
        return "first", None
    if a is True:
        return "retry", 1  # a resend flag: at least one retry, exact count unknown
    if type(a) is int and a >= 0:
        return ("first", None) if a <= 1 else ("retry", a - 1)
    count_drop(_COMPONENT, "invalid_attempt")
    return "first", None


class _Msg:
    """Per-message state between entry and exit."""

    __slots__ = ("headers", "label", "message", "message_id", "received", "retry", "span",
                 "t_s", "token")

    def __init__(self, message: Any, message_id: str | None,
                 headers: Mapping[str, str] | None) -> None:
        self.message = message
        self.message_id = message_id
        self.headers = headers
        self.received: int | None = None
        self.label = "first"
        self.retry: int | None = None
        self.span: Any = None
        self.token: Any = None
        self.t_s = 0


class MessageScope:
    """The processing of one message, as a (sync or async) context manager.

    Returned by :meth:`MessageHandler.message` and by entering the handler itself.
    Leaving the block records the message; an exception leaving the block is recorded
    as a failure and propagates unchanged.
    """

    __slots__ = ("_attempt", "_handler", "_headers", "_message_id", "_received", "_st",
                 "_token")

    def __init__(self, handler: MessageHandler, received_ns: int | None,
                 message_id: str | None, attempt: int | bool | None,
                 headers: Mapping[str, str] | None) -> None:
        self._handler = handler
        self._received = received_ns
        self._message_id = message_id
        self._attempt = attempt
        self._headers = headers
        self._st: _Msg | None = None
        self._token: Any = None

    @property
    def received_ns(self) -> int | None:
        """The received time used for this message (``None``: unknown)."""
        st = self._st
        return None if st is None else st.received

    @property
    def start_ns(self) -> int | None:
        """When processing started (``None`` before entry)."""
        st = self._st
        return None if st is None else st.t_s

    @property
    def span(self) -> trace.Span:
        """The message's span (spans mode), else the invalid span."""
        st = self._st
        if st is None or st.span is None:
            return trace.INVALID_SPAN
        return st.span  # type: ignore[no-any-return]

    def __enter__(self) -> MessageScope:
        self._st = self._handler._begin(_NO_MSG, self._received, self._message_id,
                                        self._attempt, self._headers)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        st = self._st
        if st is not None:
            self._st = None
            self._handler._end(st, exc)
            self._st = st  # keep the timestamps readable after exit

    async def __aenter__(self) -> MessageScope:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)


class MessageHandler:
    """Telemetry for a message handler: decorator and context manager in one object.

    Example:
        >>> handler = MessageHandler("orders", mode="spans")
        >>> @handler
        ... async def handle(msg): ...
        >>> with handler:           # or: with handler.message(received_ns=t): ...
        ...     process(item)

    Args:
        destination: ``messaging.destination.name`` (queue, topic, socket...).
        system: ``messaging.system``.
        operation: ``messaging.operation.name`` and first word of the span name.
        mode: ``"bursts"``, ``"metrics"``, ``"spans"`` or ``"retroactive"`` (see the
            module docstring).
        received: Extracts the received time (int epoch ns, or ``None``) from the
            message: the first positional argument of the decorated call (after
            ``self`` for methods).
        message_id: Extracts ``messaging.message.id`` (only called when a span records).
        attempt: Extracts the delivery attempt: ``0``/``1`` first, ``n > 1`` the
            ``n - 1``-th retry; or a bool resend flag.
        headers: Extracts message headers carrying a propagated trace context; it
            becomes a span link (only called when a span records).
        slow_threshold_s: Retroactive mode: messages processed in longer than this (or
            failed) get a span.
        bursts: Feed a burst monitor: ``True`` (named ``destination``), a monitor name,
            or a ``BurstMonitor``. Implied by ``mode="bursts"``. Only acts while the
            monitor is enabled (burst tracking is off by default).
        record_exception_messages: On a failure, also record the exception's message
            and stack trace (``record_exception``) and use the message as the status
            description. Off by default because a message can quote the payload; the
            span always gets ``error.type``, ERROR status and an ``exception`` event
            with ``exception.type``.
        tracer_provider: Tracer provider (default: global).
        meter_provider: Meter provider (default: global).
        clock: Clock for the timestamps (epoch ns; default ``time.time_ns``).

    Raises:
        ValueError: On a bad argument.
    """

    def __init__(
        self,
        destination: str,
        *,
        system: str = "otel_rtc",
        operation: str = "process",
        mode: str = "metrics",
        received: Callable[[Any], int | None] | None = None,
        message_id: Callable[[Any], str | None] | None = None,
        attempt: Callable[[Any], int | bool | None] | None = None,
        headers: Callable[[Any], Mapping[str, str] | None] | None = None,
        slow_threshold_s: float = 0.1,
        bursts: Any = False,
        record_exception_messages: bool = False,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if not isinstance(record_exception_messages, bool):
            raise ValueError("record_exception_messages must be a bool")
        for what, v in (("destination", destination), ("system", system),
                        ("operation", operation)):
            if not isinstance(v, str) or not v:
                raise ValueError(f"{what} must be a non-empty str, got {v!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        for what, fn in (("received", received), ("message_id", message_id),
                         ("attempt", attempt), ("headers", headers), ("clock", clock)):
            if fn is not None and not callable(fn):
                raise ValueError(f"{what} must be callable or None")
        if (isinstance(slow_threshold_s, bool) or not isinstance(slow_threshold_s, (int, float))
                or not slow_threshold_s >= 0):
            raise ValueError(f"slow_threshold_s must be a number >= 0, got {slow_threshold_s!r}")
        if mode == "bursts" and (bursts is False or bursts is None):
            bursts = True
        self.destination = destination
        self.system = system
        self.operation = operation
        self.mode = mode
        self.record_exception_messages = record_exception_messages
        self.slow_threshold_s = float(slow_threshold_s)
        self._slow_ns = int(self.slow_threshold_s * NS_PER_S)
        self._received = received
        self._message_id = message_id
        self._attempt = attempt
        self._headers = headers
        self._now: Callable[[], int] = clock if clock is not None else time.time_ns
        self._metrics = mode != "bursts"
        self._spans = mode == "spans"
        self._retro = mode == "retroactive"
        self._span_name = f"{operation} {destination}"
        self._tracer = (trace.get_tracer("otel_rtc", __version__, tracer_provider)
                        if mode in ("spans", "retroactive") else None)
        base = {
            "messaging.system": system,
            "messaging.destination.name": destination,
            "messaging.operation.name": operation,
        }
        self._span_attrs = {**base, "messaging.operation.type": "process"}
        self._attrs: dict[str, AttrSet] = {
            label: intern_attrs({**base, ATTR_ATTEMPT: label}) for label in ("first", "retry")
        }
        self._err_attrs: dict[tuple[str, str], AttrSet] = {}
        self._err_lock = threading.Lock()
        self._base = base
        self._monitor = resolve_monitor(bursts, destination, tracer_provider, meter_provider)
        self._mp = meter_provider
        self._gen = -1
        self._rec: Recorder | None = None
        self._fast: list[Any] = [-1, None, (), 0, None]
        if self._metrics:
            self._resolve()
        self._cm: contextvars.ContextVar[MessageScope | None] = contextvars.ContextVar(
            f"otel_rtc_handler_{id(self):x}", default=None)
        self._unknown_tick = itertools.count().__next__
        self._unknown_reads = 0
        self._unknown_lock = threading.Lock()

    # -- public helpers --------------------------------------------------------------
    @property
    def burst_monitor(self) -> Any:
        """The burst monitor fed by this handler, or ``None``."""
        return self._monitor

    @property
    def unknown_received(self) -> int:
        """Messages processed so far whose received time was unknown."""
        with self._unknown_lock:
            n = self._unknown_tick() - self._unknown_reads
            self._unknown_reads += 1
        return n

    def message(self, *, received_ns: int | None = None, message_id: str | None = None,
                attempt: int | bool | None = None,
                headers: Mapping[str, str] | None = None) -> MessageScope:
        """A context manager for one message with explicit values.

        Args:
            received_ns: When the message was received (epoch ns); default: the enqueue
                stamp of the item last taken from an instrumented buffer, if any.
            message_id: ``messaging.message.id``.
            attempt: Delivery attempt (``1`` first) or resend flag.
            headers: Headers carrying a propagated trace context (becomes a link).
        """
        return MessageScope(self, received_ns, message_id, attempt, headers)

    # -- context manager -------------------------------------------------------------
    def __enter__(self) -> MessageScope:
        scope = MessageScope(self, None, None, None, None)
        scope.__enter__()
        try:
            scope._token = self._cm.set(scope)
        except Exception as exc:  # pragma: no cover - defensive
            report_error(_COMPONENT, exc)
        return scope

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        scope = self._cm.get()
        if scope is None:
            count_drop(_COMPONENT, "unbalanced_exit")
            return
        try:
            self._cm.reset(scope._token)
        except Exception as e:
            report_error(_COMPONENT, e)
        scope.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> MessageScope:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator -------------------------------------------------------------------
    def __call__(self, func: Callable[..., Any]) -> Any:
        """Decorate a sync or async function or method.

        Raises:
            ValueError: ``func`` is not callable.
        """
        if not callable(func):
            raise ValueError(f"MessageHandler decorates callables, got {func!r}")
        is_async = inspect.iscoroutinefunction(func)
        if self.mode == "bursts":
            wrapper = self._bursts_wrapper(is_async)
        elif self._spans:
            wrapper = self._async_wrapper if is_async else self._sync_wrapper
        else:
            wrapper = self._metrics_wrapper(is_async)
        return wrapt.FunctionWrapper(func, wrapper)

    def _sync_wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        st = self._begin(args[0] if args else _NO_MSG)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            self._end(st, exc)
            raise
        self._end(st, None)
        return result

    async def _async_wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any
                             ) -> Any:
        st = self._begin(args[0] if args else _NO_MSG)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            self._end(st, exc)
            raise
        self._end(st, None)
        return result

    def _bursts_wrapper(self, is_async: bool) -> Callable[..., Any]:
        mon = self._monitor
        now = self._now
        started = mon.processing_started
        finished = mon.processing_finished

        if is_async:
            async def async_bursts(wrapped: Any, instance: Any, args: Any, kwargs: Any
                                   ) -> Any:
                if not mon.enabled:
                    return await wrapped(*args, **kwargs)
                try:
                    started(now())
                except Exception as e:
                    report_error(_COMPONENT, e)
                try:
                    return await wrapped(*args, **kwargs)
                finally:
                    try:
                        finished(now())
                    except Exception as e:
                        report_error(_COMPONENT, e)

            return async_bursts

        def sync_bursts(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if not mon.enabled:
                return wrapped(*args, **kwargs)
            try:
                started(now())
            except Exception as e:
                report_error(_COMPONENT, e)
            try:
                return wrapped(*args, **kwargs)
            finally:
                try:
                    finished(now())
                except Exception as e:
                    report_error(_COMPONENT, e)

        return sync_bursts

    def _metrics_wrapper(self, is_async: bool) -> Callable[..., Any]:
        """The decorator hot path of the metrics and retroactive modes.

        Same semantics as ``_begin``/``_end`` without a per-message state object: the
        common case (fast, no error, no clamp, first attempt) is inline and ends in one
        ``deque.append``; everything else goes through :meth:`_finish`. The sync and
        async wrappers are the same code but for the ``await``.
        """
        now = self._now
        last_get = _last_enqueue.get
        last_set = _last_enqueue.set
        rx = self._received
        rx_only = rx is not None and self._attempt is None
        extract = self._attempt is not None
        mon = self._monitor
        first = self._attrs["first"]
        retro = self._retro
        slow_ns = self._slow_ns
        generation = _local_aggregation.generation
        fast = self._fast
        handler = self

        def slow(t_s: int, t_f: int, r: int | None, label: str, retry: int | None, args: Any,
                 exc: BaseException | None) -> None:
            try:
                st = _Msg(args[0] if args else _NO_MSG, None, None)
                st.t_s, st.received, st.label, st.retry = t_s, r, label, retry
                handler._finish(st, t_f, exc)
            except Exception as e:
                report_error(_COMPONENT, e)

        def failed(t_s: int, r: int | None, label: str, retry: int | None, args: Any,
                   exc: BaseException) -> None:
            # The caller re-raises the application's exception: nothing here may replace it.
            try:
                t_f = now()
                if mon is not None and mon.enabled:
                    mon.processing_finished(t_f)
            except Exception as e:
                report_error(_COMPONENT, e)
                return
            slow(t_s, t_f, r, label, retry, args, exc)

        def invalid_received() -> None:
            count_drop(_COMPONENT, "invalid_received")

        def sync_metrics(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            t_s = 0
            try:
                t_s = now()
                r = last_get()
                if r is not None:
                    last_set(None)
                label, retry = "first", None
                if args:
                    if rx_only:
                        try:
                            x = rx(args[0])  # type: ignore[misc]
                        except Exception as e:
                            report_error("handler.extractor", e)
                            x = None
                        if x is not None:
                            r = x if type(x) is int else invalid_received()
                    elif extract:
                        r, label, retry = handler._extract(args[0], r)
                if mon is not None and mon.enabled:
                    mon.processing_started(t_s)
            except Exception as e:
                report_error(_COMPONENT, e)
                t_s = 0
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as exc:
                if t_s:
                    failed(t_s, r, label, retry, args, exc)
                raise
            if t_s:
                try:
                    t_f = now()
                    if mon is not None and mon.enabled:
                        mon.processing_finished(t_f)
                    proc = t_f - t_s
                    if (r is None or r > t_s or proc < 0 or label != "first"
                            or (retro and proc > slow_ns)):
                        slow(t_s, t_f, r, label, retry, args, None)
                    else:
                        if fast[0] != generation():
                            handler._resolve()
                        append = fast[1]
                        if append is not None:
                            append((first, (proc / NS_PER_S, (t_s - r) / NS_PER_S,
                                            (t_f - r) / NS_PER_S), None, t_f))
                            if len(fast[2]) > fast[3]:
                                fast[4]()
                except Exception as e:
                    report_error(_COMPONENT, e)
            return result

        if not is_async:
            return sync_metrics

        async def async_metrics(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            t_s = 0
            try:
                t_s = now()
                r = last_get()
                if r is not None:
                    last_set(None)
                label, retry = "first", None
                if args:
                    if rx_only:
                        try:
                            x = rx(args[0])  # type: ignore[misc]
                        except Exception as e:
                            report_error("handler.extractor", e)
                            x = None
                        if x is not None:
                            r = x if type(x) is int else invalid_received()
                    elif extract:
                        r, label, retry = handler._extract(args[0], r)
                if mon is not None and mon.enabled:
                    mon.processing_started(t_s)
            except Exception as e:
                report_error(_COMPONENT, e)
                t_s = 0
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                if t_s:
                    failed(t_s, r, label, retry, args, exc)
                raise
            if t_s:
                try:
                    t_f = now()
                    if mon is not None and mon.enabled:
                        mon.processing_finished(t_f)
                    proc = t_f - t_s
                    if (r is None or r > t_s or proc < 0 or label != "first"
                            or (retro and proc > slow_ns)):
                        slow(t_s, t_f, r, label, retry, args, None)
                    else:
                        if fast[0] != generation():
                            handler._resolve()
                        append = fast[1]
                        if append is not None:
                            append((first, (proc / NS_PER_S, (t_s - r) / NS_PER_S,
                                            (t_f - r) / NS_PER_S), None, t_f))
                            if len(fast[2]) > fast[3]:
                                fast[4]()
                except Exception as e:
                    report_error(_COMPONENT, e)
            return result

        return async_metrics

    def _extract(self, msg: Any, stamp: int | None) -> tuple[int | None, str, int | None]:
        """``(received, attempt label, retry count)`` from the extractors."""
        r = None
        if self._received is not None:
            try:
                r = self._received(msg)
            except Exception as exc:
                report_error("handler.extractor", exc)
                r = None
        if r is None:
            r = stamp
        elif type(r) is not int:
            count_drop(_COMPONENT, "invalid_received")
            r = None
        label, retry = "first", None
        if self._attempt is not None:
            try:
                a = self._attempt(msg)
            except Exception as exc:
                report_error("handler.extractor", exc)
                a = None
            if a is not None:
                label, retry = _classify_attempt(a)
        return r, label, retry

    # -- per message -----------------------------------------------------------------
    def _begin(self, msg: Any, received_ns: int | None = None, message_id: str | None = None,
               attempt: int | bool | None = None, headers: Mapping[str, str] | None = None
               ) -> _Msg:
        st = _Msg(msg, message_id, headers)
        try:
            now = st.t_s = self._now()
            # received: explicit, extractor, then the buffer's enqueue stamp (always
            # consumed so a stale stamp never reaches a later message)
            stamp = _take_enqueue_stamp()
            if msg is not _NO_MSG and (self._received is not None or self._attempt is not None):
                r, st.label, st.retry = self._extract(msg, stamp)
            else:
                r = stamp
            if received_ns is not None:
                if type(received_ns) is int:
                    r = received_ns
                else:
                    count_drop(_COMPONENT, "invalid_received")
            st.received = r
            if attempt is not None:
                st.label, st.retry = _classify_attempt(attempt)
            mon = self._monitor
            if mon is not None and mon.enabled:
                mon.processing_started(now)
            if self._spans:
                span = self._tracer.start_span(  # type: ignore[union-attr]
                    self._span_name, kind=_CONSUMER, attributes=self._span_attrs,
                    start_time=now, record_exception=False, set_status_on_exception=False)
                st.span = span
                if span.is_recording():
                    self._describe(span, st)
                st.token = context_api.attach(trace.set_span_in_context(span))
        except Exception as exc:
            report_error(_COMPONENT, exc)
        return st

    def _describe(self, span: Any, st: _Msg) -> None:
        """Per-message span attributes and links (only for a recording span)."""
        mid = st.message_id
        msg = st.message
        if mid is None and self._message_id is not None and msg is not _NO_MSG:
            try:
                mid = self._message_id(msg)
            except Exception as exc:
                report_error("handler.extractor", exc)
        if mid is not None:
            span.set_attribute(ATTR_MESSAGE_ID, str(mid))
        span.set_attribute(ATTR_ATTEMPT, st.label)
        if st.retry is not None:
            span.set_attribute(ATTR_RETRY_COUNT, st.retry)
        hdrs = st.headers
        if hdrs is None and self._headers is not None and msg is not _NO_MSG:
            try:
                hdrs = self._headers(msg)
            except Exception as exc:
                report_error("handler.extractor", exc)
        if hdrs:
            ctx = trace.get_current_span(propagate.extract(hdrs)).get_span_context()
            if ctx.is_valid:
                span.add_link(ctx)
        mon = self._monitor
        if mon is not None and mon.enabled:
            bctx = mon.current_span_context()
            if bctx is not None:
                span.add_link(bctx)

    def _end(self, st: _Msg, exc: BaseException | None) -> None:
        try:
            t_f = self._now()
        except Exception as e:
            report_error(_COMPONENT, e)
            return
        try:
            mon = self._monitor
            if mon is not None and mon.enabled:
                mon.processing_finished(t_f)
            token = st.token
            if token is not None:
                st.token = None
                context_api.detach(token)
        except Exception as e:
            report_error(_COMPONENT, e)
        self._finish(st, t_f, exc)

    def _finish(self, st: _Msg, t_f: int, exc: BaseException | None) -> None:
        """Durations, span attributes/end (or retroactive span) and metrics."""
        try:
            t_s = st.t_s
            proc = t_f - t_s
            if proc < 0:
                count_clamp(_COMPONENT)
                proc = 0
            r = st.received
            if r is not None:
                wait = t_s - r
                if wait < 0:
                    count_clamp(_COMPONENT)
                    wait = 0
                r2f = t_f - r
                if r2f < 0:
                    count_clamp(_COMPONENT)
                    r2f = 0
                wait_s: float | None = wait / NS_PER_S
                r2f_s: float | None = r2f / NS_PER_S
            else:
                self._unknown_tick()
                wait_s = r2f_s = None
            etype = None if exc is None else type(exc).__qualname__
            span = st.span
            if span is None and self._retro and (exc is not None or proc > self._slow_ns):
                span = self._tracer.start_span(  # type: ignore[union-attr]
                    self._span_name, kind=_CONSUMER, attributes=self._span_attrs,
                    start_time=t_s, record_exception=False, set_status_on_exception=False)
                if span.is_recording():
                    self._describe(span, st)
            ctx = None
            if span is not None:
                if span.is_recording():
                    if wait_s is not None:
                        span.set_attribute(ATTR_QUEUE_WAIT, wait_s)
                        span.set_attribute(ATTR_RECEIVE_TO_FINISH, r2f_s)
                    else:
                        span.set_attribute(ATTR_RECEIVED_KNOWN, False)
                    if exc is not None:
                        span.set_attribute("error.type", etype)
                        if self.record_exception_messages:
                            span.set_status(Status(StatusCode.ERROR, f"{etype}: {exc}"))
                            span.record_exception(exc, timestamp=t_f)
                        else:
                            # An exception's message (and so its stack trace text) can
                            # quote the payload; only its type is recorded by default.
                            span.set_status(Status(StatusCode.ERROR, etype))
                            span.add_event("exception", {"exception.type": etype},
                                           timestamp=t_f)
                    sc = span.get_span_context()
                    if sc.trace_flags.sampled:
                        ctx = sc
                span.end(end_time=t_f)
            if self._metrics:
                if self._gen != _local_aggregation.generation():
                    self._resolve()
                rec = self._rec
                if rec is not None:
                    attrs = (self._attrs[st.label] if etype is None
                             else self._error_attrs(st.label, etype))
                    rec.append((attrs, (proc / NS_PER_S, wait_s, r2f_s), ctx, t_f))
                    if len(rec.pending) > rec.limit:
                        rec.fold_if_full()
        except Exception as e:
            report_error(_COMPONENT, e)

    # -- internals -------------------------------------------------------------------
    def _resolve(self) -> None:
        try:
            gen = _local_aggregation.generation()
            rec = get_recorder(HANDLER_HISTOGRAMS, HANDLER_COUNTERS, self._mp)
        except Exception as exc:
            report_error(_COMPONENT, exc)
            gen, rec = _local_aggregation.generation(), None
        self._rec = rec
        self._gen = gen
        # The decorator hot path reads these through one list (cheaper than attributes):
        # [generation, append, pending, limit, fold_if_full].
        self._fast[:] = ([gen, None, (), 0, None] if rec is None else
                         [gen, rec.append, rec.pending, rec.limit, rec.fold_if_full])

    def _error_attrs(self, label: str, etype: str) -> AttrSet:
        key = (label, etype)
        found = self._err_attrs.get(key)
        if found is not None:
            return found
        with self._err_lock:
            if len(self._err_attrs) >= _MAX_ERROR_TYPES:
                count_drop(_COMPONENT, "error_type_cap")
                key = (label, _OTHER)
                found = self._err_attrs.get(key)
                if found is not None:
                    return found
            attrs = intern_attrs({**self._base, ATTR_ATTEMPT: label, "error.type": key[1]})
            self._err_attrs[key] = attrs
            return attrs
