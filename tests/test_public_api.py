"""The public surface: every exported name resolves."""

import pytest

import otel_rtc


@pytest.mark.parametrize("name", otel_rtc.__all__)
def test_every_public_name_resolves(name):
    assert getattr(otel_rtc, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        otel_rtc.no_such_thing  # noqa: B018


def test_py_typed_is_shipped():
    from importlib.resources import files

    assert files("otel_rtc").joinpath("py.typed").is_file()
