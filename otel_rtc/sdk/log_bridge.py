"""Forwarding a stdlib logger's records to an OpenTelemetry logger provider.

:func:`~otel_rtc.sdk.configure.configure` forwards the burst stats lines this way
(``logs.jsonl`` in file mode). The SDK's own ``LoggingHandler`` is deprecated in favour
of a separate package; the few lines otel_rtc needs do not justify a dependency.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry._logs import SeverityNumber, get_logger

from otel_rtc.core import names
from otel_rtc.instrumentation.self_telemetry import report_error
from otel_rtc.version import __version__

__all__ = ["bridge_logger"]

_SEVERITY: dict[int, SeverityNumber] = {
    logging.DEBUG: SeverityNumber.DEBUG,
    logging.INFO: SeverityNumber.INFO,
    logging.WARNING: SeverityNumber.WARN,
    logging.ERROR: SeverityNumber.ERROR,
    logging.CRITICAL: SeverityNumber.FATAL,
}


class _LogBridge(logging.Handler):
    """Forwards a stdlib logger's records to an OTel logger provider, as log records."""

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


def bridge_logger(name: str, logger_provider: Any
                  ) -> tuple[logging.Logger, logging.Handler] | None:
    """Send the stdlib logger ``name``'s INFO+ records to ``logger_provider``.

    The logger's level is set to INFO only when nobody set it (``NOTSET``), so a user's
    own logging configuration wins.

    Returns:
        ``(logger, handler)``: remove the handler to stop; ``None`` on an internal error
        (reported, never raised).
    """
    try:
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.INFO)
        bridge = _LogBridge(logger_provider, name)
        lg.addHandler(bridge)
        return lg, bridge
    except Exception as exc:
        report_error("configure", exc)
        return None
