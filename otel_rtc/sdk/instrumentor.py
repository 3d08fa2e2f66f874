"""Auto-instrumentation: ``opentelemetry-instrument python app.py`` enables otel_rtc.

:class:`RtcInstrumentor` is registered under the ``opentelemetry_instrumentor`` entry
point as ``otel_rtc``. When ``opentelemetry-instrument`` runs it (after the SDK
configurator, e.g. ``opentelemetry-distro``, has installed the global providers), it:

1. binds otel_rtc's local aggregation to the global meter provider when that provider
   exports through otel_rtc's stage (``OTEL_METRICS_EXPORTER=otel_rtc``), so
   instrumentations record with one ``deque.append`` per message;
2. registers otel_rtc's self-telemetry (internal errors, drops, clamps) on it;
3. applies the env-var switches (``OTEL_RTC_BURSTS_ENABLED``,
   ``OTEL_RTC_BURSTS_LOG_STATS``, ``OTEL_RTC_BURSTS_LOG_DATA``) and, with
   ``OTEL_RTC_CONFIG_FILE``, starts the config-file watcher.

When no configurator set up the SDK (no ``opentelemetry-distro`` installed), it calls
:func:`otel_rtc.configure` itself, so the command still produces telemetry: OTLP when an
endpoint is configured, else the OTLP JSON files in ``./telemetry-out``. Set
``OTEL_RTC_AUTO_CONFIGURE=false`` to prevent that.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from otel_rtc.core import switch as _switch
from otel_rtc.core.env import env_bool
from otel_rtc.instrumentation.self_telemetry import register_self_metrics, report_error
from otel_rtc.sdk import recording_backend
from otel_rtc.sdk.aggregation import LocalAggregationRegistry
from otel_rtc.version import __version__

__all__ = ["ENV_AUTO_CONFIGURE", "RtcInstrumentor"]

_logger = logging.getLogger("otel_rtc")

ENV_AUTO_CONFIGURE = "OTEL_RTC_AUTO_CONFIGURE"
_WATCH_INTERVAL_S = 2.0


def _auto_configure_enabled() -> bool:
    return env_bool(ENV_AUTO_CONFIGURE, True)


def rtc_registry_of(meter_provider: Any) -> LocalAggregationRegistry | None:
    """The registry of the otel_rtc export stage among ``meter_provider``'s readers.

    ``None`` when the provider does not export through
    :class:`~otel_rtc.sdk.export.RtcWrappingMetricExporter` (or is not an SDK provider).
    """
    from otel_rtc.sdk.export import RtcWrappingMetricExporter

    readers = getattr(meter_provider, "_metric_readers", None)
    if readers is None:
        readers = getattr(getattr(meter_provider, "_sdk_config", None), "metric_readers", ())
    for reader in readers or ():
        exporter = getattr(reader, "_exporter", None)
        if isinstance(exporter, RtcWrappingMetricExporter):
            return exporter.registry
    return None


class RtcInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Enables otel_rtc's defaults under the globally configured providers.

    ``instrument()`` keyword arguments (all optional):

    * ``meter_provider``: bind to this provider instead of the global one;
    * ``configure``: ``False`` never calls :func:`otel_rtc.configure` (default: only
      when no SDK provider is installed and ``OTEL_RTC_AUTO_CONFIGURE`` allows it).

    Burst tracking follows ``OTEL_RTC_BURSTS_ENABLED`` (and ``OTEL_RTC_CONFIG_FILE``),
    read at ``instrument()`` time; at run time use :func:`otel_rtc.burst_switches`.

    Nothing here raises into the application: failures are counted in
    ``otel_rtc.internal.errors``.
    """

    _telemetry: Any = None
    _bound: weakref.ref[Any] | None = None
    _started_watcher = False

    def instrumentation_dependencies(self) -> Collection[str]:
        """None: otel_rtc instruments the application's own code."""
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        try:
            self._do_instrument(**kwargs)
        except Exception as exc:
            report_error("instrumentor", exc)

    def _do_instrument(self, **kwargs: Any) -> None:
        from opentelemetry import metrics

        from otel_rtc.sdk.configure import configure
        from otel_rtc.sdk.providers import sdk_providers_installed

        self._telemetry = None
        self._bound = None
        self._started_watcher = False

        mp = kwargs.get("meter_provider")
        want_configure = kwargs.get("configure")
        if want_configure is None:
            want_configure = _auto_configure_enabled()
        if want_configure and mp is None and not sdk_providers_installed():
            # No configurator installed the SDK: set it up ourselves.
            self._telemetry = configure()
            _logger.info("otel_rtc: no SDK configured by opentelemetry-instrument; "
                         "configure() set it up (mode %s)", self._telemetry.mode)
        if mp is None:
            mp = metrics.get_meter_provider()

        registry = rtc_registry_of(mp)
        if registry is not None:
            recording_backend.bind_registry(mp, registry)
            self._bound = weakref.ref(mp)
        get_meter = getattr(mp, "get_meter", None)
        if get_meter is not None:
            register_self_metrics(get_meter("otel_rtc", __version__))

        switches = _switch.burst_switches()
        switches.poll()  # the env-var switches
        if switches.config_file and not switches.watching:
            switches.start_watcher(_WATCH_INTERVAL_S)
            self._started_watcher = True

    def _uninstrument(self, **kwargs: Any) -> None:
        try:
            switches = _switch.burst_switches()
            if self._started_watcher:
                switches.stop_watcher()
                self._started_watcher = False
            mp = self._bound() if self._bound is not None else None
            self._bound = None
            if mp is not None:  # instrumentations go back to the SDK's record()
                recording_backend.unbind_registry(mp)
            if self._telemetry is not None:
                telemetry, self._telemetry = self._telemetry, None
                telemetry.shutdown()
        except Exception as exc:
            report_error("instrumentor", exc)
