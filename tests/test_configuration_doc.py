"""docs/configuration.md lists every OTEL_RTC_* variable and every configure() argument."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from otel_rtc import configure

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "configuration.md").read_text()
VAR = re.compile(r"\bOTEL_RTC_[A-Z0-9_]*[A-Z0-9]\b")
# Where a variable can be read: the package, the collector launcher script, the test set-up.
SOURCES = [*(ROOT / "otel_rtc").rglob("*.py"), *(ROOT / "collector_config").glob("*.sh"),
           ROOT / "scripts" / "bootstrap.sh", ROOT / "test.sh", ROOT / "tests" / "conftest.py"]


def _vars_in_code() -> set[str]:
    found: set[str] = set()
    for path in SOURCES:
        found |= set(VAR.findall(path.read_text()))
    return found


def test_every_variable_in_the_code_is_documented():
    missing = sorted(_vars_in_code() - set(VAR.findall(DOC)))
    assert not missing, f"add to docs/configuration.md: {missing}"


def test_every_documented_variable_exists():
    stale = sorted(set(VAR.findall(DOC)) - _vars_in_code())
    assert not stale, f"docs/configuration.md lists variables nothing reads: {stale}"


def test_every_configure_argument_is_documented():
    args = inspect.signature(configure).parameters
    missing = [a for a in args if f"`{a}=`" not in DOC]
    assert not missing, f"add to docs/configuration.md: {missing}"
