"""The public surface: every exported name resolves, and the pure core stays SDK-free."""

import subprocess
import sys

import pytest

import otel_rtc

PURE_CORE = ["otel_rtc._clock", "otel_rtc._burst", "otel_rtc._rates", "otel_rtc._traffic_load",
             "otel_rtc._session_core", "otel_rtc._switch"]


@pytest.mark.parametrize("name", otel_rtc.__all__)
def test_every_public_name_resolves(name):
    assert getattr(otel_rtc, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        otel_rtc.no_such_thing  # noqa: B018


@pytest.mark.parametrize("module", PURE_CORE)
def test_pure_core_imports_no_opentelemetry(module):
    code = (
        f"import sys; import {module}; "
        "bad = sorted(m for m in sys.modules"
        " if m.startswith(('opentelemetry', 'google.protobuf')));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_py_typed_is_shipped():
    from importlib.resources import files

    assert files("otel_rtc").joinpath("py.typed").is_file()
