"""One publication or subscription attempt, timed: :class:`Timer` and its two kinds.

An attempt is timed from its request to its outcome (see :mod:`otel_rtc.instrumentation.pubsub`
for how attempts start and are classified): muted intervals are excluded and reported
apart, a suspended attempt stops its clock and waits for the next attempt on its key,
and only attempts that reach an outcome of their own (``success``, ``failure``) become
duration samples. Each attempt is a span, ended with its outcome.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, MutableMapping
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanContext

from otel_rtc.core import names
from otel_rtc.core.clock import NS_PER_S, Clock
from otel_rtc.instrumentation.attributes import intern_attrs
from otel_rtc.instrumentation.recording import CounterSpec, HistogramSpec, Recorder
from otel_rtc.instrumentation.self_telemetry import (
    count_clamp,
    count_drop,
    record_failure,
    report_error,
)

__all__ = [
    "ATTEMPT_REASONS",
    "MEDIA_KINDS",
    "OTHER",
    "OUTCOMES",
    "PUBLICATION_SPECS",
    "PUBSUB_BUCKETS",
    "SUBSCRIPTION_SPECS",
    "Operation",
    "Publication",
    "Subscription",
    "Timer",
    "take_over",
]

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


_START_ATTRS = {
    (k, r): intern_attrs({names.ATTR_MEDIA_KIND: k, names.ATTR_ATTEMPT: r})
    for k in (*MEDIA_KINDS, OTHER) for r in ATTEMPT_REASONS
}
_END_ATTRS = {
    (k, r, o): intern_attrs({names.ATTR_MEDIA_KIND: k, names.ATTR_ATTEMPT: r,
                             names.ATTR_OUTCOME: o})
    for k in (*MEDIA_KINDS, OTHER) for r in ATTEMPT_REASONS for o in OUTCOMES
}


class Operation:
    """What the attempts of one operation (publication or subscription) share.

    Args:
        specs: The operation's duration and muted-wait histograms, attempts and outcomes
            counters.
        meter_provider: Meter provider of the recorders (``None``: global).
        clock: The clock of attempts given no explicit time.
        lock: Held to decide an attempt's outcome (shared with the attempt tracking).
        on_closed: Called with each attempt once it has its outcome.
        on_success: Called with an attempt that succeeded and its duration (s), before
            its span ends.
        propagator: Text-map propagator of :meth:`Publication.inject` (``None``: global).
    """

    __slots__ = ("clock", "end", "lock", "on_closed", "on_success", "propagator", "start")

    def __init__(self, specs: tuple[HistogramSpec, HistogramSpec, CounterSpec,
                                               CounterSpec], meter_provider: Any, *,
                 clock: Clock, lock: threading.Lock, on_closed: Callable[[Timer], None],
                 on_success: Callable[[Timer, float], None] | None = None,
                 propagator: TextMapPropagator | None = None) -> None:
        dur, muted, attempts, outcomes = specs
        self.start = Recorder((), (attempts,), meter_provider)
        self.end = Recorder((dur, muted), (outcomes,), meter_provider)
        self.clock = clock
        self.lock = lock
        self.on_closed = on_closed
        self.on_success = on_success
        self.propagator = propagator

    def started(self, kind: str, reason: str, t_ns: int) -> None:
        """Count an attempt of ``kind`` and ``reason`` started at ``t_ns``."""
        self.start.record(_START_ATTRS[(kind, reason)], (), None, t_ns)


class Timer:
    """One publication or subscription attempt. Never raises into the caller.

    Use as a (sync or async) context manager, or call :meth:`complete` /
    :meth:`fail` / :meth:`abandon` from wherever the outcome becomes known. Leaving the
    ``with`` block without an outcome completes it (or fails it on an exception), unless
    the attempt is suspended (:meth:`suspend`).
    """

    __slots__ = ("_done", "_muted_ns", "_muted_since", "_op", "_suspended_ns",
                 "_token", "attempt", "attempt_number", "key", "kind", "participant", "room",
                 "span", "start_ns", "track")

    def __init__(self, op: Operation, key: tuple[str, str, str, str], kind: str, attempt: str,
                 attempt_number: int, start_ns: int, span: trace.Span, muted: bool) -> None:
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
                self._muted_since = self._op.clock() if t_ns is None else t_ns
        except Exception as exc:
            report_error("pubsub", exc)

    def unmute(self, t_ns: int | None = None) -> None:
        """The publisher's track resumed: count time again."""
        try:
            if (not self._done and self._suspended_ns is None
                    and self._muted_since is not None):
                now = self._op.clock() if t_ns is None else t_ns
                self._muted_ns += _elapsed(now, self._muted_since)
                self._muted_since = None
        except Exception as exc:
            report_error("pubsub", exc)

    def milestone(self, name: str, t_ns: int | None = None) -> None:
        """Record an intermediate step (e.g. ``bound``) as a span event."""
        try:
            if not self._done and self.span.is_recording():
                now = self._op.clock() if t_ns is None else t_ns
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
            now = self._op.clock() if t_ns is None else t_ns
            if not isinstance(now, int):
                count_drop("pubsub", "invalid_time")
                return
            with self._op.lock:
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
        op = self._op
        with op.lock:  # one outcome even when two threads race to finish
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
            now = op.clock() if t_ns is None else t_ns
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
                op.end.record(attrs, (duration, muted_s if self._muted_ns else None),
                              exemplar, now)
            else:
                # Taken over or given up: its time says how long the client took to come
                # back or leave, not how long the SFU took, so only the counter sees it.
                op.end.record(attrs, (None, None), None, now)
            if span.is_recording():
                span.set_attribute(names.ATTR_OUTCOME, outcome)
                if self._muted_ns:
                    span.set_attribute("otel_rtc.muted_wait", muted_s)
                if successor is not None:
                    span.set_attribute("otel_rtc.superseded_by", successor)
                if error is not None:
                    record_failure(span, error, end_ns)
            if outcome == "success" and op.on_success is not None:
                op.on_success(self, duration)
            span.end(end_time=end_ns)
        except Exception as exc:
            report_error("pubsub", exc)
        finally:
            op.on_closed(self)

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
            ctx = trace.set_span_in_context(self.span)
            propagator = self._op.propagator
            if propagator is not None:
                propagator.inject(carrier, context=ctx)
            else:
                propagate.inject(carrier, context=ctx)
        except Exception as exc:
            report_error("pubsub", exc)
        return carrier


class Subscription(Timer):
    """A track subscription attempt (``CONSUMER`` span linked to its publication)."""

    __slots__ = ()

    def bound(self, t_ns: int | None = None) -> None:
        """The subscription got its transport/down-track (span event ``bound``)."""
        self.milestone("bound", t_ns)


def take_over(previous: Timer, reason: str, t_ns: int) -> None:
    """End ``previous``: a newer attempt with ``reason`` started on its key at ``t_ns``.

    It ends as ``resumed`` when the newer attempt is a ``resume`` or ``migration``, else
    as ``superseded``; either way no duration sample (see :meth:`Timer.suspend`).
    """
    previous._finish("resumed" if reason in RESUMING_REASONS else "superseded", t_ns, None,
                     reason)


def _elapsed(later: int, earlier: int) -> int:
    """``later - earlier``, clamped at 0 (a backwards clock), each clamp counted."""
    d = later - earlier
    if d < 0:
        count_clamp("pubsub")
        return 0
    return d

