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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry._logs import SeverityNumber, get_logger

from otel_rtc.core import names
from otel_rtc.core.env import env_str, env_value
from otel_rtc.instrumentation.self_telemetry import (
    drop_count,
    register_self_metrics,
    report_error,
)
from otel_rtc.sdk.aggregation import (
    LocalAggregationRegistry,
    bind_registry,
    default_registry,
)
from otel_rtc.sdk.batching import (
    DEFAULT_SHUTDOWN_TIMEOUT_S,
    RtcBatchLogRecordProcessor,
    RtcBatchSpanProcessor,
)
from otel_rtc.sdk.export import MetricsProcessor
from otel_rtc.version import __version__

__all__ = [
    "DEFAULT_EXPORT_INTERVAL_S",
    "DEFAULT_EXPORT_TIMEOUT_S",
    "DEFAULT_OUTPUT_DIR",
    "ENV_OUTPUT_DIR",
    "FILE_NAMES",
    "Telemetry",
    "configure",
    "sdk_providers_installed",
]

_logger = logging.getLogger("otel_rtc")

BURST_LOGGER = "otel_rtc.bursts"
"""The stdlib logger of the ``logMessageBurstStats`` / ``logMessageBurstData`` lines;
``configure()`` forwards it to its logger provider (``logs.jsonl`` in file mode)."""

ENV_OUTPUT_DIR = "OTEL_RTC_OUTPUT_DIR"
DEFAULT_OUTPUT_DIR = "telemetry-out"
DEFAULT_EXPORT_INTERVAL_S = 60.0
"""The specification's default for ``OTEL_METRIC_EXPORT_INTERVAL`` (60000 ms)."""
DEFAULT_EXPORT_TIMEOUT_S = 3.0
"""OTLP request timeout unless ``OTEL_EXPORTER_OTLP[_<SIGNAL>]_TIMEOUT`` is set.

Short, so that an absent collector costs the exporting thread little and shutdown is
quick; retries happen inside this budget.
"""
FILE_NAMES: dict[str, str] = {
    "traces": "traces.jsonl",
    "metrics": "metrics.jsonl",
    "logs": "logs.jsonl",
}
SPAN_QUEUE_SIZE = 2048
"""Spans (and log records) held while the exporter is slow or absent; new ones are
dropped, and counted, beyond this."""
_EXPORT_COMPONENTS = ("export.traces", "export.logs", "export.metrics")
EXIT_TIMEOUT_S = 0.7
"""The deadline of the exit hook's shutdown: the interpreter's own teardown after it
takes 0.05-0.3 s on a loaded machine, and the whole exit should stay within 1 s."""

_PROTOCOLS = ("http/protobuf", "grpc")
_SIGNALS = ("traces", "metrics", "logs")
_HTTP_PATHS = {"traces": "v1/traces", "metrics": "v1/metrics", "logs": "v1/logs"}


def _spec_bool(raw: str) -> bool:
    # The OpenTelemetry specification's own booleans (OTEL_SDK_DISABLED) are only
    # true/false; OTEL_RTC_* booleans use otel_rtc.core.env.parse_bool.
    v = raw.lower()
    if v not in ("true", "false"):
        raise ValueError("not true/false")
    return v == "true"


def _env_protocol(signal: str) -> str:
    for name in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        raw = env_str(name)
        if raw is None:
            continue
        if raw.lower() in _PROTOCOLS:
            return raw.lower()
        _logger.warning("otel_rtc: %s=%r is not one of %s; using http/protobuf",
                        name, raw, ", ".join(_PROTOCOLS))
        return "http/protobuf"
    return "http/protobuf"


def _env_interval_s() -> float:
    raw = env_str("OTEL_METRIC_EXPORT_INTERVAL")
    if raw is None:
        return DEFAULT_EXPORT_INTERVAL_S
    try:
        ms = float(raw)
    except ValueError:
        ms = -1.0
    if not ms > 0 or ms == float("inf"):
        _logger.warning("otel_rtc: OTEL_METRIC_EXPORT_INTERVAL=%r is not a positive number of "
                        "milliseconds; using %d", raw, int(DEFAULT_EXPORT_INTERVAL_S * 1000))
        return DEFAULT_EXPORT_INTERVAL_S
    return ms / 1000.0


def _env_has_timeout(signal: str) -> bool:
    return (env_str(f"OTEL_EXPORTER_OTLP_{signal.upper()}_TIMEOUT") is not None
            or env_str("OTEL_EXPORTER_OTLP_TIMEOUT") is not None)


def _env_endpoint_configured() -> bool:
    names = ["OTEL_EXPORTER_OTLP_ENDPOINT"]
    names += [f"OTEL_EXPORTER_OTLP_{s.upper()}_ENDPOINT" for s in _SIGNALS]
    return any(env_str(n) is not None for n in names)


# -- global providers --------------------------------------------------------------------


def _global_tracer_provider_set() -> bool:
    from opentelemetry import trace

    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _global_meter_provider_set() -> bool:
    from opentelemetry import metrics

    try:
        from opentelemetry.metrics._internal import _ProxyMeterProvider
    except ImportError:  # pragma: no cover - older API layout
        return False
    return not isinstance(metrics.get_meter_provider(), _ProxyMeterProvider)


def _global_logger_provider_set() -> bool:
    from opentelemetry import _logs

    try:
        from opentelemetry._logs._internal import ProxyLoggerProvider
    except ImportError:  # pragma: no cover - older API layout
        return False
    return not isinstance(_logs.get_logger_provider(), ProxyLoggerProvider)


def sdk_providers_installed() -> bool:
    """Whether a global tracer or meter provider is already installed (e.g. by a configurator)."""
    return _global_tracer_provider_set() or _global_meter_provider_set()


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
        end, deadline = _deadlines(timeout_s)
        calls = []
        for p in (self.tracer_provider, self.meter_provider, self.logger_provider):
            if callable(getattr(p, "force_flush", None)):
                calls.append(lambda p=p: p.force_flush(timeout_millis=_ms_left(deadline)))
        results = _run_until(end, calls, "configure.flush")
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
        end, deadline = _deadlines(timeout_s)
        for lg, bridge in owned.log_bridges:
            lg.removeHandler(bridge)
        before = {c: drop_count(c, "shutdown_timeout") for c in _EXPORT_COMPONENTS}
        calls: list[Callable[[], Any]] = [
            lambda p=p: p.queue.shutdown(deadline) for p in owned.batch_processors]
        if owned.meter_provider is not None:
            mp = owned.meter_provider
            calls.append(lambda: mp.shutdown(timeout_millis=_ms_left(deadline)))
        _run_until(end, calls, "configure.shutdown")
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


def _ms_left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0) * 1000


# A call bounded by a deadline returns a few ms after it (thread switches, counting
# what it abandons, stopping the exporters); this margin keeps that inside timeout_s.
_DEADLINE_SLACK_S = 0.05


def _deadlines(timeout_s: float) -> tuple[float, float]:
    """``(end, deadline)``: the caller returns by ``end``; the work stops at ``deadline``."""
    timeout_s = max(timeout_s, 0.0)
    end = time.monotonic() + timeout_s
    return end, end - min(_DEADLINE_SLACK_S, timeout_s / 10)


def _run_until(end: float, calls: Sequence[Callable[[], Any]], component: str) -> list[Any]:
    """Run ``calls`` concurrently in daemon threads; wait for them until ``end``.

    Each call is bounded by the same deadline itself; this keeps one that is not (an
    injected provider's, say) from holding the caller up. Returns each call's result,
    ``None`` for one that raised or had not finished.
    """
    results: list[Any] = [None] * len(calls)

    def run(i: int, fn: Callable[[], Any]) -> None:
        try:
            results[i] = fn()
        except Exception as exc:
            report_error(component, exc)

    threads = [threading.Thread(target=run, args=(i, fn), name="otel_rtc-shutdown", daemon=True)
               for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(end - time.monotonic(), 0.0))
    if any(t.is_alive() for t in threads):
        _logger.warning("otel_rtc: telemetry flush/shutdown did not finish by its deadline; "
                        "leaving it to a background thread")
    return results


_SEVERITY: dict[int, SeverityNumber] = {
    logging.DEBUG: SeverityNumber.DEBUG,
    logging.INFO: SeverityNumber.INFO,
    logging.WARNING: SeverityNumber.WARN,
    logging.ERROR: SeverityNumber.ERROR,
    logging.CRITICAL: SeverityNumber.FATAL,
}


class _LogBridge(logging.Handler):
    """Forwards a stdlib logger's records to an OTel logger provider, as log records.

    The SDK's own ``LoggingHandler`` is deprecated in favour of a separate package; the
    few lines otel_rtc needs (its burst stats lines) do not justify a dependency.
    """

    def __init__(self, logger_provider: Any, scope: str) -> None:
        super().__init__(logging.INFO)
        self._otel = get_logger(scope, __version__, logger_provider)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            attrs: dict[str, Any] = {"code.function.name": record.funcName,
                                     "code.line.number": record.lineno}
            source = getattr(record, "otel_rtc_burst_source", None)
            if isinstance(source, str):
                attrs[names.ATTR_BURST_SOURCE] = source
            worst = getattr(record, "otel_rtc_burst_worst_case_latency", None)
            if isinstance(worst, float):
                attrs[names.ATTR_BURST_WORST_CASE] = worst
            body = record.getMessage()
            self._otel.emit(
                timestamp=int(record.created * 1e9),
                severity_number=_SEVERITY.get(record.levelno, SeverityNumber.INFO),
                severity_text=record.levelname,
                body=body,
                attributes=attrs,
                event_name=body.split(" ", 1)[0] or None,
            )
        except Exception as exc:
            report_error("configure.log_bridge", exc)


def _bridge_stdlib_logger(name: str, logger_provider: Any, owned: _Owned) -> None:
    """Send ``name``'s INFO+ records to ``logger_provider`` until the handle shuts down.

    The logger's level is set to INFO only when nobody set it (``NOTSET``), so a user's
    own logging configuration wins.
    """
    try:
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.INFO)
        bridge = _LogBridge(logger_provider, name)
        lg.addHandler(bridge)
        owned.log_bridges.append((lg, bridge))
    except Exception as exc:
        report_error("configure", exc)


# -- process-wide state ------------------------------------------------------------------

_state_lock = threading.Lock()
_default_registry_owner: _Owned | None = None
_configure_calls = 0


# -- exporters ---------------------------------------------------------------------------


def _otlp_exporters(protocol: str, endpoint: str | None, headers: dict[str, str] | None,
                    timeout_s: float) -> tuple[Any, Any, Any]:
    def kwargs(signal: str) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if endpoint is not None:
            kw["endpoint"] = (endpoint if protocol == "grpc"
                              else f"{endpoint.rstrip('/')}/{_HTTP_PATHS[signal]}")
        if headers:
            # An explicit ``headers`` argument would replace the env headers in the
            # exporter; merge so that both apply, the argument winning per key.
            from opentelemetry.util.re import parse_env_headers

            env = (env_str(f"OTEL_EXPORTER_OTLP_{signal.upper()}_HEADERS")
                   or env_str("OTEL_EXPORTER_OTLP_HEADERS") or "")
            kw["headers"] = {**parse_env_headers(env, liberal=True), **headers}
        if not _env_has_timeout(signal):
            kw["timeout"] = timeout_s
        return kw

    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import (  # type: ignore[assignment]
            OTLPLogExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
            OTLPMetricExporter,
        )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    return (OTLPSpanExporter(**kwargs("traces")), OTLPMetricExporter(**kwargs("metrics")),
            OTLPLogExporter(**kwargs("logs")))


def _file_exporters(paths: dict[str, Path]) -> tuple[Any, Any, Any]:
    from opentelemetry.exporter.otlp.json.file import FileMetricExporter, FileSpanExporter

    log_exporter: Any = None
    try:
        from opentelemetry.exporter.otlp.json.file._log_exporter import FileLogExporter

        log_exporter = FileLogExporter(paths["logs"])
    except ImportError:  # pragma: no cover - older package without logs
        log_exporter = None
    return FileSpanExporter(paths["traces"]), FileMetricExporter(paths["metrics"]), log_exporter


def _prepare_output_dir(output_dir: str | os.PathLike[str] | None) -> Path | None:
    """The output directory, created; ``None`` (after a warning) if it cannot be."""
    explicit = output_dir is not None
    raw: str | os.PathLike[str] = (output_dir if output_dir is not None
                                   else (env_str(ENV_OUTPUT_DIR) or DEFAULT_OUTPUT_DIR))
    path = Path(os.fspath(raw)).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        return path.resolve()
    except OSError as exc:
        if explicit:
            raise ValueError(f"output_dir {str(path)!r} cannot be created: {exc}") from exc
        _logger.warning("otel_rtc: cannot create telemetry output directory %s (%s); "
                        "telemetry is disabled", path, exc)
        return None


# -- configure ---------------------------------------------------------------------------


def _validate(protocol: str | None, endpoint: str | None, headers: Mapping[str, str] | None,
              export_interval_s: float | None, export_timeout_s: float | None,
              service_name: str | None, processors: Sequence[MetricsProcessor] | None,
              bursts: bool | None) -> None:
    if protocol is not None and protocol not in _PROTOCOLS:
        raise ValueError(f"protocol must be one of {_PROTOCOLS}, got {protocol!r}")
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
    interval_s = export_interval_s if export_interval_s is not None else _env_interval_s()
    timeout_s = float(export_timeout_s if export_timeout_s is not None
                      else DEFAULT_EXPORT_TIMEOUT_S)

    mode = "otlp" if endpoint is not None or _env_endpoint_configured() else "file"
    proto: str | None = None
    out_dir: Path | None = None
    paths: dict[str, Path] = {}
    span_exp: Any = None
    metric_exp: Any = None
    log_exp: Any = None
    if mode == "otlp":
        proto = protocol if protocol is not None else _env_protocol("traces")
        span_exp, metric_exp, log_exp = _otlp_exporters(proto, endpoint, dict(headers or {}),
                                                        timeout_s)
    else:
        out_dir = _prepare_output_dir(output_dir)
        if out_dir is None:
            mode = "disabled"
        else:
            paths = {s: out_dir / FILE_NAMES[s] for s in _SIGNALS}
            span_exp, metric_exp, log_exp = _file_exporters(paths)

    owned = _Owned()
    tp = tracer_provider
    if tp is None:
        from opentelemetry.sdk.trace import TracerProvider

        # Our exit hook (below) shuts everything down by one deadline; the SDK's own
        # hooks would each wait on their own.
        tp = TracerProvider(resource=resource, shutdown_on_exit=False)
        if span_exp is not None:
            bsp = RtcBatchSpanProcessor(span_exp, "export.traces",
                                        max_queue_size=SPAN_QUEUE_SIZE)
            tp.add_span_processor(bsp)
            owned.batch_processors.append(bsp)
        owned.tracer_provider = tp

    # The default registry feeds the global provider; one live owner at a time, because
    # every export drains it.
    will_set_global_mp = set_global and meter_provider is None and not _global_meter_provider_set()
    registry: LocalAggregationRegistry | None = None
    mp = meter_provider
    if mp is None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        from otel_rtc.sdk.export import RtcWrappingMetricExporter

        global _default_registry_owner
        with _state_lock:
            if will_set_global_mp and _default_registry_owner is None:
                registry = default_registry()
                _default_registry_owner = owned
                owned.owns_default_registry = True
        if registry is None:
            registry = LocalAggregationRegistry(resource=resource)
        readers = []
        if metric_exp is not None:
            if processors is None:
                from otel_rtc.sdk.defaults import default_processors

                procs: Sequence[MetricsProcessor] = default_processors()
            else:
                procs = list(processors)
            rtc = RtcWrappingMetricExporter(metric_exp, registry=registry, processors=procs)
            readers.append(PeriodicExportingMetricReader(
                rtc, export_interval_millis=interval_s * 1000,
                export_timeout_millis=timeout_s * 1000))
        mp = MeterProvider(metric_readers=readers, resource=resource, shutdown_on_exit=False)
        if readers:
            bind_registry(mp, registry)
        else:
            registry = None
        owned.meter_provider = mp
    try:
        register_self_metrics(mp.get_meter("otel_rtc", __version__))
    except Exception as exc:
        report_error("configure", exc)

    lp = logger_provider
    if lp is None:
        from opentelemetry.sdk._logs import LoggerProvider

        lp = LoggerProvider(resource=resource, shutdown_on_exit=False)
        if log_exp is not None:
            blp = RtcBatchLogRecordProcessor(log_exp, "export.logs",
                                             max_queue_size=SPAN_QUEUE_SIZE)
            lp.add_log_record_processor(blp)
            owned.batch_processors.append(blp)
            _bridge_stdlib_logger(BURST_LOGGER, lp, owned)
        owned.logger_provider = lp

    is_global = False
    if set_global:
        is_global = _install_globals(tp, mp, lp, calls)

    handle = Telemetry(
        mode=mode,
        tracer_provider=tp,
        meter_provider=mp,
        logger_provider=lp,
        protocol=proto,
        endpoint=endpoint,
        output_dir=out_dir,
        traces_path=paths.get("traces"),
        metrics_path=paths.get("metrics"),
        logs_path=paths.get("logs") if log_exp is not None else None,
        registry=registry,
        is_global=is_global,
        _owned=owned,
    )
    # The one exit hook of what this call created: flush and shutdown by one deadline.
    atexit.register(handle._at_exit)
    return handle


def _install_globals(tp: Any, mp: Any, lp: Any, calls: int) -> bool:
    """Set the global providers that are still unset; warn about the others."""
    from opentelemetry import _logs, metrics, trace

    kept = []
    installed = True
    for what, is_set, getter, setter, provider in (
        ("tracer", _global_tracer_provider_set, trace.get_tracer_provider,
         trace.set_tracer_provider, tp),
        ("meter", _global_meter_provider_set, metrics.get_meter_provider,
         metrics.set_meter_provider, mp),
        ("logger", _global_logger_provider_set, _logs.get_logger_provider,
         _logs.set_logger_provider, lp),
    ):
        if is_set():
            if getter() is not provider:
                kept.append(what)
                installed = False
            continue
        try:
            setter(provider)
        except Exception as exc:
            report_error("configure", exc)
            installed = False
    if kept:
        _logger.warning(
            "otel_rtc: configure() call #%d: global %s provider(s) already set (the "
            "OpenTelemetry API allows setting them once per process); keeping them. The "
            "returned handle's providers apply only where you pass them explicitly.",
            calls, "/".join(kept))
    return installed
