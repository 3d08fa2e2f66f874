"""One env-var parser: every OTEL_RTC_* boolean accepts the same spellings."""

from __future__ import annotations

import logging

import pytest

from otel_rtc.core.env import env_bool, env_str, env_value, parse_bool
from otel_rtc.core.processor_settings import settings_from_env
from otel_rtc.core.switch import BurstSwitches

TRUE_SPELLINGS = ["1", "true", "TRUE", " yes ", "On"]
FALSE_SPELLINGS = ["0", "false", "False", " no", "OFF"]


@pytest.mark.parametrize("raw", TRUE_SPELLINGS)
def test_true_spellings(raw: str) -> None:
    assert parse_bool(raw) is True
    assert env_bool("X", False, {"X": raw}) is True


@pytest.mark.parametrize("raw", FALSE_SPELLINGS)
def test_false_spellings(raw: str) -> None:
    assert parse_bool(raw) is False
    assert env_bool("X", True, {"X": raw}) is False


@pytest.mark.parametrize("raw", ["maybe", "2", "tru", "yes please"])
def test_bad_boolean_warns_and_falls_back(raw: str, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError):
        parse_bool(raw)
    with caplog.at_level(logging.WARNING, logger="otel_rtc"):
        assert env_bool("OTEL_RTC_X", True, {"OTEL_RTC_X": raw}) is True
    assert "OTEL_RTC_X" in caplog.text and repr(raw) in caplog.text


def test_unset_and_blank_mean_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="otel_rtc"):
        assert env_bool("X", True, {}) is True
        assert env_bool("X", False, {"X": "   "}) is False
        assert env_str("X", {"X": " "}) is None
        assert env_value("X", int, 7, {"X": ""}) == 7
    assert caplog.text == ""


def test_env_value_parses_and_strips() -> None:
    assert env_str("X", {"X": "  a b "}) == "a b"
    assert env_value("X", int, 7, {"X": " 12 "}) == 12
    assert env_value("X", int, 7, {"X": "twelve"}) == 7


def test_every_reader_accepts_the_same_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The processor settings, the burst switches and auto-configure agree on each value."""
    from otel_rtc.sdk.instrumentor import ENV_AUTO_CONFIGURE, _auto_configure_enabled

    for raw, want in [*((r, True) for r in TRUE_SPELLINGS), *((r, False) for r in FALSE_SPELLINGS)]:
        st = settings_from_env({"OTEL_RTC_RATES": raw, "OTEL_RTC_LOAD": raw})
        assert (st.rates_enabled, st.load_enabled) == (want, want), raw
        sw = BurstSwitches(environ={"OTEL_RTC_BURSTS_ENABLED": raw})
        sw.poll()
        assert sw.enabled is want, raw
        monkeypatch.setenv(ENV_AUTO_CONFIGURE, raw)
        assert _auto_configure_enabled() is want, raw
