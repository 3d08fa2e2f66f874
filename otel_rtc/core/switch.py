"""Run-time on/off switches for burst tracking and its log lines.

Pure core: stdlib only. Three switches, each a plain attribute (free to read on a hot
path):

* ``enabled`` (default ``False``): burst tracking costs clock reads per message;
* ``log_stats`` (default ``True``): the periodic ``logMessageBurstStats`` line;
* ``log_data`` (default ``False``): the periodic ``logMessageBurstData`` (raw) line.

They change without a restart through three sources; the latest *change* wins:

1. the live switch object: ``burst_switches().set(enabled=True)`` (which is also what
   ``otel_rtc.configure(bursts=...)`` calls);
2. environment variables ``OTEL_RTC_BURSTS_ENABLED``, ``OTEL_RTC_BURSTS_LOG_STATS``,
   ``OTEL_RTC_BURSTS_LOG_DATA`` (``true/false/1/0/yes/no/on/off``), re-read on every
   :meth:`~BurstSwitches.poll` and applied when their value changes;
3. a JSON config file (``OTEL_RTC_CONFIG_FILE`` or :meth:`~BurstSwitches.set_config_file`)
   in the shape of the LLMessageSystem LiveConfig::

       {"bursts": {"enabled": true},
        "log-messages": {"logMessageBurstStats": {"use-syslog": 0},
                         "logMessageBurstData": {"use-syslog": 1}}}

   reloaded when its modification time, size or inode changes. A key that was set by
   the file and is later removed from it (or an env var that is unset) reverts the
   switch to its default.

Polling is cheap (one ``os.stat`` and three ``os.environ`` lookups) and never runs on the
hot path: the burst monitor polls from its stats thread, or :meth:`start_watcher` runs a
daemon thread. A bad env value logs a warning and applies the default; a bad file logs a
warning and keeps the last good values. Both are counted in :attr:`invalid_count` and
reported to ``on_invalid``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping

from otel_rtc.core.env import parse_bool

_logger = logging.getLogger("otel_rtc")

__all__ = [
    "ENV_CONFIG_FILE",
    "ENV_ENABLED",
    "ENV_LOG_DATA",
    "ENV_LOG_STATS",
    "BurstSwitches",
    "burst_switches",
]

ENV_ENABLED = "OTEL_RTC_BURSTS_ENABLED"
ENV_LOG_STATS = "OTEL_RTC_BURSTS_LOG_STATS"
ENV_LOG_DATA = "OTEL_RTC_BURSTS_LOG_DATA"
ENV_CONFIG_FILE = "OTEL_RTC_CONFIG_FILE"

DEFAULTS: dict[str, bool] = {"enabled": False, "log_stats": True, "log_data": False}
_ENV_FOR = {"enabled": ENV_ENABLED, "log_stats": ENV_LOG_STATS, "log_data": ENV_LOG_DATA}
_MAX_CONFIG_BYTES = 1 << 20

Listener = Callable[["BurstSwitches"], None]


def _file_value(v: object, what: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v != 0
    if isinstance(v, str):
        try:
            return parse_bool(v)
        except ValueError:
            pass
    raise ValueError(f"{what}: expected a boolean or an integer, got {v!r}")


def parse_config(text: str) -> dict[str, bool | None]:
    """Parse a LiveConfig-style JSON document into switch values (``None``: not set).

    Raises:
        ValueError: Malformed JSON or a value of the wrong type.
    """
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("config file must hold a JSON object")
    out: dict[str, bool | None] = dict.fromkeys(DEFAULTS)
    bursts = doc.get("bursts")
    if bursts is not None:
        if not isinstance(bursts, dict):
            raise ValueError('"bursts" must be an object')
        if "enabled" in bursts:
            out["enabled"] = _file_value(bursts["enabled"], "bursts.enabled")
    logs = doc.get("log-messages")
    if logs is not None:
        if not isinstance(logs, dict):
            raise ValueError('"log-messages" must be an object')
        for key, switch in (("logMessageBurstStats", "log_stats"),
                            ("logMessageBurstData", "log_data")):
            entry = logs.get(key)
            if entry is None:
                continue
            if not isinstance(entry, dict):
                raise ValueError(f'"log-messages.{key}" must be an object')
            if "use-syslog" in entry:
                out[switch] = _file_value(entry["use-syslog"], f"{key}.use-syslog")
    return out


class BurstSwitches:
    """The burst switches and the sources that change them.

    Args:
        environ: Mapping read for the env vars (default ``os.environ``, read live).
        config_file: Config file path; default from ``OTEL_RTC_CONFIG_FILE``.
        on_invalid: Called with a reason (``"invalid_env"``, ``"invalid_config"``,
            ``"missing_config"``) for every rejected value.
        load: Read the env vars and the file once now (default ``True``).
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        config_file: str | os.PathLike[str] | None = None,
        on_invalid: Callable[[str], None] | None = None,
        load: bool = True,
    ) -> None:
        if on_invalid is not None and not callable(on_invalid):
            raise ValueError("on_invalid must be callable")
        self.enabled: bool = DEFAULTS["enabled"]
        self.log_stats: bool = DEFAULTS["log_stats"]
        self.log_data: bool = DEFAULTS["log_data"]
        self.invalid_count = 0
        self.on_invalid = on_invalid
        self._environ = os.environ if environ is None else environ
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._env_seen: dict[str, str | None] = dict.fromkeys(DEFAULTS)
        self._file_seen: dict[str, bool | None] = dict.fromkeys(DEFAULTS)
        self._explicit_file = config_file is not None
        self._config_file: str | None = os.fspath(config_file) if config_file else None
        self._file_sig: tuple[int, int, int] | None = None
        self._missing_reported = False
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        if load:
            self.poll()

    # -- API ---------------------------------------------------------------------------
    def set(self, *, enabled: bool | None = None, log_stats: bool | None = None,
            log_data: bool | None = None) -> None:
        """Set switches now (``None`` leaves one unchanged).

        Raises:
            ValueError: A value is not a bool.
        """
        values = {"enabled": enabled, "log_stats": log_stats, "log_data": log_data}
        for k, v in values.items():
            if v is not None and not isinstance(v, bool):
                raise ValueError(f"{k} must be a bool, got {v!r}")
        self._apply({k: v for k, v in values.items() if v is not None})

    def set_config_file(self, path: str | os.PathLike[str] | None) -> None:
        """Watch ``path`` (``None``: stop using a file) and load it now."""
        with self._lock:
            self._explicit_file = True
            self._config_file = os.fspath(path) if path else None
            self._file_sig = None
            self._missing_reported = False
        self.poll()

    @property
    def config_file(self) -> str | None:
        """The config file in use, if any."""
        return self._config_file

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(self)`` after every change (exceptions are logged)."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """Undo :meth:`add_listener` (no error when absent)."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def snapshot(self) -> dict[str, bool]:
        """The current values."""
        return {"enabled": self.enabled, "log_stats": self.log_stats, "log_data": self.log_data}

    # -- sources -----------------------------------------------------------------------
    def poll(self) -> bool:
        """Re-read the env vars and, when it changed, the config file. Never raises.

        Returns:
            Whether any switch changed.
        """
        try:
            with self._lock:
                changes: dict[str, bool] = {}
                self._poll_env(changes)
                self._poll_file(changes)
            return self._apply(changes)
        except Exception as exc:  # pragma: no cover - last-resort guard
            _logger.warning("otel_rtc: polling burst switches failed: %r", exc)
            return False

    def _invalid(self, reason: str, msg: str, *args: object) -> None:
        self.invalid_count += 1
        _logger.warning(msg, *args)
        cb = self.on_invalid
        if cb is not None:
            try:
                cb(reason)
            except Exception as exc:
                _logger.warning("otel_rtc: on_invalid callback failed: %r", exc)

    def _poll_env(self, changes: dict[str, bool]) -> None:
        env = self._environ
        for switch, var in _ENV_FOR.items():
            raw = env.get(var)
            if raw == self._env_seen[switch]:
                continue
            self._env_seen[switch] = raw
            if raw is None or raw.strip() == "":
                changes[switch] = DEFAULTS[switch]
                continue
            try:
                value = parse_bool(raw)
            except ValueError:
                self._invalid("invalid_env", "otel_rtc: %s=%r is not a boolean; using %s",
                              var, raw, DEFAULTS[switch])
                value = DEFAULTS[switch]
            changes[switch] = value
        if not self._explicit_file:
            path = env.get(ENV_CONFIG_FILE) or None
            if path != self._config_file:
                self._config_file = path
                self._file_sig = None
                self._missing_reported = False

    def _poll_file(self, changes: dict[str, bool]) -> None:
        path = self._config_file
        if path is None:
            return
        try:
            st = os.stat(path)
        except OSError as exc:
            if not self._missing_reported:
                self._missing_reported = True
                self._file_sig = None
                self._invalid("missing_config",
                              "otel_rtc: config file %s unreadable (%s); keeping current "
                              "burst switches", path, exc)
            return
        self._missing_reported = False
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        if sig == self._file_sig:
            return
        self._file_sig = sig
        try:
            if st.st_size > _MAX_CONFIG_BYTES:
                raise ValueError(f"larger than {_MAX_CONFIG_BYTES} bytes")
            with open(path, encoding="utf-8") as f:
                values = parse_config(f.read())
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            self._invalid("invalid_config",
                          "otel_rtc: config file %s is invalid (%s); keeping the last good "
                          "burst switches", path, exc)
            return
        for switch, value in values.items():
            if value != self._file_seen[switch]:
                changes[switch] = DEFAULTS[switch] if value is None else value
        self._file_seen = values

    def _apply(self, changes: dict[str, bool]) -> bool:
        with self._lock:
            changed = False
            for k, v in changes.items():
                if getattr(self, k) != v:
                    setattr(self, k, v)
                    changed = True
            listeners = list(self._listeners) if changed else []
        for listener in listeners:
            try:
                listener(self)
            except Exception as exc:
                _logger.warning("otel_rtc: burst switch listener failed: %r", exc)
        return changed

    # -- watcher -----------------------------------------------------------------------
    def start_watcher(self, interval_s: float = 2.0) -> None:
        """Poll every ``interval_s`` seconds in a daemon thread (idempotent).

        Raises:
            ValueError: ``interval_s`` is not positive.
        """
        if not interval_s > 0:
            raise ValueError("interval_s must be > 0")
        with self._lock:
            if self._watcher is not None and self._watcher.is_alive():
                return
            self._stop = threading.Event()
            stop = self._stop
            t = threading.Thread(target=self._watch, args=(stop, interval_s),
                                 name="otel_rtc-burst-switches", daemon=True)
            self._watcher = t
        t.start()

    def _watch(self, stop: threading.Event, interval_s: float) -> None:
        while not stop.wait(interval_s):
            self.poll()

    def stop_watcher(self, timeout_s: float = 5.0) -> None:
        """Stop the watcher thread and wait for it (at most ``timeout_s``)."""
        with self._lock:
            t, self._watcher = self._watcher, None
            self._stop.set()
        if t is not None and t is not threading.current_thread():
            t.join(timeout_s)

    @property
    def watching(self) -> bool:
        """Whether the watcher thread runs."""
        t = self._watcher
        return t is not None and t.is_alive()


_default: BurstSwitches | None = None
_default_lock = threading.Lock()


def burst_switches() -> BurstSwitches:
    """The process-wide burst switches (created from the environment on first use).

    The one live switch object: ``burst_switches().set(enabled=True)`` switches burst
    tracking on at run time, ``.set_config_file(path)`` watches a LiveConfig file.
    """
    global _default
    s = _default
    if s is None:
        with _default_lock:
            if _default is None:
                _default = BurstSwitches()
            s = _default
    return s
