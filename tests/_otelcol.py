"""Real OpenTelemetry Collector (otelcol-rtc) and Jaeger processes for tests and benchmarks.

Both binaries are built from Go modules by ``scripts/build_otelcol.sh`` (``./test.sh``
runs it) into ``build/otelcol/``. Each process runs a shipped config from
``collector_config/`` with its listening endpoints set through the environment variables
that config reads, on free 127.0.0.1 ports.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "otelcol"
OTELCOL_RTC = BUILD / "otelcol-rtc"
JAEGER = BUILD / "jaeger"
CFG = ROOT / "collector_config"


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def built() -> bool:
    """Whether scripts/build_otelcol.sh has built both binaries."""
    return os.access(OTELCOL_RTC, os.X_OK) and os.access(JAEGER, os.X_OK)


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@dataclass
class Process:
    """One collector (or Jaeger) process with its environment and log file."""

    name: str
    args: list[str]
    env: dict[str, str]
    ready_ports: list[int]
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"{self.name}.log"

    def start(self, timeout_s: float = 60.0) -> Process:
        """Start and wait until every ready port accepts connections."""
        env = dict(os.environ)
        env.update(self.env)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + timeout_s
        while not all(_port_open(p) for p in self.ready_ports):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready: {self.log()}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        """The last part of the process's log."""
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def reload(self) -> None:
        """SIGHUP: an OpenTelemetry Collector re-reads its configuration."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (the collector's graceful shutdown); kill after 15 s."""
        if self.running():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def otelcol(name: str, config: Path | list[Path], env: dict[str, str], ready_ports: list[int],
            workdir: Path) -> Process:
    """An otelcol-rtc process running ``config`` (several files are merged in order)."""
    configs = config if isinstance(config, list) else [config]
    args = [str(OTELCOL_RTC)]
    for c in configs:
        args += ["--config", f"file:{c}"]
    return Process(name, args, env, ready_ports, workdir)


@dataclass
class Gateway:
    """The ports of one gateway (collector_config/otelcol-gateway.yaml)."""

    grpc: int = field(default_factory=free_port)
    http: int = field(default_factory=free_port)
    prometheus: int = field(default_factory=free_port)
    telemetry: int = field(default_factory=free_port)

    def env(self, jaeger_otlp: int) -> dict[str, str]:
        """The variables the gateway config reads."""
        return {"GATEWAY_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc}",
                "GATEWAY_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http}",
                "GATEWAY_PROMETHEUS_ENDPOINT": f"127.0.0.1:{self.prometheus}",
                "GATEWAY_TELEMETRY_PORT": str(self.telemetry),
                "JAEGER_OTLP_ENDPOINT": f"127.0.0.1:{jaeger_otlp}"}

    def scrape(self) -> str:
        """The gateway's Prometheus exposition (what Prometheus scrapes)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.prometheus}/metrics",
                                    timeout=10) as r:
            return r.read().decode()


@dataclass
class JaegerPorts:
    """The ports of Jaeger (collector_config/jaeger.yaml)."""

    otlp_grpc: int = field(default_factory=free_port)
    otlp_http: int = field(default_factory=free_port)
    query_http: int = field(default_factory=free_port)
    query_grpc: int = field(default_factory=free_port)

    def env(self) -> dict[str, str]:
        """The variables the Jaeger config reads."""
        return {"JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.otlp_grpc}",
                "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.otlp_http}",
                "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{self.query_http}",
                "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{self.query_grpc}"}

    def api(self, path: str, **params: Any) -> Any:
        """GET Jaeger's HTTP query API (``/api/<path>``); the ``data`` of the answer."""
        qs = urllib.parse.urlencode(params)
        url = f"http://127.0.0.1:{self.query_http}/api/{path}" + (f"?{qs}" if qs else "")
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.load(r)["data"]


def jaeger(ports: JaegerPorts, workdir: Path) -> Process:
    """Jaeger v2 with in-memory storage (collector_config/jaeger.yaml)."""
    # Jaeger's own tracer would otherwise export to 127.0.0.1:4317 (an agent's port).
    env = {**ports.env(), "OTEL_TRACES_EXPORTER": "none"}
    return Process("jaeger", [str(JAEGER), "--config", f"file:{CFG / 'jaeger.yaml'}"],
                   env, [ports.otlp_grpc, ports.query_http], workdir)


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples of a Prometheus text exposition: ``{name: [(labels, value), ...]}``."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out
