"""configure(): file default, OTLP from args and env, disabled, injection, no blocking."""

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData

from otel_rtc.core import switch as _switch
from otel_rtc.instrumentation import self_telemetry as _self_telemetry
from otel_rtc.instrumentation.bursts import BurstMonitor
from otel_rtc.sdk.configure import Telemetry, configure
from otel_rtc.sdk.export import MetricsProcessor
from otel_rtc.sdk.exporters import FILE_NAMES
from otel_rtc.sdk.recording_backend import default_registry
from otel_rtc.testing import make_test_pipeline
from tests._otlp_receiver import OtlpReceiver, attrs_of

ROOT = Path(__file__).resolve().parents[1]

OTEL_ENV = [
    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED", "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_RTC_OUTPUT_DIR", "OTEL_RTC_BURSTS_ENABLED", "OTEL_RTC_CONFIG_FILE",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in OTEL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # the default ./telemetry-out lands in the test's tmp dir
    handles: list[Telemetry] = []
    yield handles
    for h in handles:
        h.shutdown()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _burst(mon, n=3):
    t = time.time_ns()
    for _ in range(n):
        mon.processing_started(t)
        mon.buffer_empty(t + 2_000_000)
        t += 10_000_000




def _exercise(h: Telemetry) -> None:
    """Spans, otel_rtc local-aggregation metrics (bursts) through the handle's providers."""
    switches = _switch.BurstSwitches(environ={})
    switches.set(enabled=True)
    mon = BurstMonitor("cfg-test", tracer_provider=h.tracer_provider,
                       meter_provider=h.meter_provider, stats_interval_s=None,
                       switches=switches)
    _burst(mon)
    mon.close()
    with h.tracer_provider.get_tracer("t").start_as_current_span("hello"):
        pass


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _file_metric_names(path: Path) -> set[str]:
    return {m["name"] for doc in _read_jsonl(path) for rm in doc["resourceMetrics"]
            for sm in rm["scopeMetrics"] for m in sm["metrics"]}


def _file_spans(path: Path) -> list[dict]:
    return [s for doc in _read_jsonl(path) for rs in doc["resourceSpans"]
            for ss in rs["scopeSpans"] for s in ss["spans"]]


# -- file mode (the embedded default) -----------------------------------------------------


def test_file_default_writes_otlp_json(clean_env, tmp_path):
    h = configure(service_name="cfg-svc", set_global=False, export_interval_s=3600)
    clean_env.append(h)
    assert h.mode == "file" and h.protocol is None
    assert h.output_dir == (tmp_path / "telemetry-out").resolve()
    assert h.paths == {s: h.output_dir / FILE_NAMES[s] for s in ("traces", "metrics", "logs")}
    assert h.registry is not None and h.registry is not default_registry()
    _exercise(h)
    h.shutdown()
    names = _file_metric_names(h.metrics_path)
    assert {"otel_rtc.burst.duration", "otel_rtc.burst.messages",
            "otel_rtc.burst.break.duration"} <= names
    spans = _file_spans(h.traces_path)
    assert {s["name"] for s in spans} >= {"hello", "burst cfg-test"}
    doc = _read_jsonl(h.metrics_path)[-1]
    res = {a["key"]: a["value"] for a in doc["resourceMetrics"][0]["resource"]["attributes"]}
    assert res["service.name"] == {"stringValue": "cfg-svc"}
    # the burst histogram is exact: 3 bursts of 2 ms
    [burst] = [m for rm in doc["resourceMetrics"] for sm in rm["scopeMetrics"]
               for m in sm["metrics"] if m["name"] == "otel_rtc.burst.duration"]
    [pt] = burst["histogram"]["dataPoints"]
    assert int(pt["count"]) == 3 and pt["sum"] == pytest.approx(0.006)


def test_output_dir_from_env_and_explicit_wins(monkeypatch, clean_env, tmp_path):
    monkeypatch.setenv("OTEL_RTC_OUTPUT_DIR", str(tmp_path / "from-env"))
    h1 = configure(set_global=False)
    clean_env.append(h1)
    assert h1.output_dir == (tmp_path / "from-env").resolve()
    h2 = configure(set_global=False, output_dir=tmp_path / "explicit")
    clean_env.append(h2)
    assert h2.output_dir == (tmp_path / "explicit").resolve()
    assert h2.metrics_path.parent.is_dir()


def test_unwritable_output_dir(monkeypatch, clean_env, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="output_dir"):
        configure(set_global=False, output_dir=blocker / "sub")
    monkeypatch.setenv("OTEL_RTC_OUTPUT_DIR", str(blocker / "sub"))
    with caplog.at_level(logging.WARNING, logger="otel_rtc"):
        h = configure(set_global=False)
    clean_env.append(h)
    assert h.mode == "disabled" and h.paths == {}
    assert "cannot create telemetry output directory" in caplog.text
    _exercise(h)  # still harmless


def test_metric_export_interval_from_env(monkeypatch, clean_env):
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")  # milliseconds
    h = configure(set_global=False)
    clean_env.append(h)
    _exercise(h)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if h.metrics_path.exists() and "otel_rtc.burst.duration" in _file_metric_names(
                h.metrics_path):
            break
        time.sleep(0.05)
    # exported by the periodic reader alone, without flush or shutdown
    assert "otel_rtc.burst.duration" in _file_metric_names(h.metrics_path)


# -- disabled, bad values --------------------------------------------------------------


def test_sdk_disabled_exports_nothing(monkeypatch, clean_env, tmp_path):
    from opentelemetry import trace

    monkeypatch.setenv("OTEL_SDK_DISABLED", "TRUE")
    h = configure(set_global=False, service_name="x")
    clean_env.append(h)
    assert h.mode == "disabled" and h.registry is None and h.paths == {}
    assert isinstance(h.tracer_provider, trace.NoOpTracerProvider)
    _exercise(h)
    assert h.force_flush() is True
    h.shutdown()
    assert not (tmp_path / "telemetry-out").exists()


@pytest.mark.parametrize("kwargs", [
    {"protocol": "http/json"},
    {"protocol": "udp"},
    {"export_interval_s": -1},
    {"export_interval_s": 0},
    {"export_interval_s": float("nan")},
    {"export_timeout_s": -0.5},
    {"endpoint": "collector:4318"},
    {"endpoint": ""},
    {"headers": {"a": 1}},
    {"headers": [("a", "b")]},
    {"service_name": ""},
    {"processors": [object()]},
    {"bursts": "yes"},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        configure(set_global=False, **kwargs)


@pytest.mark.parametrize(("var", "value", "message"), [
    ("OTEL_SDK_DISABLED", "maybe", "OTEL_SDK_DISABLED"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "soon", "OTEL_METRIC_EXPORT_INTERVAL"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "-5", "OTEL_METRIC_EXPORT_INTERVAL"),
])
def test_bad_env_values_warn_and_use_default(monkeypatch, clean_env, caplog, var, value,
                                             message):
    monkeypatch.setenv(var, value)
    with caplog.at_level(logging.WARNING, logger="otel_rtc"):
        h = configure(set_global=False)
    clean_env.append(h)
    assert h.mode == "file"  # not disabled
    assert message in caplog.text


def test_bad_protocol_env_warns_and_uses_http(monkeypatch, clean_env, caplog):
    with OtlpReceiver() as recv:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
        with caplog.at_level(logging.WARNING, logger="otel_rtc"):
            h = configure(set_global=False)
        clean_env.append(h)
        assert "carrier-pigeon" in caplog.text
        assert h.mode == "otlp" and h.protocol == "http/protobuf"
        _exercise(h)
        assert h.force_flush()
        assert recv.wait_for(lambda r: "otel_rtc.burst.duration" in r.metrics()
                             and any(s.name == "hello" for s in r.spans()), timeout=10)


# -- OTLP -------------------------------------------------------------------------------


class _HeaderCapture:
    """Records (path, headers) of every POST; answers 200."""

    def __init__(self):
        self.seen: list[tuple[str, dict[str, str]]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_env_endpoint_headers_and_service_name(monkeypatch, clean_env):
    cap = _HeaderCapture()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", cap.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=env,x-env-only=1")
        h = configure(set_global=False, headers={"x-tenant": "arg"})
        clean_env.append(h)
        assert h.mode == "otlp"
        _exercise(h)
        h.shutdown()
        paths = {p for p, _ in cap.seen}
        assert {"/v1/traces", "/v1/metrics"} <= paths
        for _, headers in cap.seen:
            assert headers["x-tenant"] == "arg"  # explicit wins over env
            assert headers["x-env-only"] == "1"
    finally:
        cap.close()


def test_explicit_args_win_over_env(monkeypatch, clean_env):
    dead = f"http://127.0.0.1:{_free_port()}"
    with OtlpReceiver() as recv:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", dead)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
        h = configure(set_global=False, endpoint=recv.endpoint, protocol="http/protobuf",
                      service_name="from-arg")
        clean_env.append(h)
        assert (h.mode, h.protocol, h.endpoint) == ("otlp", "http/protobuf", recv.endpoint)
        _exercise(h)
        h.shutdown()
        assert recv.wait_for(lambda r: "otel_rtc.burst.duration" in r.metrics()
                             and r.spans(), timeout=10)
        req = recv.metric_requests()[-1]
        assert attrs_of(req.resource_metrics[0].resource)["service.name"] == "from-arg"


def test_env_service_name_and_resource_attributes(monkeypatch, clean_env):
    with OtlpReceiver() as recv:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "svc-env")
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
        h = configure(set_global=False)
        clean_env.append(h)
        _exercise(h)
        h.shutdown()
        assert recv.wait_for(lambda r: r.spans(), timeout=10)
        with recv._lock:
            req = recv.requests["/v1/traces"][-1]
        res = attrs_of(req.resource_spans[0].resource)
        assert res["service.name"] == "svc-env"
        assert res["deployment.environment"] == "test"


def test_per_signal_env_endpoint_selects_otlp(monkeypatch, clean_env):
    with OtlpReceiver() as recv:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{recv.endpoint}/v1/traces")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"{recv.endpoint}/v1/metrics")
        h = configure(set_global=False)
        clean_env.append(h)
        assert h.mode == "otlp" and h.paths == {}
        _exercise(h)
        h.shutdown()
        assert recv.wait_for(lambda r: "otel_rtc.burst.messages" in r.metrics()
                             and r.spans(), timeout=10)


def test_custom_processors_run_in_the_export(clean_env):
    class Tag(MetricsProcessor):
        def __init__(self):
            self.calls = 0
            self.seen: set[str] = set()

        def process(self, metrics_data: MetricsData) -> MetricsData:
            self.calls += 1
            self.seen |= {m.name for rm in metrics_data.resource_metrics
                          for sm in rm.scope_metrics for m in sm.metrics}
            return metrics_data

    tag = Tag()
    h = configure(set_global=False, processors=[tag])
    clean_env.append(h)
    _exercise(h)
    h.force_flush()
    assert tag.calls >= 1
    assert "otel_rtc.burst.duration" in tag.seen  # processors see the merged aggregates


def test_hung_exports_never_block_the_application(clean_env, caplog, monkeypatch):
    """A collector that never answers: the app's calls return while every export hangs.

    No wall-clock bound. Each OTLP export blocks until the test releases it; the
    application's calls run while at least one export is known to be blocked, and must
    all return (a blocking path would never return: the join below gives up after 60 s
    and fails), none of the exports running on the application's thread. Shutdown with a
    collector down is tested in test_shutdown_with_collector_down_*.
    """
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    release, entered = threading.Event(), threading.Event()
    export_threads: set[int] = set()
    for cls in (OTLPSpanExporter, OTLPMetricExporter, OTLPLogExporter):
        def hung(self, *args, _orig=cls.export, **kwargs):
            export_threads.add(threading.get_ident())
            entered.set()
            release.wait(60)
            return _orig(self, *args, **kwargs)  # then fails fast: nothing listens

        monkeypatch.setattr(cls, "export", hung)

    dead = f"http://127.0.0.1:{_free_port()}"
    h = configure(set_global=False, endpoint=dead, export_interval_s=0.05,
                  export_timeout_s=1.0)
    clean_env.append(h)
    tracer = h.tracer_provider.get_tracer("t")
    app_thread: list[int] = []

    def application() -> None:
        app_thread.append(threading.get_ident())
        for _ in range(5_000):  # more than the span queue holds: overflow is dropped
            with tracer.start_as_current_span("x"):
                pass
        _exercise(h)

    with caplog.at_level(logging.CRITICAL):
        tracer.start_span("first").end()
        assert entered.wait(30), "no export started"  # an export now hangs
        app = threading.Thread(target=application)
        app.start()
        app.join(60)
        returned = not app.is_alive()
        release.set()
        app.join()
        h.shutdown(timeout_s=3.0)
    assert returned, "the application's calls blocked on a hung export"
    assert app_thread[0] not in export_threads


def test_grpc_through_real_collector(clean_env, otlp_receiver, rotel_collector):
    """protocol="grpc" against Rotel's OTLP/gRPC receiver, read back over OTLP/HTTP."""
    col = rotel_collector(exporter_endpoint=otlp_receiver.endpoint)
    h = configure(set_global=False, protocol="grpc", endpoint=col.grpc_endpoint,
                  service_name="grpc-svc")
    clean_env.append(h)
    assert (h.mode, h.protocol) == ("otlp", "grpc")
    _exercise(h)
    h.shutdown()
    assert otlp_receiver.wait_for(lambda r: "otel_rtc.burst.duration" in r.metrics()
                                  and any(s.name == "burst cfg-test" for s in r.spans()),
                                  timeout=15)
    req = otlp_receiver.metric_requests()[-1]
    assert attrs_of(req.resource_metrics[0].resource)["service.name"] == "grpc-svc"


# -- injection, bursts, globals -----------------------------------------------------------


def test_injected_providers_are_used_and_not_shut_down(clean_env):
    p = make_test_pipeline()
    h = configure(set_global=False, tracer_provider=p.tracer_provider)
    clean_env.append(h)
    assert h.tracer_provider is p.tracer_provider
    assert h.meter_provider is not p.meter_provider and h.registry is not None
    h.shutdown()
    with p.tracer_provider.get_tracer("t").start_as_current_span("after"):
        pass
    assert [s.name for s in p.spans()] == ["after"]  # still alive after the handle's shutdown

    reader = InMemoryMetricReader()
    own_mp = MeterProvider(metric_readers=[reader])
    h2 = configure(set_global=False, tracer_provider=p.tracer_provider, meter_provider=own_mp)
    clean_env.append(h2)
    assert h2.meter_provider is own_mp
    assert h2.registry is None  # the user's pipeline: otel_rtc cannot add its stage
    _self_telemetry._reset_for_tests()
    try:
        _self_telemetry.report_error("test.injected", RuntimeError("x"))
        data = reader.get_metrics_data()
        names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics
                 for m in sm.metrics}
        assert "otel_rtc.internal.errors" in names  # self-telemetry registered on it
    finally:
        _self_telemetry._reset_for_tests()
        own_mp.shutdown()


def test_bursts_switch(clean_env):
    sw = _switch.burst_switches()
    before = sw.enabled
    try:
        h = configure(set_global=False, bursts=True)
        clean_env.append(h)
        assert sw.enabled is True
        h2 = configure(set_global=False, bursts=False)
        clean_env.append(h2)
        assert sw.enabled is False
        h3 = configure(set_global=False)  # None leaves it alone
        clean_env.append(h3)
        assert sw.enabled is False
    finally:
        sw.set(enabled=before)


_GLOBAL_SCRIPT = r"""
import logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
from opentelemetry import metrics, trace
from otel_rtc.sdk.configure import configure
from otel_rtc.sdk.recording_backend import default_registry
from otel_rtc.instrumentation.bursts import get_burst_monitor
h1 = configure(service_name="first", export_interval_s=3600)
assert h1.is_global, "first call installs the globals"
assert trace.get_tracer_provider() is h1.tracer_provider
assert metrics.get_meter_provider() is h1.meter_provider
assert h1.registry is default_registry()
h2 = configure(service_name="second", output_dir="second-out", export_interval_s=3600,
               bursts=True)
assert not h2.is_global
assert trace.get_tracer_provider() is h1.tracer_provider
assert h2.registry is not default_registry()
mon = get_burst_monitor("global", stats_interval_s=None)  # global providers
import time
t = time.time_ns()
mon.processing_started(t); mon.buffer_empty(t + 2000)
h2.shutdown(); h1.shutdown()
print("PATHS", h1.metrics_path, h2.metrics_path)
"""


def test_second_configure_warns_and_keeps_globals(tmp_path):
    out = subprocess.run([sys.executable, "-c", _GLOBAL_SCRIPT], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "configure() call #2: global tracer/meter/logger provider(s) already set" in \
        out.stdout
    first, second = out.stdout.split("PATHS ")[1].split()
    # global instrumentation recorded into the first (global) handle only
    assert "otel_rtc.burst.duration" in _file_metric_names(Path(first))
    assert "otel_rtc.burst.duration" not in _file_metric_names(Path(second))


_EXIT_SCRIPT = r"""
import sys
from otel_rtc.sdk.configure import configure
h = configure(endpoint=sys.argv[1], set_global=False)
tracer = h.tracer_provider.get_tracer("t")
for _ in range(2000):
    with tracer.start_as_current_span("x"):
        pass
print("done", flush=True)
# no shutdown(): the interpreter's exit must not wait long for the absent collector
"""


def test_exit_without_shutdown_is_bounded(tmp_path):
    dead = f"http://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT, dead], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    elapsed = time.monotonic() - t0
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr
    # The SDK's own exit hooks would give the span batch processor 30 s (in practice
    # ~6.5 s here); configure()'s hook shuts everything down by one 0.7 s deadline.
    # (The figure, interpreter start included, is measured in bench_collector_down.)
    assert elapsed < 5.0
    assert "abandoned" in out.stderr  # what the deadline cut off is said, and counted


_OVERFLOW_SCRIPT = """
import socket, sys
from otel_rtc import configure
from otel_rtc.instrumentation.self_telemetry import drop_count

# A collector that accepts connections and never answers: every export times out.
mute = socket.socket()
mute.bind(("127.0.0.1", 0))
mute.listen(64)
h = configure(set_global=False, endpoint="http://127.0.0.1:%d" % mute.getsockname()[1],
              export_timeout_s=0.5)
tracer = h.tracer_provider.get_tracer("t")
for i in range(6000):  # far faster than the worker drains the 2048-span queue
    with tracer.start_as_current_span("s%d" % i):
        pass
h.shutdown(timeout_s=10.0)
print(drop_count("export.traces", "queue_full"), drop_count("export.traces", "export_failed"),
      drop_count("export.traces", "shutdown_timeout"))
"""


def test_span_queue_overflow_and_failed_exports_are_counted(tmp_path):
    # In a process of its own: the drop counters are process-wide.
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _OVERFLOW_SCRIPT], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    queue_full, export_failed, abandoned = map(int, res.stdout.split())
    assert queue_full > 0 and export_failed > 0
    # Every span is accounted for, exactly once.
    assert queue_full + export_failed + abandoned == 6000
    assert "Queue full" not in res.stderr  # no log line per dropped span


_DOWN_SCRIPT = r"""
import json, logging, socket, sys, time
from otel_rtc import configure
from otel_rtc.instrumentation.self_telemetry import _drops

mode = sys.argv[1]
if mode == "mute":  # accepts connections and never answers: exports hang until timeout
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]
else:  # nothing listens: connection refused, the exporter backs off and retries
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
h = configure(set_global=False, endpoint="http://127.0.0.1:%d" % port)
tracer = h.tracer_provider.get_tracer("t")
counter = h.meter_provider.get_meter("m").create_counter("c")
burst_log = logging.getLogger("otel_rtc.bursts")
for i in range(5000):
    with tracer.start_as_current_span("x"):
        counter.add(1, {"k": i % 10})
for i in range(300):
    burst_log.info("logMessageBurstStats %d", i)
time.sleep(0.3)
t0 = time.monotonic()
h.shutdown()
took = time.monotonic() - t0
late = tracer.start_span("after"); late.end()
print(json.dumps({"took": took, "drops": {"/".join(k): v for k, v in _drops.items()}}))
"""


@pytest.mark.parametrize("collector", ["refused", "mute"])
def test_shutdown_with_collector_down_is_bounded_and_counts_everything(tmp_path, collector):
    """Real OTLP/HTTP to 127.0.0.1: a closed port, and one that never answers."""
    res = subprocess.run([sys.executable, "-c", _DOWN_SCRIPT, collector], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    drops = out["drops"]
    # One deadline for every signal: not 3 s export timeout, not stages that add up.
    assert out["took"] <= 1.0 + 0.5, out  # 1.0 s deadline; margin for a loaded machine
    spans = {r: drops.get(f"export.traces/{r}", 0)
             for r in ("queue_full", "export_failed", "shutdown_timeout")}
    assert sum(spans.values()) == 5000, drops  # every span not exported is counted
    assert spans["shutdown_timeout"] > 0
    logs = sum(drops.get(f"export.logs/{r}", 0)
               for r in ("queue_full", "export_failed", "shutdown_timeout"))
    assert logs == 300, drops  # every burst log record too
    # The last metric export was cut off at the deadline (or failed): its points count.
    assert (drops.get("export.metrics/shutdown_timeout", 0)
            + drops.get("export.metrics/export_failed", 0)) > 0, drops
    assert drops.get("export.traces/after_shutdown") == 1
    assert "Queue full" not in res.stderr
    assert res.stderr.count("because the export queue was full") <= 1
    assert "abandoned" in res.stderr


def test_queue_full_drops_are_logged_at_most_once_per_interval(caplog):
    """The app's thread never logs a drop; the worker logs them once per interval."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExportResult

    from otel_rtc.sdk.batching import RtcBatchSpanProcessor

    class Slow:  # every export fails after a while, like a collector that is down
        def export(self, batch):
            time.sleep(0.02)
            return SpanExportResult.FAILURE

        def shutdown(self):
            pass

    proc = RtcBatchSpanProcessor(Slow(), "test.batch", max_queue_size=4, max_batch_size=2,
                                 schedule_delay_s=0.01, log_interval_s=0.2)
    tp = TracerProvider(shutdown_on_exit=False)
    tp.add_span_processor(proc)
    tracer = tp.get_tracer("t")
    before = _self_telemetry.drop_count("test.batch", "queue_full")
    with caplog.at_level(logging.INFO, logger="otel_rtc"):
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.7:
            tracer.start_span("x").end()
        elapsed = time.monotonic() - t0
        proc.shutdown(timeout_s=0.5)
    dropped = _self_telemetry.drop_count("test.batch", "queue_full") - before
    warnings = [r for r in caplog.records if "export queue was full" in r.getMessage()]
    assert dropped > 1000
    # While the app runs they come from the worker; what is left is said at shutdown.
    periodic = [r for r in warnings if "in the last" in r.getMessage()]
    assert periodic and all(r.threadName.startswith("otel_rtc-") for r in periodic)
    # Once per 0.2 s interval from the worker (its first after 0.2 s), plus the rest at
    # shutdown: never one per drop.
    assert 2 <= len(warnings) <= elapsed / 0.2 + 1
    logged = sum(int(r.getMessage().split("dropped ")[1].split(" ")[0]) for r in warnings)
    assert logged == dropped  # the log lines add up to the counter
