"""Publication and subscription timing for SFU-style track pub/sub.

A *publication* is timed from the publish request to the track being published (or
its first packet); a *subscription* from the subscribe request to its first packet
(``bound`` is recorded on the way as a span event). Each is a span:

* publication: ``SpanKind.PRODUCER`` named ``publish {kind}`` (messaging semconv: the
  operation that makes data available, ``messaging.operation.type=send``);
* subscription: ``SpanKind.CONSUMER`` named ``subscribe {kind}``
  (``messaging.operation.type=receive``) that **links** to its publication span, so a
  trace viewer shows publisher → track → subscriber. The publication's context travels
  in message headers through the global propagator (:meth:`Publication.inject`, or
  ``carrier=`` on :meth:`PubSubTelemetry.subscription`), like messaging instrumentations.

Every attempt is classified (attribute ``otel_rtc.attempt``): ``first``, ``retry``,
``migration``, ``resume`` or ``unmuted``; without an explicit reason, the first attempt
for a ``(room, participant, track)`` is ``first`` and later ones ``retry``.

Only attempts that reach an outcome of their own (``success``, ``failure``) are recorded
in the ``*.duration`` and ``*.muted_wait`` histograms. An attempt that is taken over by
a newer attempt on the same key (``superseded``, or ``resumed`` when the newer one is a
``resume``/``migration``) or given up (``abandoned``) is counted in ``*.outcomes`` and
its span ends with that outcome, but it never becomes a duration sample.

An attempt that is *expected to resume* (:meth:`Timer.suspend`, or
:meth:`PubSubTelemetry.suspend_subscriptions` for a participant's signal resume) is put
on hold: its clock stops and late ``complete``/``fail`` calls from the old transport are
ignored; the next attempt on its key is automatically a ``resume`` and is timed from its
own request. So a resumed subscription never becomes one giant ``first`` sample.

Time spent waiting on a muted/paused publisher is **excluded** from the duration: the
intervals between :meth:`Timer.mute` and :meth:`Timer.unmute` are subtracted and
reported separately (histogram ``otel_rtc.{publication,subscription}.muted_wait``,
span attribute ``otel_rtc.muted_wait``).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import wrapt
from opentelemetry import context as context_api
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Link, SpanContext, SpanKind

from otel_rtc.core import names
from otel_rtc.core.clock import NS_PER_S, Clock, wall_clock_ns
from otel_rtc.instrumentation.attributes import intern_attrs
from otel_rtc.instrumentation.recording import CounterSpec, HistogramSpec, Recorder
from otel_rtc.instrumentation.self_telemetry import (
    count_clamp,
    count_drop,
    record_failure,
    report_error,
)
from otel_rtc.version import __version__

__all__ = ["ATTEMPT_REASONS", "PubSubTelemetry", "Publication", "Subscription", "Timer"]

_logger = logging.getLogger("otel_rtc.pubsub")

ATTEMPT_REASONS = ("first", "retry", "migration", "resume", "unmuted")
OUTCOMES = ("success", "failure", "abandoned", "superseded", "resumed")
# Outcomes with a duration sample: the attempt ended on its own terms.
TIMED_OUTCOMES = frozenset({"success", "failure"})
# A newer attempt with one of these reasons takes over an open attempt as ``resumed``.
RESUMING_REASONS = frozenset({"resume", "migration"})
MEDIA_KINDS = ("audio", "video", "data")
OTHER = names.OTHER

PUBSUB_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)


def _specs(op: str) -> tuple[HistogramSpec, HistogramSpec, CounterSpec, CounterSpec]:
    return (
        HistogramSpec(f"otel_rtc.{op}.duration", "s",
                      f"Track {op} time, request to first packet, muted time excluded; "
                      "successful and failed attempts only.",
                      PUBSUB_BUCKETS),
        HistogramSpec(f"otel_rtc.{op}.muted_wait", "s",
                      f"Time a track {op} waited on a muted or paused publisher.",
                      PUBSUB_BUCKETS),
        CounterSpec(f"otel_rtc.{op}.attempts", "{attempt}", f"Track {op} attempts started."),
        CounterSpec(f"otel_rtc.{op}.outcomes", "{attempt}", f"Track {op} attempts ended."),
    )


PUBLICATION_SPECS = _specs("publication")
SUBSCRIPTION_SPECS = _specs("subscription")

_PREVIOUS_ATTEMPT = {"otel_rtc.link": "previous_attempt"}

_START_ATTRS = {
    (k, r): intern_attrs({names.ATTR_MEDIA_KIND: k, names.ATTR_ATTEMPT: r})
    for k in (*MEDIA_KINDS, OTHER) for r in ATTEMPT_REASONS
}
_END_ATTRS = {
    (k, r, o): intern_attrs({names.ATTR_MEDIA_KIND: k, names.ATTR_ATTEMPT: r,
                             names.ATTR_OUTCOME: o})
    for k in (*MEDIA_KINDS, OTHER) for r in ATTEMPT_REASONS for o in OUTCOMES
}


class _Op:
    """The recorders of one operation (publication or subscription)."""

    __slots__ = ("end", "name", "start")

    def __init__(self, name: str, specs: tuple[HistogramSpec, HistogramSpec, CounterSpec,
                                               CounterSpec], meter_provider: Any) -> None:
        dur, muted, attempts, outcomes = specs
        self.name = name
        self.start = Recorder((), (attempts,), meter_provider)
        self.end = Recorder((dur, muted), (outcomes,), meter_provider)


class _Key:
    __slots__ = ("attempts", "open")

    def __init__(self) -> None:
        self.attempts = 0
        self.open: Timer | None = None


class Timer:
    """One publication or subscription attempt. Never raises into the caller.

    Use as a (sync or async) context manager, or call :meth:`complete` /
    :meth:`fail` / :meth:`abandon` from wherever the outcome becomes known. Leaving the
    ``with`` block without an outcome completes it (or fails it on an exception), unless
    the attempt is suspended (:meth:`suspend`).
    """

    __slots__ = ("_done", "_muted_ns", "_muted_since", "_op", "_owner", "_suspended_ns",
                 "_token", "attempt", "attempt_number", "key", "kind", "participant", "room",
                 "span", "start_ns", "track")

    def __init__(self, owner: PubSubTelemetry, op: _Op, key: tuple[str, str, str, str],
                 kind: str, attempt: str, attempt_number: int, start_ns: int,
                 span: trace.Span, muted: bool) -> None:
        self._owner = owner
        self._op = op
        self.key = key
        _, self.room, self.participant, self.track = key
        self.kind = kind
        self.attempt = attempt
        self.attempt_number = attempt_number
        self.start_ns = start_ns
        self.span = span
        self._muted_ns = 0
        self._muted_since: int | None = start_ns if muted else None
        self._suspended_ns: int | None = None
        self._done = False
        self._token: object | None = None

    @property
    def done(self) -> bool:
        """Whether an outcome was recorded."""
        return self._done

    @property
    def suspended(self) -> bool:
        """Whether the attempt is on hold, expected to resume (see :meth:`suspend`)."""
        return self._suspended_ns is not None

    @property
    def muted_wait_ns(self) -> int:
        """Muted time so far (completed intervals)."""
        return self._muted_ns

    def mute(self, t_ns: int | None = None) -> None:
        """The publisher's track became muted/paused: stop counting time."""
        try:
            if not self._done and self._suspended_ns is None and self._muted_since is None:
                self._muted_since = self._owner._clock() if t_ns is None else t_ns
        except Exception as exc:
            report_error("pubsub", exc)

    def unmute(self, t_ns: int | None = None) -> None:
        """The publisher's track resumed: count time again."""
        try:
            if (not self._done and self._suspended_ns is None
                    and self._muted_since is not None):
                now = self._owner._clock() if t_ns is None else t_ns
                self._muted_ns += _elapsed(now, self._muted_since)
                self._muted_since = None
        except Exception as exc:
            report_error("pubsub", exc)

    def milestone(self, name: str, t_ns: int | None = None) -> None:
        """Record an intermediate step (e.g. ``bound``) as a span event."""
        try:
            if not self._done and self.span.is_recording():
                now = self._owner._clock() if t_ns is None else t_ns
                self.span.add_event(name, timestamp=now)
        except Exception as exc:
            report_error("pubsub", exc)

    def suspend(self, t_ns: int | None = None) -> None:
        """Put the attempt on hold: it is expected to resume as a new attempt.

        Call it when the attempt is interrupted but will be retried on the same key,
        e.g. the subscriber's signal connection dropped and a resume is expected (an
        SFU's ``isExpectedToResume``). The attempt's clock stops at ``t_ns``; late
        :meth:`complete` / :meth:`fail` calls (from the old transport) are ignored and
        counted as dropped (reason ``suspended``); the span stays open, with a
        ``otel_rtc.suspended`` event, until the attempt is resolved:

        * the next attempt on the same key starts: it is a ``resume`` unless a reason is
          given, and this one ends as ``resumed`` (``superseded`` if the new reason is
          ``first``, ``retry`` or ``unmuted``);
        * :meth:`abandon`, :meth:`PubSubTelemetry.forget` or eviction from the tracked
          keys: ``abandoned``.

        Either way the span ends at the suspension time and no duration is recorded.
        Suspending a finished or already suspended attempt does nothing.

        Args:
            t_ns: Suspension time; the clock by default.
        """
        try:
            owner = self._owner
            now = owner._clock() if t_ns is None else t_ns
            if not isinstance(now, int):
                count_drop("pubsub", "invalid_time")
                return
            with owner._lock:
                if self._done or self._suspended_ns is not None:
                    return
                self._suspended_ns = now
            if self.span.is_recording():
                self.span.add_event("otel_rtc.suspended", timestamp=now)
        except Exception as exc:
            report_error("pubsub", exc)

    expect_resume = suspend

    def complete(self, t_ns: int | None = None) -> None:
        """The attempt succeeded: the track is published / the first packet arrived."""
        self._finish("success", t_ns, None)

    def fail(self, error: BaseException | str = names.ERROR_TYPE_OTHER,
             t_ns: int | None = None) -> None:
        """The attempt failed; ``error`` is an exception or an ``error.type`` value.

        Only the exception's type is recorded, unless
        ``OTEL_RTC_RECORD_EXCEPTION_MESSAGES=true`` (see ``docs/handlers.md``).
        """
        self._finish("failure", t_ns, error)

    def abandon(self, t_ns: int | None = None) -> None:
        """The attempt was given up (participant left, resume never came).

        Outcome ``abandoned``: counted in ``*.outcomes``, no duration sample.
        """
        self._finish("abandoned", t_ns, None)

    def _finish(self, outcome: str, t_ns: int | None, error: BaseException | str | None,
                successor: str | None = None) -> None:
        with self._owner._lock:  # one outcome even when two threads race to finish
            if self._done:
                return
            suspended_at = self._suspended_ns
            if suspended_at is not None and outcome in TIMED_OUTCOMES:
                late = True
            else:
                late = False
                self._done = True
        if late:
            count_drop("pubsub", "suspended")
            return
        try:
            owner = self._owner
            now = owner._clock() if t_ns is None else t_ns
            end_ns = now if suspended_at is None else suspended_at
            if end_ns < self.start_ns:  # the clock went backwards: no negative time
                count_clamp("pubsub")
                end_ns = self.start_ns
            if self._muted_since is not None:
                self._muted_ns += _elapsed(end_ns, self._muted_since)
                self._muted_since = None
            span = self.span
            attrs = _END_ATTRS[(self.kind, self.attempt, outcome)]
            muted_s = self._muted_ns / NS_PER_S
            duration = 0.0
            if outcome in TIMED_OUTCOMES:
                duration = _elapsed(end_ns - self._muted_ns, self.start_ns) / NS_PER_S
                ctx = span.get_span_context()
                exemplar: SpanContext | None = ctx if ctx.trace_flags.sampled else None
                self._op.end.record(attrs, (duration, muted_s if self._muted_ns else None),
                                    exemplar, now)
            else:
                # Taken over or given up: its time says how long the client took to come
                # back or leave, not how long the SFU took, so only the counter sees it.
                self._op.end.record(attrs, (None, None), None, now)
            if span.is_recording():
                span.set_attribute(names.ATTR_OUTCOME, outcome)
                if self._muted_ns:
                    span.set_attribute("otel_rtc.muted_wait", muted_s)
                if successor is not None:
                    span.set_attribute("otel_rtc.superseded_by", successor)
                if error is not None:
                    record_failure(span, error, end_ns)
            if (outcome == "success" and self._op.name == "publication"
                    and owner.high_publish_delay_s is not None
                    and duration >= owner.high_publish_delay_s):
                owner._high_delay(self, duration)
            span.end(end_time=end_ns)
        except Exception as exc:
            report_error("pubsub", exc)
        finally:
            self._owner._closed(self)

    # -- context manager -----------------------------------------------------------
    def __enter__(self) -> Timer:
        try:
            self._token = context_api.attach(trace.set_span_in_context(self.span))
        except Exception as exc:
            report_error("pubsub", exc)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self._suspended_ns is not None:
            pass  # on hold: resolved by the next attempt, abandon() or forget()
        elif exc is not None:
            self.fail(exc)
        elif not self._done:
            self.complete()
        token, self._token = self._token, None
        if token is not None:
            try:
                context_api.detach(token)  # type: ignore[arg-type]
            except Exception as e:
                report_error("pubsub", e)

    async def __aenter__(self) -> Timer:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)


class Publication(Timer):
    """A track publication attempt (``PRODUCER`` span)."""

    __slots__ = ()

    def inject(self, carrier: MutableMapping[str, str]) -> MutableMapping[str, str]:
        """Write this publication's trace context into message headers; returns them."""
        try:
            self._owner._propagator_inject(carrier, self.span)
        except Exception as exc:
            report_error("pubsub", exc)
        return carrier


class Subscription(Timer):
    """A track subscription attempt (``CONSUMER`` span linked to its publication)."""

    __slots__ = ()

    def bound(self, t_ns: int | None = None) -> None:
        """The subscription got its transport/down-track (span event ``bound``)."""
        self.milestone("bound", t_ns)


class PubSubTelemetry:
    """Factory of publication/subscription timers, with per-key attempt tracking.

    Args:
        tracer_provider: Tracer provider; the global one by default.
        meter_provider: Meter provider; the global one by default.
        clock: Injectable clock (epoch ns).
        high_publish_delay_s: A successful publication slower than this logs one INFO
            line and adds a ``otel_rtc.publication.high_delay`` span event. ``None``
            disables it.
        messaging_system: ``messaging.system`` span attribute.
        max_tracked: Cap on tracked ``(room, participant, track)`` keys for attempt
            numbering; the oldest is evicted beyond it (counted, reason ``tracked_cap``).
        propagator: Text-map propagator; the global one (``propagate``) by default.

    Raises:
        ValueError: invalid ``high_publish_delay_s`` or ``max_tracked``.
    """

    def __init__(
        self,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        clock: Clock = wall_clock_ns,
        high_publish_delay_s: float | None = 2.0,
        messaging_system: str = "rtc",
        max_tracked: int = 100_000,
        propagator: TextMapPropagator | None = None,
    ) -> None:
        if high_publish_delay_s is not None and high_publish_delay_s < 0:
            raise ValueError("high_publish_delay_s must be >= 0 or None")
        if max_tracked <= 0:
            raise ValueError("max_tracked must be > 0")
        self._tracer = trace.get_tracer("otel_rtc", __version__, tracer_provider)
        self._clock = clock
        self.high_publish_delay_s = high_publish_delay_s
        self.messaging_system = messaging_system
        self.max_tracked = max_tracked
        self._propagator = propagator
        self._pub = _Op("publication", PUBLICATION_SPECS, meter_provider)
        self._sub = _Op("subscription", SUBSCRIPTION_SPECS, meter_provider)
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, str, str, str], _Key] = {}
        self._by_participant: dict[tuple[str, str], set[tuple[str, str, str, str]]] = {}

    # -- starting attempts -------------------------------------------------------------
    def publication(self, track: str, *, room: str, participant: str, kind: str,
                    reason: str | None = None, muted: bool = False,
                    carrier: MutableMapping[str, str] | None = None,
                    t_ns: int | None = None) -> Publication:
        """Start timing a publication of ``track`` by ``participant``.

        Args:
            track: Track identifier.
            room: Room identifier.
            participant: Publishing participant.
            kind: ``audio``, ``video`` or ``data``.
            reason: Attempt reason (see ``ATTEMPT_REASONS``); automatic by default:
                ``first``, ``retry``, or ``resume`` when the open attempt on this key is
                suspended. An open attempt on this key ends as ``resumed`` (reason
                ``resume``/``migration``) or ``superseded``.
            muted: The track starts muted (time until :meth:`Timer.unmute` is excluded).
            carrier: Headers to inject the publication's trace context into.
            t_ns: Request time; the clock by default.
        """
        pub = self._start(Publication, self._pub, SpanKind.PRODUCER, "publish",
                          ("pub", room, participant, track), kind, reason, muted, t_ns, None)
        if carrier is not None:
            pub.inject(carrier)
        return pub

    def subscription(self, track: str, *, room: str, subscriber: str, kind: str,
                     publisher: str | None = None, reason: str | None = None,
                     muted: bool = False, carrier: Mapping[str, str] | None = None,
                     publication: Publication | SpanContext | None = None,
                     t_ns: int | None = None) -> Subscription:
        """Start timing a subscription of ``subscriber`` to ``track``.

        Args:
            track: Track identifier.
            room: Room identifier.
            subscriber: Subscribing participant.
            kind: ``audio``, ``video`` or ``data``.
            publisher: Publishing participant (span attribute).
            reason: Attempt reason (see ``ATTEMPT_REASONS``); automatic by default:
                ``first``, ``retry``, or ``resume`` when the open attempt on this key is
                suspended. An open attempt on this key ends as ``resumed`` (reason
                ``resume``/``migration``) or ``superseded``.
            muted: The publisher's track is muted now (time until unmute is excluded).
            carrier: Message headers carrying the publication's trace context.
            publication: The publication (or its span context) to link to, instead of
                ``carrier``.
            t_ns: Request time; the clock by default.
        """
        link_ctx: SpanContext | None = None
        try:
            if isinstance(publication, Timer):
                link_ctx = publication.span.get_span_context()
            elif isinstance(publication, SpanContext):
                link_ctx = publication
            elif carrier is not None:
                link_ctx = self._extract(carrier)
        except Exception as exc:
            report_error("pubsub", exc)
        sub = self._start(Subscription, self._sub, SpanKind.CONSUMER, "subscribe",
                          ("sub", room, subscriber, track), kind, reason, muted, t_ns, link_ctx)
        if publisher is not None and sub.span.is_recording():
            sub.span.set_attribute(names.ATTR_PUBLISHER, publisher)
        return sub

    def _start(self, cls: type[Timer], op: _Op, span_kind: SpanKind, verb: str,
               key: tuple[str, str, str, str], kind: str, reason: str | None, muted: bool,
               t_ns: int | None, link_ctx: SpanContext | None) -> Any:
        try:
            now = self._clock() if t_ns is None else t_ns
            if kind not in MEDIA_KINDS:
                count_drop("pubsub", "invalid_kind")
                kind = OTHER
            if reason is not None and reason not in ATTEMPT_REASONS:
                count_drop("pubsub", "invalid_reason")
                reason = None
            evicted: Timer | None = None
            with self._lock:
                st = self._keys.get(key)
                if st is None:
                    st, evicted = self._track_key(key)
                st.attempts += 1
                number = st.attempts
                previous, st.open = st.open, None
                if reason is None:
                    if previous is not None and previous._suspended_ns is not None:
                        reason = "resume"
                    else:
                        reason = "first" if number == 1 else "retry"
            if evicted is not None:
                evicted.abandon(now)
            links = [Link(link_ctx)] if link_ctx is not None and link_ctx.is_valid else []
            if previous is not None:
                previous._finish(
                    "resumed" if reason in RESUMING_REASONS else "superseded", now, None,
                    reason)
                prev_ctx = previous.span.get_span_context()
                if prev_ctx.is_valid:
                    links.append(Link(prev_ctx, _PREVIOUS_ATTEMPT))
            span = self._tracer.start_span(
                f"{verb} {kind}", kind=span_kind, start_time=now, links=links or None,
                record_exception=False, set_status_on_exception=False)
            if span.is_recording():
                _, room, participant, track = key
                span.set_attributes({
                    names.ATTR_MESSAGING_SYSTEM: self.messaging_system,
                    names.ATTR_MESSAGING_OPERATION_NAME: verb,
                    names.ATTR_MESSAGING_OPERATION_TYPE: "send" if verb == "publish" else "receive",
                    names.ATTR_MESSAGING_DESTINATION: track,
                    names.ATTR_ROOM: room,
                    names.ATTR_PARTICIPANT: participant,
                    names.ATTR_MEDIA_KIND: kind,
                    names.ATTR_ATTEMPT: reason,
                    names.ATTR_ATTEMPT_NUMBER: number,
                })
            timer = cls(self, op, key, kind, reason, number, now, span, muted)
            with self._lock:
                if self._keys.get(key) is st:
                    st.open = timer
            op.start.record(_START_ATTRS[(kind, reason)], (), None, now)
            return timer
        except Exception as exc:
            report_error("pubsub", exc)
            return cls(self, op, key, OTHER, "first", 0, self._clock(),
                       trace.INVALID_SPAN, muted)

    def _track_key(self, key: tuple[str, str, str, str]) -> tuple[_Key, Timer | None]:
        """Track ``key`` (lock held); returns it and an evicted suspended attempt.

        An evicted attempt that is open but not suspended stays with its caller, who
        will end it; a suspended one has nobody left to end it, so the caller of this
        abandons it once the lock is released.
        """
        evicted: Timer | None = None
        if len(self._keys) >= self.max_tracked:
            old_key, _ = next(iter(self._keys.items()))
            old = self._untrack(old_key)
            count_drop("pubsub", "tracked_cap")
            if old is not None and old.open is not None and old.open._suspended_ns is not None:
                evicted = old.open
        st = self._keys[key] = _Key()
        self._by_participant.setdefault((key[1], key[2]), set()).add(key)
        return st, evicted

    def _untrack(self, key: tuple[str, str, str, str]) -> _Key | None:
        st = self._keys.pop(key, None)
        pk = (key[1], key[2])
        keys = self._by_participant.get(pk)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_participant[pk]
        return st

    def _closed(self, timer: Timer) -> None:
        with self._lock:
            st = self._keys.get(timer.key)
            if st is not None and st.open is timer:
                st.open = None

    def forget(self, room: str, participant: str, t_ns: int | None = None) -> None:
        """Drop the attempt history of a participant that left; abandon its open attempts.

        Suspended attempts (expected to resume) are abandoned too: the resume never came.

        Call it when the participant's session closes (e.g. ``session.own(...)``).
        """
        try:
            with self._lock:
                keys = self._by_participant.pop((room, participant), set())
                opened = []
                for key in keys:
                    st = self._keys.pop(key, None)
                    if st is not None and st.open is not None:
                        opened.append(st.open)
            for timer in opened:
                timer.abandon(t_ns)
        except Exception as exc:
            report_error("pubsub", exc)

    def suspend_subscriptions(self, room: str, subscriber: str, t_ns: int | None = None
                              ) -> int:
        """Suspend every open subscription attempt of ``subscriber``: a resume is expected.

        Call it when the subscriber's signal connection closes with a resume expected
        (see :meth:`Timer.suspend`). Its publications are left alone: they complete
        from the publisher's packets, which a signal resume does not interrupt.

        Args:
            room: Room identifier.
            subscriber: Subscribing participant.
            t_ns: Suspension time; the clock by default.

        Returns:
            The number of attempts suspended.
        """
        try:
            now = self._clock() if t_ns is None else t_ns
            with self._lock:
                opened = [st.open for key in self._by_participant.get((room, subscriber), ())
                          if key[0] == "sub" and (st := self._keys.get(key)) is not None
                          and st.open is not None and st.open._suspended_ns is None]
            for timer in opened:
                timer.suspend(now)
            return len(opened)
        except Exception as exc:
            report_error("pubsub", exc)
            return 0

    @property
    def tracked(self) -> int:
        """Number of tracked keys (bounded by ``max_tracked`` and :meth:`forget`)."""
        return len(self._keys)

    # -- propagation ---------------------------------------------------------------
    def _propagator_inject(self, carrier: MutableMapping[str, str], span: trace.Span) -> None:
        ctx = trace.set_span_in_context(span)
        if self._propagator is not None:
            self._propagator.inject(carrier, context=ctx)
        else:
            propagate.inject(carrier, context=ctx)

    def _extract(self, carrier: Mapping[str, str]) -> SpanContext | None:
        ctx = (self._propagator.extract(carrier) if self._propagator is not None
               else propagate.extract(carrier))
        sc = trace.get_current_span(ctx).get_span_context()
        return sc if sc.is_valid else None

    def _high_delay(self, timer: Timer, duration: float) -> None:
        _logger.info(
            "otel_rtc: high publish delay %.3fs (threshold %.3fs) track=%s participant=%s "
            "room=%s kind=%s attempt=%s",
            duration, self.high_publish_delay_s, timer.track, timer.participant, timer.room,
            timer.kind, timer.attempt,
        )
        if timer.span.is_recording():
            timer.span.add_event("otel_rtc.publication.high_delay", {
                names.ATTR_TRACK: timer.track,
                names.ATTR_PARTICIPANT: timer.participant,
                names.ATTR_ROOM: timer.room,
                "otel_rtc.publication.delay": duration,
            })

    # -- decorators ----------------------------------------------------------------
    def publishes(self, describe: Callable[..., Mapping[str, Any]]) -> Callable[[Any], Any]:
        """Decorator timing a publish function, request (call) to return.

        Args:
            describe: Called with the function's arguments; returns the keyword arguments
                of :meth:`publication` (``track``, ``room``, ``participant``, ``kind``...).
        """
        return _timing_decorator(self.publication, describe)

    def subscribes(self, describe: Callable[..., Mapping[str, Any]]) -> Callable[[Any], Any]:
        """Decorator timing a subscribe function, call to return (see :meth:`publishes`)."""
        return _timing_decorator(self.subscription, describe)


def _elapsed(later: int, earlier: int) -> int:
    """``later - earlier``, clamped at 0 (a backwards clock), each clamp counted."""
    d = later - earlier
    if d < 0:
        count_clamp("pubsub")
        return 0
    return d


def _start_from(start: Callable[..., Timer], describe: Callable[..., Mapping[str, Any]],
                args: tuple[Any, ...], kwargs: dict[str, Any]) -> Timer | None:
    try:
        spec = dict(describe(*args, **kwargs))
        track = spec.pop("track")
        return start(track, **spec)
    except Exception as exc:
        report_error("pubsub.decorator", exc)
        return None


def _timing_decorator(start: Callable[..., Timer],
                      describe: Callable[..., Mapping[str, Any]]) -> Callable[[Any], Any]:
    def decorate(func: Any) -> Any:
        if inspect.iscoroutinefunction(func):
            @wrapt.decorator
            async def async_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any
                                    ) -> Any:
                timer = _start_from(start, describe, args, kwargs)
                if timer is None:
                    return await wrapped(*args, **kwargs)
                with timer:
                    return await wrapped(*args, **kwargs)

            return async_wrapper(func)

        @wrapt.decorator
        def sync_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            timer = _start_from(start, describe, args, kwargs)
            if timer is None:
                return wrapped(*args, **kwargs)
            with timer:
                return wrapped(*args, **kwargs)

        return sync_wrapper(func)

    return decorate

