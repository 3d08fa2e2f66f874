"""The demo's final summary: what otel_rtc measured, in one compact, aligned block.

Two sources: the message server's own :class:`~examples.message_server.ServerStats`
(exact latency samples split by attempt kind, the last burst frame) and the telemetry
files the run wrote, read back with :mod:`otel_rtc.report` the way a backend would
see them (subscription timings, true rates and peaks, the traffic load, drops). Where an
item cannot be shown, the summary says why instead of leaving it out.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import otel_rtc.report as d

LATENCY_ROWS = (("queue_wait", "queue wait"), ("processing", "processing"),
                ("receive_to_finish", "receive→finish"))
ATTEMPTS = ("first", "retry")
SUB_KINDS = ("first", "retry", "resume", "migration", "unmuted")
LABEL_W = 17
TOP_ROOMS = 3
TOP_PARTICIPANTS = 3

# How the rate sampler gets to a peak (docs/processor.md): a stream is sampled once a
# second only after its first export; a sub-window peak then needs that many seconds of
# samples. The margin covers the first sample being only the baseline.
SAMPLE_MARGIN_S = 2.0


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    ms = v * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _mbps(v: float | None) -> str:
    return "-" if v is None else f"{v * 8 / 1e6:.2f} Mbit/s"


def _row(label: str, text: str) -> str:
    return f"  {label:<{LABEL_W}}{text}"


def _get(stats: Any, name: str, default: Any = None) -> Any:
    return getattr(stats, name, default)


def message_lines(stats: Any) -> list[str]:
    """Counters, latency first vs retry, bursts and the last frame's stats line."""
    counters = " · ".join(f"{name} {_get(stats, name, '-')}" for name in
                          ("sent", "received", "processed", "resends", "lost"))
    lines = [_row("messages", counters)]
    by_attempt = _get(stats, "by_attempt") or {}
    lines.append(_row("latency ms", f"{'':<6}{'p50':>7}{'p95':>7}{'p99':>7}{'mean':>7}{'n':>7}"))
    for key, label in LATENCY_ROWS:
        for i, kind in enumerate(ATTEMPTS):
            s = by_attempt.get(kind, {}).get(key, {})
            cells = "".join(f"{_ms(s.get(p)):>7}" for p in ("p50", "p95", "p99", "mean"))
            n = int(s["n"]) if "n" in s else 0
            lines.append(f"    {label if i == 0 else '':<{LABEL_W - 2}}{kind:<6}{cells}{n:>7}")
    if not by_attempt:
        lines.append(_row("", "(no per-attempt samples: the run was interrupted)"))
    bursts = _get(stats, "bursts")
    longest = _get(stats, "max_burst_duration_s")
    lines.append(_row("bursts", f"{bursts if bursts is not None else '-'} bursts; longest "
                      f"{_ms(longest)} ms = the worst-case receive→finish latency bound"))
    frame = _get(stats, "frame")
    if frame is not None:
        lines.append(_row("last frame", f"(as logged; worst-case latency bound "
                          f"{_ms(frame.worst_case_latency_s)} ms)"))
        lines.append("    " + frame.to_log_line())
    else:
        lines.append(_row("last frame", "no frame with bursts yet (frames are taken once a "
                          "second; run longer than 1 s)"))
    return lines


def _needs(what: str, run_s: float, export_s: float, peak_s: float) -> str:
    need = export_s + peak_s + SAMPLE_MARGIN_S
    if run_s >= need:
        # The run was long enough: this stream (or room) came late in it.
        return (f"{what}: not for this stream yet: it started late in the run, and a "
                f"{peak_s:g} s peak needs {peak_s:g} s of its 1 s samples after its first "
                "export")
    return (f"{what}: needs ~{need:g} s of traffic (first export at {export_s:g} s makes a "
            f"stream known to the 1 s sampler, then {peak_s:g} s of samples); this run had "
            f"{run_s:g} s: use --duration {need:g} or a lower --export-interval")


def telemetry_lines(data: d.TelemetryData | None, *, why_missing: str, run_s: float,
                    export_s: float, sfu: bool) -> list[str]:
    """Subscription timings, rates, room load and drops, from the telemetry files.

    Args:
        data: The run's telemetry, or ``None`` when it is not in files.
        why_missing: Shown for each item when ``data`` is ``None``.
        run_s: Seconds the SFU's traffic ran.
        export_s: The metric export interval.
        sfu: Whether the simulated SFU ran.
    """
    if data is None:
        return [_row(item, why_missing) for item in
                ("subscribe ms", "rates", "room load", "drops")]
    lines: list[str] = []
    # -- subscription timings by attempt kind
    subs = d.latency_by_attempt(data).get("subscription", {})
    if subs:
        lines.append(_row("subscribe ms", f"{'':<10}{'mean':>7}{'p95~':>7}{'max':>7}{'n':>7}"
                          "   (successful attempts; p95 from histogram buckets)"))
        for kind in [k for k in SUB_KINDS if k in subs] + sorted(
                str(k) for k in subs if k not in SUB_KINDS):
            h = subs[kind]
            lines.append(f"    {'':<{LABEL_W - 2}}{kind:<10}{_ms(h.mean):>7}"
                         f"{_ms(d.quantile(h, 0.95)):>7}{_ms(h.max):>7}{h.count:>7}")
    else:
        lines.append(_row("subscribe ms", "skipped (--no-sfu)" if not sfu else
                          "no subscription histogram in the metrics"))
    # -- the busiest stream: true rate and peak vs naive
    streams = d.stream_rates(data)
    if not sfu:
        lines.append(_row("rates", "skipped (--no-sfu): the SFU's traffic is what they "
                          "are derived from"))
    elif not streams:
        lines.append(_row("rates", _needs("no rate yet", run_s, export_s, 1.0)))
    else:
        s = streams[0]
        peak = max((v for _, v in s.peak_1s), default=None)
        peak5 = max((v for _, v in s.peak_5s), default=None)
        naive = max((v for _, v in s.naive), default=None)
        lines.append(_row("rates", f"busiest stream {s.label}, highest of any export:"))
        lines.append(_row("", f"true rate {_mbps(max(v for _, v in s.mean))} · 1 s peak "
                          f"{_mbps(peak)}" + (f" · 5 s peak {_mbps(peak5)}" if peak5 else "")))
        lines.append(_row("", f"naive (bytes since the previous export ÷ "
                          f"{s.naive_window_s:g} s): "
                          + (_mbps(naive) if naive is not None else "- (needs two exports)")))
        if peak is None:
            lines.append(_row("", _needs("1 s peak", run_s, export_s, 1.0)))
    # -- the top rooms by traffic load
    rooms = d.room_loads(data)
    if not sfu:
        lines.append(_row("room load", "skipped (--no-sfu)"))
    elif not rooms:
        lines.append(_row("room load", _needs("no load yet", run_s, export_s, 1.0)))
    else:
        at = datetime.fromtimestamp(rooms[0].at_ns / 1e9, tz=timezone.utc)
        lines.append(_row("room load", f"at the busiest export ({at:%H:%M:%S} UTC):"))
    for r in rooms[:TOP_ROOMS]:
        top = ", ".join(f"{who} {share * 100:.0f}%"
                        for who, share in r.shares[:TOP_PARTICIPANTS])
        who = f"{r.participants} participants" if r.participants is not None else ""
        lines.append(_row("", f"{r.room}: score {r.score_at / 1e6:.1f} M/s ({who}; "
                          f"top {top or '-'})"))
    # -- drops by where they happened
    totals: dict[str, list[str]] = {"buffer": [], "kernel": [], "exporter": [], "other": []}
    sums: dict[str, float] = dict.fromkeys(totals, 0.0)
    for (where, label), series in sorted(d.drops_over_time(data).items()):
        n = series[-1][1] if series else 0.0
        sums[where] += n
        if n:
            totals[where].append(f"{label} {n:.0f}")
    parts = []
    for where in totals:
        if where == "kernel" and not d.kernel_measured(data):
            parts.append("kernel not measured")
            continue
        detail = f" ({', '.join(totals[where])})" if totals[where] else ""
        parts.append(f"{where} {sums[where]:.0f}{detail}")
    lines.append(_row("drops", " · ".join(parts)))
    return lines


def legend_lines(resend_timeout_ms: float, max_attempts: int, buffer_size: int) -> list[str]:
    """One line per counter the summary shows."""
    items = (
        ("sent", "distinct messages the client sent (first attempts only)"),
        ("received", "datagrams that reached the server, dropped ones included "
                     "(= sent + resends)"),
        ("processed", "messages the handler finished (= received - buffer drops; a resend "
                      "of a still-queued message counts again)"),
        ("resends", f"datagrams resent after {resend_timeout_ms:g} ms without an ACK (the "
                    "server's 'retry' attempts)"),
        ("lost", f"messages the client gave up on after {max_attempts} attempts"),
        ("n", "messages (latency rows) or attempts (subscribe rows) behind each row"),
        ("bursts", "busy periods of the server's consumer, until it found its buffer empty"),
        ("participants", "participants with traffic in the room at the last export"),
        ("buffer", f"datagrams the full {buffer_size}-slot receive buffer refused "
                   "(otel_rtc.buffer.dropped)"),
        ("kernel", "datagrams the kernel dropped, the server socket's receive buffer being "
                   "full (chat.udp.receive_buffer.dropped)"),
        ("exporter", "spans, log records, metric points the export pipeline lost "
                     "(otel_rtc.telemetry.dropped, export.*)"),
        ("other", "items other components rejected (otel_rtc.telemetry.dropped); pubsub: "
                  "suspended = a late outcome of an attempt suspended for a resume"),
    )
    return ["Legend"] + [_row(name, text) for name, text in items]
