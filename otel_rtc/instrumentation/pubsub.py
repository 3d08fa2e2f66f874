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

:class:`PubSubTelemetry` starts, numbers and tracks the attempts; an attempt itself
(:class:`~otel_rtc.instrumentation.pubsub_attempts.Timer`, ``Publication``,
``Subscription``) is in :mod:`otel_rtc.instrumentation.pubsub_attempts`.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import wrapt
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Link, SpanContext, SpanKind

from otel_rtc.core import names
from otel_rtc.core.clock import Clock, wall_clock_ns
from otel_rtc.instrumentation.pubsub_attempts import (
    ATTEMPT_REASONS,
    MEDIA_KINDS,
    OTHER,
    PUBLICATION_SPECS,
    SUBSCRIPTION_SPECS,
    Operation,
    Publication,
    Subscription,
    Timer,
    take_over,
)
from otel_rtc.instrumentation.self_telemetry import count_drop, report_error
from otel_rtc.version import __version__

__all__ = ["PubSubTelemetry"]

_logger = logging.getLogger("otel_rtc.pubsub")

_PREVIOUS_ATTEMPT = {"otel_rtc.link": "previous_attempt"}


class _Key:
    __slots__ = ("attempts", "open")

    def __init__(self) -> None:
        self.attempts = 0
        self.open: Timer | None = None


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
        self._lock = threading.Lock()
        self._pub = Operation(PUBLICATION_SPECS, meter_provider, clock=clock, lock=self._lock,
                              on_closed=self._closed, on_success=self._published,
                              propagator=propagator)
        self._sub = Operation(SUBSCRIPTION_SPECS, meter_provider, clock=clock, lock=self._lock,
                              on_closed=self._closed)
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

    def _start(self, cls: type[Timer], op: Operation, span_kind: SpanKind, verb: str,
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
                    if previous is not None and previous.suspended:
                        reason = "resume"
                    else:
                        reason = "first" if number == 1 else "retry"
            if evicted is not None:
                evicted.abandon(now)
            links = [Link(link_ctx)] if link_ctx is not None and link_ctx.is_valid else []
            if previous is not None:
                take_over(previous, reason, now)
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
            timer = cls(op, key, kind, reason, number, now, span, muted)
            with self._lock:
                if self._keys.get(key) is st:
                    st.open = timer
            op.started(kind, reason, now)
            return timer
        except Exception as exc:
            report_error("pubsub", exc)
            return cls(op, key, OTHER, "first", 0, self._clock(),
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
            if old is not None and old.open is not None and old.open.suspended:
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
                          and st.open is not None and not st.open.suspended]
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
    def _extract(self, carrier: Mapping[str, str]) -> SpanContext | None:
        ctx = (self._propagator.extract(carrier) if self._propagator is not None
               else propagate.extract(carrier))
        sc = trace.get_current_span(ctx).get_span_context()
        return sc if sc.is_valid else None

    def _published(self, timer: Timer, duration: float) -> None:
        """A publication succeeded: log it, with a span event, when it was slow."""
        if self.high_publish_delay_s is None or duration < self.high_publish_delay_s:
            return
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
