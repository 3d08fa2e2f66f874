"""Reference-counted participant sessions (pure core: stdlib and ``_clock`` only).

A *session* is one participant in one room, keyed by ``(room, participant)``: the same
participant forwarded into two rooms is two sessions. Several *sources* (for example
``"signal"`` for the signalling connection and ``"media"`` for the media transport)
join and leave a session independently; the session is reference-counted over them.

Lifecycle of a session::

    OPEN ──last source leaves──▶ CLOSED (participant_left emitted)
      │  ▲
      │  └─ a source joins within the grace period (resume)
      └─last source leaves with expect_resume=True──▶ SUSPENDED
                                      │ reap after grace: participant_left (resume_timeout)

* ``participant_joined`` is emitted when the first source joins a session, and
  ``participant_left`` when the session ends, each **exactly once per session**.
* A resume keeps the *connected state* whatever the order: new signal joins before the
  old one closes (the reference count never reaches 0), or the old one closes first with
  ``expect_resume=True`` (the session is suspended, not closed, and a later join
  within the grace period revives it without a second ``participant_joined``).
* Closed and suspended sessions are removed by :meth:`SessionCore.reap` once the grace
  period has passed (3 minutes by default). ``reap`` is amortised O(1) per session and is
  meant to be driven by a timer, never by the application's own calls.
* Every observer a session registers is owned by it (:meth:`Session.own`) and
  unregistered when it closes; registering on a closed session unregisters at once,
  so observer closures cannot outlive their session.

Events are returned to the caller (or passed to ``on_event``) *outside* the core's lock.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from otel_rtc.core.clock import NS_PER_S, Clock, clamp_duration_ns, wall_clock_ns

SessionKey = tuple[str, str]
"""``(room, participant)``."""

PARTICIPANT_JOINED = "participant_joined"
PARTICIPANT_LEFT = "participant_left"

OPEN = "open"
SUSPENDED = "suspended"
CLOSED = "closed"

DEFAULT_GRACE_NS = 180 * NS_PER_S


@dataclass(frozen=True)
class SessionEvent:
    """A participant lifecycle event.

    Attributes:
        name: ``participant_joined`` or ``participant_left``.
        room: Room identifier.
        participant: Participant identifier.
        time_ns: When it happened (epoch ns).
        reason: For ``participant_left``: ``left`` (last source left),
            ``resume_timeout`` (suspended for a resume that never came) or ``closed``
            (the registry was closed). Empty for ``participant_joined``.
        duration_ns: For ``participant_left``: time since ``participant_joined``.
        resumes: How many times the session resumed.
    """

    name: str
    room: str
    participant: str
    time_ns: int
    reason: str = ""
    duration_ns: int = 0
    resumes: int = 0


class Session:
    """One participant session: reference counts per source and owned observers."""

    __slots__ = ("__weakref__", "_cleanups", "_lock", "_sealed", "closed_ns", "joined_ns",
                 "key", "refs", "resumes", "state")

    def __init__(self, key: SessionKey, joined_ns: int) -> None:
        self.key = key
        self.refs: dict[str, int] = {}
        self.state = OPEN
        self.joined_ns = joined_ns
        self.closed_ns = 0
        self.resumes = 0
        self._cleanups: list[Callable[[], object]] = []
        self._sealed = False  # cleanups already ran: new ones run at once
        self._lock = threading.Lock()

    @property
    def total_refs(self) -> int:
        """Sum of the reference counts of every source."""
        return sum(self.refs.values())

    def own(self, unsubscribe: Callable[[], object]) -> None:
        """Make this session responsible for calling ``unsubscribe`` when it closes.

        On a session that already closed, ``unsubscribe`` runs immediately.
        """
        with self._lock:
            if not self._sealed:
                self._cleanups.append(unsubscribe)
                return
        _safe_call(unsubscribe)

    def subscribe(
        self,
        add: Callable[[Callable[..., object]], object],
        remove: Callable[[Callable[..., object]], object],
        callback: Callable[..., object],
    ) -> None:
        """Register ``callback`` with ``add`` and own its removal with ``remove``.

        Nothing is registered on a session that already closed.
        """
        if self._sealed:
            return
        add(callback)
        self.own(lambda: remove(callback))

    @property
    def owned(self) -> int:
        """Number of pending cleanups (observers still registered)."""
        return len(self._cleanups)

    def _run_cleanups(self, on_error: Callable[[BaseException], None] | None) -> None:
        with self._lock:
            self._sealed = True
            cleanups, self._cleanups = self._cleanups, []
        for fn in reversed(cleanups):
            _safe_call(fn, on_error)


def _safe_call(fn: Callable[[], object],
               on_error: Callable[[BaseException], None] | None = None) -> None:
    try:
        fn()
    except Exception as exc:
        if on_error is not None:
            try:
                on_error(exc)
            except Exception:  # pragma: no cover - last-resort guard
                pass


class SessionCore:
    """Registry of reference-counted sessions keyed by ``(room, participant)``.

    Args:
        grace_ns: How long a closed or suspended session is kept before it is reaped.
        clock: Injectable clock (epoch ns).
        on_reject: Called with a reason (``unknown_session``, ``unknown_source``) when
            input is rejected.
        on_error: Called with an exception raised by an owned cleanup.

    Raises:
        ValueError: ``grace_ns`` is negative.
    """

    def __init__(
        self,
        *,
        grace_ns: int = DEFAULT_GRACE_NS,
        clock: Clock = wall_clock_ns,
        on_reject: Callable[[str], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if grace_ns < 0:
            raise ValueError("grace_ns must be >= 0")
        self.grace_ns = grace_ns
        self._clock = clock
        self._on_reject = on_reject
        self._on_error = on_error
        self._lock = threading.Lock()
        self._sessions: dict[SessionKey, Session] = {}
        # (deadline_ns, session) in the order sessions stopped; reap pops from the left.
        self._ending: deque[tuple[int, Session]] = deque()
        self.joins = 0
        self.leaves = 0

    # -- queries -----------------------------------------------------------------------
    def get(self, room: str, participant: str) -> Session | None:
        """The session for ``(room, participant)`` in any state, or ``None``."""
        return self._sessions.get((room, participant))

    @property
    def active(self) -> int:
        """Sessions that are open or suspended (connected, not yet left)."""
        with self._lock:
            return sum(1 for s in self._sessions.values() if s.state != CLOSED)

    def __len__(self) -> int:
        return len(self._sessions)

    # -- transitions ----------------------------------------------------------------
    def join(self, room: str, participant: str, source: str, *,
             t_ns: int | None = None) -> tuple[Session, list[SessionEvent]]:
        """A source joins the session; returns it and the events to publish.

        A new session (or one that already ended) emits ``participant_joined``; a
        *suspended* session is revived (a resume) and keeps its connected state, so no
        second ``participant_joined`` is emitted.
        """
        now = self._clock() if t_ns is None else t_ns
        key = (room, participant)
        events: list[SessionEvent] = []
        with self._lock:
            s = self._sessions.get(key)
            if s is None or s.state == CLOSED:
                s = Session(key, now)
                self._sessions[key] = s
                self.joins += 1
                events.append(SessionEvent(PARTICIPANT_JOINED, room, participant, now))
            elif s.state == SUSPENDED:
                s.state = OPEN
                s.resumes += 1
            elif s.refs.get(source, 0) > 0:
                s.resumes += 1  # a second connection of the same source: a resume
            s.refs[source] = s.refs.get(source, 0) + 1
        return s, events

    def leave(self, room: str, participant: str, source: str, *, expect_resume: bool = False,
              t_ns: int | None = None) -> list[SessionEvent]:
        """A source leaves the session; returns the events to publish.

        Args:
            room: Room identifier.
            participant: Participant identifier.
            source: The source that left.
            expect_resume: The source is going away because the participant is resuming
                on a new connection: when it was the last reference, the session is
                suspended instead of closed and ``participant_left`` is deferred.
            t_ns: Event time; the clock by default.
        """
        now = self._clock() if t_ns is None else t_ns
        key = (room, participant)
        events: list[SessionEvent] = []
        to_close: Session | None = None
        with self._lock:
            s = self._sessions.get(key)
            if s is None or s.state != OPEN:
                reason = "unknown_session"
            elif s.refs.get(source, 0) <= 0:
                reason = "unknown_source"
            else:
                reason = ""
                n = s.refs[source] - 1
                if n:
                    s.refs[source] = n
                else:
                    del s.refs[source]
                if not s.refs:
                    if expect_resume:
                        s.state = SUSPENDED
                        s.closed_ns = now
                        self._ending.append((now + self.grace_ns, s))
                    else:
                        to_close = s
                        events.append(self._close_locked(s, now, "left"))
        if reason:
            self._reject(reason)
        if to_close is not None:
            to_close._run_cleanups(self._on_error)
        return events

    def _close_locked(self, s: Session, now: int, reason: str) -> SessionEvent:
        if s.state == OPEN:
            self._ending.append((now + self.grace_ns, s))
            s.closed_ns = now
        s.state = CLOSED
        self.leaves += 1
        room, participant = s.key
        return SessionEvent(PARTICIPANT_LEFT, room, participant, now, reason,
                            clamp_duration_ns(s.joined_ns, now), s.resumes)

    def reap(self, now_ns: int | None = None) -> list[SessionEvent]:
        """Remove sessions that stopped more than the grace period ago.

        A suspended session whose resume never came is closed here with
        ``participant_left`` (reason ``resume_timeout``). Returns the events to publish.
        """
        now = self._clock() if now_ns is None else now_ns
        events: list[SessionEvent] = []
        closed: list[Session] = []
        with self._lock:
            ending = self._ending
            while ending and ending[0][0] <= now:
                _, s = ending.popleft()
                if s.state == OPEN:
                    continue  # revived by a resume; re-queued if it stops again
                if s.closed_ns + self.grace_ns > now:
                    continue  # an older entry of a session that stopped again later
                if s.state == SUSPENDED:
                    events.append(self._close_locked(s, now, "resume_timeout"))
                    closed.append(s)
                if self._sessions.get(s.key) is s:
                    del self._sessions[s.key]
        for s in closed:
            s._run_cleanups(self._on_error)
        return events

    def close_all(self, t_ns: int | None = None) -> list[SessionEvent]:
        """End every session (shutdown): ``participant_left`` reason ``closed``."""
        now = self._clock() if t_ns is None else t_ns
        events: list[SessionEvent] = []
        with self._lock:
            ended = [s for s in self._sessions.values() if s.state != CLOSED]
            for s in ended:
                s.refs.clear()
                events.append(self._close_locked(s, now, "closed"))
            self._sessions.clear()
            self._ending.clear()
        for s in ended:
            s._run_cleanups(self._on_error)
        return events

    def _reject(self, reason: str) -> None:
        if self._on_reject is not None:
            try:
                self._on_reject(reason)
            except Exception:  # pragma: no cover - last-resort guard
                pass
