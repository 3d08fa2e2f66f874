"""otel_rtc demo: the example message server under bursty load, with a live summary.

Run it with ``./demo.sh`` (or ``python -m examples.demo``). It

1. calls :func:`otel_rtc.configure` — OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set,
   otherwise the embedded default: newline-delimited OTLP JSON files in a fresh folder
   per run, ``./telemetry-out/demo-<UTC time>`` (``--output-dir`` for another parent
   folder; ``--append`` appends to the files directly in it instead);
2. runs the example UDP message server (``examples/message_server.py``) for about
   20 s (``--duration``): a client sends bursts of messages, the server's tiny receive
   buffer drops some, the client resends after a timeout;
3. prints a live summary about once a second: progress, latency percentiles (queue
   wait, processing, receive-to-finish), bursts, drops and resends;
4. runs the simulated SFU (``examples/sfu_pubsub.py``) beside the server, in real
   time, so the pub/sub, session and traffic metrics are in the files too, and with
   them what the default metric processor derives from the traffic counters: true
   mean rates over each export's span, 1 s peaks, and the per-room traffic load, with
   its opt-in top-N participants switched on (``OTEL_RTC_LOAD_TOP_N``, default 5
   here; ``--no-sfu`` skips the SFU);
5. prints a final summary (``examples/demo_summary.py``): latency percentiles of first
   attempts and retries side by side, the last burst frame's stats line as logged,
   subscription timings by attempt kind, the busiest stream's true rate and 1 s peak
   next to the naive rate, the top rooms by traffic load, drops by where they happened,
   and a legend line for every counter;
6. writes the HTML report of the run (``otel-rtc report``; needs the ``report`` extra)
   and prints absolute paths to it and to the telemetry files.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import otel_rtc.report as report
from examples import demo_summary
from otel_rtc import Telemetry, configure

SERVER = {"buffer_size": 8, "resend_timeout_ms": 50.0, "max_attempts": 5}
"""The message server's settings, passed explicitly so that the legend states them."""

BAR_WIDTH = 30
REFRESH_S = 1.0
LATENCIES = (("queue_wait", "queue wait"), ("processing", "processing"),
             ("receive_to_finish", "receive→finish"))
PERCENTILES = ("p50", "p95", "p99")


# -- reading ServerStats --------------------------------------------------------------
# The server's stats object is read by attribute name, leniently: a missing field shows
# as "-" rather than breaking the demo.


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(obj, Mapping) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


def _percentiles_ms(stats: Any, key: str) -> dict[str, float | None]:
    """``{"p50": ms, ...}`` for one latency of the stats (seconds or ms fields)."""
    out: dict[str, float | None] = {}
    group = _get(stats, key, f"{key}_s", f"{key}_ms")
    for p in PERCENTILES:
        value: Any = None
        scale = 1000.0
        if group is not None and not isinstance(group, (int, float)):
            value = _get(group, p, f"{p}_s")
            if value is None:
                value = _get(group, f"{p}_ms")
                scale = 1.0
            elif isinstance(group, Mapping) is False and hasattr(group, f"{p}_ms"):
                pass
        if value is None:
            value = _get(stats, f"{key}_{p}", f"{key}_{p}_s")
            scale = 1000.0
        if value is None:
            value = _get(stats, f"{key}_{p}_ms")
            scale = 1.0
        out[p] = None if value is None else float(value) * scale
    return out


def _fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _int(stats: Any, *names: str) -> str:
    v = _get(stats, *names)
    return "-" if v is None else f"{int(v)}"


def summary_lines(stats: Any, elapsed_s: float, duration_s: float) -> list[str]:
    """The live summary block for one tick."""
    frac = 0.0 if duration_s <= 0 else min(max(elapsed_s / duration_s, 0.0), 1.0)
    filled = round(frac * BAR_WIDTH)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    lines = [
        f"[{bar}] {frac * 100:3.0f}%  {min(elapsed_s, duration_s):4.1f}/{duration_s:.1f} s"
        f"  sent {_int(stats, 'sent')}  received {_int(stats, 'received')}"
        f"  processed {_int(stats, 'processed')}",
    ]
    lat = []
    for key, label in LATENCIES:
        pct = _percentiles_ms(stats, key)
        lat.append(f"{label} {'/'.join(_fmt_ms(pct[p]) for p in PERCENTILES)}")
    lines.append("  latency ms p50/p95/p99: " + " | ".join(lat))
    max_burst = _get(stats, "max_burst_duration_s", "max_burst_duration")
    max_burst_ms = "-" if max_burst is None else _fmt_ms(float(max_burst) * 1000.0)
    frame = _get(stats, "frame", "latest_frame", "last_frame", "frame_stats")
    frame_txt = ""
    if frame is not None:
        frame_txt = (f"  last frame: {_int(frame, 'data_points')} bursts,"
                     f" {float(_get(frame, 'total_message_throughput_rate', default=0.0)):.0f}"
                     " msg/s")
    lines.append(
        f"  bursts {_int(stats, 'bursts', 'burst_count')}"
        f" (longest {max_burst_ms} ms = worst-case latency bound)"
        f"  dropped {_int(stats, 'dropped', 'drops')}  resends {_int(stats, 'resends')}"
        f"  lost {_int(stats, 'lost')}{frame_txt}"
    )
    return lines


# -- live display ---------------------------------------------------------------------


class LiveSummary:
    """Refreshes the summary at most once per ``refresh_s``.

    On a terminal the block is redrawn in place; otherwise (a pipe, a file, CI) each
    refresh prints the block's lines once, so logs stay readable.
    """

    def __init__(self, duration_s: float, out: TextIO = sys.stdout,
                 refresh_s: float = REFRESH_S, clock: Callable[[], float] = time.monotonic,
                 tty: bool | None = None) -> None:
        self.duration_s = duration_s
        self.out = out
        self.refresh_s = refresh_s
        self._clock = clock
        self._start = clock()
        self._last_draw: float | None = None
        self._drawn_lines = 0
        self.latest: Any = None
        self.ticks = 0
        self.tty = out.isatty() if tty is None else tty

    def update(self, stats: Any) -> None:
        """Progress callback of the server: remember ``stats``, redraw when due."""
        self.latest = stats
        now = self._clock()
        if self._last_draw is not None and now - self._last_draw < self.refresh_s:
            return
        self._last_draw = now
        self.draw(now - self._start)

    def draw(self, elapsed_s: float) -> None:
        """Print the summary for ``elapsed_s``."""
        if self.latest is None:
            return
        self.ticks += 1
        lines = summary_lines(self.latest, elapsed_s, self.duration_s)
        if self.tty:
            width = shutil.get_terminal_size((120, 20)).columns
            if self._drawn_lines:
                self.out.write(f"\x1b[{self._drawn_lines}F")
            for line in lines:
                self.out.write("\x1b[2K" + line[: max(width - 1, 20)] + "\n")
            self._drawn_lines = len(lines)
        else:
            self.out.write(" ".join(s.strip() for s in lines) + "\n")
        self.out.flush()

    def finish(self) -> None:
        """Draw the final state regardless of the refresh period."""
        self.draw(self._clock() - self._start)


# -- the demo ---------------------------------------------------------------------------


def _telemetry_report(h: Telemetry) -> list[str]:
    if h.mode == "file":
        lines = ["Telemetry written as OTLP JSON lines (one export per line):"]
        for signal, path in h.paths.items():
            size = path.stat().st_size if path.exists() else 0
            lines.append(f"  {signal:8s} {path.resolve()}  ({size:,} bytes)")
        metrics_path = h.paths["metrics"].resolve()
        out_dir = h.output_dir.resolve() if h.output_dir else metrics_path.parent
        lines += [
            "Open it:",
            f"  head -c 400 {metrics_path}; echo",
            f"  python -m json.tool --json-lines {metrics_path} | less",
            f"  grep -o '\"name\":\"[a-z_.]*\"' {metrics_path} | sort -u",
            "Ingest it into any OpenTelemetry Collector with the otlpjsonfile receiver:",
            f"  receivers: {{otlpjsonfile: {{include: [\"{out_dir}/*.jsonl\"]}}}}",
            f"See {DOCS / 'getting-started.md'}.",
        ]
        return lines
    if h.mode == "otlp":
        where = h.endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "(per-signal env)")
        return [f"Telemetry exported over OTLP ({h.protocol}) to {where}."]
    return ["Telemetry is disabled (OTEL_SDK_DISABLED=true): nothing was exported."]


DOCS = Path(__file__).resolve().parents[1] / "docs"


def _run_dir(base: Path, append: bool) -> Path:
    """The folder this run writes to: a fresh ``demo-<UTC time>`` one unless ``append``."""
    if append:
        return base.resolve()
    stamp = datetime.now(timezone.utc).strftime("demo-%Y%m%d-%H%M%S")
    run = base / stamp
    n = 1
    while run.exists():  # two runs in the same second
        n += 1
        run = base / f"{stamp}-{n}"
    return run.resolve()


def _final_summary(args: argparse.Namespace, h: Telemetry, stats: Any,
                   started_ns: int) -> list[str]:
    lines = ["", f"Summary ({args.duration:g} s of load"
                 + ("" if args.no_sfu else f"; simulated SFU {args.sfu_seconds:g} s beside it")
                 + ")"]
    if stats is not None:
        lines += demo_summary.message_lines(stats)
    data = None
    why = {"otlp": "exported over OTLP: see your backend",
           "disabled": "telemetry is disabled"}.get(h.mode, "")
    if h.mode == "file" and h.output_dir is not None:
        try:
            data = report.load(h.output_dir, since_ns=started_ns)
        except report.ReportError as exc:
            why = f"cannot read the telemetry files: {exc}"
    lines += demo_summary.telemetry_lines(
        data, why_missing=why, run_s=args.sfu_seconds, export_s=args.export_interval,
        sfu=not args.no_sfu)
    lines += demo_summary.legend_lines(SERVER["resend_timeout_ms"], SERVER["max_attempts"],
                                       SERVER["buffer_size"])
    return lines


def _write_report(h: Telemetry) -> str:
    if h.mode != "file" or h.output_dir is None:
        return "Report: none (the report reads the files of the embedded default)."
    try:
        path = report.write_report(h.output_dir)
    except report.ReportError as exc:
        return f"Report: not written: {exc}"
    return (f"Report: {path}\n  (one self-contained page: open it in a browser, offline; "
            f"rebuild it with: otel-rtc report {h.output_dir.resolve()})")


def _run_server(args: argparse.Namespace, h: Telemetry, live: LiveSummary) -> Any:
    from examples import message_server

    return asyncio.run(message_server.run(
        args.duration, seed=args.seed, progress=live.update,
        tracer_provider=h.tracer_provider, meter_provider=h.meter_provider, **SERVER,
    ))


class _SfuThread(threading.Thread):
    """The simulated SFU in real time, beside the message server.

    Real time, so that the rate sampler reads its traffic counters every second and the
    periodic exports carry true rates, peaks and the traffic load. Per participant, so
    that the load has participant scores, shares and a top-N.
    """

    def __init__(self, h: Telemetry, seconds: float) -> None:
        super().__init__(name="demo-sfu", daemon=True)
        self.h = h
        self.seconds = seconds
        self.summary: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        from examples import sfu_pubsub

        h = self.h
        try:
            # Flush at the end while the SFU's observable instruments are alive.
            self.summary = sfu_pubsub.run(
                self.seconds, virtual=False, seed=1, per_participant=True,
                tracer_provider=h.tracer_provider, meter_provider=h.meter_provider,
                logger_provider=h.logger_provider, on_finish=lambda: h.force_flush())
        except BaseException as exc:  # reported by the main thread
            self.error = exc


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m examples.demo",
                                 description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0,
                    help="seconds of load on the message server (default 20, max 600)")
    ap.add_argument("--output-dir", default=None,
                    help="parent folder of each run's fresh folder of OTLP JSON files when "
                         "no endpoint is set (default: $OTEL_RTC_OUTPUT_DIR or "
                         "./telemetry-out)")
    ap.add_argument("--append", action="store_true",
                    help="append to the files directly in the --output-dir folder instead "
                         "of writing a fresh folder (the report then covers every run)")
    ap.add_argument("--seed", type=int, default=0, help="random seed of the load")
    ap.add_argument("--sfu-seconds", type=float, default=None,
                    help="seconds the simulated SFU runs, in real time, beside the "
                         "message server (default: --duration)")
    ap.add_argument("--no-sfu", action="store_true", help="skip the simulated SFU")
    ap.add_argument("--export-interval", type=float, default=5.0,
                    help="seconds between metric exports (default 5)")
    args = ap.parse_args(argv)
    if not 0 < args.duration <= 600:
        ap.error("--duration must be in (0, 600]")
    if args.sfu_seconds is None:
        args.sfu_seconds = args.duration
    if not 0 < args.sfu_seconds <= 600:
        ap.error("--sfu-seconds must be in (0, 600]")
    if not 0 < args.export_interval <= 60:
        ap.error("--export-interval must be in (0, 60]")

    # The top-N participants' load score and share are opt-in; the demo shows them.
    os.environ.setdefault("OTEL_RTC_LOAD_TOP_N", "5")
    base = Path(args.output_dir or os.environ.get("OTEL_RTC_OUTPUT_DIR") or "telemetry-out")
    started_ns = time.time_ns()
    h = configure(service_name=os.environ.get("OTEL_SERVICE_NAME") or "otel-rtc-demo",
                  output_dir=_run_dir(base, args.append),
                  export_interval_s=args.export_interval, bursts=True)
    where = (f"files in {h.output_dir.resolve() if h.output_dir else '?'}"
             + (" (appending)" if args.append else "") if h.mode == "file"
             else f"OTLP {h.protocol}" if h.mode == "otlp" else "nowhere (disabled)")
    print(f"otel_rtc demo: message server under bursty load for {args.duration:g} s; "
          f"telemetry -> {where}", flush=True)
    live = LiveSummary(args.duration)
    stats: Any = None
    status = 0
    sfu = None if args.no_sfu else _SfuThread(h, args.sfu_seconds)
    try:
        if sfu is not None:
            sfu.start()
        stats = _run_server(args, h, live)
        if stats is not None:
            live.latest = stats
        live.finish()
        if sfu is not None:
            sfu.join()
            if sfu.error is not None:
                print(f"simulated SFU failed: {sfu.error!r}", file=sys.stderr, flush=True)
                status = 1
            else:
                summary = sfu.summary or {}
                print(f"simulated SFU ({args.sfu_seconds:g} s, beside the server): "
                      f"{summary.get('participant_joined', 0)} joins, "
                      f"{summary.get('subscriptions.first', 0)} first subscriptions, "
                      f"{summary.get('subscriptions.retry', 0)} retries; its traffic "
                      f"counters' true rates and load are in the metrics "
                      f"(otel_rtc.traffic.*.rate, otel_rtc.traffic.load.*; "
                      f"{DOCS / 'processor.md'})", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted", flush=True)
        status = 130
    finally:
        h.shutdown(timeout_s=10.0)

    for line in _final_summary(args, h, live.latest, started_ns):
        print(line)
    for line in _telemetry_report(h):
        print(line)
    print(_write_report(h), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
