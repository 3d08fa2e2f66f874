"""Instrumented bounded buffers: enqueue stamps, counted drops, depth, burst ends.

A message server's receive buffer is where the first of the three timestamps of a
message lives: the moment it was *received* (enqueued). It is also where messages are
lost: a small buffer that is full silently drops what arrives. The buffers here make
both visible:

* every item is stamped with its enqueue time (epoch ns); taking an item out of a
  buffer publishes that stamp in a context variable, where
  :class:`otel_rtc.instrumentation.handler.MessageHandler` picks it up as the message's
  received time (see :data:`~otel_rtc.instrumentation.buffer_telemetry.enqueue_stamp`);
* an item refused because the buffer is full is counted in
  ``otel_rtc.buffer.dropped{otel_rtc.drop.reason}`` (and in the self-telemetry
  ``otel_rtc.telemetry.dropped``), never silently;
* accepted items are counted in ``otel_rtc.buffer.enqueued``; the depth is the
  observable gauge ``otel_rtc.buffer.depth``; all carry ``otel_rtc.buffer.name``;
* a *get* that finds the buffer empty ends the burst in progress of the burst monitor
  (``bursts=``), because that is the definition of the end of a burst.

Three flavours share this behaviour:

* :class:`InstrumentedQueue`: a :class:`queue.Queue` (threads). ``put(block=False)`` /
  ``put_nowait`` on a full queue raise :class:`queue.Full` exactly like the stdlib, after
  counting the drop; :meth:`InstrumentedQueue.offer` returns ``False`` instead.
* :class:`InstrumentedAsyncQueue`: an :class:`asyncio.Queue`. ``put_nowait`` on a full
  queue raises :class:`asyncio.QueueFull` after counting; ``offer`` returns ``False``.
* :class:`BoundedBuffer`: a lock-protected deque with a drop policy: ``"reject"`` (the
  new item is refused, reason ``full``) or ``"drop_oldest"`` (the oldest item is
  evicted, reason ``drop_oldest``).

The queues keep ``(enqueue_ns, item)`` pairs in their internal container
(``Queue.queue`` / ``asyncio.Queue._queue``); the public methods give back the items.
What the three record is in :mod:`otel_rtc.instrumentation.buffer_telemetry`.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from otel_rtc.instrumentation.buffer_telemetry import BufferTelemetry, enqueue_stamp

__all__ = ["BoundedBuffer", "InstrumentedAsyncQueue", "InstrumentedQueue"]

_POLICIES = ("reject", "drop_oldest")


def _check_size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an int >= 1 (buffers are bounded), got {value!r}")
    return value


class InstrumentedQueue(queue.Queue):  # type: ignore[type-arg]
    """A bounded :class:`queue.Queue` with enqueue stamps, counted drops and depth.

    Behaves like the stdlib queue: ``put(item, block=False)`` and ``put_nowait`` on a
    full queue raise :class:`queue.Full` (and ``put(timeout=...)`` raises it when the
    timeout expires); each such refusal is counted as a drop with reason ``full``
    first. :meth:`offer` is the non-raising form. A ``get`` that finds the queue empty
    tells the burst monitor, then blocks as usual. After a ``get`` the item's enqueue
    stamp is available through :data:`enqueue_stamp` in the getting thread.

    Args:
        maxsize: Capacity (>= 1).
        name: Value of ``otel_rtc.buffer.name``; also the burst monitor's name with
            ``bursts=True``.
        bursts: ``True`` (monitor ``name``), a monitor name, a ``BurstMonitor``, or
            ``False``. Only acts while the monitor is enabled.
        meter_provider: For the counters and the depth gauge (default: global).
        tracer_provider: For the burst monitor's spans when it is created here.
        clock: Clock for the enqueue stamps (epoch ns; default ``time.time_ns``).

    Raises:
        ValueError: On a bad argument.
    """

    def __init__(self, maxsize: int, *, name: str = "queue", bursts: Any = False,
                 meter_provider: Any = None, tracer_provider: Any = None,
                 clock: Callable[[], int] | None = None) -> None:
        _check_size(maxsize, "maxsize")
        super().__init__(maxsize)
        self._telemetry = BufferTelemetry(self, name, bursts, meter_provider,
                                           tracer_provider, clock)
        self._stamp = self._telemetry.clock
        self._last_put_ns = 0

    @property
    def name(self) -> str:
        """The buffer's name."""
        return self._telemetry.name

    def __len__(self) -> int:
        return len(self.queue)

    # Hooks called by queue.Queue under its mutex.
    def _put(self, item: Any) -> None:
        t = self._stamp()
        self._last_put_ns = t
        self.queue.append((t, item))

    def _get(self) -> Any:
        t, item = self.queue.popleft()
        enqueue_stamp.set(t)
        return item

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put ``item``; on a full queue count a ``full`` drop and raise like the stdlib.

        Raises:
            queue.Full: The queue stayed full (non-blocking, or after ``timeout``).
        """
        try:
            super().put(item, block, timeout)
        except queue.Full:
            self._telemetry.dropped("full")
            raise
        self._telemetry.enqueued(self._last_put_ns)

    def offer(self, item: Any) -> bool:
        """Put without blocking; ``False`` (drop counted, reason ``full``) when full."""
        try:
            self.put(item, block=False)
        except queue.Full:
            return False
        return True

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Take an item; an empty queue ends the burst in progress first.

        Raises:
            queue.Empty: As the stdlib (non-blocking, or after ``timeout``).
        """
        if not self.queue:
            self._telemetry.empty()
        return super().get(block, timeout)


class InstrumentedAsyncQueue(asyncio.Queue):  # type: ignore[type-arg]
    """A bounded :class:`asyncio.Queue` with enqueue stamps, counted drops and depth.

    ``put_nowait`` on a full queue counts a ``full`` drop then raises
    :class:`asyncio.QueueFull` like the stdlib; :meth:`offer` returns ``False``
    instead (use it from ``DatagramProtocol.datagram_received``). ``await put()``
    waits for room and never drops. ``get``/``get_nowait`` on an empty queue end the
    burst in progress. After a get, the item's enqueue stamp is available through
    :data:`enqueue_stamp` in the getting task.

    Args:
        maxsize: Capacity (>= 1).
        name: Value of ``otel_rtc.buffer.name`` (and burst monitor name with
            ``bursts=True``).
        bursts: See :class:`InstrumentedQueue`.
        meter_provider: For the counters and the depth gauge (default: global).
        tracer_provider: For the burst monitor's spans when it is created here.
        clock: Clock for the enqueue stamps (epoch ns; default ``time.time_ns``).

    Raises:
        ValueError: On a bad argument.
    """

    def __init__(self, maxsize: int, *, name: str = "asyncio_queue", bursts: Any = False,
                 meter_provider: Any = None, tracer_provider: Any = None,
                 clock: Callable[[], int] | None = None) -> None:
        _check_size(maxsize, "maxsize")
        super().__init__(maxsize)
        self._telemetry = BufferTelemetry(self, name, bursts, meter_provider,
                                           tracer_provider, clock)
        self._stamp = self._telemetry.clock
        self._last_put_ns = 0

    @property
    def name(self) -> str:
        """The buffer's name."""
        return self._telemetry.name

    def __len__(self) -> int:
        return len(self._queue)  # type: ignore[attr-defined]

    def _put(self, item: Any) -> None:
        t = self._stamp()
        self._last_put_ns = t
        self._queue.append((t, item))  # type: ignore[attr-defined]

    def _get(self) -> Any:
        t, item = self._queue.popleft()  # type: ignore[attr-defined]
        enqueue_stamp.set(t)
        return item

    def put_nowait(self, item: Any) -> None:
        """Put ``item`` now; on a full queue count a ``full`` drop and raise.

        Raises:
            asyncio.QueueFull: The queue is full.
        """
        try:
            super().put_nowait(item)
        except asyncio.QueueFull:
            self._telemetry.dropped("full")
            raise
        self._telemetry.enqueued(self._last_put_ns)

    def offer(self, item: Any) -> bool:
        """Put without waiting; ``False`` (drop counted, reason ``full``) when full."""
        try:
            self.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    def get_nowait(self) -> Any:
        """Take an item now; an empty queue ends the burst in progress.

        Raises:
            asyncio.QueueEmpty: The queue is empty.
        """
        if not self._queue:  # type: ignore[attr-defined]
            self._telemetry.empty()
        return super().get_nowait()

    async def get(self) -> Any:
        """Take an item, waiting if needed; an empty queue ends the burst in progress."""
        if not self._queue:  # type: ignore[attr-defined]
            self._telemetry.empty()
            # super().get() calls self.get_nowait() only once the queue is non-empty.
        return await super().get()


class BoundedBuffer:
    """A deque-based bounded buffer with a drop policy, for threads or asyncio.

    Args:
        capacity: Maximum items (>= 1).
        name: Value of ``otel_rtc.buffer.name`` (and burst monitor name with
            ``bursts=True``).
        policy: ``"reject"``: a push to a full buffer is refused (drop reason
            ``full``); ``"drop_oldest"``: the oldest item is evicted to make room
            (drop reason ``drop_oldest``).
        bursts: See :class:`InstrumentedQueue`.
        meter_provider: For the counters and the depth gauge (default: global).
        tracer_provider: For the burst monitor's spans when it is created here.
        clock: Clock for the enqueue stamps (epoch ns; default ``time.time_ns``).

    Raises:
        ValueError: On a bad argument.
    """

    __slots__ = ("__weakref__", "_items", "_lock", "_stamp", "_telemetry", "capacity",
                 "policy")

    def __init__(self, capacity: int, *, name: str = "buffer", policy: str = "reject",
                 bursts: Any = False, meter_provider: Any = None, tracer_provider: Any = None,
                 clock: Callable[[], int] | None = None) -> None:
        self.capacity = _check_size(capacity, "capacity")
        if policy not in _POLICIES:
            raise ValueError(f"policy must be one of {_POLICIES}, got {policy!r}")
        self.policy = policy
        self._items: deque[tuple[int, Any]] = deque()
        self._lock = threading.Lock()
        self._telemetry = BufferTelemetry(self, name, bursts, meter_provider,
                                           tracer_provider, clock)
        self._stamp = self._telemetry.clock

    @property
    def name(self) -> str:
        """The buffer's name."""
        return self._telemetry.name

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: Any) -> bool:
        """Add ``item``, stamped with the enqueue time.

        Returns:
            Whether ``item`` was stored. ``False`` only with policy ``reject`` on a full
            buffer; with ``drop_oldest`` the new item is stored and the oldest one is
            dropped (and counted).
        """
        t = self._stamp()
        evicted = False
        with self._lock:
            items = self._items
            if len(items) >= self.capacity:
                if self.policy == "reject":
                    stored = False
                else:
                    items.popleft()
                    items.append((t, item))
                    stored = evicted = True
            else:
                items.append((t, item))
                stored = True
        tel = self._telemetry
        if not stored:
            tel.dropped("full")
            return False
        if evicted:
            tel.dropped("drop_oldest")
        tel.enqueued(t)
        return True

    def pop(self) -> Any:
        """Take the oldest item.

        Raises:
            IndexError: The buffer is empty (the burst in progress ends first).
        """
        with self._lock:
            pair = self._items.popleft() if self._items else None
        if pair is None:
            self._telemetry.empty()
            raise IndexError("pop from an empty BoundedBuffer")
        enqueue_stamp.set(pair[0])
        return pair[1]

    def poll(self, default: Any = None) -> Any:
        """Take the oldest item, or return ``default`` when empty (ends the burst)."""
        with self._lock:
            pair = self._items.popleft() if self._items else None
        if pair is None:
            self._telemetry.empty()
            return default
        enqueue_stamp.set(pair[0])
        return pair[1]

    def pop_stamped(self) -> tuple[int, Any]:
        """Take the oldest item with its enqueue stamp: ``(enqueue_ns, item)``.

        Raises:
            IndexError: The buffer is empty (the burst in progress ends first).
        """
        with self._lock:
            pair = self._items.popleft() if self._items else None
        if pair is None:
            self._telemetry.empty()
            raise IndexError("pop from an empty BoundedBuffer")
        enqueue_stamp.set(pair[0])
        return pair
