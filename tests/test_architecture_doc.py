"""docs/architecture.md's package tree is the real tree: every module, no invented one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "otel_rtc"


def _documented() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```\notel_rtc/\n(.*?)```", text, re.S)
    assert block, "the package tree block is missing"
    found, folder = set(), ""
    for line in block.group(1).splitlines():
        indent = len(line) - len(line.lstrip())
        head = line.split()[0] if line.strip() else ""
        if indent == 2 and head.endswith("/"):
            folder = head
            continue
        if indent == 2:
            folder = ""
        if indent in (2, 4) and head.endswith(".py"):
            found.add(folder + head)
    return found


def _modules() -> set[str]:
    return {p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py")
            if p.name != "__init__.py" or p.parent == PKG}


def test_every_module_is_in_the_tree():
    missing = sorted(_modules() - _documented())
    assert not missing, f"add to docs/architecture.md's tree: {missing}"


def test_the_tree_names_no_missing_module():
    invented = sorted(_documented() - _modules())
    assert not invented, f"docs/architecture.md names modules that do not exist: {invented}"
