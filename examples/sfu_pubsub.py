"""A simulated SFU exercising pub/sub timing, participant sessions and traffic accounting.

Rooms fill with participants who publish audio/video/data tracks and subscribe to each
other's. The simulation includes publisher mutes, subscription migrations, resumes in
both orderings (old signal connection closes before / after the new one joins),
disconnects, a noisy data-channel participant and transport counters that wrap at 2**32.

Run standalone (bounded by ``--duration`` seconds)::

    python -m examples.sfu_pubsub --duration 10            # real time
    python -m examples.sfu_pubsub --duration 60 --virtual  # simulated time, instant
    python -m examples.sfu_pubsub --per-participant        # traffic per participant too

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set it exports over OTLP (through
``otel_rtc.configure()`` when available); otherwise it collects in memory and prints a
summary. Import :func:`run` to drive it from a demo or a test.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from otel_rtc import PubSubTelemetry, SessionRegistry, TrafficAccounting
from otel_rtc.core import ManualClock
from otel_rtc.instrumentation import SessionEvent, Subscription

NS_PER_S = 1_000_000_000
TICK_NS = NS_PER_S // 10
MS = NS_PER_S // 1000


@dataclass
class Track:
    tid: str
    kind: str
    owner: str
    muted: bool
    headers: dict[str, str] = field(default_factory=dict)
    subscribers: dict[str, Subscription] = field(default_factory=dict)


@dataclass
class Peer:
    pid: str
    room: str
    noisy: bool = False
    tracks: list[Track] = field(default_factory=list)
    counters: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    resuming: bool = False


class Sfu:
    """The simulation: scheduled callbacks on a (manual or real) clock."""

    def __init__(self, *, rooms: int, seed: int, clock: Callable[[], int],
                 tracer_provider: Any, meter_provider: Any, logger_provider: Any,
                 per_participant: bool = False) -> None:
        self.rng = random.Random(seed)
        self.clock = clock
        self.rooms = [f"room-{i}" for i in range(rooms)]
        self.peers: dict[tuple[str, str], Peer] = {}
        self.queue: list[tuple[int, int, Callable[[], None]]] = []
        self.seq = itertools.count()
        self.ids = itertools.count()
        self.stats: Counter[str] = Counter()
        self.events: list[SessionEvent] = []
        self.pubsub = PubSubTelemetry(tracer_provider=tracer_provider,
                                      meter_provider=meter_provider, clock=clock,
                                      high_publish_delay_s=0.5)
        self.traffic = TrafficAccounting(meter_provider=meter_provider, clock=clock,
                                         per_participant=per_participant)
        self.sessions = SessionRegistry(reap_interval_s=0, grace_s=30.0, clock=clock,
                                        on_event=self.events.append,
                                        meter_provider=meter_provider,
                                        logger_provider=logger_provider)

    # -- scheduling --------------------------------------------------------------
    def at(self, delay_ns: int, fn: Callable[[], None]) -> None:
        heapq.heappush(self.queue, (self.clock() + delay_ns, next(self.seq), fn))

    def run_due(self) -> None:
        now = self.clock()
        while self.queue and self.queue[0][0] <= now:
            _, _, fn = heapq.heappop(self.queue)
            fn()

    # -- participants ------------------------------------------------------------
    def join(self, room: str, noisy: bool = False) -> None:
        pid = f"{'noisy' if noisy else 'p'}{next(self.ids)}"
        peer = Peer(pid, room, noisy)
        self.peers[(room, pid)] = peer
        session = self.sessions.join(room, pid, "signal")
        self.sessions.join(room, pid, "media")
        if session is not None:
            session.own(lambda: self.pubsub.forget(room, pid))
            session.own(lambda: self.traffic.forget(room, pid))
        kinds = ["data"] if noisy else ["audio", "video"] + (["data"] if self.rng.random()
                                                             < 0.3 else [])
        for kind in kinds:
            self.publish(peer, kind)
        for other in [p for p in self.peers.values() if p.room == room and p is not peer]:
            for track in other.tracks:
                self.subscribe(peer, track)

    def publish(self, peer: Peer, kind: str) -> None:
        track = Track(f"TR_{peer.pid}_{kind}", kind, peer.pid,
                      muted=kind == "video" and self.rng.random() < 0.25)
        peer.tracks.append(track)
        pub = self.pubsub.publication(track.tid, room=peer.room, participant=peer.pid,
                                      kind=kind, muted=track.muted, carrier=track.headers)
        self.stats["publications"] += 1
        # first packet after 20-300 ms, occasionally 0.6-1.2 s (a high publish delay)
        delay = self.rng.randint(20, 300) if self.rng.random() > 0.05 else \
            self.rng.randint(600, 1200)
        if track.muted:
            self.at(self.rng.randint(1, 4) * NS_PER_S, lambda: self.unmute(peer, track, pub))
        self.at(delay * MS, lambda: None if track.muted else pub.complete())
        for other in [p for p in self.peers.values() if p.room == peer.room and p is not peer]:
            self.subscribe(other, track)

    def unmute(self, peer: Peer, track: Track, pub: Any) -> None:
        if (peer.room, peer.pid) not in self.peers:
            return
        track.muted = False
        pub.unmute()
        self.at(self.rng.randint(10, 50) * MS, pub.complete)
        for sub in list(track.subscribers.values()):
            sub.unmute()
            self.at(self.rng.randint(20, 80) * MS, sub.complete)
        self.stats["unmutes"] += 1

    def subscribe(self, peer: Peer, track: Track, reason: str | None = None) -> None:
        sub = self.pubsub.subscription(track.tid, room=peer.room, subscriber=peer.pid,
                                       publisher=track.owner, kind=track.kind, reason=reason,
                                       muted=track.muted, carrier=track.headers)
        track.subscribers[peer.pid] = sub
        self.stats[f"subscriptions.{sub.attempt}"] += 1
        self.at(self.rng.randint(5, 40) * MS, sub.bound)
        if not track.muted:
            # 3 % of first attempts fail and are retried
            if reason is None and self.rng.random() < 0.03:
                self.at(self.rng.randint(50, 200) * MS,
                        lambda: (sub.fail("NegotiationTimeout"), self.subscribe(peer, track)))
            else:
                self.at(self.rng.randint(30, 250) * MS, sub.complete)

    def migrate(self, peer: Peer) -> None:
        """The subscriber moves to another node: every subscription restarts."""
        for other in [p for p in self.peers.values() if p.room == peer.room and p is not peer]:
            for track in other.tracks:
                self.subscribe(peer, track, reason="migration")
        self.stats["migrations"] += 1

    def resume(self, peer: Peer) -> None:
        """Signal reconnect; both orderings of old-close / new-join."""
        room, pid = peer.room, peer.pid
        if self.rng.random() < 0.5:
            self.sessions.leave(room, pid, "signal", expect_resume=True)
            self.sessions.leave(room, pid, "media", expect_resume=True)
            # Open subscription attempts wait for the resume: no giant "first" sample.
            self.stats["subscriptions.suspended"] += self.pubsub.suspend_subscriptions(room, pid)
            peer.resuming = True

            def rejoin() -> None:
                if (room, pid) in self.peers:
                    peer.resuming = False
                    self.sessions.join(room, pid, "signal")
                    self.sessions.join(room, pid, "media")
                    for other in [p for p in self.peers.values()
                                  if p.room == room and p is not peer]:
                        for track in other.tracks:
                            self.subscribe(peer, track, reason="resume")
            self.at(self.rng.randint(200, 2000) * MS, rejoin)
            self.stats["resumes.close_first"] += 1
        else:
            self.sessions.join(room, pid, "signal")
            self.at(self.rng.randint(50, 500) * MS,
                    lambda: self.sessions.leave(room, pid, "signal"))
            self.stats["resumes.join_first"] += 1

    def leave(self, peer: Peer) -> None:
        self.peers.pop((peer.room, peer.pid), None)
        for other in self.peers.values():
            for track in other.tracks:
                track.subscribers.pop(peer.pid, None)
        if not peer.resuming:
            self.sessions.leave(peer.room, peer.pid, "media")
            self.sessions.leave(peer.room, peer.pid, "signal")
        self.stats["disconnects"] += 1

    # -- traffic -----------------------------------------------------------------
    def report_traffic(self) -> None:
        for peer in list(self.peers.values()):
            kinds = {t.kind for t in peer.tracks} | {"audio"}
            for direction in ("up", "down"):
                for kind in kinds:
                    c = peer.counters.get((direction, kind))
                    # A stream's first report is only its baseline (its totals happened
                    # at unknown times), unless its counters started at zero with it.
                    from_zero = False
                    if c is None:
                        # some transports were already running when we attached (here
                        # with counters near the 32-bit wrap): their first report is a
                        # baseline; the others were created with the peer, from zero
                        start = 2**32 - 5000 if self.rng.random() < 0.1 else 0
                        c = peer.counters[(direction, kind)] = [start, start, 0, 0, 0]
                        from_zero = start == 0
                    pkts = {"audio": 5, "video": 30, "data": 2}[kind]
                    if peer.noisy and kind == "data":
                        pkts = 400
                    c[0] += pkts
                    c[1] += pkts * (1100 if kind == "video" else 120)
                    c[2] += self.rng.random() < 0.05
                    c[3] += self.rng.random() < 0.02
                    c[4] += 200 if kind == "video" and self.rng.random() < 0.1 else 0
                    self.traffic.add(peer.room, peer.pid, direction, kind,
                                     *(v % 2**32 for v in c), from_zero=from_zero)

    # -- one tick of 100 ms --------------------------------------------------------
    def tick(self) -> None:
        rng = self.rng
        if len(self.peers) < 12 * len(self.rooms) and rng.random() < 0.6:
            self.join(rng.choice(self.rooms))
        if not any(p.noisy for p in self.peers.values()):
            self.join(self.rooms[0], noisy=True)
        peers = [p for p in self.peers.values() if not p.resuming]
        if peers:
            if rng.random() < 0.03:
                self.migrate(rng.choice(peers))
            if rng.random() < 0.04:
                self.resume(rng.choice(peers))
            if rng.random() < 0.08:
                self.leave(rng.choice(peers))
        self.report_traffic()
        self.run_due()
        self.sessions.reap()

    def finish(self) -> None:
        for peer in list(self.peers.values()):
            self.leave(peer)
        self.run_due()
        self.sessions.close()


def run(duration_s: float = 10.0, *, rooms: int = 3, seed: int = 1, virtual: bool = False,
        tracer_provider: Any = None, meter_provider: Any = None,
        logger_provider: Any = None, per_participant: bool = False,
        on_finish: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run the simulated SFU for ``duration_s`` (real or simulated) seconds.

    Args:
        duration_s: Length of the run (bounded: at most one hour).
        rooms: Number of rooms.
        seed: Random seed (the run is deterministic in virtual mode).
        virtual: Simulated time: no sleeping, ``duration_s`` of SFU activity at once.
        tracer_provider: Tracer provider; the global one by default.
        meter_provider: Meter provider; the global one by default.
        logger_provider: Logger provider for participant events; the global one by default.
        per_participant: Traffic metrics per participant (``otel_rtc.participant``,
            capped), not only per room. The traffic load processor derives participant
            scores and shares (the top-N load) only from such series; without it the
            load is per room only.
        on_finish: Called at the end while the SFU's telemetry objects are still alive
            (e.g. a final metric flush: observable traffic counters die with the run).

    Returns:
        A summary: counts of simulated actions and of participant events.
    """
    duration_s = min(max(duration_s, 0.0), 3600.0)
    manual = ManualClock(time.time_ns()) if virtual else None
    clock = manual if manual is not None else time.time_ns
    sfu = Sfu(rooms=rooms, seed=seed, clock=clock, tracer_provider=tracer_provider,
              meter_provider=meter_provider, logger_provider=logger_provider,
              per_participant=per_participant)
    start = clock()
    end = start + int(duration_s * NS_PER_S)
    next_tick = start
    while clock() < end:
        sfu.tick()
        next_tick += TICK_NS
        if manual is not None:
            manual.set(next_tick)
        else:
            time.sleep(max(0.0, (next_tick - time.time_ns()) / NS_PER_S))
    if manual is not None:
        manual.advance(5 * NS_PER_S)  # let scheduled first packets land
    sfu.run_due()
    sfu.finish()
    if on_finish is not None:
        on_finish()
    summary: dict[str, Any] = dict(sfu.stats)
    summary["participant_joined"] = sum(e.name == "participant_joined" for e in sfu.events)
    summary["participant_left"] = sum(e.name == "participant_left" for e in sfu.events)
    cols = sfu.traffic.snapshot()
    summary["traffic_series"] = len({(n, tuple(sorted(a.items())))
                                     for n, a in zip(cols.names, cols.attrs, strict=True)})
    return summary


def _providers() -> tuple[Any, Any, Any, Callable[[], None]]:
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        try:
            from otel_rtc import configure

            handle = configure()
            shutdown = getattr(handle, "shutdown", lambda: None)
            return None, None, None, shutdown
        except ImportError:
            pass
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from otel_rtc import RtcWrappingMetricExporter

        tp = TracerProvider()
        tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        mp = MeterProvider(metric_readers=[PeriodicExportingMetricReader(
            RtcWrappingMetricExporter(), export_interval_millis=5000)])
        lp = LoggerProvider()
        lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))

        def shutdown() -> None:
            tp.shutdown()
            mp.shutdown()
            lp.shutdown()

        return tp, mp, lp, shutdown
    from otel_rtc.testing import make_test_pipeline

    p = make_test_pipeline()
    p.meter_provider.get_meter("sfu").create_counter("sfu.runs").add(1)

    def report() -> None:
        m = p.metrics()
        for name in sorted(m):
            if name.startswith("otel_rtc."):
                print(f"  {name}: {len(m[name])} series")
        print(f"  spans: {len(p.spans())}")

    return p.tracer_provider, p.meter_provider, None, report


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds (max 3600)")
    ap.add_argument("--rooms", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--virtual", action="store_true", help="simulated time, no sleeping")
    ap.add_argument("--per-participant", action="store_true",
                    help="traffic metrics per participant (needed for the top-N load)")
    args = ap.parse_args(argv)
    tp, mp, lp, finish = _providers()
    summary = run(args.duration, rooms=args.rooms, seed=args.seed, virtual=args.virtual,
                  tracer_provider=tp, meter_provider=mp, logger_provider=lp,
                  per_participant=args.per_participant, on_finish=finish)
    for k in sorted(summary):
        print(f"{k}: {summary[k]}")


if __name__ == "__main__":
    main()
