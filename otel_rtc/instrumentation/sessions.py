"""Participant session telemetry: ref-counted sessions, lifecycle events, session metrics.

:class:`SessionRegistry` wraps the pure :class:`~otel_rtc.core.sessions.SessionCore`
and publishes what it decides:

* ``participant_joined`` / ``participant_left`` exactly once per session, as OpenTelemetry
  log records with an ``event_name`` (the OTel Logs API of opentelemetry-api 1.45;
  a no-op unless a ``LoggerProvider`` is configured) and through the user's
  ``on_event`` callback (webhook-like);
* ``otel_rtc.session.joins`` / ``otel_rtc.session.leaves`` counters, the
  ``otel_rtc.session.duration`` histogram and the ``otel_rtc.session.active`` gauge.

Closed and suspended sessions are reaped by a daemon timer thread every
``reap_interval_s``; the application's own calls never reap and never block on it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from opentelemetry import metrics as metrics_api
from opentelemetry._logs import SeverityNumber, get_logger
from opentelemetry.metrics import CallbackOptions, Observation

from otel_rtc.core import names
from otel_rtc.core.clock import NS_PER_S, Clock, wall_clock_ns
from otel_rtc.core.sessions import (
    DEFAULT_MAX_ENDED,
    PARTICIPANT_LEFT,
    Session,
    SessionCore,
    SessionEvent,
)
from otel_rtc.instrumentation.attributes import intern_attrs
from otel_rtc.instrumentation.recording import CounterSpec, HistogramSpec, Recorder
from otel_rtc.instrumentation.self_telemetry import count_clamp, count_drop, report_error
from otel_rtc.version import __version__

__all__ = ["Session", "SessionEvent", "SessionRegistry"]

JOINS = CounterSpec(names.SESSION_JOINS, "{session}", "Participant sessions started.")
LEAVES = CounterSpec(names.SESSION_LEAVES, "{session}", "Participant sessions ended.")
SESSION_DURATION = HistogramSpec(
    names.SESSION_DURATION,
    "s",
    "Participant session duration, participant_joined to participant_left.",
    (1.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0),
)
_NO_ATTRS = intern_attrs({})
_LEAVE_ATTRS = {
    r: intern_attrs({names.ATTR_LEAVE_REASON: r})
    for r in ("left", "resume_timeout", "closed", "evicted")
}


class SessionRegistry:
    """Per-participant session workers keyed by ``(room, participant)``.

    Args:
        grace_s: How long a closed session, or a suspended one awaiting a resume, is kept
            (3 minutes by default, like the reference SFU's stats-worker reaping).
        max_ended: Most closed or suspended sessions kept; the oldest beyond it is
            removed early and counted (``otel_rtc.telemetry.dropped``, reason
            ``ended_evicted``).
        reap_interval_s: Period of the reaper timer thread; ``0`` disables the thread
            (call :meth:`reap` yourself, e.g. in tests).
        on_event: Called with every :class:`SessionEvent` (outside any lock). Its
            exceptions are contained and counted.
        clock: Injectable clock (epoch ns).
        meter_provider: Meter provider; the global one by default.
        logger_provider: OTel logger provider for the events; the global one by default.

    Raises:
        ValueError: a negative ``grace_s`` or ``reap_interval_s``.
    """

    def __init__(
        self,
        *,
        grace_s: float = 180.0,
        max_ended: int = DEFAULT_MAX_ENDED,
        reap_interval_s: float = 10.0,
        on_event: Callable[[SessionEvent], object] | None = None,
        clock: Clock = wall_clock_ns,
        meter_provider: Any = None,
        logger_provider: Any = None,
    ) -> None:
        if grace_s < 0 or reap_interval_s < 0:
            raise ValueError("grace_s and reap_interval_s must be >= 0")
        self._core = SessionCore(
            grace_ns=int(grace_s * NS_PER_S),
            max_ended=max_ended,
            clock=clock,
            on_reject=lambda reason: count_drop("sessions", reason),
            on_error=lambda exc: report_error("sessions.cleanup", exc),
            on_clamp=lambda: count_clamp("sessions"),
        )
        self._on_event = on_event
        self._meter_provider = meter_provider
        self._joins = Recorder((), (JOINS,), meter_provider)
        self._leaves = Recorder((SESSION_DURATION,), (LEAVES,), meter_provider)
        self._event_logger: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self._event_logger = get_logger("otel_rtc", __version__, logger_provider)
        except Exception as exc:
            report_error("sessions", exc)
        try:
            mp = meter_provider if meter_provider is not None else metrics_api.get_meter_provider()
            ref = weakref.ref(self)
            mp.get_meter("otel_rtc.sessions", __version__).create_observable_gauge(
                names.SESSION_ACTIVE,
                callbacks=[lambda options: _observe_active(ref, options)],
                unit="{session}",
                description="Participant sessions connected (open or awaiting a resume).",
            )
        except Exception as exc:
            report_error("sessions", exc)
        if reap_interval_s > 0:
            self._thread = threading.Thread(
                target=_reaper_loop, args=(weakref.ref(self), self._stop, reap_interval_s),
                name="otel_rtc-session-reaper", daemon=True,
            )
            self._thread.start()

    # -- API ---------------------------------------------------------------------------
    def join(self, room: str, participant: str, source: str, *,
             connection: Hashable | None = None, t_ns: int | None = None) -> Session | None:
        """Register that a connection of ``source`` (``"signal"``, ``"media"``) joined.

        Pass ``connection`` (a connection id, any hashable) to count references per
        connection: a duplicated close of an old connection is then rejected instead of
        releasing a newer one. See :meth:`SessionCore.join`.

        Returns the session (to :meth:`Session.own` observers on it), or ``None`` if
        something went wrong inside otel_rtc (counted, never raised).
        """
        try:
            session, events = self._core.join(room, participant, source,
                                              connection=connection, t_ns=t_ns)
        except Exception as exc:
            report_error("sessions", exc)
            return None
        self._publish(events)
        return session

    def leave(self, room: str, participant: str, source: str, *, expect_resume: bool = False,
              connection: Hashable | None = None, t_ns: int | None = None) -> None:
        """Register that a connection of ``source`` left; see :meth:`SessionCore.leave`."""
        try:
            events = self._core.leave(room, participant, source, expect_resume=expect_resume,
                                      connection=connection, t_ns=t_ns)
        except Exception as exc:
            report_error("sessions", exc)
            return
        self._publish(events)

    def session(self, room: str, participant: str) -> Session | None:
        """The session for ``(room, participant)``, in any state, or ``None``."""
        return self._core.get(room, participant)

    @property
    def active(self) -> int:
        """Connected sessions (open or suspended awaiting a resume)."""
        return self._core.active

    def __len__(self) -> int:
        return len(self._core)

    def reap(self, now_ns: int | None = None) -> None:
        """Reap sessions past the grace period (the timer thread calls this)."""
        try:
            events = self._core.reap(now_ns)
        except Exception as exc:
            report_error("sessions", exc)
            return
        self._publish(events)

    def close(self) -> None:
        """Stop the reaper and end every session (``participant_left`` reason closed)."""
        self._stop.set()
        try:
            events = self._core.close_all()
        except Exception as exc:
            report_error("sessions", exc)
            return
        self._publish(events)

    # -- publishing --------------------------------------------------------------------
    def _publish(self, events: Iterable[SessionEvent]) -> None:
        for ev in events:
            try:
                if ev.name == PARTICIPANT_LEFT:
                    attrs = _LEAVE_ATTRS.get(ev.reason, _NO_ATTRS)
                    self._leaves.record(attrs, (ev.duration_ns / NS_PER_S,), None, ev.time_ns)
                else:
                    self._joins.record(_NO_ATTRS, (), None, ev.time_ns)
                self._emit_log(ev)
            except Exception as exc:
                report_error("sessions", exc)
            if self._on_event is not None:
                try:
                    self._on_event(ev)
                except Exception as exc:
                    report_error("sessions.on_event", exc)

    def _emit_log(self, ev: SessionEvent) -> None:
        lg = self._event_logger
        if lg is None:
            return
        attrs: dict[str, Any] = {names.ATTR_ROOM: ev.room, names.ATTR_PARTICIPANT: ev.participant}
        if ev.name == PARTICIPANT_LEFT:
            attrs[names.ATTR_LEAVE_REASON] = ev.reason
            attrs[names.SESSION_DURATION] = ev.duration_ns / NS_PER_S
            attrs["otel_rtc.session.resumes"] = ev.resumes
        lg.emit(
            timestamp=ev.time_ns,
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body=ev.name,
            attributes=attrs,
            event_name=ev.name,
        )


def _observe_active(ref: weakref.ref[SessionRegistry],
                    _options: CallbackOptions) -> Iterable[Observation]:
    reg = ref()
    if reg is None:
        return []
    try:
        return [Observation(reg.active)]
    except Exception as exc:
        report_error("sessions", exc)
        return []


def _reaper_loop(ref: weakref.ref[SessionRegistry], stop: threading.Event,
                 interval_s: float) -> None:
    # Holds the registry only weakly between ticks, so an abandoned registry is
    # collected and its thread ends.
    while not stop.wait(interval_s):
        reg = ref()
        if reg is None:
            return
        reg.reap()
        del reg
