"""Every shipped collector / Prometheus / Grafana config loads and is consistent.

otelcol-contrib and Docker cannot run here, so the OpenTelemetry Collector configs and
compose.yaml are checked statically: YAML, every pipeline component defined and of a
type that exists in the contrib distribution, listening endpoints on loopback, compose
files present. The Prometheus config goes through ``promtool``; the Rotel configuration
is actually started through the shipped script and receives OTLP.
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
from tests._otlp_receiver import OtlpReceiver

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "collector_config"
OTELCOL = {"agent": CFG / "otelcol-agent.yaml", "gateway": CFG / "otelcol-gateway.yaml"}

# Component types of the otelcol-contrib distribution that these configs may use
# (opentelemetry-collector-contrib / -collector READMEs; `load_balancing` is the new
# name of `loadbalancing`, which stays as an alias).
CONTRIB = {
    "receivers": {"otlp", "prometheus", "hostmetrics", "filelog", "otlpjsonfile"},
    "processors": {"batch", "memory_limiter", "cumulativetodelta", "deltatorate",
                   "deltatocumulative", "transform", "filter", "resource", "attributes",
                   "metricstransform", "groupbyattrs"},
    "exporters": {"otlp", "otlphttp", "debug", "loadbalancing", "load_balancing",
                  "prometheus", "prometheusremotewrite", "file"},
    "extensions": {"health_check", "pprof", "zpages"},
    "connectors": {"forward", "spanmetrics", "routing"},
}
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
    assert len(files) >= 7
    for f in files:
        assert isinstance(_load(f), dict), f


@pytest.mark.parametrize("name", sorted(OTELCOL))
def test_otelcol_pipelines_reference_defined_contrib_components(name):
    cfg = _load(OTELCOL[name])
    pipelines = cfg["service"]["pipelines"]
    used = {"receivers": set(), "processors": set(), "exporters": set()}
    for pname, p in pipelines.items():
        assert pname.split("/")[0] in ("traces", "metrics", "logs"), pname
        assert p.get("receivers") and p.get("exporters"), pname
        for section in used:
            for comp in p.get(section, []):
                assert comp in (cfg.get(section) or {}), f"{pname}: {comp} not defined"
                used[section].add(comp)
        procs = p.get("processors", [])
        # memory_limiter first, batch last: the collector's recommended order
        assert procs[0] == "memory_limiter" and procs[-1] == "batch", pname
    for section, comps in used.items():
        defined = set(cfg.get(section) or {})
        assert defined == comps, f"{section} defined but unused: {defined - comps}"
        for comp in defined:
            assert comp.split("/")[0] in CONTRIB[section], f"unknown {section[:-1]} {comp}"
    for section in ("extensions", "connectors"):
        for comp in cfg.get(section) or {}:
            assert comp.split("/")[0] in CONTRIB[section], comp


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


def test_gateway_derivations_exporters_and_the_limits_comment():
    text = OTELCOL["gateway"].read_text()
    cfg = yaml.safe_load(text)
    rates = cfg["service"]["pipelines"]["metrics/contrib_rates"]["processors"]
    assert rates.index("cumulativetodelta") < rates.index("deltatorate") < \
        rates.index("transform/rate_names")
    assert cfg["processors"]["deltatorate"]["metrics"] == ["otel_rtc.traffic.bytes",
                                                            "otel_rtc.traffic.packets"]
    exporters = {e.split("/")[0] + "/" + e.split("/")[-1] for e in cfg["exporters"]}
    assert {"otlp/jaeger", "otlp/tempo", "prometheusremotewrite/prometheusremotewrite"} <= \
        exporters
    traces = cfg["service"]["pipelines"]["traces"]["exporters"]
    assert "otlp/jaeger" in traces and "otlp/tempo" in traces
    assert "CANNOT DO" in text
    for topic in ("span-of-data mean", "Sub-window peaks", "wrap", "top-N"):
        assert topic in text, topic


def test_prometheus_config_passes_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (scripts/bootstrap.sh installs prometheus)")
    out = subprocess.run([promtool, "check", "config",
                          str(CFG / "prometheus" / "prometheus.yml")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def test_compose_services_files_and_ports():
    compose = _load(CFG / "compose.yaml")
    services = compose["services"]
    assert {"agent", "gateway-1", "gateway-2", "jaeger", "tempo", "prometheus",
            "grafana"} <= set(services)
    for name, svc in services.items():
        assert ":latest" not in svc.get("image", ""), name
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            assert src.startswith("./"), vol
            assert (CFG / src).exists(), (name, src)
        for dep in svc.get("depends_on", []):
            assert dep in services, (name, dep)
    # the collectors get their non-loopback (in-container) endpoints from variables
    # their configs actually read
    for svc, cfg in (("agent", "agent"), ("gateway-1", "gateway")):
        text = OTELCOL[cfg].read_text()
        for var in services[svc]["environment"]:
            assert f"${{env:{var}" in text, (svc, var)
    prom_cmd = services["prometheus"]["command"]
    assert "--web.enable-remote-write-receiver" in prom_cmd
    assert "--enable-feature=exemplar-storage" in prom_cmd


def test_grafana_provisioning_is_consistent():
    ds = _load(CFG / "grafana" / "provisioning" / "datasources" / "datasources.yaml")
    uids = {d["uid"]: d for d in ds["datasources"]}
    assert {"prometheus", "jaeger", "tempo"} <= set(uids)
    dest = uids["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert dest and all(d["datasourceUid"] in uids for d in dest)
    prov = _load(CFG / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml")
    path = prov["providers"][0]["options"]["path"]
    grafana = _load(CFG / "compose.yaml")["services"]["grafana"]
    assert any(v.endswith(f":{path}:ro") for v in grafana["volumes"])
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
