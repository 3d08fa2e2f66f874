"""The ``otel-rtc`` command.

``otel-rtc collector`` starts a local Rotel collector with the otel_rtc metrics processor
(:mod:`otel_rtc.collector.processor`) on loopback ports and runs until interrupted::

    otel-rtc collector --exporter-endpoint http://127.0.0.1:4318
    otel-rtc collector --exporter blackhole --http-port 4318 --grpc-port 4317
    otel-rtc collector --print-command      # show the rotel-agent command and exit

Processor settings are read from ``OTEL_RTC_*`` environment variables (passed through
to the agent).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from collections.abc import Sequence

from otel_rtc.collector.rotel import (
    PACKAGE_PARENT,
    RotelCollector,
    RotelError,
    RotelNotInstalledError,
    processor_path,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="otel-rtc", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collector", help="start a Rotel collector with the otel_rtc processor",
                       description="Start rotel-agent on 127.0.0.1 with otel_rtc's metrics "
                                   "processor (window rates, peaks, traffic load).")
    c.add_argument("--http-port", type=int, default=4318, help="OTLP/HTTP port (default 4318)")
    c.add_argument("--grpc-port", type=int, default=4317, help="OTLP/gRPC port (default 4317)")
    c.add_argument("--exporter", choices=("otlp", "blackhole"), default="otlp",
                   help="where the collector sends (default otlp)")
    c.add_argument("--exporter-endpoint", default=None,
                   help="OTLP endpoint to forward to, e.g. http://127.0.0.1:14318")
    c.add_argument("--exporter-protocol", choices=("http", "grpc"), default="http")
    c.add_argument("--no-processor", action="store_true",
                   help="run the collector without the otel_rtc processor (baseline)")
    c.add_argument("--print-command", action="store_true",
                   help="print the rotel-agent command line and exit")
    return p


def _collector(args: argparse.Namespace) -> int:
    if args.exporter == "otlp" and not args.exporter_endpoint:
        print("otel-rtc collector: --exporter-endpoint is required with --exporter otlp "
              "(or use --exporter blackhole)", file=sys.stderr)
        return 2
    for port in (args.http_port, args.grpc_port):
        if not 0 < port < 65536:
            print(f"otel-rtc collector: invalid port {port}", file=sys.stderr)
            return 2
    try:
        col = RotelCollector(
            exporter=args.exporter, exporter_endpoint=args.exporter_endpoint,
            exporter_protocol=args.exporter_protocol,
            metrics_processor=None if args.no_processor else processor_path(),
            http_port=args.http_port, grpc_port=args.grpc_port)
    except RotelNotInstalledError as exc:
        print(f"otel-rtc collector: {exc}", file=sys.stderr)
        return 3
    if args.print_command:
        print(f"PYTHONPATH={shlex.quote(PACKAGE_PARENT)} " + shlex.join(col.command()))
        return 0
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        col.start()
    except RotelError as exc:
        print(f"otel-rtc collector: {exc}", file=sys.stderr)
        return 1
    print(f"otel-rtc collector: OTLP/HTTP {col.http_endpoint}  OTLP/gRPC {col.grpc_endpoint}"
          f"  -> {args.exporter_endpoint or 'blackhole'}  (processor: "
          f"{'off' if args.no_processor else 'otel_rtc'}; Ctrl-C to stop)", flush=True)
    try:
        while not stop.wait(0.5):
            if not col.running:
                print(f"otel-rtc collector: rotel-agent exited:\n{col.logs()}", file=sys.stderr)
                return 1
    finally:
        col.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``otel-rtc`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "collector":
        return _collector(args)
    return 2  # pragma: no cover - argparse enforces the sub-command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
