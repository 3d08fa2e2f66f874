"""``configure()``: one call that sets up tracing, metrics and logs for otel_rtc.

Where telemetry goes:

* **OTLP** (``mode="otlp"``) when an endpoint is configured: the ``endpoint`` argument,
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` or any per-signal
  ``OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT``. HTTP/protobuf by default,
  gRPC with ``protocol="grpc"`` / ``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``. A signal without
  an endpoint of its own uses the OTLP default (``http://localhost:4318``), as the
  specification says.
* **Files** (``mode="file"``) otherwise: the OTel project's OTLP JSON file exporters write
  newline-delimited OTLP JSON, one file per signal (``traces.jsonl``, ``metrics.jsonl``,
  ``logs.jsonl``) in ``output_dir`` (default ``./telemetry-out``, env
  ``OTEL_RTC_OUTPUT_DIR``). A collector's ``otlpjsonfile`` receiver ingests them as is.
* **Nowhere** (``mode="disabled"``) with ``OTEL_SDK_DISABLED=true``: no-op providers.

Metrics always pass through :class:`~otel_rtc.sdk.export.RtcWrappingMetricExporter`, so the
hot-path aggregates of otel_rtc's instrumentations and the default metric processors
are part of every export. An absent collector never blocks the application: spans and
logs are queued in bounded batch processors and exported from background threads with
short timeouts, and :meth:`Telemetry.shutdown` returns within a bounded time.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_rtc.core.env import env_value
from otel_rtc.instrumentation.self_telemetry import (
    drop_count,
    register_self_metrics,
    report_error,
)
from otel_rtc.sdk import providers
from otel_rtc.sdk.aggregation import LocalAggregationRegistry
from otel_rtc.sdk.batching import (
    DEFAULT_SHUTDOWN_TIMEOUT_S,
    RtcBatchLogRecordProcessor,
    RtcBatchSpanProcessor,
)
from otel_rtc.sdk.deadlines import deadlines, ms_left, run_until
from otel_rtc.sdk.export import MetricsProcessor
from otel_rtc.sdk.exporters import (
    DEFAULT_EXPORT_TIMEOUT_S,
    PROTOCOLS,
    choose_exporters,
    env_interval_s,
)
from otel_rtc.sdk.log_bridge import bridge_logger
from otel_rtc.sdk.recording_backend import default_registry
from otel_rtc.version import __version__

__all__ = ["BURST_LOGGER", "EXIT_TIMEOUT_S", "Telemetry", "configure"]

_logger = logging.getLogger("otel_rtc")

BURST_LOGGER = "otel_rtc.bursts"
"""The stdlib logger of the ``logMessageBurstStats`` / ``logMessageBurstData`` lines;
``configure()`` forwards it to its logger provider (``logs.jsonl`` in file mode)."""

_EXPORT_COMPONENTS = ("export.traces", "export.logs", "export.metrics")
EXIT_TIMEOUT_S = 0.7
"""The deadline of the exit hook's shutdown: the interpreter's own teardown after it
takes 0.05-0.3 s on a loaded machine, and the whole exit should stay within 1 s."""


def _spec_bool(raw: str) -> bool:
    # The OpenTelemetry specification's own booleans (OTEL_SDK_DISABLED) are only
    # true/false; OTEL_RTC_* booleans use otel_rtc.core.env.parse_bool.
    v = raw.lower()
    if v not in ("true", "false"):
        raise ValueError("not true/false")
    return v == "true"


# -- the handle --------------------------------------------------------------------------


@dataclass
class _Owned:
    """What one configure() call created, and so must shut down."""

    batch_processors: list[RtcBatchSpanProcessor | RtcBatchLogRecordProcessor] = field(
        default_factory=list)
    tracer_provider: Any = None
    meter_provider: Any = None
    logger_provider: Any = None
    owns_default_registry: bool = False
    log_bridges: list[tuple[logging.Logger, logging.Handler]] = field(default_factory=list)
    shut_down: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


_state_lock = threading.Lock()
_default_registry_owner: _Owned | None = None  # see _claim_default_registry()
_configure_calls = 0


@dataclass(frozen=True)
class Telemetry:
    """What :func:`configure` set up, and how to flush and stop it.

    Attributes:
        mode: ``"otlp"``, ``"file"`` or ``"disabled"``.
        tracer_provider: The tracer provider (the injected one if you passed one).
        meter_provider: The meter provider (the injected one if you passed one).
        logger_provider: The logger provider (the injected one if you passed one).
        protocol: ``"http/protobuf"`` or ``"grpc"`` in OTLP mode, else ``None``.
        endpoint: The explicit base endpoint, if one was given as an argument.
        output_dir: The directory of the JSON files in file mode, else ``None``.
        traces_path: The spans file in file mode.
        metrics_path: The metrics file in file mode.
        logs_path: The logs file in file mode.
        registry: The local-aggregation registry merged into the metric export, or
            ``None`` with an injected meter provider or when disabled.
        is_global: Whether this call installed its providers as the global ones.
    """

    mode: str
    tracer_provider: Any
    meter_provider: Any
    logger_provider: Any
    protocol: str | None = None
    endpoint: str | None = None
    output_dir: Path | None = None
    traces_path: Path | None = None
    metrics_path: Path | None = None
    logs_path: Path | None = None
    registry: LocalAggregationRegistry | None = None
    is_global: bool = False
    _owned: _Owned = field(default_factory=_Owned, repr=False, compare=False)

    @property
    def paths(self) -> dict[str, Path]:
        """``{signal: file}`` in file mode, else empty."""
        out = {"traces": self.traces_path, "metrics": self.metrics_path, "logs": self.logs_path}
        return {k: v for k, v in out.items() if v is not None}

    def force_flush(self, timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S) -> bool:
        """Export what is buffered now, every signal at once, by one deadline.

        Returns:
            Whether every provider flushed within ``timeout_s``. Never raises.
        """
        end, deadline = deadlines(timeout_s)
        calls = []
        for p in (self.tracer_provider, self.meter_provider, self.logger_provider):
            if callable(getattr(p, "force_flush", None)):
                calls.append(lambda p=p: p.force_flush(timeout_millis=ms_left(deadline)))
        results = run_until(end, calls, "configure.flush")
        return all(r is not None and r is not False for r in results)

    def shutdown(self, timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S) -> None:
        """Flush and stop what this call created by one deadline (idempotent, never raises).

        Spans, log records and metrics are flushed at once, all against the same
        deadline ``timeout_s`` from now (not one budget per stage). Whatever is still
        unexported then is abandoned and counted in ``otel_rtc.telemetry.dropped``
        (reason ``shutdown_timeout``), and one warning says how much.

        Injected providers are left running: they belong to the caller. Global providers
        stay installed (the OTel API cannot unset them) but export nothing afterwards.
        """
        owned = self._owned
        with owned.lock:
            if owned.shut_down:
                return
            owned.shut_down = True
        atexit.unregister(self._at_exit)
        end, deadline = deadlines(timeout_s)
        for lg, bridge in owned.log_bridges:
            lg.removeHandler(bridge)
        before = {c: drop_count(c, "shutdown_timeout") for c in _EXPORT_COMPONENTS}
        calls: list[Callable[[], Any]] = [
            lambda p=p: p.queue.shutdown(deadline) for p in owned.batch_processors]
        if owned.meter_provider is not None:
            mp = owned.meter_provider
            calls.append(lambda: mp.shutdown(timeout_millis=ms_left(deadline)))
        run_until(end, calls, "configure.shutdown")
        # Their batch processors are stopped: these return at once.
        for provider in (owned.tracer_provider, owned.logger_provider):
            if provider is not None:
                try:
                    provider.shutdown()
                except Exception as exc:
                    report_error("configure.shutdown", exc)
        lost = {c: drop_count(c, "shutdown_timeout") - before[c] for c in _EXPORT_COMPONENTS}
        if any(lost.values()):
            _logger.warning(
                "otel_rtc: telemetry shutdown deadline (%.1f s) passed; abandoned %d spans, "
                "%d log records and %d metric points (collector slow or unreachable?); "
                "counted in otel_rtc.telemetry.dropped", timeout_s, lost["export.traces"],
                lost["export.logs"], lost["export.metrics"])
        if owned.owns_default_registry:
            global _default_registry_owner
            with _state_lock:
                if _default_registry_owner is owned:
                    _default_registry_owner = None

    def _at_exit(self) -> None:
        self.shutdown(timeout_s=EXIT_TIMEOUT_S)


# -- configure ---------------------------------------------------------------------------


def _validate(protocol: str | None, endpoint: str | None, headers: Mapping[str, str] | None,
              export_interval_s: float | None, export_timeout_s: float | None,
              service_name: str | None, processors: Sequence[MetricsProcessor] | None,
              bursts: bool | None) -> None:
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if endpoint is not None:
        if not isinstance(endpoint, str) or not endpoint.strip():
            raise ValueError(f"endpoint must be a non-empty str, got {endpoint!r}")
        if protocol != "grpc" and not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must start with http:// or https://, got {endpoint!r}")
    if headers is not None:
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError("headers must be a mapping of str to str")
    for name, value in (("export_interval_s", export_interval_s),
                        ("export_timeout_s", export_timeout_s)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0 < value < float("inf")
        ):
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    if service_name is not None and (not isinstance(service_name, str) or not service_name):
        raise ValueError(f"service_name must be a non-empty str, got {service_name!r}")
    if processors is not None:
        for p in processors:
            if not isinstance(p, MetricsProcessor):
                raise ValueError(f"processors must be MetricsProcessor, got {type(p).__name__}")
    if bursts is not None and not isinstance(bursts, bool):
        raise ValueError(f"bursts must be a bool or None, got {bursts!r}")


def configure(
    *,
    service_name: str | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    export_interval_s: float | None = None,
    export_timeout_s: float | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    logger_provider: Any = None,
    set_global: bool = True,
    processors: Sequence[MetricsProcessor] | None = None,
    bursts: bool | None = None,
) -> Telemetry:
    """Set up tracer, meter and logger providers that export otel_rtc's telemetry.

    Explicit arguments win over environment variables; a bad environment value logs a
    warning and the default is used.

    Calling it again returns a new, independent handle. Global providers can be set only
    once per process (an OpenTelemetry API rule): when they are already set, a later
    call with ``set_global=True`` logs a warning and leaves them in place, and its
    handle's providers are used only where passed explicitly.

    Args:
        service_name: ``service.name``; default from ``OTEL_SERVICE_NAME`` /
            ``OTEL_RESOURCE_ATTRIBUTES``.
        endpoint: OTLP base endpoint (``http://host:4318`` for HTTP, ``http://host:4317``
            for gRPC); default from ``OTEL_EXPORTER_OTLP_ENDPOINT`` and the per-signal
            variables. With none configured anywhere, telemetry goes to files.
        protocol: ``"http/protobuf"`` (default) or ``"grpc"``; default from
            ``OTEL_EXPORTER_OTLP_PROTOCOL`` (and the per-signal variables).
        headers: Extra OTLP request headers, merged over ``OTEL_EXPORTER_OTLP_HEADERS``.
        export_interval_s: Metric export period; default from
            ``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds), else 60 s.
        export_timeout_s: OTLP request timeout (retries included); default from
            ``OTEL_EXPORTER_OTLP_TIMEOUT``, else :data:`DEFAULT_EXPORT_TIMEOUT_S`.
        output_dir: Directory of the OTLP JSON files when no endpoint is configured;
            default from ``OTEL_RTC_OUTPUT_DIR``, else ``./telemetry-out``.
        tracer_provider: Use this tracer provider instead of creating one.
        meter_provider: Use this meter provider instead of creating one. otel_rtc's
            export stage cannot be added to it, so instrumentations record through
            its plain SDK instruments.
        logger_provider: Use this logger provider instead of creating one.
        set_global: Install the providers as the OpenTelemetry globals.
        processors: Metric processors of the export stage; default
            :func:`otel_rtc.sdk.defaults.default_processors`.
        bursts: Switch burst tracking on or off process-wide (``None``: leave it to
            ``OTEL_RTC_BURSTS_ENABLED`` / the config file).

    Returns:
        The :class:`Telemetry` handle.

    Raises:
        ValueError: On a bad argument (unknown protocol, non-positive interval, ...).
    """
    _validate(protocol, endpoint, headers, export_interval_s, export_timeout_s, service_name,
              processors, bursts)
    global _configure_calls
    with _state_lock:
        _configure_calls += 1
        calls = _configure_calls

    if bursts is not None:
        from otel_rtc.core.switch import burst_switches

        burst_switches().set(enabled=bursts)

    if env_value("OTEL_SDK_DISABLED", _spec_bool, False):
        from opentelemetry import _logs, metrics, trace

        return Telemetry(
            mode="disabled",
            tracer_provider=tracer_provider if tracer_provider is not None
            else trace.NoOpTracerProvider(),
            meter_provider=meter_provider if meter_provider is not None
            else metrics.NoOpMeterProvider(),
            logger_provider=logger_provider if logger_provider is not None
            else _logs.NoOpLoggerProvider(),
        )

    from opentelemetry.sdk.resources import Resource

    resource = Resource.create({"service.name": service_name} if service_name else {})
    interval_s = export_interval_s if export_interval_s is not None else env_interval_s()
    timeout_s = float(export_timeout_s if export_timeout_s is not None
                      else DEFAULT_EXPORT_TIMEOUT_S)

    dest = choose_exporters(endpoint, protocol, headers, timeout_s, output_dir)
    owned = _Owned()
    tp = tracer_provider
    if tp is None:
        tp, bsp = providers.tracer_provider(resource, dest.span)
        owned.tracer_provider = tp
        if bsp is not None:
            owned.batch_processors.append(bsp)
    registry: LocalAggregationRegistry | None = None
    mp = meter_provider
    if mp is None:
        registry = _claim_default_registry(owned, set_global)
        if registry is None:
            registry = LocalAggregationRegistry(resource=resource)
        mp, bound = providers.meter_provider(resource, dest.metric, registry, processors,
                                             interval_s, timeout_s)
        owned.meter_provider = mp
        registry = registry if bound else None
    try:
        register_self_metrics(mp.get_meter("otel_rtc", __version__))
    except Exception as exc:
        report_error("configure", exc)
    lp = logger_provider
    if lp is None:
        lp, blp = providers.logger_provider(resource, dest.log)
        owned.logger_provider = lp
        if blp is not None:
            owned.batch_processors.append(blp)
            bridge = bridge_logger(BURST_LOGGER, lp)
            if bridge is not None:
                owned.log_bridges.append(bridge)

    is_global = False
    if set_global:
        is_global = providers.install_globals(tp, mp, lp, calls)

    handle = Telemetry(
        mode=dest.mode,
        tracer_provider=tp,
        meter_provider=mp,
        logger_provider=lp,
        protocol=dest.protocol,
        endpoint=endpoint,
        output_dir=dest.output_dir,
        traces_path=dest.paths.get("traces"),
        metrics_path=dest.paths.get("metrics"),
        logs_path=dest.paths.get("logs") if dest.log is not None else None,
        registry=registry,
        is_global=is_global,
        _owned=owned,
    )
    # The one exit hook of what this call created: flush and shutdown by one deadline.
    atexit.register(handle._at_exit)
    return handle


def _claim_default_registry(owned: _Owned, set_global: bool) -> LocalAggregationRegistry | None:
    """The default registry, if this call's meter provider may feed it.

    The default registry feeds the global meter provider: only a call that will install
    its provider as the global one takes it, and one live owner at a time, because
    every export drains it.
    """
    global _default_registry_owner
    if not set_global or providers.meter_provider_set():
        return None
    with _state_lock:
        if _default_registry_owner is not None:
            return None
        _default_registry_owner = owned
        owned.owns_default_registry = True
    return default_registry()
