"""Reference-counted participant sessions (pure core: stdlib and ``_clock`` only).

A *session* is one participant in one room, keyed by ``(room, participant)``: the same
participant forwarded into two rooms is two sessions. Several *sources* (for example
``"signal"`` for the signalling connection and ``"media"`` for the media transport)
join and leave a session independently, each through one or more *connections*; the
session is reference-counted over the connections.

Lifecycle of a session::

    OPEN ──last source leaves──▶ CLOSED (participant_left emitted)
      │  ▲
      │  └─ a source joins within the grace period (resume)
      └─last connection leaves while a resume is pending──▶ SUSPENDED
                                      │ reap after grace: participant_left (resume_timeout)

* ``participant_joined`` is emitted when the first source joins a session, and
  ``participant_left`` when the session ends, each **exactly once per session**.
* A resume keeps the *connected state* whatever the order: new signal joins before the
  old one closes (the reference count never reaches 0), or the old one closes first with
  ``expect_resume=True`` (the resume stays pending whichever connection is released
  last; the session is then suspended, not closed, and a later join within the grace
  period revives it without a second ``participant_joined``).
* Closed and suspended sessions are removed by :meth:`SessionCore.reap` once the grace
  period has passed (3 minutes by default), and the oldest early beyond ``max_ended``.
  ``reap`` is amortised O(1) per session and is meant to be driven by a timer, never by
  the application's own calls.
* Every observer a session registers is owned by it (:meth:`Session.own`) and
  unregistered when it closes; registering on a closed session unregisters at once,
  so observer closures cannot outlive their session.

Events are returned to the caller (or passed to ``on_event``) *outside* the core's lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
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
DEFAULT_MAX_ENDED = 10_000
"""Closed or suspended sessions kept at most (about 1 KB each)."""
_ANON = "\x00anon"  # marks the numbered identities of connections joined without one


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
    """One participant session: its connections, resume state and owned observers.

    Attributes:
        key: ``(room, participant)``.
        state: ``open``, ``suspended`` or ``closed``.
        joined_ns: When ``participant_joined`` happened.
        closed_ns: When the last connection was released (0 while open).
        resumes: How many times the session resumed (see :meth:`SessionCore.join`).
    """

    __slots__ = ("__weakref__", "_anon", "_cleanups", "_lock", "_sealed", "closed_ns",
                 "conns", "expecting", "joined_ns", "key", "reconnects", "resumes", "state")

    def __init__(self, key: SessionKey, joined_ns: int) -> None:
        self.key = key
        # (source, connection) held -> the newer connection of the source that joined
        # while this one was held and replaced it (that resume is already counted).
        self.conns: dict[tuple[str, Hashable], tuple[str, Hashable] | None] = {}
        # source -> times of releases with expect_resume not yet matched by a new join
        self.expecting: dict[str, list[int]] = {}
        self.reconnects: dict[str, int] = {}  # source -> new connections that resumed it
        self.state = OPEN
        self.joined_ns = joined_ns
        self.closed_ns = 0
        self.resumes = 0
        self._anon = 0  # numbering of connections joined without an identity
        self._cleanups: list[Callable[[], object]] = []
        self._sealed = False  # cleanups already ran: new ones run at once
        self._lock = threading.Lock()

    @property
    def refs(self) -> dict[str, int]:
        """``{source: connections held}``."""
        out: dict[str, int] = {}
        for source, _ in list(self.conns):  # a copy: joins may run in other threads
            out[source] = out.get(source, 0) + 1
        return out

    @property
    def total_refs(self) -> int:
        """Connections held, over every source."""
        return len(self.conns)

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

    References are counted per *connection*: ``join`` and ``leave`` take an optional
    ``connection`` identity (any hashable: a connection id, ``id(ws)``...). With it, a
    duplicated close of an old connection is rejected instead of releasing the new
    connection's reference. Without it, each join is a new anonymous connection and a
    leave releases the oldest one of that source.

    Args:
        grace_ns: How long a closed or suspended session is kept before it is reaped,
            and how long a resume announced with ``expect_resume`` stays pending.
        max_ended: Most closed or suspended sessions kept; beyond it the oldest is
            removed early (a suspended one with ``participant_left`` reason
            ``evicted``) and counted through ``on_reject("ended_evicted")``.
        clock: Injectable clock (epoch ns).
        on_reject: Called with a reason (``unknown_session``, ``unknown_source``,
            ``unknown_connection``, ``duplicate_join``, ``ended_evicted``) when input is
            rejected or state is evicted.
        on_error: Called with an exception raised by an owned cleanup.
        on_clamp: Called when a session's duration is clamped at zero because the
            clock went backwards.

    Raises:
        ValueError: ``grace_ns`` is negative or ``max_ended`` is not positive.
    """

    def __init__(
        self,
        *,
        grace_ns: int = DEFAULT_GRACE_NS,
        max_ended: int = DEFAULT_MAX_ENDED,
        clock: Clock = wall_clock_ns,
        on_reject: Callable[[str], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_clamp: Callable[[], None] | None = None,
    ) -> None:
        if grace_ns < 0:
            raise ValueError("grace_ns must be >= 0")
        if isinstance(max_ended, bool) or not isinstance(max_ended, int) or max_ended < 1:
            raise ValueError(f"max_ended must be a positive int, got {max_ended!r}")
        self.grace_ns = grace_ns
        self.max_ended = max_ended
        self._clock = clock
        self._on_reject = on_reject
        self._on_error = on_error
        self._on_clamp = on_clamp
        self._lock = threading.Lock()
        self._sessions: dict[SessionKey, Session] = {}
        # Stopped (closed or suspended) sessions -> reap deadline, oldest first.
        self._ending: OrderedDict[Session, int] = OrderedDict()
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

    @property
    def ended(self) -> int:
        """Closed or suspended sessions still kept (at most ``max_ended``)."""
        return len(self._ending)

    def __len__(self) -> int:
        return len(self._sessions)

    # -- transitions ----------------------------------------------------------------
    def join(self, room: str, participant: str, source: str, *,
             connection: Hashable | None = None,
             t_ns: int | None = None) -> tuple[Session, list[SessionEvent]]:
        """A connection of ``source`` joins the session; returns it and the events.

        A new session (or one that already ended) emits ``participant_joined``; a
        *suspended* session is revived and keeps its connected state, so no second
        ``participant_joined`` is emitted.

        A join *reconnects* its source when an older connection of the source is still
        held, or one was released with ``expect_resume`` within the grace period (each
        old connection is matched once). The session's ``resumes`` is the most
        reconnects of any one source, so a signal and a media connection moving
        together count one resume, in whatever order the joins and leaves arrive.
        """
        now = self._clock() if t_ns is None else t_ns
        key = (room, participant)
        events: list[SessionEvent] = []
        reject = ""
        with self._lock:
            s = self._sessions.get(key)
            if s is None or s.state == CLOSED:
                s = Session(key, now)
                self._sessions[key] = s
                self.joins += 1
                events.append(SessionEvent(PARTICIPANT_JOINED, room, participant, now))
            if connection is None:
                s._anon += 1
                conn: tuple[str, Hashable] = (source, (_ANON, s._anon))
            else:
                conn = (source, connection)
            if conn in s.conns:
                reject = "duplicate_join"
            else:
                self._expire_expecting(s, now)
                pending = s.expecting.get(source)
                held = [c for c, by in s.conns.items()
                        if c[0] == source and (by is None or by not in s.conns)]
                if pending:
                    pending.pop(0)
                    if not pending:
                        del s.expecting[source]
                    self._reconnect(s, source)
                elif held:
                    s.conns[held[0]] = conn  # the oldest one still held is replaced
                    self._reconnect(s, source)
                s.conns[conn] = None
                if s.state == SUSPENDED:
                    s.state = OPEN
                    s.closed_ns = 0
                    self._ending.pop(s, None)
        if reject:
            self._reject(reject)
        return s, events

    @staticmethod
    def _reconnect(s: Session, source: str) -> None:
        n = s.reconnects.get(source, 0) + 1
        s.reconnects[source] = n
        s.resumes = max(s.resumes, n)

    def _expire_expecting(self, s: Session, now: int) -> None:
        for source in [k for k, ts in s.expecting.items() if ts[0] + self.grace_ns <= now]:
            kept = [t for t in s.expecting[source] if t + self.grace_ns > now]
            if kept:
                s.expecting[source] = kept
            else:
                del s.expecting[source]

    def leave(self, room: str, participant: str, source: str, *, expect_resume: bool = False,
              connection: Hashable | None = None,
              t_ns: int | None = None) -> list[SessionEvent]:
        """A connection of ``source`` leaves the session; returns the events to publish.

        Args:
            room: Room identifier.
            participant: Participant identifier.
            source: The source that left.
            expect_resume: The connection is going away because the participant is
                resuming on a new one. The resume stays pending, whichever connection
                is released last, until a new connection of ``source`` joins or the
                grace period ends: if no connection is left meanwhile, the session is
                suspended instead of closed and ``participant_left`` is deferred.
            connection: The connection's identity as given to :meth:`join`; ``None``
                releases the oldest anonymous connection of ``source``.
            t_ns: Event time; the clock by default.
        """
        now = self._clock() if t_ns is None else t_ns
        key = (room, participant)
        events: list[SessionEvent] = []
        to_close: list[Session] = []
        reason = ""
        evicted = 0
        with self._lock:
            s = self._sessions.get(key)
            conn: tuple[str, Hashable] | None = None
            if s is None or s.state != OPEN:
                reason = "unknown_session"
            elif connection is not None:
                conn = (source, connection)
                if conn not in s.conns:
                    reason = "unknown_connection"
            else:
                conn = next((c for c in s.conns if c[0] == source
                             and isinstance(c[1], tuple) and c[1][:1] == (_ANON,)), None)
                if conn is None:
                    reason = "unknown_source"
            if not reason and s is not None and conn is not None:
                by = s.conns.pop(conn)
                if expect_resume and (by is None or by not in s.conns):
                    # Not already replaced by a connection still held: a resume to come.
                    s.expecting.setdefault(source, []).append(now)
                if not s.conns:
                    self._expire_expecting(s, now)
                    if s.expecting:
                        # Pending until the grace period after the latest announcement.
                        s.state = SUSPENDED
                        s.closed_ns = now
                        last = max(max(ts) for ts in s.expecting.values())
                        self._stopped(s, last + self.grace_ns)
                    else:
                        to_close.append(s)
                        events.append(self._close_locked(s, now, "left"))
                    evicted = self._evict_locked(now, events, to_close)
        if reason:
            self._reject(reason)
        for _ in range(evicted):
            self._reject("ended_evicted")
        for ended in to_close:
            ended._run_cleanups(self._on_error)
        return events

    def _stopped(self, s: Session, deadline: int) -> None:
        self._ending.pop(s, None)
        self._ending[s] = deadline

    def _evict_locked(self, now: int, events: list[SessionEvent],
                      to_close: list[Session]) -> int:
        # Bounded by count as well as by time: the oldest stopped sessions go first.
        n = 0
        while len(self._ending) > self.max_ended:
            s, _ = self._ending.popitem(last=False)
            if s.state == SUSPENDED:
                events.append(self._close_locked(s, now, "evicted"))
                to_close.append(s)
            if self._sessions.get(s.key) is s:
                del self._sessions[s.key]
            n += 1
        return n

    def _close_locked(self, s: Session, now: int, reason: str) -> SessionEvent:
        if s.state == OPEN:
            s.closed_ns = now
            self._stopped(s, now + self.grace_ns)
        s.state = CLOSED
        self.leaves += 1
        room, participant = s.key
        duration = clamp_duration_ns(s.joined_ns, now)
        if duration == 0 and now < s.joined_ns and self._on_clamp is not None:
            try:
                self._on_clamp()
            except Exception:  # pragma: no cover - last-resort guard
                pass
        return SessionEvent(PARTICIPANT_LEFT, room, participant, now, reason, duration,
                            s.resumes)

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
            while ending:
                s, deadline = next(iter(ending.items()))
                if deadline > now:
                    break
                del ending[s]
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
                s.conns.clear()
                s.expecting.clear()
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
