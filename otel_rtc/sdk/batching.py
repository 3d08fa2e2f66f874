"""Bounded batch processors for spans and log records, with one shutdown deadline.

``configure()`` uses these instead of the SDK's ``BatchSpanProcessor`` and
``BatchLogRecordProcessor``, through the SDK's public processor interfaces, because with
an absent collector the SDK's processors

* build a "Queue full, dropping Span" log record on the application's thread for every
  dropped item (a third of the per-call cost of a traced handler),
* take no deadline in ``shutdown()`` (30 s against a dead endpoint), and
* abandon what is still queued at their deadline without counting it.

Here a dropped item costs one counter increment; the drops are logged from the worker
thread at most once per ``log_interval_s``. Everything that does not reach the exporter
is counted in ``otel_rtc.telemetry.dropped`` under the processor's component
(``export.traces`` / ``export.logs``) by reason:

* ``queue_full``: the queue was full (exporter slow or collector unreachable);
* ``export_failed``: the exporter reported a failure or raised;
* ``shutdown_timeout``: still queued or in flight when the shutdown deadline passed;
* ``after_shutdown``: emitted after shutdown began.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.context import (
    _SUPPRESS_INSTRUMENTATION_KEY,
    Context,
    attach,
    detach,
    set_value,
)
from opentelemetry.sdk._logs import LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_rtc.instrumentation.self_telemetry import count_drop, report_error

__all__ = [
    "DEFAULT_SHUTDOWN_TIMEOUT_S",
    "RtcBatchLogRecordProcessor",
    "RtcBatchSpanProcessor",
]

_logger = logging.getLogger("otel_rtc")

DEFAULT_SHUTDOWN_TIMEOUT_S = 1.0
"""The one deadline of flush-and-shutdown, for every signal at once."""


class _BatchQueue:
    """A bounded queue drained in batches by one worker thread; see the module docstring.

    Args:
        export: Sends one batch; returns a result whose ``name`` is ``"SUCCESS"`` on
            success (the SDK's span and log export results both do).
        stop_exporter: Shuts the exporter down; it must interrupt an export's retries.
        component: ``otel_rtc.component`` of the drop counts.
        what: What an item is, for log lines (``"spans"``, ``"log records"``).
    """

    def __init__(self, export: Callable[[Sequence[Any]], Any], stop_exporter: Callable[[], Any],
                 component: str, what: str, *, max_queue_size: int, max_batch_size: int,
                 schedule_delay_s: float, log_interval_s: float) -> None:
        if not isinstance(max_queue_size, int) or max_queue_size < 1:
            raise ValueError(f"max_queue_size must be a positive int, got {max_queue_size!r}")
        if not isinstance(max_batch_size, int) or not 1 <= max_batch_size <= max_queue_size:
            raise ValueError("max_batch_size must be an int in [1, max_queue_size], got "
                             f"{max_batch_size!r}")
        for name, value in (("schedule_delay_s", schedule_delay_s),
                            ("log_interval_s", log_interval_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        self._export_fn = export
        self._stop_exporter = stop_exporter
        self.component = component
        self.what = what
        self._max_queue = max_queue_size
        self._max_batch = max_batch_size
        self._delay_s = float(schedule_delay_s)
        self._log_interval_s = float(log_interval_s)
        self._closed = False
        self._shutdown_started = False
        self._start()
        if hasattr(os, "register_at_fork"):
            ref = weakref.WeakMethod(self._after_fork)
            os.register_at_fork(after_in_child=lambda: (m := ref()) is not None and m())

    def _start(self) -> None:
        self._queue: deque[Any] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._abandoned = False  # the deadline passed: export nothing more
        self._in_flight = 0  # items of the batch being exported
        self._in_flight_counted = False  # ... already counted as abandoned
        self._flush_asked = 0
        self._flush_done = 0
        self._unlogged_drops = 0
        self._last_log = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"otel_rtc-{self.component}",
                                        daemon=True)
        self._thread.start()

    def _after_fork(self) -> None:
        # The child inherits the queue but not the worker thread: start afresh. What the
        # parent had queued is the parent's to export.
        if not self._closed:
            self._start()

    # -- the application's side: never blocks, never logs ------------------------------

    def offer(self, item: Any) -> None:
        if self._closed:
            count_drop(self.component, "after_shutdown")
            return
        q = self._queue
        if len(q) >= self._max_queue:
            with self._cond:
                self._unlogged_drops += 1
            count_drop(self.component, "queue_full")
            return
        q.append(item)
        if len(q) >= self._max_batch:
            self._wake.set()

    # -- the worker ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self._delay_s)
            self._wake.clear()
            closing = self._closed
            with self._cond:
                asked = self._flush_asked
            # What is queued now, not what arrives meanwhile: with a slow exporter the
            # application refills the queue as fast as it drains, and the worker must
            # come back to log the drops. Closing, nothing arrives: drain it all.
            self._drain(None if closing else len(self._queue))
            with self._cond:
                self._flush_done = max(self._flush_done, asked)
                self._cond.notify_all()
            self._log_drops(time.monotonic())
            if closing:
                return

    def _drain(self, limit: int | None) -> None:
        # Exports must not be traced themselves (an HTTP client instrumentation would make
        # spans about sending spans): the context key every instrumentation checks, as the
        # SDK's own batch processor sets it.
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            while limit is None or limit > 0:
                with self._cond:
                    if self._abandoned or not self._queue:
                        return
                    n = min(self._max_batch, len(self._queue))
                    if limit is not None:
                        limit -= n
                    batch = [self._queue.popleft() for _ in range(n)]
                    self._in_flight, self._in_flight_counted = n, False
                try:
                    ok = getattr(self._export_fn(batch), "name", "SUCCESS") == "SUCCESS"
                except Exception as exc:
                    report_error(self.component, exc)
                    ok = False
                with self._cond:
                    counted = self._in_flight_counted
                    self._in_flight = 0
                if not ok and not counted:
                    count_drop(self.component, "export_failed", n)
        finally:
            detach(token)

    def _log_drops(self, now: float) -> None:
        if now - self._last_log < self._log_interval_s:
            return
        with self._cond:
            n, self._unlogged_drops = self._unlogged_drops, 0
        self._last_log = now
        if n:
            _logger.warning("otel_rtc: dropped %d %s in the last %.0f s because the export "
                            "queue was full (exporter slow or collector unreachable); "
                            "counted in otel_rtc.telemetry.dropped", n, self.what,
                            self._log_interval_s)

    # -- flush and shutdown ---------------------------------------------------------------

    def flush(self, deadline: float) -> bool:
        """Export what is queued now; ``False`` if not done by ``deadline`` (monotonic)."""
        if self._closed:
            return False
        with self._cond:
            self._flush_asked += 1
            ticket = self._flush_asked
        self._wake.set()
        with self._cond:
            while self._flush_done < ticket:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
        return True

    def shutdown(self, deadline: float) -> int:
        """Export what is queued until ``deadline``, then stop; returns the items abandoned.

        Abandoned items (queued or in flight at the deadline) are counted as
        ``shutdown_timeout``. Idempotent.
        """
        with self._cond:
            if self._shutdown_started:
                return 0
            self._shutdown_started = True
        self._closed = True
        self._wake.set()
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        abandoned = 0
        with self._cond:
            if self._thread.is_alive():
                self._abandoned = True
                if self._in_flight and not self._in_flight_counted:
                    abandoned += self._in_flight
                    self._in_flight_counted = True
                abandoned += len(self._queue)
                self._queue.clear()
                late = 0
            else:
                # offer() raced with the worker's last drain: emitted after shutdown began.
                late = len(self._queue)
                self._queue.clear()
            unlogged, self._unlogged_drops = self._unlogged_drops, 0
        if abandoned:
            count_drop(self.component, "shutdown_timeout", abandoned)
        if late:
            count_drop(self.component, "after_shutdown", late)
        if unlogged:
            _logger.warning("otel_rtc: dropped %d %s because the export queue was full "
                            "(exporter slow or collector unreachable); counted in "
                            "otel_rtc.telemetry.dropped", unlogged, self.what)
        # Interrupts an export still retrying in the worker, so that it ends too.
        try:
            self._stop_exporter()
        except Exception as exc:
            report_error(self.component, exc)
        return abandoned


class RtcBatchSpanProcessor(SpanProcessor):
    """Exports sampled spans in batches from a worker thread; see the module docstring.

    Args:
        exporter: A span exporter (OTLP, file, ...).
        component: ``otel_rtc.component`` of its drop counts.
        max_queue_size: Spans held while the exporter is slow or absent.
        max_batch_size: Spans per export call.
        schedule_delay_s: Longest wait between exports.
        log_interval_s: Queue-full drops are logged at most this often.

    Raises:
        ValueError: On a bad size or period.
    """

    def __init__(self, exporter: Any, component: str = "export.traces", *,
                 max_queue_size: int = 2048, max_batch_size: int = 512,
                 schedule_delay_s: float = 1.0, log_interval_s: float = 60.0) -> None:
        self.exporter = exporter
        self.queue = _BatchQueue(exporter.export, exporter.shutdown, component, "spans",
                                 max_queue_size=max_queue_size, max_batch_size=max_batch_size,
                                 schedule_delay_s=schedule_delay_s,
                                 log_interval_s=log_interval_s)

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        """Nothing to do when a span starts."""

    def on_end(self, span: ReadableSpan) -> None:
        """Queue a sampled span for export (never blocks)."""
        if span.context is not None and span.context.trace_flags.sampled:
            self.queue.offer(span)

    def shutdown(self, timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S) -> None:
        """Export what is queued for at most ``timeout_s``, then stop (idempotent)."""
        self.queue.shutdown(time.monotonic() + timeout_s)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export what is queued; ``False`` if not done within ``timeout_millis``."""
        return self.queue.flush(time.monotonic() + timeout_millis / 1000)


class RtcBatchLogRecordProcessor(LogRecordProcessor):
    """Exports log records in batches from a worker thread; see the module docstring.

    Args:
        exporter: A log record exporter (OTLP, file, ...).
        component: ``otel_rtc.component`` of its drop counts.
        max_queue_size: Records held while the exporter is slow or absent.
        max_batch_size: Records per export call.
        schedule_delay_s: Longest wait between exports.
        log_interval_s: Queue-full drops are logged at most this often.

    Raises:
        ValueError: On a bad size or period.
    """

    def __init__(self, exporter: Any, component: str = "export.logs", *,
                 max_queue_size: int = 2048, max_batch_size: int = 512,
                 schedule_delay_s: float = 1.0, log_interval_s: float = 60.0) -> None:
        self.exporter = exporter
        self.queue = _BatchQueue(exporter.export, exporter.shutdown, component, "log records",
                                 max_queue_size=max_queue_size, max_batch_size=max_batch_size,
                                 schedule_delay_s=schedule_delay_s,
                                 log_interval_s=log_interval_s)

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        """Queue a read-only copy of ``log_record`` for export (never blocks)."""
        try:
            # As the SDK's batch processor does: the exporter takes readable records, and
            # the copy drops the reference to the (possibly large) context.
            api_record = copy.copy(log_record.log_record)
            api_record.context = Context()
            self.queue.offer(ReadableLogRecord(
                log_record=api_record, resource=log_record.resource or Resource.get_empty(),
                instrumentation_scope=log_record.instrumentation_scope,
                limits=log_record.limits))
        except Exception as exc:
            report_error(self.queue.component, exc)

    def shutdown(self, timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S) -> None:
        """Export what is queued for at most ``timeout_s``, then stop (idempotent)."""
        self.queue.shutdown(time.monotonic() + timeout_s)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export what is queued; ``False`` if not done within ``timeout_millis``."""
        return self.queue.flush(time.monotonic() + timeout_millis / 1000)

