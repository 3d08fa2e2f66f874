"""The wrapt wrappers of :class:`~otel_rtc.instrumentation.handler.MessageHandler`.

Sync or async is chosen once, at decoration time, as in the contrib instrumentations
(``(wrapped, instance, args, kwargs)``). A message ends when the handler's work ends: at
its return, or, for a generator, an async generator or an awaitable (coroutine, future)
that it returns, when that ends (:func:`end_later`). An exception raised while iterating
or awaiting is passed to the end callback and re-raised unchanged.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from types import AsyncGeneratorType, GeneratorType
from typing import Any

from otel_rtc.instrumentation.self_telemetry import report_error

__all__ = ["bursts_wrapper", "end_later", "message_wrapper"]

_COMPONENT = "handler"

# Result types known not to need a deferred end (a generator or awaitable would): a
# type seen once is remembered, so the check costs one set lookup per message.
_IMMEDIATE: set[type] = {type(None), bool, int, float, str, bytes, tuple, list, dict}
_MAX_IMMEDIATE = 256


# -- the wrapt wrappers: sync or async chosen once, at decoration time ---------------------

def message_wrapper(begin: Callable[[Any], Any], end: Callable[[Any, BaseException | None], None],
                    leave: Callable[[Any], Any], is_async: bool) -> Callable[..., Any]:
    """The wrapper of the metrics, retroactive and spans modes: ``begin``, call, ``end``."""
    if is_async:
        async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            st = begin(args)
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                end(st, exc)
                raise
            end(st, None)
            return result

        return async_wrapper

    def sync_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        st = begin(args)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            end(st, exc)
            raise
        if type(result) in _IMMEDIATE:
            end(st, None)
            return result
        return end_later(result, functools.partial(end, leave(st)))

    return sync_wrapper


def bursts_wrapper(mon: Any, now: Callable[[], int], is_async: bool) -> Callable[..., Any]:
    """The wrapper of the bursts mode: one timestamp, when the message starts processing.

    A burst begins at the first message and ends when its input buffer is found empty
    (``buffer_empty``), so the message's own end is never needed here: a generator or
    awaitable that a handler returns is passed back untouched.
    """
    started = mon.processing_started

    if is_async:
        async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            if mon.enabled:
                try:
                    started(now())
                except Exception as e:
                    report_error(_COMPONENT, e)
            return await wrapped(*args, **kwargs)

        return async_wrapper

    def sync_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if mon.enabled:
            try:
                started(now())
            except Exception as e:
                report_error(_COMPONENT, e)
        return wrapped(*args, **kwargs)

    return sync_wrapper


# -- results that end later: generators, async generators, awaitables ----------------------

def end_later(result: Any, on_end: Callable[[BaseException | None], None]) -> Any:
    """Call ``on_end`` now, or when the generator or awaitable ``result`` ends."""
    if isinstance(result, GeneratorType):
        return _iterate(result, on_end)
    if isinstance(result, AsyncGeneratorType):
        return _aiterate(result, on_end)
    if asyncio.isfuture(result):  # the same object back: callers may use it as a future
        result.add_done_callback(lambda f: on_end(_outcome(f)))
        return result
    if inspect.isawaitable(result):
        return _await(result, on_end)
    if len(_IMMEDIATE) < _MAX_IMMEDIATE:
        _IMMEDIATE.add(type(result))
    on_end(None)
    return result


def _iterate(gen: Generator[Any, Any, Any], on_end: Callable[[BaseException | None], None]
             ) -> Generator[Any, Any, Any]:
    try:
        result = yield from gen  # forwards send(), throw() and close()
    except GeneratorExit:  # closed by its consumer: an early end, not a failure
        on_end(None)
        raise
    except BaseException as exc:
        on_end(exc)
        raise
    on_end(None)
    return result


async def _aiterate(agen: AsyncGenerator[Any, Any],
                    on_end: Callable[[BaseException | None], None]) -> AsyncGenerator[Any, Any]:
    step: Awaitable[Any] = agen.asend(None)
    try:
        while True:
            try:
                item = await step
            except StopAsyncIteration:
                break
            try:
                sent = yield item
            except GeneratorExit:
                await agen.aclose()
                raise
            except BaseException as thrown:  # athrow(): forwarded
                step = agen.athrow(thrown)
            else:
                step = agen.asend(sent)
    except GeneratorExit:
        on_end(None)
        raise
    except BaseException as exc:
        on_end(exc)
        raise
    on_end(None)


async def _await(awaitable: Awaitable[Any], on_end: Callable[[BaseException | None], None]
                 ) -> Any:
    try:
        result = await awaitable
    except BaseException as exc:
        on_end(exc)
        raise
    on_end(None)
    return result


def _outcome(fut: Any) -> BaseException | None:
    """The exception that ended a done future (``CancelledError`` when cancelled)."""
    return asyncio.CancelledError() if fut.cancelled() else fut.exception()
