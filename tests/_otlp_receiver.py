"""A loopback OTLP/HTTP receiver for tests: collects what a collector (or an SDK) sends.

Usage::

    with OtlpReceiver() as recv:
        # point an exporter at recv.endpoint ("http://127.0.0.1:<port>")
        recv.wait_for(lambda r: "my.metric" in r.metrics(), timeout=10)
        points = recv.number_points("my.metric")

It accepts ``POST /v1/metrics``, ``/v1/traces`` and ``/v1/logs`` with protobuf bodies,
honours ``Content-Encoding: gzip`` (Rotel's OTLP/HTTP exporter gzips), answers 200 with
an empty protobuf response, and keeps every request in arrival order. Unknown paths get
404 and are counted in :attr:`OtlpReceiver.rejected`; an undecodable body gets 400.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

__all__ = ["OtlpReceiver", "attrs_of"]

_KINDS = {
    "/v1/metrics": ExportMetricsServiceRequest,
    "/v1/traces": ExportTraceServiceRequest,
    "/v1/logs": ExportLogsServiceRequest,
}


def _any_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(_any_value(x) for x in v.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def attrs_of(msg: Any) -> dict[str, Any]:
    """Attributes of a protobuf point/span/resource as a plain ``dict``."""
    return {kv.key: _any_value(kv.value) for kv in msg.attributes}


class OtlpReceiver:
    """Threaded OTLP/HTTP protobuf receiver bound to ``127.0.0.1`` on a free port.

    Args:
        host: Address to bind (loopback by default).
        port: Port; 0 picks a free one.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.requests: dict[str, list[Any]] = {k: [] for k in _KINDS}
        self.rejected = 0
        self.bytes_received = 0
        self._arrivals = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                cls = _KINDS.get(self.path.split("?", 1)[0])
                if cls is None:
                    receiver._count_rejected()
                    self._reply(404)
                    return
                try:
                    enc = (self.headers.get("Content-Encoding") or "").lower()
                    if enc == "gzip":
                        body = gzip.decompress(body)
                    elif enc == "deflate":
                        body = zlib.decompress(body)
                    msg = cls()
                    msg.ParseFromString(body)
                except Exception:
                    receiver._count_rejected()
                    self._reply(400)
                    return
                receiver._add(self.path.split("?", 1)[0], msg, len(body))
                self._reply(200)

            def _reply(self, code: int) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="otlp-receiver")
        self._thread.start()

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:4318`` (append ``/v1/metrics`` for SDKs)."""
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OtlpReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._lock:
            for v in self.requests.values():
                v.clear()

    def _add(self, path: str, msg: Any, n: int) -> None:
        with self._cond:
            self.requests[path].append(msg)
            self.bytes_received += n
            self._arrivals += 1
            self._cond.notify_all()

    def _count_rejected(self) -> None:
        with self._lock:
            self.rejected += 1

    # -- waiting -----------------------------------------------------------------------
    def wait_for(self, condition: Callable[[OtlpReceiver], bool], timeout: float = 10.0) -> bool:
        """Block until ``condition(self)`` is true (re-checked on each request) or timeout.

        Returns:
            Whether the condition became true.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                seen = self._arrivals
            if condition(self):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with self._cond:
                if self._arrivals == seen:
                    self._cond.wait(min(left, 0.2))

    def wait_for_metric(self, name: str, timeout: float = 10.0) -> bool:
        """Wait until a metric called ``name`` has arrived."""
        return self.wait_for(lambda r: name in r.metrics(), timeout)

    # -- views -------------------------------------------------------------------------
    def metric_requests(self) -> list[ExportMetricsServiceRequest]:
        """Metrics requests received so far (a copy of the list)."""
        with self._lock:
            return list(self.requests["/v1/metrics"])

    def metrics(self) -> dict[str, list[Any]]:
        """``{metric name: [Metric protobufs in arrival order]}``."""
        out: dict[str, list[Any]] = {}
        for req in self.metric_requests():
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        out.setdefault(m.name, []).append(m)
        return out

    def number_points(self, name: str) -> list[tuple[dict[str, Any], float, Any]]:
        """``[(attributes, value, point)]`` of every Sum/Gauge point of metric ``name``."""
        out = []
        for m in self.metrics().get(name, []):
            kind = m.WhichOneof("data")
            if kind not in ("sum", "gauge"):
                continue
            for p in getattr(m, kind).data_points:
                v = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                out.append((attrs_of(p), v, p))
        return out

    def spans(self) -> list[Any]:
        """Every span received, in arrival order."""
        with self._lock:
            reqs = list(self.requests["/v1/traces"])
        return [s for req in reqs for rs in req.resource_spans for ss in rs.scope_spans
                for s in ss.spans]

    def logs(self) -> list[Any]:
        """Every log record received, in arrival order."""
        with self._lock:
            reqs = list(self.requests["/v1/logs"])
        return [lr for req in reqs for rl in req.resource_logs for sl in rl.scope_logs
                for lr in sl.log_records]
