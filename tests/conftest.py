"""Shared fixtures: a loopback OTLP receiver and a factory of real Rotel collectors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from otel_rtc._rotel import RotelCollector, find_rotel
from tests._otlp_receiver import OtlpReceiver

ROTEL_BINARY = find_rotel()
requires_rotel = pytest.mark.skipif(ROTEL_BINARY is None, reason="rotel-agent not installed")


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A fresh OTLP/HTTP receiver on 127.0.0.1 (``.endpoint``, ``.wait_for(...)``)."""
    recv = OtlpReceiver()
    try:
        yield recv
    finally:
        recv.close()


@pytest.fixture
def rotel_collector() -> Iterator[Callable[..., RotelCollector]]:
    """Factory: ``rotel_collector(exporter_endpoint=..., metrics_processor=..., ...)``.

    Starts a real ``rotel-agent`` (keyword arguments as for
    :class:`otel_rtc._rotel.RotelCollector`), waits until it is ready and stops it at
    teardown. Skips the test when the binary is not installed.
    """
    if ROTEL_BINARY is None:
        pytest.skip("rotel-agent not installed")
    started: list[RotelCollector] = []

    def make(**kwargs: Any) -> RotelCollector:
        col = RotelCollector(**kwargs)
        started.append(col)
        return col.start()

    try:
        yield make
    finally:
        for col in started:
            col.stop()
