"""The public surface: a small top level, subpackages for the rest, and no extra needed.

``from otel_rtc import *``, ``help(otel_rtc)`` and ``hasattr`` must work on a plain
install (no extras); a name that needs an extra raises an ``ImportError`` naming it only
when used. ``.ci/run`` also checks this on a real plain install in a fresh venv.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import otel_rtc

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["otel_rtc", "otel_rtc.core", "otel_rtc.instrumentation", "otel_rtc.sdk",
            "otel_rtc.collector", "otel_rtc.testing", "otel_rtc.report"]
# The import-time modules of the extras (collector, prometheus, instrument, report).
EXTRA_MODULES = ("rotel", "prometheus_client", "opentelemetry.exporter.prometheus",
                 "opentelemetry.instrumentation", "opentelemetry.distro", "plotly")
REMOVED = [  # plumbing and duplicate ways that left the top level (CHANGELOG: Removed)
    "AttrSet", "intern_attrs", "CounterSpec", "HistogramSpec", "LocalAggregationRegistry",
    "bind_registry", "default_registry", "last_enqueue_ns", "drop_count", "error_count",
    "get_burst_monitor", "get_switches", "set_burst_enabled", "set_burst_log_stats",
    "set_burst_log_data", "set_config_file", "RtcMetricExporter", "RtcOTLPMetricExporter",
    "SeriesRates", "unregister_sample_source",
]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves(package):
    mod = importlib.import_module(package)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{package}.{name}"
    assert sorted(mod.__all__) == list(mod.__all__)
    exports = getattr(mod, "_EXPORTS", None)
    if exports is not None:  # the lazy table and __all__ list the same names
        assert set(mod.__all__) - {"__version__"} == set(exports)


def test_no_public_name_is_shadowed_by_a_submodule():
    # Importing a submodule sets it as an attribute of its package: a public name equal
    # to a submodule's name (e.g. otel_rtc.sdk.configure) would silently become a module.
    import pkgutil
    import types

    for info in pkgutil.walk_packages(otel_rtc.__path__, "otel_rtc."):
        try:
            importlib.import_module(info.name)
        except ImportError:
            pass  # a module whose extra is missing
    for package in PACKAGES:
        mod = importlib.import_module(package)
        for name in mod.__all__:
            assert not isinstance(getattr(mod, name), types.ModuleType), f"{package}.{name}"


def test_the_top_level_is_small_and_plumbing_free():
    assert len(otel_rtc.__all__) <= 25
    for name in REMOVED:
        assert name not in otel_rtc.__all__
        assert not hasattr(otel_rtc, name), name


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        otel_rtc.no_such_thing  # noqa: B018


def test_py_typed_is_shipped():
    from importlib.resources import files

    assert files("otel_rtc").joinpath("py.typed").is_file()


_WITHOUT_EXTRAS = f"""
import importlib.abc, sys

class NoExtras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == m or name.startswith(m + ".") for m in {EXTRA_MODULES!r}):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NoExtras())
import pydoc
import otel_rtc
from otel_rtc import *
for pkg in {PACKAGES!r}:
    mod = importlib.import_module(pkg)
    assert all(hasattr(mod, n) for n in mod.__all__), pkg
    pydoc.render_doc(mod)
text = pydoc.render_doc(otel_rtc)
for name, extra in (("RtcInstrumentor", "instrument"), ("RtcPrometheusMetricReader", "prometheus")):
    assert extra in pydoc.render_doc(getattr(otel_rtc, name)), name
    try:
        getattr(otel_rtc, name)()
    except ImportError as exc:
        assert f"otel-rtc[{{extra}}]" in str(exc), exc
    else:
        raise AssertionError(name + " worked without its extra")
print("ok", len(otel_rtc.__all__))
"""


def test_plain_install_without_extras():
    r = subprocess.run([sys.executable, "-c", _WITHOUT_EXTRAS], capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stdout + r.stderr


def test_with_extras_the_real_classes_load():
    from otel_rtc.sdk.instrumentor import RtcInstrumentor
    from otel_rtc.sdk.prometheus import RtcPrometheusMetricReader

    assert otel_rtc.RtcInstrumentor is RtcInstrumentor
    assert otel_rtc.RtcPrometheusMetricReader is RtcPrometheusMetricReader


def _otel_rtc_imports(path: Path) -> list[tuple[str, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("otel_rtc"):
            out.extend((node.module, a.name) for a in node.names)
        elif isinstance(node, ast.Import):
            out.extend((a.name, "") for a in node.names if a.name.startswith("otel_rtc"))
    return out


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_examples_use_public_names_only(path):
    bad = []
    for module, name in _otel_rtc_imports(path):
        if module not in PACKAGES:
            bad.append(f"{module} (not a public package)")
        elif name and name not in importlib.import_module(module).__all__:
            bad.append(f"{module}.{name}")
    assert not bad, f"{path.name} imports non-public names: {bad}"
