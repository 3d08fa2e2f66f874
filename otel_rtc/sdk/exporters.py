"""Where :func:`~otel_rtc.sdk.configure.configure` exports, and how often.

From its arguments and the OpenTelemetry settings (``OTEL_EXPORTER_OTLP_*``,
``OTEL_METRIC_EXPORT_INTERVAL``): the OTLP exporters (HTTP/protobuf or gRPC) when an
endpoint is configured, else the OTel project's OTLP JSON file exporters, one file per
signal in the output directory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_rtc.core.env import env_str

__all__ = [
    "DEFAULT_EXPORT_INTERVAL_S",
    "DEFAULT_EXPORT_TIMEOUT_S",
    "DEFAULT_OUTPUT_DIR",
    "ENV_OUTPUT_DIR",
    "FILE_NAMES",
    "PROTOCOLS",
    "Exporters",
    "choose_exporters",
    "env_interval_s",
]

_logger = logging.getLogger("otel_rtc")

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
PROTOCOLS = ("http/protobuf", "grpc")
_SIGNALS = ("traces", "metrics", "logs")
_HTTP_PATHS = {"traces": "v1/traces", "metrics": "v1/metrics", "logs": "v1/logs"}


@dataclass(frozen=True)
class Exporters:
    """Where telemetry goes: the exporters of each signal and what they write to.

    Attributes:
        mode: ``"otlp"``, ``"file"`` or ``"disabled"`` (the output directory cannot be
            created: no exporters).
        span: The span exporter.
        metric: The metric exporter (the export stage wraps it).
        log: The log record exporter (``None`` also with an old file exporter package).
        protocol: ``"http/protobuf"`` or ``"grpc"`` in OTLP mode.
        output_dir: The directory of the files in file mode.
        paths: ``{signal: file}`` in file mode.
    """

    mode: str
    span: Any = None
    metric: Any = None
    log: Any = None
    protocol: str | None = None
    output_dir: Path | None = None
    paths: dict[str, Path] = field(default_factory=dict)


def choose_exporters(endpoint: str | None, protocol: str | None,
                     headers: Mapping[str, str] | None, timeout_s: float,
                     output_dir: str | os.PathLike[str] | None) -> Exporters:
    """OTLP when an endpoint is configured (argument or environment), else files.

    Args:
        endpoint: The ``endpoint`` argument of ``configure()``.
        protocol: The ``protocol`` argument; ``None``: from the environment.
        headers: The ``headers`` argument.
        timeout_s: OTLP request timeout unless the environment sets one.
        output_dir: The ``output_dir`` argument; ``None``: from the environment.

    Raises:
        ValueError: An explicit ``output_dir`` cannot be created.
    """
    if endpoint is not None or _otlp_endpoint_configured():
        proto = protocol if protocol is not None else _env_protocol("traces")
        span, metric, log = _otlp_exporters(proto, endpoint, dict(headers or {}), timeout_s)
        return Exporters("otlp", span, metric, log, protocol=proto)
    out_dir = _prepare_output_dir(output_dir)
    if out_dir is None:
        return Exporters("disabled")
    paths = {s: out_dir / FILE_NAMES[s] for s in _SIGNALS}
    span, metric, log = _file_exporters(paths)
    return Exporters("file", span, metric, log, output_dir=out_dir, paths=paths)


# -- the OpenTelemetry settings ----------------------------------------------------------


def _env_protocol(signal: str) -> str:
    for name in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        raw = env_str(name)
        if raw is None:
            continue
        if raw.lower() in PROTOCOLS:
            return raw.lower()
        _logger.warning("otel_rtc: %s=%r is not one of %s; using http/protobuf",
                        name, raw, ", ".join(PROTOCOLS))
        return "http/protobuf"
    return "http/protobuf"


def env_interval_s() -> float:
    """The metric export period from ``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds)."""
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


def _otlp_endpoint_configured() -> bool:
    names = ["OTEL_EXPORTER_OTLP_ENDPOINT"]
    names += [f"OTEL_EXPORTER_OTLP_{s.upper()}_ENDPOINT" for s in _SIGNALS]
    return any(env_str(n) is not None for n in names)


# -- the exporters -----------------------------------------------------------------------


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
