"""Metric names, attribute keys and sentinels are spelled once, in otel_rtc.core.names."""

from __future__ import annotations

import ast
from pathlib import Path

from otel_rtc.core import names

PKG = Path(__file__).resolve().parent.parent / "otel_rtc"
VALUES = {v: k for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}
# Rotel loads the collector processor by path and it must name its two self-telemetry
# metrics (and their attributes) even when importing the otel_rtc package fails there.
SPELLS_ITS_OWN = {"collector/processor.py"}


def _modules() -> list[Path]:
    return [p for p in sorted(PKG.rglob("*.py")) if p.name != "names.py"]


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in VALUES]


def test_no_module_repeats_a_name_as_a_literal():
    found = [f"{p.relative_to(PKG)}:{line}: {value!r} is names.{VALUES[value]}"
             for p in _modules() if p.relative_to(PKG).as_posix() not in SPELLS_ITS_OWN
             for line, value in _literals(p)]
    assert not found, "\n".join(found)


def test_every_name_is_used():
    text = "\n".join(p.read_text() for p in _modules())
    unused = [k for k in VALUES.values() if f"names.{k}" not in text and f" {k}" not in text]
    assert not unused, f"names.py defines names nothing uses: {unused}"


def test_the_rules_see_a_repeated_literal(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('ROOM = "otel_rtc.room"\n"""otel_rtc.room in a docstring-like string"""\n')
    assert _literals(probe) == [(1, "otel_rtc.room")]


def test_no_private_name_is_imported_from_another_module():
    bad = []
    for p in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("otel_rtc"):
                bad += [f"{p.relative_to(PKG)}: {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and a.name != "__version__"]
    assert not bad, bad
