"""Burst switches: API, env vars and a watched LiveConfig-style file, at run time."""

import json
import logging
import os
import threading

import pytest

from otel_rtc.core import switch as _switch
from otel_rtc.core.switch import (
    ENV_CONFIG_FILE,
    ENV_ENABLED,
    ENV_LOG_DATA,
    ENV_LOG_STATS,
    BurstSwitches,
    parse_config,
)


def write(path, doc, mtime_ns=None):
    """Write a config file and give it a distinct mtime (coarse filesystem clocks)."""
    text = doc if isinstance(doc, str) else json.dumps(doc)
    path.write_text(text)
    write.n += 1
    t = mtime_ns or (1_600_000_000 + write.n) * 1_000_000_000
    os.utime(path, ns=(t, t))


write.n = 0


def test_defaults():
    sw = BurstSwitches(environ={})
    assert sw.snapshot() == {"enabled": False, "log_stats": True, "log_data": False}
    assert sw.config_file is None


def test_api_set_and_validation():
    sw = BurstSwitches(environ={})
    seen = []
    sw.add_listener(lambda s: seen.append(s.snapshot()))
    sw.set(enabled=True)
    sw.set(log_data=True, log_stats=False)
    assert sw.snapshot() == {"enabled": True, "log_stats": False, "log_data": True}
    sw.set(enabled=True)  # no change: no notification
    assert len(seen) == 2
    with pytest.raises(ValueError):
        sw.set(enabled=1)


def test_env_read_at_start_and_changes_picked_up_at_poll():
    env = {ENV_ENABLED: "true", ENV_LOG_STATS: "0"}
    sw = BurstSwitches(environ=env)
    assert sw.enabled is True and sw.log_stats is False
    env[ENV_ENABLED] = "off"
    env[ENV_LOG_DATA] = "YES"
    assert sw.poll() is True
    assert sw.snapshot() == {"enabled": False, "log_stats": False, "log_data": True}
    del env[ENV_LOG_STATS]  # unset: back to the default
    sw.poll()
    assert sw.log_stats is True


def test_latest_change_wins_between_api_and_env():
    env = {ENV_ENABLED: "1"}
    sw = BurstSwitches(environ=env)
    sw.set(enabled=False)
    assert sw.poll() is False  # the env var did not change: the API value stays
    assert sw.enabled is False
    env[ENV_ENABLED] = "yes"  # a change of the env var applies
    sw.poll()
    assert sw.enabled is True


def test_bad_env_value_warns_and_uses_default(caplog):
    reasons = []
    env = {ENV_ENABLED: "1"}
    sw = BurstSwitches(environ=env, on_invalid=reasons.append)
    assert sw.enabled is True
    env[ENV_ENABLED] = "maybe"
    with caplog.at_level(logging.WARNING, logger="otel_rtc"):
        sw.poll()
    assert sw.enabled is False
    assert reasons == ["invalid_env"] and sw.invalid_count == 1
    assert "OTEL_RTC_BURSTS_ENABLED" in caplog.text
    sw.poll()  # the same bad value is reported once
    assert sw.invalid_count == 1


def test_parse_config_liveconfig_shape():
    doc = {
        "bursts": {"enabled": True},
        "log-messages": {
            "logMessageBurstStats": {"use-syslog": 0},
            "logMessageBurstData": {"use-syslog": 1},
        },
        "unrelated": {"x": 1},
    }
    assert parse_config(json.dumps(doc)) == {"enabled": True, "log_stats": False,
                                             "log_data": True}
    assert parse_config("{}") == {"enabled": None, "log_stats": None, "log_data": None}
    for bad in ("[1]", "{", '{"bursts": 3}', '{"bursts": {"enabled": "perhaps"}}',
                '{"log-messages": {"logMessageBurstStats": {"use-syslog": [0]}}}'):
        with pytest.raises(ValueError):
            parse_config(bad)


def test_config_file_change_is_picked_up_at_run_time(tmp_path):
    cfg = tmp_path / "live.json"
    write(cfg, {"bursts": {"enabled": True}})
    sw = BurstSwitches(environ={}, config_file=cfg)
    assert sw.enabled is True
    assert sw.poll() is False  # unchanged file: not re-read
    write(cfg, {"bursts": {"enabled": True},
                "log-messages": {"logMessageBurstStats": {"use-syslog": 0}}})
    assert sw.poll() is True
    assert sw.log_stats is False and sw.enabled is True
    # A key removed from the file reverts to its default.
    write(cfg, {"log-messages": {"logMessageBurstStats": {"use-syslog": 0}}})
    sw.poll()
    assert sw.enabled is False and sw.log_stats is False


def test_bad_config_file_keeps_last_good_values(tmp_path, caplog):
    cfg = tmp_path / "live.json"
    write(cfg, {"bursts": {"enabled": True}})
    reasons = []
    sw = BurstSwitches(environ={}, config_file=cfg, on_invalid=reasons.append)
    write(cfg, '{"bursts": {"enabled": tru')
    with caplog.at_level(logging.WARNING, logger="otel_rtc"):
        sw.poll()
        sw.poll()  # reported once per change of the file
    assert sw.enabled is True
    assert reasons == ["invalid_config"] and sw.invalid_count == 1
    assert "invalid" in caplog.text
    write(cfg, {"bursts": {"enabled": False}})  # fixed: applied
    sw.poll()
    assert sw.enabled is False


def test_missing_config_file_is_reported_once_and_picked_up_later(tmp_path):
    cfg = tmp_path / "later.json"
    reasons = []
    sw = BurstSwitches(environ={}, config_file=cfg, on_invalid=reasons.append)
    sw.poll()
    assert reasons == ["missing_config"] and sw.enabled is False
    write(cfg, {"bursts": {"enabled": True}})
    sw.poll()
    assert sw.enabled is True


def test_config_file_path_from_env_and_api(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write(a, {"log-messages": {"logMessageBurstData": {"use-syslog": 1}}})
    write(b, {"bursts": {"enabled": True}})
    env = {ENV_CONFIG_FILE: str(a)}
    sw = BurstSwitches(environ=env)
    assert sw.config_file == str(a) and sw.log_data is True
    sw.set_config_file(b)
    assert sw.config_file == str(b) and sw.enabled is True
    env[ENV_CONFIG_FILE] = str(a)  # the API choice is not overridden by the env
    sw.poll()
    assert sw.config_file == str(b)


def test_watcher_thread_picks_up_a_change_and_stops(tmp_path):
    cfg = tmp_path / "live.json"
    write(cfg, {"bursts": {"enabled": False}})
    sw = BurstSwitches(environ={}, config_file=cfg)
    changed = threading.Event()
    sw.add_listener(lambda s: changed.set())
    sw.start_watcher(interval_s=0.02)
    try:
        assert sw.watching
        sw.start_watcher(interval_s=0.02)  # idempotent
        write(cfg, {"bursts": {"enabled": True}})
        assert changed.wait(10), "watcher did not pick up the change"
        assert sw.enabled is True
    finally:
        sw.stop_watcher()
    assert not sw.watching
    with pytest.raises(ValueError):
        sw.start_watcher(interval_s=0)


def test_listener_errors_are_contained(caplog):
    sw = BurstSwitches(environ={})

    def bad(_s):
        raise RuntimeError("listener bug")

    sw.add_listener(bad)
    with caplog.at_level(logging.WARNING, logger="otel_rtc"):
        sw.set(enabled=True)
    assert sw.enabled is True and "listener" in caplog.text
    sw.remove_listener(bad)
    sw.remove_listener(bad)  # absent: no error


def test_one_process_wide_switch_object(monkeypatch):
    monkeypatch.setattr(_switch, "_default", None)
    monkeypatch.delenv(ENV_ENABLED, raising=False)
    monkeypatch.delenv(ENV_CONFIG_FILE, raising=False)
    sw = _switch.burst_switches()
    assert _switch.burst_switches() is sw and sw.enabled is False
    sw.set(enabled=True, log_stats=False, log_data=True)
    assert sw.snapshot() == {"enabled": True, "log_stats": False, "log_data": True}
    monkeypatch.setenv(ENV_ENABLED, "0")  # os.environ changed at run time by the app
    sw.poll()
    assert sw.enabled is False
    sw.set_config_file(None)
    assert sw.config_file is None
