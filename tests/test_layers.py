"""The layer rules of ``docs/architecture.md``, checked on every module of the package.

The tree is the architecture: ``otel_rtc.core`` (stdlib only), ``otel_rtc.instrumentation``
(OpenTelemetry API and wrapt), ``otel_rtc.sdk`` (the SDK side), ``otel_rtc.collector``
(inside and around the collector). Module-level imports are read from the source (an
import inside a function runs only when called, so it is not an import-time dependency);
a second check imports each core and instrumentation module in a fresh interpreter and
looks at ``sys.modules``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "otel_rtc"
STDLIB = sys.stdlib_module_names


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in {
        "core", "instrumentation", "sdk", "collector"} else "top"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not MODULES[module].name == "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _top_level_imports(module: str) -> list[tuple[str, list[str]]]:
    """``(imported module, names)`` for every import that runs when ``module`` is imported."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    found: list[tuple[str, list[str]]] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.extend((a.name, []) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                found.append((_resolve(module, node), [a.name for a in node.names]))
            elif isinstance(node, ast.If):
                test = node.test
                if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                    continue  # never runs
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    return found


def _in(mod: str, *prefixes: str) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


def _stdlib(mod: str) -> bool:
    return mod.split(".")[0] in STDLIB or mod == "__future__"


def _modules_of(layer: str) -> list[str]:
    return [m for m in MODULES if _layer(m) == layer]


@pytest.mark.parametrize("module", _modules_of("core"))
def test_core_imports_only_stdlib_and_core(module):
    bad = [m for m, _ in _top_level_imports(module)
           if not (_stdlib(m) or _in(m, "otel_rtc.core") or m in {"otel_rtc", "otel_rtc.version"})]
    assert not bad, f"{module} imports {bad}: the core must stay stdlib-only"


@pytest.mark.parametrize("module", _modules_of("instrumentation"))
def test_instrumentation_imports_no_sdk(module):
    # Like the contrib instrumentations: the OpenTelemetry API (and wrapt) only. The
    # SDK-side buffering is reached through otel_rtc.instrumentation.recording, whose
    # backend the SDK layer installs at run time.
    bad = [m for m, _ in _top_level_imports(module)
           if _in(m, "opentelemetry.sdk", "otel_rtc.sdk", "otel_rtc.collector", "otel_rtc.cli",
                  "otel_rtc.testing")]
    assert not bad, f"{module} imports {bad} at import time: instrumentation is API-only"


@pytest.mark.parametrize("module", _modules_of("instrumentation"))
def test_importing_instrumentation_loads_no_sdk(module):
    code = (
        f"import sys; import {module}; "
        "bad = sorted(m for m in sys.modules"
        " if m == 'opentelemetry.sdk' or m.startswith(('opentelemetry.sdk.', 'otel_rtc.sdk')));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


ROTEL_LOADS = ("otel_rtc.collector.processor", "otel_rtc.collector.rotel_output")
"""The collector processor and the module it builds its output with."""


# Importing a module of otel_rtc.collector runs the package's __init__ first.
@pytest.mark.parametrize("module", ["otel_rtc.collector", *ROTEL_LOADS])
def test_collector_processor_imports_only_what_rotel_can_load(module):
    # Rotel's embedded interpreter has the stdlib, rotel_sdk and the otel_rtc package
    # on sys.path, but none of the pip dependencies (no opentelemetry, no wrapt).
    bad = [m for m, _ in _top_level_imports(module)
           if not (_stdlib(m) or _in(m, "otel_rtc.core", "rotel_sdk")
                   or m in {"otel_rtc", *ROTEL_LOADS})]
    assert not bad, f"{module} imports {bad}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_crosses_layers(module):
    here = _layer(module)
    bad = []
    for imported, names in _top_level_imports(module):
        if not _in(imported, "otel_rtc") or _layer(imported) == here:
            continue
        if any(part.startswith("_") and part != "__init__" for part in imported.split(".")):
            bad.append(imported)
        bad.extend(f"{imported}.{n}" for n in names if n.startswith("_") and n != "__version__")
    assert not bad, f"{module} ({here}) reaches private names of another layer: {bad}"


@pytest.mark.parametrize("module", [*_modules_of("core"), *ROTEL_LOADS])
def test_importing_core_loads_no_third_party_package(module):
    code = (
        f"import sys; import {module}; "
        "bad = sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('opentelemetry', 'google', 'wrapt', 'rotel_sdk'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_rules_see_a_violation(tmp_path, monkeypatch):
    # The walker must notice a third-party import in the core, or every test above
    # would pass vacuously.
    fake = PKG / "core" / "clock.py"
    monkeypatch.setitem(MODULES, "otel_rtc.core._probe", tmp_path / "probe.py")
    (tmp_path / "probe.py").write_text(
        "import json\ntry:\n    import opentelemetry.sdk\nexcept ImportError:\n    pass\n")
    imports = [m for m, _ in _top_level_imports("otel_rtc.core._probe")]
    assert imports == ["json", "opentelemetry.sdk"]
    assert fake.exists()
