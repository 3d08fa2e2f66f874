"""The SDK layer: ``configure()``, local aggregation, the export stage and processors.

``configure()`` itself is :func:`otel_rtc.configure` (here ``otel_rtc.sdk.configure`` is
its module).

This is the only layer that imports ``opentelemetry.sdk``. The names below load lazily.
Two need an extra: :class:`RtcInstrumentor` (``pip install 'otel-rtc[instrument]'``) and
:class:`RtcPrometheusMetricReader` (``pip install 'otel-rtc[prometheus]'``). Without it
the name still resolves (so ``from otel_rtc import *``, ``help()`` and ``hasattr`` work),
to a placeholder that raises an ``ImportError`` naming the extra when it is called.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any, NoReturn

# public name -> module of otel_rtc.sdk that defines it
_EXPORTS: dict[str, str] = {
    "Telemetry": "configure",
    "default_processors": "defaults",
    "MetricsProcessor": "export",
    "RtcEnvConfiguredMetricExporter": "export",
    "RtcWrappingMetricExporter": "export",
    "RtcInstrumentor": "instrumentor",
    "TrafficLoadProcessor": "processors",
    "WindowRateProcessor": "processors",
    "RtcPrometheusMetricReader": "prometheus",
    "CounterSampler": "sampler",
    "SampleColumns": "sampler",
    "register_sample_source": "sampler",
    "unregister_sample_source": "sampler",
}

# public name -> (extra, a module that the extra installs)
_EXTRAS: dict[str, tuple[str, str]] = {
    "RtcInstrumentor": ("instrument", "opentelemetry.instrumentation.instrumentor"),
    "RtcPrometheusMetricReader": ("prometheus", "opentelemetry.exporter.prometheus"),
}

__all__ = [
    "CounterSampler",
    "MetricsProcessor",
    "RtcEnvConfiguredMetricExporter",
    "RtcInstrumentor",
    "RtcPrometheusMetricReader",
    "RtcWrappingMetricExporter",
    "SampleColumns",
    "Telemetry",
    "TrafficLoadProcessor",
    "WindowRateProcessor",
    "default_processors",
    "register_sample_source",
    "unregister_sample_source",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from otel_rtc.sdk.configure import Telemetry
    from otel_rtc.sdk.defaults import default_processors
    from otel_rtc.sdk.export import (
        MetricsProcessor,
        RtcEnvConfiguredMetricExporter,
        RtcWrappingMetricExporter,
    )
    from otel_rtc.sdk.instrumentor import RtcInstrumentor
    from otel_rtc.sdk.processors import TrafficLoadProcessor, WindowRateProcessor
    from otel_rtc.sdk.prometheus import RtcPrometheusMetricReader
    from otel_rtc.sdk.sampler import (
        CounterSampler,
        SampleColumns,
        register_sample_source,
        unregister_sample_source,
    )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def _placeholder(name: str, extra: str) -> type:
    """A stand-in class for ``name`` whose construction raises the extra's ImportError."""
    message = f"otel_rtc.{name} needs the {extra!r} extra: pip install 'otel-rtc[{extra}]'"

    def __init__(self: object, *args: object, **kwargs: object) -> NoReturn:
        raise ImportError(message)

    return type(name, (), {"__init__": __init__, "__doc__": f"Not installed: {message}.",
                           "__module__": __name__, "missing_extra": extra})


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'otel_rtc.sdk' has no attribute {name!r}")
    extra = _EXTRAS.get(name)
    if extra is not None and not _installed(extra[1]):
        return _placeholder(name, extra[0])
    value = getattr(importlib.import_module(f"otel_rtc.sdk.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
