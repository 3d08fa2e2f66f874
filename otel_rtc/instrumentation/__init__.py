"""Instrumentation: message handlers, buffers, pub/sub, sessions, bursts and traffic.

Depends on the OpenTelemetry API and ``wrapt`` only at import time, like the contrib
instrumentations: with no SDK configured every instrument is a no-op. The names below
load lazily.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module of otel_rtc.instrumentation that defines it
_EXPORTS: dict[str, str] = {
    "BoundedBuffer": "buffers",
    "InstrumentedAsyncQueue": "buffers",
    "InstrumentedQueue": "buffers",
    "BurstMonitor": "bursts",
    "MessageHandler": "handler",
    "MessageScope": "handler",
    "PubSubTelemetry": "pubsub",
    "Publication": "pubsub_attempts",
    "Session": "sessions",
    "SessionEvent": "sessions",
    "SessionRegistry": "sessions",
    "Subscription": "pubsub_attempts",
    "TrafficAccounting": "traffic",
}

__all__ = [
    "BoundedBuffer",
    "BurstMonitor",
    "InstrumentedAsyncQueue",
    "InstrumentedQueue",
    "MessageHandler",
    "MessageScope",
    "PubSubTelemetry",
    "Publication",
    "Session",
    "SessionEvent",
    "SessionRegistry",
    "Subscription",
    "TrafficAccounting",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from otel_rtc.instrumentation.buffers import (
        BoundedBuffer,
        InstrumentedAsyncQueue,
        InstrumentedQueue,
    )
    from otel_rtc.instrumentation.bursts import BurstMonitor
    from otel_rtc.instrumentation.handler import MessageHandler, MessageScope
    from otel_rtc.instrumentation.pubsub import PubSubTelemetry
    from otel_rtc.instrumentation.pubsub_attempts import Publication, Subscription
    from otel_rtc.instrumentation.sessions import Session, SessionEvent, SessionRegistry
    from otel_rtc.instrumentation.traffic import TrafficAccounting


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_rtc.instrumentation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"otel_rtc.instrumentation.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
