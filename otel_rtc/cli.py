"""The ``otel-rtc`` command.

``otel-rtc collector`` starts a local Rotel collector with the otel_rtc metrics processor
(:mod:`otel_rtc.collector.processor`) on loopback ports and runs until interrupted::

    otel-rtc collector --exporter-endpoint http://127.0.0.1:4318
    otel-rtc collector --exporter blackhole --http-port 4318 --grpc-port 4317
    otel-rtc collector --exporter-endpoint http://127.0.0.1:4318 --log-file rotel.log
    otel-rtc collector --print-command      # show the rotel-agent command and exit
    otel-rtc --version

The collector's log is summarised on stderr: the first line of each kind is shown, and
repeats are counted and reported once per interval. ``--log-file`` keeps all of it.
Nothing is left behind in temporary folders. Processor settings are read from
``OTEL_RTC_*`` environment variables (passed through to the agent).

``otel-rtc report DIR`` turns the OTLP JSON files of the embedded default (what
``otel_rtc.configure()`` writes when no endpoint is set) into one self-contained HTML
page that opens offline (needs the ``report`` extra)::

    otel-rtc report telemetry-out/demo-20260101-120000            # DIR/report.html
    otel-rtc report telemetry-out/demo-20260101-120000 -o /tmp/r.html
"""

from __future__ import annotations

import argparse
import re
import shlex
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from otel_rtc.collector.rotel import (
    PACKAGE_PARENT,
    RotelCollector,
    RotelError,
    RotelNotInstalledError,
    processor_path,
)
from otel_rtc.version import __version__

# Help texts are plain text: argparse prints them as they are.
_DESCRIPTION = "otel_rtc command-line tools."
_COLLECTOR_DESCRIPTION = (
    "Start a local Rotel collector (rotel-agent) on 127.0.0.1 with otel_rtc's metrics "
    "processor, which adds window rates, peak rates and the traffic load to the metrics "
    "it forwards. Applications send OTLP to --http-port or --grpc-port. Runs until "
    "Ctrl-C or SIGTERM. The collector's log is summarised on stderr (the first line of "
    "each kind, then a count of repeats every 10 s); --log-file keeps all of it. "
    "Processor settings come from OTEL_RTC_* environment variables.")
_EPILOG = """examples:
  otel-rtc collector --exporter-endpoint http://127.0.0.1:4318
  otel-rtc collector --exporter blackhole
  otel-rtc collector --exporter-endpoint http://127.0.0.1:4318 --log-file rotel.log
  otel-rtc collector --exporter-endpoint http://127.0.0.1:4318 --print-command"""

SUMMARY_INTERVAL_S = 10.0
"""Repeated collector log lines are counted and reported at most this often."""
_POLL_S = 0.2


def _version() -> str:
    try:
        from importlib.metadata import version

        rotel = version("rotel")
    except Exception:
        rotel = "not installed"
    return f"otel-rtc {__version__} (rotel {rotel})"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="otel-rtc", description=_DESCRIPTION)
    p.add_argument("--version", action="version", version=_version(),
                   help="print the otel-rtc and rotel versions and exit")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collector", help="run a local Rotel collector with otel_rtc's processor",
                       description=textwrap.fill(_COLLECTOR_DESCRIPTION, 79),
                       epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--version", action="version", version=_version(),
                   help="print the otel-rtc and rotel versions and exit")
    c.add_argument("--http-port", type=int, default=4318, metavar="PORT",
                   help="port of the OTLP/HTTP receiver applications send to (default 4318)")
    c.add_argument("--grpc-port", type=int, default=4317, metavar="PORT",
                   help="port of the OTLP/gRPC receiver (default 4317)")
    c.add_argument("--exporter", choices=("otlp", "blackhole"), default="otlp",
                   help="where the collector sends what it receives: otlp forwards to "
                        "--exporter-endpoint, blackhole discards it (default otlp)")
    c.add_argument("--exporter-endpoint", default=None, metavar="URL",
                   help="where to forward, as http://HOST:PORT or https://HOST:PORT "
                        "(required with --exporter otlp)")
    c.add_argument("--exporter-protocol", choices=("http", "grpc"), default="http",
                   help="protocol used to forward: OTLP/HTTP or OTLP/gRPC (default http)")
    c.add_argument("--no-processor", action="store_true",
                   help="run the collector without otel_rtc's processor (a baseline)")
    c.add_argument("--log-file", default=None, metavar="PATH",
                   help="also write the collector's complete log to PATH (kept after exit)")
    c.add_argument("--print-command", action="store_true",
                   help="print the rotel-agent command line that would run, and exit")
    r = sub.add_parser("report", help="write an HTML report of a folder of OTLP JSON files",
                       description="Read the OTLP JSON files (metrics.jsonl, traces.jsonl, "
                                   "logs.jsonl) that otel_rtc.configure() writes when no "
                                   "endpoint is set, and write one self-contained HTML page "
                                   "(opens offline; needs the 'report' extra).")
    r.add_argument("directory", metavar="DIR", help="the folder of .jsonl files")
    r.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="the HTML file to write (default: DIR/report.html)")
    return p


def _report(args: argparse.Namespace) -> int:
    from otel_rtc.report import ReportError, ReportExtraMissing, write_report

    try:
        path = write_report(args.directory, args.output)
    except ReportExtraMissing as exc:
        print(f"otel-rtc report: {exc}", file=sys.stderr)
        return 3
    except ReportError as exc:
        print(f"otel-rtc report: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _endpoint_error(url: str) -> str | None:
    """Why ``url`` is not a usable exporter endpoint, or ``None``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
            or port is None or parts.query or parts.fragment):
        return (f"--exporter-endpoint must be http://HOST:PORT or https://HOST:PORT, "
                f"got {url!r}")
    return None


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\S+\s+")
_FIELDS = re.compile(r"\s+\w[\w.]*=")


class LogSummary:
    """Writes collector log lines to ``out``: each kind once, then counted repeats.

    A line's kind is its level and message without the timestamp and the ``key=value``
    fields. The first line of a kind in an interval is written as it is (colours and
    timestamp removed); later ones are counted, and the count is written when the
    interval ends (``flush``).
    """

    def __init__(self, out: TextIO, interval_s: float = SUMMARY_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._out = out
        self._interval_s = interval_s
        self._clock = clock
        self._since = clock()
        self._repeats: dict[str, int] = {}
        self._partial = ""

    def feed(self, text: str) -> None:
        """Take more of the log (any chunk; a line may be split across chunks)."""
        text = self._partial + text
        *lines, self._partial = text.split("\n")
        for line in lines:
            self._line(line)
        if self._clock() - self._since >= self._interval_s:
            self.flush()

    def _line(self, raw: str) -> None:
        line = _TIMESTAMP.sub("", _ANSI.sub("", raw)).strip()
        if not line:
            return
        kind = _FIELDS.split(line, 1)[0]
        if kind in self._repeats:
            self._repeats[kind] += 1
            return
        self._repeats[kind] = 0
        self._out.write(f"rotel: {line}\n")
        self._out.flush()

    def flush(self, final: bool = False) -> None:
        """Write the repeat counts of the interval that ends now."""
        if final and self._partial:
            self._line(self._partial)
            self._partial = ""
        now = self._clock()
        for kind, n in self._repeats.items():
            if n:
                self._out.write(f"rotel: ({n} more in {now - self._since:.0f} s) {kind}\n")
        self._out.flush()
        self._repeats.clear()
        self._since = now


def _collector(args: argparse.Namespace) -> int:
    def fail(message: str, code: int) -> int:
        print(f"otel-rtc collector: {message}", file=sys.stderr)
        return code

    if args.exporter == "otlp" and not args.exporter_endpoint:
        return fail("--exporter-endpoint is required with --exporter otlp "
                    "(or use --exporter blackhole)", 2)
    if args.exporter_endpoint is not None:
        why = _endpoint_error(args.exporter_endpoint)
        if why is not None:
            return fail(why, 2)
    for port in (args.http_port, args.grpc_port):
        if not 0 < port < 65536:
            return fail(f"invalid port {port} (1-65535)", 2)
    if args.http_port == args.grpc_port:
        return fail(f"--http-port and --grpc-port are both {args.http_port}", 2)
    try:
        col = RotelCollector(
            exporter=args.exporter, exporter_endpoint=args.exporter_endpoint,
            exporter_protocol=args.exporter_protocol,
            metrics_processor=None if args.no_processor else processor_path(),
            http_port=args.http_port, grpc_port=args.grpc_port, log_file=args.log_file)
    except RotelNotInstalledError as exc:
        return fail(str(exc), 3)
    except ValueError as exc:
        return fail(str(exc), 2)
    if args.print_command:
        print(f"PYTHONPATH={shlex.quote(PACKAGE_PARENT)} " + shlex.join(col.command()))
        return 0
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    summary = LogSummary(sys.stderr)
    try:
        col.start()
    except RotelError as exc:
        col.stop()
        return fail(str(exc), 1)
    print(f"otel-rtc collector: OTLP/HTTP {col.http_endpoint}  OTLP/gRPC {col.grpc_endpoint}"
          f"  -> {args.exporter_endpoint or 'blackhole'}  (processor: "
          f"{'off' if args.no_processor else 'otel_rtc'}; Ctrl-C to stop)", flush=True)
    code = 0
    log = _Tail(col.log_path)
    try:
        while not stop.wait(_POLL_S):
            summary.feed(log.read())
            if not col.running:
                code = fail("rotel-agent exited", 1)
                break
    finally:
        col.stop()
        summary.feed(log.read())
        summary.flush(final=True)
        log.close()
        if args.log_file:
            print(f"otel-rtc collector: complete log in {args.log_file}", file=sys.stderr)
    return code


class _Tail:
    """Reads what was appended to a file since the last read."""

    def __init__(self, path: Path | None) -> None:
        self._fh = open(path, "rb") if path is not None else None

    def read(self) -> str:
        if self._fh is None:
            return ""
        return self._fh.read().decode(errors="replace")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``otel-rtc`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "collector":
        return _collector(args)
    if args.command == "report":
        return _report(args)
    return 2  # pragma: no cover - argparse enforces the sub-command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
