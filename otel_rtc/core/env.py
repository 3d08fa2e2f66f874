"""The one reader of ``OTEL_RTC_*`` (and other) environment variables.

Pure core: stdlib only, so the collector processor reads its settings the same way as the
SDK. Every variable is read through :func:`env_value` (or its boolean and string
shorthands), so every module accepts the same spellings and reacts the same way to a bad
value: it logs one warning naming the variable and the value, and falls back to the
default. Reading the environment never raises.

Booleans accept ``1/0``, ``true/false``, ``yes/no`` and ``on/off`` in any case, with
surrounding whitespace ignored. An unset or blank variable means "use the default".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import TypeVar

__all__ = ["FALSE_VALUES", "TRUE_VALUES", "env_bool", "env_str", "env_value", "parse_bool"]

_logger = logging.getLogger("otel_rtc")

T = TypeVar("T")

TRUE_VALUES = frozenset({"1", "true", "yes", "on"})
FALSE_VALUES = frozenset({"0", "false", "no", "off"})


def parse_bool(raw: str) -> bool:
    """Parse a boolean setting (see the module docstring for the accepted spellings).

    Raises:
        ValueError: ``raw`` is not one of the accepted spellings.
    """
    v = raw.strip().lower()
    if v in TRUE_VALUES:
        return True
    if v in FALSE_VALUES:
        return False
    raise ValueError(f"not a boolean (expected one of true/false, 1/0, yes/no, on/off): {raw!r}")


def env_str(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The stripped value of ``name``; ``None`` when it is unset or blank."""
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or raw.strip() == "":
        return None
    return raw.strip()


def env_value(name: str, parse: Callable[[str], T], default: T,
              environ: Mapping[str, str] | None = None) -> T:
    """``parse(value of name)``, or ``default`` when unset, blank or invalid.

    Args:
        name: The variable's name.
        parse: Turns the stripped value into the setting; raises ``ValueError`` (or
            ``TypeError``) when the value is invalid.
        default: Returned when the variable is unset or blank, and (with a warning) when
            ``parse`` rejects the value.
        environ: Mapping to read (default ``os.environ``).
    """
    raw = env_str(name, environ)
    if raw is None:
        return default
    try:
        return parse(raw)
    except (ValueError, TypeError) as exc:
        _logger.warning("otel_rtc: ignoring %s=%r (%s); using %r", name, raw, exc, default)
        return default


def env_bool(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    """A boolean variable (:func:`parse_bool`); ``default`` when unset, blank or invalid."""
    return env_value(name, parse_bool, default, environ)
