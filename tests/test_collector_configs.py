"""Every shipped collector / Prometheus / Grafana config loads and is consistent.

The OpenTelemetry Collector configs (and Jaeger's) go through ``validate`` of the real
binaries built from Go modules (``scripts/build_otelcol.sh``); tests/test_otelcol_tier.py
runs them. What validation does not see is checked here: processor order, loopback
endpoints, routing by stream. The Prometheus config goes through ``promtool``; the Rotel
configuration is actually started through the shipped script and receives OTLP.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from otel_rtc.collector.rotel import find_rotel, free_port
from tests._otelcol import JAEGER, OTELCOL_RTC
from tests._otlp_receiver import OtlpReceiver

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "collector_config"
OTELCOL = {"agent": CFG / "otelcol-agent.yaml", "gateway": CFG / "otelcol-gateway.yaml"}

_ENV = re.compile(r"\$\{env:([A-Z0-9_]+)(?::-([^}]*))?\}")


def _default(value: str) -> str:
    """Resolve ``${env:X:-default}`` to its default, as the collector does without X."""
    return _ENV.sub(lambda m: m.group(2) or "", value)


def _load(path: Path):
    return yaml.safe_load(path.read_text())


def _walk(node, key):
    """Every value under a mapping key named ``key``, recursively."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _walk(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)


def test_every_yaml_parses():
    files = sorted(CFG.rglob("*.yaml")) + sorted(CFG.rglob("*.yml"))
    assert len(files) >= 6
    for f in files:
        assert isinstance(_load(f), dict), f


@pytest.mark.otelcol
@pytest.mark.parametrize("name", sorted(OTELCOL))
def test_otelcol_configs_validate_with_otelcol_rtc(name):
    if not os.access(OTELCOL_RTC, os.X_OK):
        pytest.skip("otelcol-rtc not built (scripts/build_otelcol.sh)")
    out = subprocess.run([str(OTELCOL_RTC), "validate", "--config", f"file:{OTELCOL[name]}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.otelcol
def test_jaeger_config_validates():
    if not os.access(JAEGER, os.X_OK):
        pytest.skip("jaeger not built (scripts/build_otelcol.sh)")
    out = subprocess.run([str(JAEGER), "validate", "--config", f"file:{CFG / 'jaeger.yaml'}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("name", sorted(OTELCOL))
def test_otelcol_pipelines_use_every_component_in_order(name):
    cfg = _load(OTELCOL[name])
    used: dict[str, set] = {"receivers": set(), "processors": set(), "exporters": set()}
    for pname, p in cfg["service"]["pipelines"].items():
        for section in used:
            used[section].update(p.get(section, []))
        procs = p.get("processors", [])
        # memory_limiter first, batch last: the collector's recommended order
        assert procs[0] == "memory_limiter" and procs[-1] == "batch", pname
    for section, comps in used.items():
        assert set(cfg.get(section) or {}) == comps, f"{section} defined but unused"


@pytest.mark.parametrize("name", sorted(OTELCOL))
def test_otelcol_listens_on_loopback_only(name):
    cfg = _load(OTELCOL[name])
    listening = list(_walk(cfg["receivers"], "endpoint"))
    listening += [e["endpoint"] for k, e in cfg["exporters"].items()
                  if k.split("/")[0] == "prometheus"]
    listening += list(_walk(cfg.get("extensions") or {}, "endpoint"))
    assert listening
    for ep in listening:
        assert _default(ep).startswith("127.0.0.1:"), ep


def test_agent_routes_metrics_by_stream_to_the_gateways():
    cfg = _load(OTELCOL["agent"])
    [metrics_exp] = cfg["service"]["pipelines"]["metrics"]["exporters"]
    lb = cfg["exporters"][metrics_exp]
    assert metrics_exp.split("/")[0] in ("loadbalancing", "load_balancing")
    assert lb["routing_key"] == "streamID"
    assert "otlp" in lb["protocol"]
    hosts = [_default(h) for h in lb["resolver"]["static"]["hostnames"]]
    gateway = _load(OTELCOL["gateway"])
    gw_grpc = _default(gateway["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    assert gw_grpc in hosts and len(hosts) >= 2
    assert set(cfg["receivers"]) == {"otlp"}


def test_gateway_runs_the_native_processor_and_exports_to_jaeger_and_prometheus():
    cfg = _load(OTELCOL["gateway"])
    pipes = cfg["service"]["pipelines"]
    assert pipes["metrics"]["processors"] == ["memory_limiter", "rtcrate", "batch"]
    assert pipes["metrics"]["exporters"] == ["prometheus"]
    assert cfg["exporters"]["prometheus"]["enable_open_metrics"] is True  # exemplars
    assert pipes["traces"]["exporters"] == ["otlp/jaeger"]
    jaeger = _load(CFG / "jaeger.yaml")
    assert _default(cfg["exporters"]["otlp/jaeger"]["endpoint"]) == _default(
        jaeger["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])


def test_jaeger_listens_on_loopback_only():
    cfg = _load(CFG / "jaeger.yaml")
    listening = list(_walk(cfg["receivers"], "endpoint")) + list(
        _walk(cfg["extensions"], "endpoint"))
    assert len(listening) == 4
    for ep in listening:
        assert _default(ep).startswith("127.0.0.1:"), ep


def test_prometheus_config_passes_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (scripts/bootstrap.sh installs prometheus)")
    out = subprocess.run([promtool, "check", "config",
                          str(CFG / "prometheus" / "prometheus.yml")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def test_grafana_provisioning_is_consistent():
    ds = _load(CFG / "grafana" / "provisioning" / "datasources" / "datasources.yaml")
    uids = {d["uid"]: d for d in ds["datasources"]}
    assert {"prometheus", "jaeger"} <= set(uids)
    dest = uids["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert dest and all(d["datasourceUid"] in uids for d in dest)
    prov = _load(CFG / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml")
    assert prov["providers"][0]["options"]["path"]
    for f in (CFG / "grafana" / "dashboards").glob("*.json"):
        dash = json.loads(f.read_text())
        for p in dash["panels"]:
            if p["type"] != "row":
                assert p["datasource"]["uid"] in uids
                assert p["targets"]


def test_dashboards_are_generated_from_make_dashboards():
    spec = importlib.util.spec_from_file_location(
        "make_dashboards", CFG / "grafana" / "make_dashboards.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, text in mod.render().items():
        assert (CFG / "grafana" / "dashboards" / name).read_text() == text, \
            f"{name} is stale: run python collector_config/grafana/make_dashboards.py"


def _env_file() -> dict[str, str]:
    out = {}
    for line in (CFG / "rotel.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k] = v
    return out


def test_rotel_env_uses_real_options_on_loopback():
    binary = find_rotel()
    if binary is None:
        pytest.skip("rotel-agent not installed")
    help_text = subprocess.run([str(binary), "start", "--help"], capture_output=True,
                               text=True, timeout=30).stdout
    known = set(re.findall(r"\[env: (ROTEL_[A-Z0-9_]+)=", help_text))
    env = _env_file()
    assert env and set(env) <= known, set(env) - known
    for k in ("ROTEL_OTLP_GRPC_ENDPOINT", "ROTEL_OTLP_HTTP_ENDPOINT"):
        assert env[k].startswith("127.0.0.1:"), k


@pytest.mark.collector
def test_rotel_config_starts_through_the_shipped_script_and_receives_otlp(tmp_path):
    if find_rotel() is None:
        pytest.skip("rotel-agent not installed")
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    http_port, grpc_port = free_port(), free_port()
    with OtlpReceiver() as recv:
        env = dict(os.environ)
        env.update({
            "PYTHON": sys.executable,
            "ROTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http_port}",
            "ROTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
            "ROTEL_OTLP_EXPORTER_ENDPOINT": recv.endpoint,
            "ROTEL_BATCH_TIMEOUT": "100ms",
            "OTEL_RTC_RATE_READING_SPAN": "0",  # two exports ms apart: read each at once
            "ROTEL_PID_FILE": str(tmp_path / "rotel.pid"),
            "ROTEL_LOG_FILE": str(tmp_path / "rotel.log"),
        })
        log = (tmp_path / "out.log").open("wb")
        proc = subprocess.Popen(["bash", str(CFG / "rotel-otel-rtc.sh")], env=env,
                                stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", http_port), timeout=0.2).close()
                    break
                except OSError:
                    assert proc.poll() is None, (tmp_path / "out.log").read_text()
                    assert time.monotonic() < deadline, "rotel did not start"
                    time.sleep(0.05)
            reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(f"http://127.0.0.1:{http_port}/v1/metrics"),
                export_interval_millis=3_600_000)
            mp = MeterProvider(metric_readers=[reader])
            counter = mp.get_meter("cfg-test").create_counter("otel_rtc.traffic.bytes",
                                                             unit="By")
            counter.add(1000, {"otel_rtc.room": "r"})
            mp.force_flush()
            counter.add(500, {"otel_rtc.room": "r"})
            mp.force_flush()
            def got_total(r):
                return any(v == 1500 for _, v, _ in r.number_points("otel_rtc.traffic.bytes"))

            assert recv.wait_for(got_total, timeout=15), (tmp_path / "out.log").read_text()
            # the otel_rtc processor ran inside Rotel: derived rates arrive too, at once
            # (the first point is only a baseline; the second gives the first rate)
            assert recv.wait_for_metric("otel_rtc.traffic.bytes.rate", timeout=15), \
                (tmp_path / "out.log").read_text()
            mp.shutdown()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        out = (tmp_path / "out.log").read_text()
        processor = ROOT / "otel_rtc" / "collector" / "processor.py"
        if processor.exists():
            assert "not found; running without it" not in out


def test_native_processor_spells_the_python_names():
    """otelcol-rtc's rtcrate (Go) emits the names the Python processors and dashboards use."""
    from otel_rtc.core import derived, names

    src = "\n".join(p.read_text() for p in (ROOT / "otelcol-rtc" / "rtcrateprocessor").glob(
        "*.go") if not p.name.endswith("_test.go"))
    consts = dict(re.findall(r'^\s*(?:const\s+)?(\w+)\s*=\s*"([^"]*)"', src, re.MULTILINE))
    from otel_rtc.collector.processor import COMPONENT
    from otel_rtc.collector.rotel_output import SCOPE_NAME

    want = {"scopeName": SCOPE_NAME, "componentName": COMPONENT,
            "inProcessScope": names.RATES_SCOPE, "metricBytes": names.TRAFFIC_BYTES,
            "metricPackets": names.TRAFFIC_PACKETS,
            "rateSuffix": derived.RATE_SUFFIX, "peakSuffix": derived.PEAK_SUFFIX,
            "loadPrefix": names.LOAD_PREFIX, "metricDropped": names.TELEMETRY_DROPPED,
            "metricAnomalies": derived.ANOMALIES, "attrWindow": names.ATTR_RATE_WINDOW,
            "attrSubwindow": names.ATTR_RATE_SUBWINDOW, "attrComponent": names.ATTR_COMPONENT,
            "attrDropReason": names.ATTR_DROP_REASON, "attrAnomaly": derived.ATTR_ANOMALY,
            "attrRoom": names.ATTR_ROOM, "attrParticipant": names.ATTR_PARTICIPANT,
            "attrDirection": names.ATTR_DIRECTION, "attrMedia": names.ATTR_MEDIA_KIND,
            "others": names.OTHER}
    assert {k: consts.get(k) for k in want} == want
