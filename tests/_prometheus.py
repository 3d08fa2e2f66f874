"""Real-Prometheus harness for tests and for ``docs/plot_dashboards.py``.

* :class:`PrometheusServer` starts Debian's ``/usr/bin/prometheus`` (installed by
  ``scripts/bootstrap.sh``) on a free 127.0.0.1 port with a throw-away storage dir and a
  generated scrape config, waits until it is ready, answers PromQL through the HTTP API
  and stops it again.
* :func:`start_scrape_endpoint` serves a meter provider for Prometheus through
  ``otel_rtc.RtcPrometheusMetricReader`` (the SDK's Prometheus reader with the otel_rtc
  export stage applied on every scrape: local aggregates merged, rates derived).
* :func:`run_demo_workload` runs the examples against such a reader so a scraping
  Prometheus sees every metric the dashboards chart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prometheus_available() -> bool:
    """Whether the Prometheus server binary is installed."""
    return os.access(PROMETHEUS, os.X_OK)


class PrometheusError(RuntimeError):
    """A query failed or the server did not come up."""


@dataclass
class PrometheusServer:
    """One Prometheus process scraping ``targets`` (``host:port`` strings) every interval."""

    workdir: Path
    targets: list[str]
    scrape_interval: str = "1s"
    remote_write_receiver: bool = False
    exemplars: bool = False
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "prometheus.log"

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        """The generated ``prometheus.yml`` (YAML is a superset of JSON)."""
        cfg = {
            "global": {"scrape_interval": self.scrape_interval,
                       "evaluation_interval": self.scrape_interval},
            "scrape_configs": [{
                "job_name": "otel_rtc",
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "static_configs": [{"targets": list(self.targets)}],
            }],
        }
        return json.dumps(cfg, indent=2)

    def start(self, timeout_s: float = 20.0) -> PrometheusServer:
        """Start the server and wait until ``/-/ready`` answers."""
        if not prometheus_available():
            raise PrometheusError(f"{PROMETHEUS} not installed (run scripts/bootstrap.sh)")
        cfg = self.workdir / "prometheus.yml"
        cfg.write_text(self.config_text())
        self.port = self.port or free_port()
        args = [PROMETHEUS, f"--config.file={cfg}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d", "--log.level=warn"]
        if self.remote_write_receiver:
            args.append("--web.enable-remote-write-receiver")
        if self.exemplars:
            args.append("--enable-feature=exemplar-storage")
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited: {self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise PrometheusError(f"prometheus not ready: {self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        """The server's log so far."""
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate the server (kill after 10 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP API --------------------------------------------------------------------
    def api(self, path: str, **params: Any) -> Any:
        """GET ``/api/v1/<path>``; return ``data`` or raise :class:`PrometheusError`."""
        qs = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.url}/api/v1/{path}?{qs}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the result vector (or a one-element list for a scalar)."""
        data = self.api("query", query=expr, time=at)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def query_range(self, expr: str, start: float, end: float,
                    step: float = 1.0) -> list[dict[str, Any]]:
        """Range query (what a Grafana time-series panel runs); the result matrix."""
        return self.api("query_range", query=expr, start=start, end=end, step=step)["result"]

    def targets_up(self) -> list[dict[str, Any]]:
        """Active scrape targets with ``health`` and ``lastError``."""
        return self.api("targets")["activeTargets"]

    def wait_for_samples(self, metric: str, n: int, timeout_s: float = 15.0) -> None:
        """Wait until ``metric`` has at least ``n`` scraped samples."""
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(PrometheusError):
                res = self.query(f"count_over_time({metric}[1h])")
                if res and max(float(r["value"][1]) for r in res) >= n:
                    return
            if time.monotonic() > deadline:
                raise PrometheusError(f"{metric}: fewer than {n} samples; targets: "
                                      f"{self.targets_up()}; log: {self.log()}")
            time.sleep(0.2)


def values_of(result: list[dict[str, Any]]) -> list[float]:
    """All sample values of an instant or range result, as floats (NaN kept)."""
    out: list[float] = []
    for series in result:
        if "values" in series:
            out.extend(float(v) for _, v in series["values"])
        else:
            out.append(float(series["value"][1]))
    return out


def finite(values: list[float]) -> list[float]:
    """The finite values."""
    return [v for v in values if math.isfinite(v)]


# -- the SDK side ------------------------------------------------------------------------
@dataclass
class ScrapeEndpoint:
    """An SDK meter provider served on ``http://127.0.0.1:<port>/metrics``."""

    meter_provider: Any
    tracer_provider: Any
    port: int
    server: Any
    thread: Any
    registry: Any

    @property
    def target(self) -> str:
        """``host:port`` for a scrape config."""
        return f"127.0.0.1:{self.port}"

    def text(self) -> str:
        """The exposition text, as Prometheus would scrape it."""
        with urllib.request.urlopen(f"http://{self.target}/metrics", timeout=10) as r:
            return r.read().decode()

    def close(self) -> None:
        """Stop serving and shut the providers down."""
        self.server.shutdown()
        self.server.server_close()
        self.meter_provider.shutdown()
        self.tracer_provider.shutdown()


def rate_processors() -> list[Any]:
    """otel_rtc's default export-stage processor (rates, traffic load), with the opt-in
    top-N participant shares that the dashboards' top-N panel shows."""
    import os
    from unittest import mock

    from otel_rtc.sdk.defaults import default_processors

    with mock.patch.dict(os.environ, {"OTEL_RTC_LOAD_TOP_N": "5"}):
        return list(default_processors())


def start_scrape_endpoint(processors: list[Any] | None = None) -> ScrapeEndpoint:
    """Meter + tracer providers whose metrics are served for Prometheus on a free port."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import CollectorRegistry, start_http_server

    from otel_rtc import RtcPrometheusMetricReader
    from otel_rtc.sdk.aggregation import LocalAggregationRegistry

    resource = Resource.create({"service.name": "otel-rtc-demo"})
    registry = LocalAggregationRegistry(resource=resource)
    prom_registry = CollectorRegistry()
    procs = rate_processors() if processors is None else processors
    reader = RtcPrometheusMetricReader(registry, procs, prometheus_registry=prom_registry)
    mp = MeterProvider(metric_readers=[reader], resource=resource)
    reader.bind(mp)
    tp = TracerProvider(resource=resource)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=prom_registry)
    return ScrapeEndpoint(mp, tp, port, server, thread, registry)


# -- the workload ----------------------------------------------------------------------
def _run_sfu(duration_s: float, ep: ScrapeEndpoint) -> dict[str, Any]:
    from examples import sfu_pubsub

    # Per-participant traffic series: the load processor derives participant scores and
    # shares (the top-N load panels) only from series that carry otel_rtc.participant.
    return sfu_pubsub.run(duration_s, rooms=2, seed=7, per_participant=True,
                          tracer_provider=ep.tracer_provider,
                          meter_provider=ep.meter_provider)


def _run_message_server(duration_s: float, ep: ScrapeEndpoint) -> Any:
    from examples import message_server
    from otel_rtc.core.switch import burst_switches

    switches = burst_switches()
    before = switches.snapshot()["enabled"]
    switches.set(enabled=True)  # burst tracking is off by default; the burst panels need it
    try:
        return asyncio.run(message_server.run(duration_s, tracer_provider=ep.tracer_provider,
                                              meter_provider=ep.meter_provider))
    finally:
        switches.set(enabled=before)


def run_demo_workload(ep: ScrapeEndpoint, duration_s: float = 8.0) -> dict[str, Any]:
    """Run the examples in real time, in parallel, against ``ep``'s providers.

    Returns each example's summary, or the exception it raised.
    """
    jobs: dict[str, Callable[[float, ScrapeEndpoint], Any]] = {
        "sfu_pubsub": _run_sfu, "message_server": _run_message_server}
    out: dict[str, Any] = {}

    def job(name: str, fn: Callable[[float, ScrapeEndpoint], Any]) -> None:
        try:
            out[name] = fn(duration_s, ep)
        except BaseException as exc:  # reported to the caller
            out[name] = exc

    threads = [threading.Thread(target=job, args=(n, f), daemon=True) for n, f in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration_s + 30)
    return out


@contextlib.contextmanager
def demo_prometheus(workdir: Path, duration_s: float = 8.0,
                    scrape_interval: str = "1s") -> Iterator[tuple[PrometheusServer,
                                                                   dict[str, Any],
                                                                   tuple[float, float]]]:
    """Endpoint + Prometheus + workload; yields (server, summaries, (start, end))."""
    ep = start_scrape_endpoint()
    prom = PrometheusServer(Path(workdir), [ep.target], scrape_interval=scrape_interval)
    try:
        prom.start()
        # Prometheus hands new targets to the scraper only every 5 s (discovery
        # throttling): wait for the first scrape so the whole run is sampled.
        prom.wait_for_samples("up", 1, timeout_s=20)
        start = time.time()
        mid: dict[str, str] = {}
        # what Prometheus scrapes mid-run (observable traffic series end with the run)
        grab = threading.Timer(duration_s * 0.6, lambda: mid.update(text=ep.text()))
        grab.start()
        summaries = run_demo_workload(ep, duration_s)
        grab.join()
        # two more scrapes so the last increments are in
        time.sleep(2.5 * _seconds(scrape_interval))
        end = time.time()
        summaries["_exposition"] = mid.get("text", "")
        yield prom, summaries, (start, end)
    finally:
        prom.stop()
        ep.close()


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    for suffix in ("ms", "s", "m"):
        if duration.endswith(suffix):
            return float(duration[: -len(suffix)]) * units[suffix]
    return float(duration)
