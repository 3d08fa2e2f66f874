"""Collector side: otel_rtc's metric processor inside Rotel, and the Rotel launcher.

``otel_rtc/collector/processor.py`` is loaded by Rotel's embedded interpreter and imports
only the standard library, :mod:`otel_rtc.core` and :mod:`otel_rtc.collector.rotel_output`
(its ``rotel_sdk`` output); this package's ``__init__``, which runs first, only the
standard library. :class:`RotelCollector` starts a ``rotel-agent`` with that processor
(the ``collector`` extra installs Rotel; without it, ``find_rotel()`` raises
:class:`RotelNotInstalledError`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module of otel_rtc.collector that defines it
_EXPORTS: dict[str, str] = {
    "RotelCollector": "rotel",
    "RotelError": "rotel",
    "RotelNotInstalledError": "rotel",
    "find_rotel": "rotel",
}

__all__ = [
    "RotelCollector",
    "RotelError",
    "RotelNotInstalledError",
    "find_rotel",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from otel_rtc.collector.rotel import (
        RotelCollector,
        RotelError,
        RotelNotInstalledError,
        find_rotel,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_rtc.collector' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"otel_rtc.collector.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
