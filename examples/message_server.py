"""An asyncio UDP message server with a tiny receive buffer, under a bursty resending client.

This is the reference's message server made runnable: it receives a message, does a
"database query" (``asyncio.sleep`` of a configurable, jittered latency), sends a
response, and only then takes the next message. Everything happens over real UDP
sockets on 127.0.0.1:

* the **client** sends bursts of messages with breaks in between. Each message carries
  an id, its attempt number and a W3C ``traceparent`` header of the client's
  ``send chat`` PRODUCER span. When no ACK comes back within ``resend_timeout_ms`` it
  resends (attempt 2, 3, ...) and gives up after ``max_attempts`` (counted as *lost*);
* the **server** puts each datagram into a tiny :class:`~otel_rtc.InstrumentedAsyncQueue`
  (``buffer_size`` items, default 8). A full buffer drops the datagram, as the
  reference's packet buffer does, but here the drop is counted
  (``otel_rtc.buffer.dropped{otel_rtc.drop.reason="full"}``), never silent;
* the instrumented buffer is **not** the only place a message can be lost. Before it,
  the kernel drops datagrams when the socket's receive buffer is full (a burst faster
  than the event loop reads): those are read from the socket's drop counter in
  ``/proc/net/udp`` and reported as ``chat.udp.receive_buffer.dropped``. After it, a
  datagram that cannot be decoded (not JSON, not a message, or JSON nested so deeply
  that the decoder raises ``RecursionError``) or whose processing raises is counted in
  ``chat.datagrams.rejected{error.type=...}`` and the consumer goes on with the next
  one (one bad datagram used to end the consumer for good);
* a single consumer task takes one message at a time and processes it inside
  :meth:`otel_rtc.MessageHandler.message`: received = the enqueue stamp, processing
  started / finished = entry / exit. It ACKs when processing starts (the reference's
  assumption) and responds when it finishes. A ``get`` that finds the buffer empty ends
  the burst in progress.

Because the server only sees when a datagram *arrived* (not when its first attempt was
sent), the queue wait of a resent message starts at the resend: exactly the blind spot
the reference describes. Resends are told apart by ``messaging.message.retry.count``
and the ``otel_rtc.attempt`` dimension.

Run standalone (bounded by ``--duration``)::

    python -m examples.message_server --duration 10

It calls :func:`otel_rtc.configure` (OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set,
else OTLP JSON files in ``./telemetry-out``) and switches burst tracking on. Import
:func:`run` to drive it from a demo or a test; ``examples/demo.py`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind

from otel_rtc import BurstMonitor, InstrumentedAsyncQueue, MessageHandler, __version__
from otel_rtc.core import FrameStats

DESTINATION = "chat"
SYSTEM = "udp"
PROGRESS_PERIOD_S = 0.1
FRAME_PERIOD_S = 1.0
DRAIN_TIMEOUT_S = 2.0
_SAMPLES = 50_000
_PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
_DB_ATTRS = {"db.system.name": "other_sql", "db.operation.name": "SELECT",
             "db.collection.name": "messages"}
PAYLOAD_PREFIX = "PAYLOAD:"
"""Every message body starts with this; tests check it never reaches the telemetry."""


@dataclass
class ServerStats:
    """What one run did, as the client and the server saw it.

    Latencies are in seconds, as ``{"p50": s, "p95": s, "p99": s}`` over the messages
    processed so far whose received time is known (all of them here: the buffer stamps
    every datagram).

    Attributes:
        sent: Distinct messages the client sent (first attempts).
        resends: Datagrams the client sent again after a missing ACK.
        received: Datagrams that reached the server (accepted + dropped).
        dropped: Datagrams the full receive buffer refused (counted, never silent).
        kernel_dropped: Datagrams the kernel dropped before the server read them (the
            socket's receive buffer was full); ``None`` where the counter is not
            readable (not Linux).
        rejected: Datagrams taken from the buffer but not processed: undecodable, or
            their decoding or processing raised (``{reason: count}``).
        processed: Messages the handler processed (a resend whose original was still
            queued is processed again, as on a real server).
        acked: Distinct messages the client saw ACKed.
        lost: Messages the client gave up on after ``max_attempts``.
        queue_wait: Percentiles of received → processing started.
        processing: Percentiles of processing started → finished.
        receive_to_finish: Percentiles of received → finished.
        by_attempt: Filled in the final stats only: per attempt kind (``"first"``,
            ``"retry"``), per latency (``"queue_wait"``, ``"processing"``,
            ``"receive_to_finish"``), the percentiles plus ``"mean"`` (seconds) and
            ``"n"`` (messages).
        bursts: Bursts completed (the buffer found empty after processing).
        max_burst_duration_s: Longest burst so far: the worst-case latency bound.
        frame: The latest burst frame with bursts in it (the ``logMessageBurstStats``
            fields), if any.
        elapsed_s: Seconds since the load started.
    """

    sent: int = 0
    resends: int = 0
    received: int = 0
    dropped: int = 0
    kernel_dropped: int | None = None
    rejected: dict[str, int] = field(default_factory=dict)
    processed: int = 0
    acked: int = 0
    lost: int = 0
    queue_wait: dict[str, float] = field(default_factory=dict)
    processing: dict[str, float] = field(default_factory=dict)
    receive_to_finish: dict[str, float] = field(default_factory=dict)
    by_attempt: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    bursts: int = 0
    max_burst_duration_s: float | None = None
    frame: FrameStats | None = None
    elapsed_s: float = 0.0


def _percentiles(samples: deque[int]) -> dict[str, float]:
    """Nearest-rank percentiles, in seconds, of nanosecond samples."""
    if not samples:
        return {}
    ordered = sorted(samples)
    n = len(ordered)
    return {name: ordered[min(n - 1, max(0, int(q * n + 0.5) - 1))] / 1e9
            for name, q in _PERCENTILES}


def _summary(samples: list[int]) -> dict[str, float]:
    """Percentiles, mean (seconds) and count ``n`` of nanosecond samples."""
    if not samples:
        return {}
    return {**_percentiles(deque(samples)), "mean": sum(samples) / len(samples) / 1e9,
            "n": float(len(samples))}


# -- the wire format: JSON, payload opaque to the telemetry ---------------------------------

def _encode(msg_id: int, attempt: int, headers: Mapping[str, str], body: str) -> bytes:
    return json.dumps({"id": msg_id, "attempt": attempt, "headers": dict(headers),
                       "body": body}, separators=(",", ":")).encode()


def _decode(data: bytes) -> tuple[dict[str, Any] | None, str]:
    """``(message, "")``, or ``(None, reason)`` for a datagram that is not one."""
    try:
        doc = json.loads(data)
    except ValueError:
        return None, "undecodable"
    except Exception as exc:  # RecursionError on deep nesting, MemoryError, ...
        return None, type(exc).__qualname__
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), int):
        return None, "undecodable"
    return doc, ""


def udp_receive_drops(sock: Any) -> int | None:
    """The kernel's count of datagrams dropped for ``sock`` (full receive buffer).

    Read from the socket's line in ``/proc/net/udp`` / ``udp6`` (its last column);
    ``None`` where that is not available.
    """
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
        for table in ("/proc/net/udp", "/proc/net/udp6"):
            with open(table) as fh:
                next(fh)  # header
                for line in fh:
                    parts = line.split()
                    if len(parts) > 12 and parts[9] == inode:
                        return int(parts[-1])
    except (OSError, ValueError, StopIteration):
        return None
    return None


# -- server ---------------------------------------------------------------------------------

class _ServerProtocol(asyncio.DatagramProtocol):
    """Puts each datagram into the tiny instrumented buffer; a full buffer drops it."""

    def __init__(self, inbox: InstrumentedAsyncQueue, stats: ServerStats) -> None:
        self.inbox = inbox
        self.stats = stats
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.stats.received += 1
        if not self.inbox.offer((data, addr)):  # counted in otel_rtc.buffer.dropped
            self.stats.dropped += 1


class _Server:
    def __init__(self, *, inbox: InstrumentedAsyncQueue, handler: MessageHandler,
                 stats: ServerStats, latency_s: Callable[[], float], tracer: trace.Tracer,
                 rejected: Any) -> None:
        self.inbox = inbox
        self.rejected = rejected
        self.tracer = tracer
        self.handler = handler
        self.stats = stats
        self.latency_s = latency_s
        self.protocol = _ServerProtocol(inbox, stats)
        self.queue_wait: deque[int] = deque(maxlen=_SAMPLES)
        self.processing: deque[int] = deque(maxlen=_SAMPLES)
        self.receive_to_finish: deque[int] = deque(maxlen=_SAMPLES)
        # (attempt kind, latency name, ns): the final summary's first-vs-retry split
        self.by_attempt: deque[tuple[str, str, int]] = deque(maxlen=3 * _SAMPLES)

    async def consume(self) -> None:
        """One message at a time: the next is taken only after the response is sent."""
        while True:
            data, addr = await self.inbox.get()  # an empty buffer ends the burst first
            doc, reason = _decode(data)
            if doc is None:
                self.reject(reason)
                continue
            try:
                await self.process(doc, addr)
            except Exception as exc:  # the handler recorded it; the server goes on
                self.reject(type(exc).__qualname__)

    def reject(self, reason: str) -> None:
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1
        self.rejected.add(1, {"error.type": reason})

    async def process(self, doc: dict[str, Any], addr: tuple[str, int]) -> None:
        transport = self.protocol.transport
        msg_id = doc["id"]
        headers = doc.get("headers")
        with self.handler.message(message_id=str(msg_id), attempt=doc.get("attempt"),
                                  headers=headers if isinstance(headers, dict) else None
                                  ) as scope:
            if transport is not None:
                transport.sendto(b"ACK %d" % msg_id, addr)
            # A child of the message's span (current while the handler runs).
            with self.tracer.start_as_current_span("SELECT messages", kind=SpanKind.CLIENT,
                                                   attributes=_DB_ATTRS):
                await asyncio.sleep(self.latency_s())  # the "database query"
            if transport is not None:
                transport.sendto(b"RES %d" % msg_id, addr)
        finished = time.time_ns()
        self.stats.processed += 1
        received, started = scope.received_ns, scope.start_ns
        attempt = doc.get("attempt")
        kind = "retry" if isinstance(attempt, int) and attempt > 1 else "first"
        if started is not None:
            self.processing.append(max(0, finished - started))
            self.by_attempt.append((kind, "processing", max(0, finished - started)))
            if received is not None:
                self.queue_wait.append(max(0, started - received))
                self.receive_to_finish.append(max(0, finished - received))
                self.by_attempt.append((kind, "queue_wait", max(0, started - received)))
                self.by_attempt.append((kind, "receive_to_finish",
                                        max(0, finished - received)))

    def latency_by_attempt(self) -> dict[str, dict[str, dict[str, float]]]:
        """:attr:`ServerStats.by_attempt` from the samples so far."""
        grouped: dict[str, dict[str, list[int]]] = {}
        for kind, name, ns in self.by_attempt:
            grouped.setdefault(kind, {}).setdefault(name, []).append(ns)
        return {kind: {name: _summary(v) for name, v in by_name.items()}
                for kind, by_name in grouped.items()}


# -- client ---------------------------------------------------------------------------------

class _ClientProtocol(asyncio.DatagramProtocol):
    def __init__(self, client: _Client) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        kind, _, raw_id = data.partition(b" ")
        if kind == b"ACK" and raw_id.isdigit():
            self.client.acked(int(raw_id))


@dataclass
class _Outstanding:
    attempt: int
    last_sent: float
    datagram_of: Callable[[int], bytes]


class _Client:
    """Sends bursts; resends un-ACKed messages after a timeout; gives up after N attempts."""

    def __init__(self, *, stats: ServerStats, rng: random.Random, tracer: trace.Tracer,
                 resend_timeout_s: float, max_attempts: int,
                 burst_size: tuple[int, int], gap_s: float, break_s: tuple[float, float]
                 ) -> None:
        self.stats = stats
        self.rng = rng
        self.tracer = tracer
        self.resend_timeout_s = resend_timeout_s
        self.max_attempts = max_attempts
        self.burst_size = burst_size
        self.gap_s = gap_s
        self.break_s = break_s
        self.transport: asyncio.DatagramTransport | None = None
        self.outstanding: dict[int, _Outstanding] = {}
        self.next_id = 1

    def acked(self, msg_id: int) -> None:
        if self.outstanding.pop(msg_id, None) is not None:
            self.stats.acked += 1

    def send_new(self) -> None:
        msg_id = self.next_id
        self.next_id += 1
        carrier: dict[str, str] = {}
        with self.tracer.start_as_current_span(f"send {DESTINATION}", kind=SpanKind.PRODUCER,
                                               attributes={
                                                   "messaging.system": SYSTEM,
                                                   "messaging.destination.name": DESTINATION,
                                                   "messaging.operation.type": "send",
                                                   "messaging.message.id": str(msg_id),
                                               }):
            propagate.inject(carrier)
        body = PAYLOAD_PREFIX + "x" * self.rng.randint(16, 200)  # opaque, never recorded

        def datagram_of(attempt: int) -> bytes:
            return _encode(msg_id, attempt, carrier, body)

        self.outstanding[msg_id] = _Outstanding(1, time.monotonic(), datagram_of)
        self.stats.sent += 1
        self._send(datagram_of(1))

    def _send(self, datagram: bytes) -> None:
        if self.transport is not None:
            self.transport.sendto(datagram)

    def resend_due(self) -> None:
        now = time.monotonic()
        for msg_id, out in list(self.outstanding.items()):
            if now - out.last_sent < self.resend_timeout_s:
                continue
            if out.attempt >= self.max_attempts:
                del self.outstanding[msg_id]
                self.stats.lost += 1
                continue
            out.attempt += 1
            out.last_sent = now
            self.stats.resends += 1
            self._send(out.datagram_of(out.attempt))

    async def load(self, until: float) -> None:
        """Bursts of back-to-back messages separated by idle breaks, until ``until``."""
        while time.monotonic() < until:
            for _ in range(self.rng.randint(*self.burst_size)):
                self.send_new()
                await asyncio.sleep(self.rng.uniform(0.0, self.gap_s))
            await asyncio.sleep(self.rng.uniform(*self.break_s))

    async def resender(self) -> None:
        period = max(self.resend_timeout_s / 4, 0.001)
        while True:
            await asyncio.sleep(period)
            self.resend_due()


# -- run ------------------------------------------------------------------------------------

def _check_loopback(host: str) -> None:
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"host must be a loopback address (the example only talks to "
                         f"itself), got {host!r}")


def _check_positive(**values: float) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"{name} must be a number > 0, got {v!r}")


async def run(
    duration_s: float = 20.0,
    *,
    seed: int = 0,
    progress: Callable[[ServerStats], None] | None = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    host: str = "127.0.0.1",
    buffer_size: int = 8,
    db_latency_ms: float = 2.0,
    slow_query_probability: float = 0.02,
    resend_timeout_ms: float = 50.0,
    max_attempts: int = 5,
    burst_size: tuple[int, int] = (5, 40),
    gap_ms: float = 2.0,
    break_ms: tuple[float, float] = (100.0, 600.0),
    on_listening: Callable[[tuple[str, int]], None] | None = None,
) -> ServerStats:
    """Run the server and its client for ``duration_s`` seconds of load, then drain.

    Burst tracking follows the process-wide switches (off by default:
    ``configure(bursts=True)``, ``otel_rtc.burst_switches().set(enabled=True)`` or
    ``OTEL_RTC_BURSTS_ENABLED=true``).

    Args:
        duration_s: Seconds of load; the run then waits up to 2 s for the client's
            outstanding messages to be ACKed or given up.
        seed: Seed of the load and latency randomness.
        progress: Called with the current :class:`ServerStats` about every 0.1 s.
        tracer_provider: For the spans (default: the global provider).
        meter_provider: For the metrics (default: the global provider).
        host: Loopback address to bind and send to.
        buffer_size: Capacity of the server's receive buffer (small on purpose).
        db_latency_ms: Mean latency of the simulated database query.
        slow_query_probability: Chance that a query takes 10x longer.
        resend_timeout_ms: The client resends a message not ACKed within this time.
        max_attempts: Attempts per message before the client gives up (``lost``).
        burst_size: Inclusive range of messages per client burst.
        gap_ms: The client waits up to this long (uniformly) between the messages of
            a burst, so messages arrive while earlier ones are processed.
        break_ms: Range of the client's idle break between bursts.
        on_listening: Called with the server's ``(host, port)`` once it listens (to
            send it datagrams of your own).

    Returns:
        The final :class:`ServerStats`.

    Raises:
        ValueError: On a bad argument.
    """
    _check_loopback(host)
    _check_positive(duration_s=duration_s, db_latency_ms=db_latency_ms,
                    resend_timeout_ms=resend_timeout_ms)
    if not 0 <= slow_query_probability <= 1:
        raise ValueError(f"slow_query_probability must be in [0, 1], "
                         f"got {slow_query_probability!r}")
    for name, v in (("buffer_size", buffer_size), ("max_attempts", max_attempts)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if not 1 <= burst_size[0] <= burst_size[1]:
        raise ValueError(f"burst_size must be (low, high) with 1 <= low <= high, "
                         f"got {burst_size!r}")
    if not 0 <= break_ms[0] <= break_ms[1]:
        raise ValueError(f"break_ms must be (low, high) with 0 <= low <= high, got {break_ms!r}")
    if isinstance(gap_ms, bool) or not isinstance(gap_ms, (int, float)) or not gap_ms >= 0:
        raise ValueError(f"gap_ms must be a number >= 0, got {gap_ms!r}")

    rng = random.Random(seed)
    stats = ServerStats()
    monitor = BurstMonitor(DESTINATION, tracer_provider=tracer_provider,
                           meter_provider=meter_provider, stats_interval_s=None)
    inbox = InstrumentedAsyncQueue(buffer_size, name=f"{DESTINATION}-inbox", bursts=monitor,
                                   meter_provider=meter_provider)
    handler = MessageHandler(DESTINATION, system=SYSTEM, mode="spans", bursts=monitor,
                             tracer_provider=tracer_provider, meter_provider=meter_provider)
    mean_s = db_latency_ms / 1000.0

    def latency_s() -> float:
        base = rng.expovariate(1.0 / mean_s) * 0.5 + mean_s * 0.5  # never near zero
        return base * 10 if rng.random() < slow_query_probability else base

    tracer = trace.get_tracer("otel_rtc.examples.message_server", __version__, tracer_provider)
    meter = metrics.get_meter("otel_rtc.examples.message_server", __version__, meter_provider)
    rejected = meter.create_counter(
        "chat.datagrams.rejected", unit="{datagram}",
        description="Datagrams taken from the buffer but not processed: undecodable, or "
                    "decoding or processing raised (error.type).")
    server = _Server(inbox=inbox, handler=handler, stats=stats, latency_s=latency_s,
                     tracer=tracer, rejected=rejected)
    client = _Client(stats=stats, rng=rng, tracer=tracer,
                     resend_timeout_s=resend_timeout_ms / 1000.0, max_attempts=max_attempts,
                     burst_size=burst_size, gap_s=gap_ms / 1000.0,
                     break_s=(break_ms[0] / 1000, break_ms[1] / 1000))

    loop = asyncio.get_running_loop()
    server_transport, _ = await loop.create_datagram_endpoint(
        lambda: server.protocol, local_addr=(host, 0))
    port = server_transport.get_extra_info("sockname")[1]
    server_socket = server_transport.get_extra_info("socket")
    base_drops = udp_receive_drops(server_socket) or 0

    def kernel_drops() -> int | None:
        n = udp_receive_drops(server_socket)
        return None if n is None else n - base_drops

    def observe_kernel_drops(_options: Any) -> list[metrics.Observation]:
        n = kernel_drops()
        return [] if n is None else [metrics.Observation(n)]

    meter.create_observable_counter(
        "chat.udp.receive_buffer.dropped", callbacks=[observe_kernel_drops],
        unit="{datagram}",
        description="Datagrams the kernel dropped because the server socket's receive "
                    "buffer was full (before the server could read them).")
    if on_listening is not None:
        on_listening((host, port))
    client_transport, _ = await loop.create_datagram_endpoint(
        lambda: _ClientProtocol(client), remote_addr=(host, port))
    client.transport = client_transport

    start = time.monotonic()
    tasks = [asyncio.create_task(server.consume(), name="message-server-consumer"),
             asyncio.create_task(client.resender(), name="message-client-resender")]
    load = asyncio.create_task(client.load(start + duration_s), name="message-client-load")
    next_frame = start + FRAME_PERIOD_S

    def snapshot() -> ServerStats:
        nonlocal next_frame
        now = time.monotonic()
        if now >= next_frame:
            next_frame = now + FRAME_PERIOD_S
            frame = monitor.tick()  # logs logMessageBurstStats / Data when switched on
            if frame is not None:
                stats.bursts += frame.data_points
                if frame.data_points:  # an idle frame does not hide the last busy one
                    stats.frame = frame
                    longest = frame.max_message_burst_duration
                    stats.max_burst_duration_s = max(stats.max_burst_duration_s or 0.0,
                                                     longest)
        stats.queue_wait = _percentiles(server.queue_wait)
        stats.processing = _percentiles(server.processing)
        stats.receive_to_finish = _percentiles(server.receive_to_finish)
        stats.elapsed_s = now - start
        stats.kernel_dropped = kernel_drops()
        return stats

    try:
        while not load.done():
            await asyncio.sleep(PROGRESS_PERIOD_S)
            if tasks[0].done():  # the consumer must never end: say so, do not hide it
                tasks[0].result()
                raise RuntimeError("the message consumer stopped")
            if progress is not None:
                progress(snapshot())
        await load
        drain_until = time.monotonic() + DRAIN_TIMEOUT_S
        while (client.outstanding or len(inbox)) and time.monotonic() < drain_until:
            await asyncio.sleep(PROGRESS_PERIOD_S / 2)
        await asyncio.sleep(PROGRESS_PERIOD_S)  # the consumer finds the buffer empty
        next_frame = 0.0  # the last frame, whatever the period
        final = snapshot()
        final.by_attempt = server.latency_by_attempt()
        return final
    finally:
        load.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(load, *tasks, return_exceptions=True)
        client_transport.close()
        server_transport.close()
        monitor.close()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    import otel_rtc

    ap = argparse.ArgumentParser(prog="python -m examples.message_server",
                                 description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load (max 600)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--buffer-size", type=int, default=8, help="receive buffer capacity")
    ap.add_argument("--db-latency-ms", type=float, default=2.0)
    ap.add_argument("--resend-timeout-ms", type=float, default=50.0)
    args = ap.parse_args(argv)
    if not 0 < args.duration <= 600:
        ap.error("--duration must be in (0, 600]")
    telemetry = otel_rtc.configure(service_name="otel-rtc-message-server", bursts=True)
    try:
        stats = asyncio.run(run(args.duration, seed=args.seed, buffer_size=args.buffer_size,
                                db_latency_ms=args.db_latency_ms,
                                resend_timeout_ms=args.resend_timeout_ms))
    except ValueError as exc:
        ap.error(str(exc))
    finally:
        telemetry.shutdown()
    for name in ("sent", "resends", "received", "dropped", "kernel_dropped", "rejected",
                 "processed", "acked", "lost",
                 "bursts", "max_burst_duration_s", "queue_wait", "processing",
                 "receive_to_finish"):
        print(f"{name}: {getattr(stats, name)}")
    print(f"telemetry: {telemetry.mode} {telemetry.paths or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
