"""Start and stop a local Rotel collector (``rotel-agent``), optionally with our processor.

Used by the ``otel-rtc collector`` command, the tests and the benchmarks::

    with RotelCollector(exporter_endpoint="http://127.0.0.1:4318",
                        metrics_processor=processor_path()) as col:
        # send OTLP to col.http_endpoint / col.grpc_endpoint
        ...

Everything binds to ``127.0.0.1`` with free ports picked at start. The agent's
stdout/stderr go to ``log_file`` if given (kept), else to a private temporary directory
that exists only while the agent runs (:meth:`RotelCollector.logs` keeps the text).
The embedded Python interpreter of ``rotel-agent`` uses the *system* ``sys.path``, so
the launcher prepends the directory containing the ``otel_rtc`` package to
``PYTHONPATH``: the processor module imports the pure core from there.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "RotelCollector",
    "RotelError",
    "RotelNotInstalledError",
    "find_rotel",
    "free_port",
    "processor_path",
]

PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])
"""Directory to put on the agent's ``PYTHONPATH`` so it can ``import otel_rtc``."""


_SETTLE_S = 0.3
"""How long the agent must stay alive after opening its ports to count as ready."""


class RotelError(RuntimeError):
    """The collector failed to start or exited early (the message includes its log)."""


class RotelNotInstalledError(RotelError):
    """No ``rotel-agent`` binary: ``pip install 'otel-rtc[collector]'``."""


def find_rotel() -> Path | None:
    """Locate the ``rotel-agent`` binary.

    Order: ``$ROTEL_AGENT`` (a path), the ``rotel`` PyPI package next to this
    interpreter's site-packages, then ``rotel-agent`` / ``rotel`` on ``PATH``.
    """
    env = os.environ.get("ROTEL_AGENT")
    if env and Path(env).is_file():
        return Path(env)
    candidates = []
    try:
        import rotel  # the PyPI package ships the binary next to its __init__

        candidates.append(Path(rotel.__file__).resolve().parent / "rotel-agent")
    except Exception:  # not installed, or a broken install
        pass
    for key in ("purelib", "platlib"):
        try:
            candidates.append(Path(sysconfig.get_paths()[key]) / "rotel" / "rotel-agent")
        except Exception:
            pass
    candidates.append(Path(sys.prefix) / "lib" /
                      f"python{sys.version_info[0]}.{sys.version_info[1]}" /
                      "site-packages" / "rotel" / "rotel-agent")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    for name in ("rotel-agent", "rotel"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def processor_path() -> Path:
    """Path of the module Rotel loads: ``otel_rtc/collector/processor.py``."""
    return Path(__file__).resolve().parent / "processor.py"


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on ``host`` (race-prone by nature; fine for tests)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.2).close()
        return True
    except OSError:
        return False


class RotelCollector:
    """One ``rotel-agent start`` process on loopback.

    Args:
        exporter: ``"otlp"`` (forward to ``exporter_endpoint``) or ``"blackhole"``.
        exporter_endpoint: Where the OTLP exporter sends, e.g. ``http://127.0.0.1:4318``.
        exporter_protocol: ``"http"`` or ``"grpc"``.
        metrics_processor: Python file run on every ``ResourceMetrics``
            (``process_metrics``); e.g. :func:`processor_path`. ``None``: no processor.
        http_port: OTLP/HTTP receiver port (0/None: a free one).
        grpc_port: OTLP/gRPC receiver port (0/None: a free one).
        host: Bind address (loopback by default).
        batch_timeout: Batch timeout passed to the agent.
        extra_args: More ``rotel-agent start`` arguments.
        env: Extra environment (e.g. ``OTEL_RTC_*`` processor settings).
        binary: Path of ``rotel-agent``; found with :func:`find_rotel` by default.
        log_file: Write the agent's output here (appended, kept after :meth:`stop`);
            by default to a temporary file removed at :meth:`stop`.

    Raises:
        ValueError: bad exporter or protocol, or ``otlp`` without an endpoint.
        RotelNotInstalledError: no binary found.
    """

    def __init__(
        self,
        *,
        exporter: str = "otlp",
        exporter_endpoint: str | None = None,
        exporter_protocol: str = "http",
        metrics_processor: str | os.PathLike[str] | None = None,
        http_port: int | None = None,
        grpc_port: int | None = None,
        host: str = "127.0.0.1",
        batch_timeout: str = "100ms",
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        binary: str | os.PathLike[str] | None = None,
        log_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if exporter not in ("otlp", "blackhole"):
            raise ValueError("exporter must be 'otlp' or 'blackhole'")
        if exporter_protocol not in ("http", "grpc"):
            raise ValueError("exporter_protocol must be 'http' or 'grpc'")
        if exporter == "otlp" and not exporter_endpoint:
            raise ValueError("exporter 'otlp' needs exporter_endpoint")
        found = Path(binary) if binary is not None else find_rotel()
        if found is None or not found.is_file():
            raise RotelNotInstalledError(
                "rotel-agent not found: install it with `pip install 'otel-rtc[collector]'` "
                "(or set ROTEL_AGENT to the binary's path)")
        self.binary = found
        self.exporter = exporter
        self.exporter_endpoint = exporter_endpoint
        self.exporter_protocol = exporter_protocol
        self.metrics_processor = (str(Path(metrics_processor).resolve())
                                  if metrics_processor is not None else None)
        self.host = host
        self.http_port = http_port or free_port(host)
        self.grpc_port = grpc_port or free_port(host)
        self.batch_timeout = batch_timeout
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self._user_log = Path(log_file) if log_file is not None else None
        self._dir: str | None = None  # private, only while the agent runs
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: object | None = None
        self._final_logs: str | None = None

    # -- command -----------------------------------------------------------------------
    @property
    def log_path(self) -> Path | None:
        """Where the agent's output goes (``None`` before :meth:`start` without ``log_file``)."""
        if self._user_log is not None:
            return self._user_log
        return Path(self._dir) / "agent.log" if self._dir is not None else None

    @property
    def http_endpoint(self) -> str:
        """``http://host:port`` of the OTLP/HTTP receiver."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        """``http://host:port`` of the OTLP/gRPC receiver."""
        return f"http://{self.host}:{self.grpc_port}"

    def command(self) -> list[str]:
        """The ``rotel-agent start ...`` argument vector.

        While the agent runs it includes private ``--pid-file`` / ``--log-file`` paths
        (used only if the agent daemonizes); before, they are left to the agent's defaults.
        """
        cmd = [str(self.binary), "start",
               "--otlp-http-endpoint", f"{self.host}:{self.http_port}",
               "--otlp-grpc-endpoint", f"{self.host}:{self.grpc_port}",
               "--exporter", self.exporter,
               "--batch-timeout", self.batch_timeout]
        if self._dir is not None:
            cmd += ["--pid-file", str(Path(self._dir) / "agent.pid"),
                    "--log-file", str(Path(self._dir) / "agent-daemon.log")]
        if self.exporter == "otlp":
            cmd += ["--otlp-exporter-endpoint", str(self.exporter_endpoint),
                    "--otlp-exporter-protocol", self.exporter_protocol]
        if self.metrics_processor is not None:
            cmd += ["--otlp-with-metrics-processor", self.metrics_processor]
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        """Environment of the agent: ours + ``PYTHONPATH`` reaching ``otel_rtc``."""
        env = dict(os.environ)
        env.update(self.extra_env)
        pp = env.get("PYTHONPATH", "")
        parts = [p for p in pp.split(os.pathsep) if p]
        if PACKAGE_PARENT not in parts:
            parts.insert(0, PACKAGE_PARENT)
        env["PYTHONPATH"] = os.pathsep.join(parts)
        return env

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> RotelCollector:
        """Start the agent and wait until both receivers accept connections.

        Raises:
            RotelError: it exited or did not open its ports within ``timeout``.
        """
        if self._proc is not None:
            return self
        self._dir = tempfile.mkdtemp(prefix="otel-rtc-rotel-")
        self._final_logs = None
        path = self.log_path
        assert path is not None
        try:
            log = open(path, "ab")  # closed in stop()
        except OSError as exc:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            raise RotelError(f"cannot write the collector log {str(path)!r}: {exc}") from exc
        self._log_file = log
        self._proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=self.environment(),
                                      start_new_session=True)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until the receivers' ports accept connections.

        Raises:
            RotelError: the process exited, or ``timeout`` passed.
        """
        deadline = time.monotonic() + timeout
        settled_at: float | None = None
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise RotelError(f"rotel-agent exited early:\n{self.logs()}")
            if settled_at is not None:
                if time.monotonic() >= settled_at:
                    return
            elif _port_open(self.host, self.http_port) and _port_open(self.host,
                                                                      self.grpc_port):
                # The receivers open before the pipeline loads the processor module: a
                # broken processor kills the agent a few ms later. Stay alive a moment.
                settled_at = time.monotonic() + _SETTLE_S
            if time.monotonic() > deadline:
                raise RotelError(f"rotel-agent not ready after {timeout}s:\n{self.logs()}")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        """Whether the agent process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the agent, if started."""
        return self._proc.pid if self._proc is not None else None

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the agent (SIGTERM, then SIGKILL after ``timeout``); return its exit code.

        The temporary directory is removed; :meth:`logs` keeps returning the final log.
        """
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=timeout)
            code = proc.returncode
        f = self._log_file
        self._log_file = None
        if f is not None:
            f.close()  # type: ignore[attr-defined]
            self._final_logs = self.logs()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        return code

    def logs(self) -> str:
        """Everything the agent printed so far (ANSI colour codes included)."""
        if self._final_logs is not None:
            return self._final_logs
        path = self.log_path
        if path is None:
            return ""
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> RotelCollector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
