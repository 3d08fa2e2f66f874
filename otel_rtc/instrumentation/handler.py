"""Message-handler telemetry: three timestamps per message, spans, metrics and bursts.

A message server takes a message from its receive buffer, processes it, and takes the
next one. Per message, :class:`MessageHandler` knows three timestamps (epoch ns):

* **received** ``t_r``: an explicit ``received_ns``, else what the ``received``
  extractor returns for the message, else the enqueue stamp of the item last taken
  from an instrumented buffer (:mod:`otel_rtc.instrumentation.buffers`) in this thread or
  task. Often it is *unknown* (nothing stamped the message); then queue wait and
  receive-to-finish are not recorded for that message, never guessed;
* **processing started** ``t_s``: the call of the decorated function (entry of the
  ``with`` block);
* **processing finished** ``t_f``: the real end of the handler's work, normal or by
  exception: its return, or, when it returns a generator, an async generator or an
  awaitable (coroutine, future), the end of that generator or awaitable (in bursts
  mode: of generator and async generator functions only).

From them: queue wait ``t_s - t_r``, process duration ``t_f - t_s`` and
receive-to-finish latency ``t_f - t_r``. A clock going backwards cannot make any of
them negative, nor end a span before it starts: the later timestamp is clamped to the
earlier one, and each clamp is counted in ``otel_rtc.internal.clamped``.

One object is both a decorator (functions, methods, generators, coroutines, through
``wrapt``; sync or async is chosen once at decoration time) and a reentrant, thread-
and task-safe context manager (``with handler:`` / ``async with handler:``).
:meth:`MessageHandler.message` takes per-message values explicitly. See
``docs/handlers.md`` for the modes. The metrics' instruments and attribute sets are in
:mod:`otel_rtc.instrumentation.handler_metrics`, the message's span in
:mod:`otel_rtc.instrumentation.handler_spans`.
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
from opentelemetry import trace

from otel_rtc.core import names
from otel_rtc.core.clock import NS_PER_S
from otel_rtc.instrumentation.attributes import AttrSet
from otel_rtc.instrumentation.buffer_telemetry import enqueue_stamp, resolve_monitor
from otel_rtc.instrumentation.handler_metrics import (
    HANDLER_COUNTERS,
    HANDLER_HISTOGRAMS,
    HandlerSeries,
    classify_attempt,
)
from otel_rtc.instrumentation.handler_spans import (
    NO_MESSAGE,
    MessageSpans,
    call_extractor,
    end_span,
)
from otel_rtc.instrumentation.recording import Recorder
from otel_rtc.instrumentation.self_telemetry import count_clamp, count_drop, report_error
from otel_rtc.instrumentation.wrappers import bursts_wrapper, message_wrapper

__all__ = ["MODES", "MessageHandler", "MessageScope"]

_COMPONENT = "handler"

MODES = ("bursts", "metrics", "spans", "retroactive")

_State = tuple[int, "int | None", str, "int | None", Any, "str | None",
               "Mapping[str, str] | None", Any, Any]
"""Per-message state between entry and exit: ``(t_s, received, label, retry, message,
message_id, headers, span, token)`` (a tuple: built once, unpacked once)."""


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
        self._st: Any = None
        self._token: Any = None

    @property
    def received_ns(self) -> int | None:
        """The received time used for this message (``None``: unknown)."""
        return None if self._st is None else self._st[1]

    @property
    def start_ns(self) -> int | None:
        """When processing started (``None`` before entry)."""
        return None if self._st is None else self._st[0]

    @property
    def span(self) -> trace.Span:
        """The message's span (spans mode), else the invalid span."""
        span = None if self._st is None else self._st[7]
        return trace.INVALID_SPAN if span is None else span

    def __enter__(self) -> MessageScope:
        self._st = self._handler._begin((), (self._received, self._message_id, self._attempt,
                                             self._headers))
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        st = self._st
        if st is not None:
            self._st = (*st[:8], None)  # readable after exit; the context is left once
            self._handler._end(st, exc)

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
        mode: ``"bursts"``, ``"metrics"``, ``"spans"`` or ``"retroactive"`` (see
            ``docs/handlers.md``).
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
        tracer_provider: Any = None,
        meter_provider: Any = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
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
        self.slow_threshold_s = float(slow_threshold_s)
        self._slow_ns = int(self.slow_threshold_s * NS_PER_S)
        self._received = received
        self._attempt = attempt
        self._now: Callable[[], int] = clock if clock is not None else time.time_ns
        self._metrics = mode != "bursts"
        self._spans = mode == "spans"
        self._retro = mode == "retroactive"
        base = {
            names.ATTR_MESSAGING_SYSTEM: system,
            names.ATTR_MESSAGING_DESTINATION: destination,
            names.ATTR_MESSAGING_OPERATION_NAME: operation,
        }
        self._monitor = resolve_monitor(bursts, destination, tracer_provider, meter_provider)
        self._span_of = (
            MessageSpans(tracer_provider, f"{operation} {destination}",
                         {**base, names.ATTR_MESSAGING_OPERATION_TYPE: "process"},
                         message_id, headers, self._monitor)
            if mode in ("spans", "retroactive") else None)
        self._rec: Recorder | None = None
        # No attempt extractor, burst monitor or span: the decorator takes the lean
        # entry and exit (_enter/_exit) instead of _begin/_end.
        self._plain = (self._metrics and attempt is None and self._monitor is None
                       and not self._spans)
        # Messages processed within this take the one-step exit (_exit): in retroactive
        # mode only those that get no span.
        self._one_step_ns = self._slow_ns if self._retro else 1 << 62
        self._series: HandlerSeries | None = None
        self._attrs: dict[str, AttrSet] = {}
        if self._metrics:
            self._rec = Recorder(HANDLER_HISTOGRAMS, HANDLER_COUNTERS, meter_provider)
            self._series = HandlerSeries(base)
            self._attrs = self._series.by_label
            self._first = self._attrs["first"]
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
        """Decorate a function or method: plain, generator, coroutine or async generator.

        Raises:
            ValueError: ``func`` is not callable.
        """
        if not callable(func):
            raise ValueError(f"MessageHandler decorates callables, got {func!r}")
        is_async = inspect.iscoroutinefunction(func)
        if self._plain:  # metrics or retroactive, nothing but times to take
            wrapper = message_wrapper(self._enter, self._exit, _stay, is_async)
        elif self._metrics:
            wrapper = message_wrapper(self._begin, self._end, self._leave, is_async)
        else:
            wrapper = bursts_wrapper(self._monitor, self._now, is_async)
        return wrapt.FunctionWrapper(func, wrapper)

    # -- per message: entry and exit ---------------------------------------------------
    def _enter(self, args: Any) -> tuple[int, int | None, Any]:
        """Entry of a plain handler: ``(start, received, message)``; see :meth:`_begin`."""
        try:
            now = self._now()
            # received: explicit, extractor, then the buffer's enqueue stamp (always
            # consumed so a stale stamp never reaches a later message)
            r = enqueue_stamp.get()
            if r is not None:
                enqueue_stamp.set(None)
            if not args:
                return now, r, NO_MESSAGE
            msg = args[0]
            if self._received is not None:
                try:
                    x = self._received(msg)
                except Exception as e:
                    report_error("handler.extractor", e)
                    x = None
                if type(x) is int:
                    r = x
                elif x is not None:
                    r = _invalid_received()
            return now, r, msg
        except Exception as exc:
            report_error(_COMPONENT, exc)
            return 0, None, NO_MESSAGE

    def _exit(self, st: tuple[int, int | None, Any], exc: BaseException | None) -> None:
        """Exit of a plain handler: the common case in one step, the rest in _finish."""
        t_s, r, msg = st
        try:
            t_f = self._now()
            if (exc is None and r is not None and r <= t_s
                    and 0 <= (proc := t_f - t_s) <= self._one_step_ns):
                self._rec.record(self._first,  # type: ignore[union-attr]
                                 (proc / NS_PER_S, (t_s - r) / NS_PER_S, (t_f - r) / NS_PER_S),
                                 None, t_f)
            elif t_s:  # else the entry failed: nothing to measure
                self._finish((t_s, r, "first", None, msg, None, None, None, None), t_f, exc)
        except Exception as e:
            report_error(_COMPONENT, e)

    def _begin(self, args: Any, explicit: tuple[Any, ...] | None = None) -> _State:
        """Entry: start and received times (:meth:`_enter`), attempt, monitor, span.

        ``explicit`` is :meth:`message`'s ``(received_ns, message_id, attempt, headers)``.
        """
        now, r, msg = self._enter(args)
        label, retry, mid, headers, span, token = "first", None, None, None, None, None
        try:
            if self._attempt is not None and msg is not NO_MESSAGE:
                a = call_extractor(self._attempt, msg)
                if a is not None:
                    label, retry = classify_attempt(a)
            if explicit is not None:
                received_ns, mid, attempt, headers = explicit
                if received_ns is not None:
                    r = received_ns if type(received_ns) is int else _invalid_received(r)
                if attempt is not None:
                    label, retry = classify_attempt(attempt)
            mon = self._monitor
            if mon is not None and mon.enabled:
                mon.processing_started(now)
            if self._spans:
                span = self._span_of.start(  # type: ignore[union-attr]
                    now, msg, mid, headers, label, retry)
                token = context_api.attach(trace.set_span_in_context(span))
        except Exception as exc:  # no span, perhaps, but the message is still measured
            report_error(_COMPONENT, exc)
        return now, r, label, retry, msg, mid, headers, span, token

    def _end(self, st: _State, exc: BaseException | None) -> None:
        """Exit: the burst monitor, the span's context, then the message (_finish)."""
        try:
            t_f = self._now()
            token = st[8]
            if token is not None:
                context_api.detach(token)
            if st[0]:  # else the entry failed: nothing to measure
                self._finish(st, t_f, exc)
        except Exception as e:
            report_error(_COMPONENT, e)

    def _finish(self, st: _State, t_f: int, exc: BaseException | None) -> None:
        """Durations (clamped, counted), the span's end (or retroactive span), metrics."""
        t_s, r, label, retry, msg, mid, headers, span, _token = st
        if t_f < t_s:
            count_clamp(_COMPONENT)
            t_f = t_s
        proc = t_f - t_s
        if r is None:
            self._unknown_tick()
            wait_s = r2f_s = None
        else:
            if r > t_s:
                count_clamp(_COMPONENT)
                r = t_s
            wait_s = (t_s - r) / NS_PER_S
            r2f_s = (t_f - r) / NS_PER_S
        if span is None and self._retro and (exc is not None or proc > self._slow_ns):
            span = self._span_of.start(  # type: ignore[union-attr]
                t_s, msg, mid, headers, label, retry)
        ctx = None if span is None else end_span(span, t_f, wait_s, r2f_s, exc)
        rec = self._rec
        if rec is not None:
            attrs = (self._attrs[label] if exc is None
                     else self._series.error(  # type: ignore[union-attr]
                         label, type(exc).__qualname__))
            rec.record(attrs, (proc / NS_PER_S, wait_s, r2f_s), ctx, t_f)

    def _leave(self, st: _State) -> _State:
        """The call returned but its work goes on: leave the span's context now."""
        token = st[8]
        if token is not None:
            try:
                context_api.detach(token)
            except Exception as e:
                report_error(_COMPONENT, e)
        return (*st[:8], None)


def _stay(st: Any) -> Any:
    """A plain handler's state holds no span context to leave."""
    return st


def _invalid_received(fallback: int | None = None) -> int | None:
    count_drop(_COMPONENT, "invalid_received")
    return fallback
