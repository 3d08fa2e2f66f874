"""Generates the provisioned Grafana dashboards in ``dashboards/`` from one panel list.

Run ``python collector_config/grafana/make_dashboards.py`` after editing; the test
suite checks that the committed JSON matches this file and evaluates every query
against a real Prometheus (``tests/test_dashboards.py``).

Metric names are the OTLP -> Prometheus translations of docs/metrics.md: dots become
underscores, the unit becomes a suffix (``_seconds``, ``_bytes``), counters end in
``_total`` and histograms expose ``_bucket``/``_sum``/``_count``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"

DS = {"type": "prometheus", "uid": "prometheus"}
RI = "$__rate_interval"
CONCLUDED = 'otel_rtc_outcome=~"success|failure|abandoned"'
"""Outcomes an attempt reaches by itself (not ``resumed`` / ``superseded``)."""

# Derived by otel_rtc's rate processor (otel_rtc/sdk/processors.py): `<src>.rate` and
# `<src>.rate.peak` gauges (unit By/s -> `_bytes_per_second`, {packet}/s ->
# `_per_second`), and the traffic load score (and, opt-in with OTEL_RTC_LOAD_TOP_N, the
# share of the top-N participants). The rate is the mean over each export's own span
# (docs/rates.md); longer views average it over time downstream.
WINDOW = 'otel_rtc_rate_window="span"'
# Name matchers where the two tiers' Prometheus names differ: the SDK's exporter keeps the
# unit word already in the name (`_bytes_per_second`), the collector's drops it and maps
# unit "1" to `_ratio`; the panels read either.
BYTES_RATE = '__name__=~"otel_rtc_traffic_bytes_rate(_bytes)?_per_second"'
BYTES_PEAK = '__name__=~"otel_rtc_traffic_bytes_rate_peak(_bytes)?_per_second"'
PACKETS_RATE = "otel_rtc_traffic_packets_rate_per_second"
LOAD_SCORE = "otel_rtc_traffic_load_score_per_second"
LOAD_SHARE = '__name__=~"otel_rtc_traffic_load_share(_ratio)?"'

MSG_SEL = 'messaging_destination_name=~"$destination"'


def quantiles(metric: str, sel: str = "", by: str = "", qs: tuple[float, ...] = (0.5, 0.9, 0.99),
              legend: str = "") -> list[dict]:
    """One target per quantile of histogram ``metric`` (without ``_bucket``)."""
    group = f"le, {by}" if by else "le"
    out = []
    for q in qs:
        lbl = f"p{round(q * 100):d}"
        out.append({
            "expr": (f"histogram_quantile({q}, sum by ({group}) "
                     f"(rate({metric}_bucket{{{sel}}}[{RI}])))"),
            "legendFormat": f"{lbl} {legend}".strip(),
            "exemplar": True,
        })
    return out


def t(expr: str, legend: str = "") -> dict:
    return {"expr": expr, "legendFormat": legend}


# (row title, [(panel title, unit, description, targets, panel type)])
ROWS: list[tuple[str, list[tuple[str, str, str, list[dict], str]]]] = [
    ("Message latency", [
        ("Queue wait (received -> processing started)", "s",
         "Percentiles of otel_rtc.message.queue_wait.duration: how long messages sat in "
         "the input buffer. Exemplars link to the message spans in Jaeger.",
         quantiles("otel_rtc_message_queue_wait_duration_seconds", MSG_SEL), "timeseries"),
        ("Processing (messaging.process.duration)", "s",
         "Percentiles of the handler's own processing time.",
         quantiles("messaging_process_duration_seconds", MSG_SEL), "timeseries"),
        ("Receive to finish", "s",
         "Percentiles of otel_rtc.message.receive_to_finish.duration: queue wait plus "
         "processing, the latency a sender experiences.",
         quantiles("otel_rtc_message_receive_to_finish_duration_seconds", MSG_SEL),
         "timeseries"),
        ("Messages consumed by attempt", "ops",
         "messaging.client.consumed.messages per second, first deliveries vs retries "
         "(resends the application recognised).",
         [t(f"sum by (otel_rtc_attempt) (rate(messaging_client_consumed_messages_total"
            f"{{{MSG_SEL}}}[{RI}]))", "{{otel_rtc_attempt}}")], "timeseries"),
    ]),
    ("Bursts, drops and resends", [
        ("Burst duration (worst-case latency bound)", "s",
         "Percentiles of otel_rtc.burst.duration per consumer: the receive-to-finish bound "
         "that needs no arrival times (docs/bursts.md). Exemplars link to burst spans.",
         quantiles("otel_rtc_burst_duration_seconds", by="otel_rtc_burst_source",
                   qs=(0.5, 0.99), legend="{{otel_rtc_burst_source}}"), "timeseries"),
        ("Bursts per second", "ops",
         "Number of bursts that ended, per second, per consumer.",
         [t(f"sum by (otel_rtc_burst_source) (rate(otel_rtc_burst_duration_seconds_count"
            f"[{RI}]))", "{{otel_rtc_burst_source}}")], "timeseries"),
        ("Break between bursts", "s",
         "Percentiles of otel_rtc.burst.break.duration: idle time of the consumer.",
         quantiles("otel_rtc_burst_break_duration_seconds", by="otel_rtc_burst_source",
                   qs=(0.5, 0.99), legend="{{otel_rtc_burst_source}}"), "timeseries"),
        ("Burst throughput (messages per burst-second)", "ops",
         "Messages processed inside bursts divided by the time spent in bursts: the "
         "consumer's speed while busy (pooled rate).",
         [t(f"sum by (otel_rtc_burst_source) (rate(otel_rtc_burst_messages_sum[{RI}])) / "
            f"(sum by (otel_rtc_burst_source) (rate(otel_rtc_burst_duration_seconds_sum"
            f"[{RI}])) > 0)", "{{otel_rtc_burst_source}}")], "timeseries"),
        ("Messages per burst", "short",
         "Percentiles of otel_rtc.burst.messages.",
         quantiles("otel_rtc_burst_messages", by="otel_rtc_burst_source", qs=(0.5, 0.99),
                   legend="{{otel_rtc_burst_source}}"), "timeseries"),
        ("Buffer drops and resends", "ops",
         "Messages dropped by instrumented buffers (by reason) and retried deliveries "
         "(messaging.client.consumed.messages with otel_rtc.attempt=retry).",
         [t(f"sum by (otel_rtc_buffer_name, otel_rtc_drop_reason) "
            f"(rate(otel_rtc_buffer_dropped_total[{RI}]))",
            "dropped {{otel_rtc_buffer_name}} {{otel_rtc_drop_reason}}"),
          t(f'sum(rate(messaging_client_consumed_messages_total{{otel_rtc_attempt="retry"}}'
            f"[{RI}]))", "resends")], "timeseries"),
        ("Buffer drop ratio", "percentunit",
         "Share of offered messages that a buffer dropped.",
         [t(f"sum by (otel_rtc_buffer_name) (rate(otel_rtc_buffer_dropped_total[{RI}])) / "
            f"(sum by (otel_rtc_buffer_name) (rate(otel_rtc_buffer_enqueued_total[{RI}])) + "
            f"sum by (otel_rtc_buffer_name) (rate(otel_rtc_buffer_dropped_total[{RI}])) > 0)",
            "{{otel_rtc_buffer_name}}")], "timeseries"),
        ("Buffer depth", "short",
         "Messages waiting in each instrumented buffer (otel_rtc.buffer.depth).",
         [t("max by (otel_rtc_buffer_name) (otel_rtc_buffer_depth)",
            "{{otel_rtc_buffer_name}}")], "timeseries"),
    ]),
    ("Publish / subscribe", [
        ("Subscription time p90: first attempt vs retries", "s",
         "Request to first packet, muted time excluded, successful attempts only, by "
         "otel_rtc.attempt. The first series reflects the SFU's own speed.",
         quantiles("otel_rtc_subscription_duration_seconds",
                   'otel_rtc_outcome="success", otel_rtc_media_kind=~"$kind"',
                   by="otel_rtc_attempt", qs=(0.9,), legend="{{otel_rtc_attempt}}"),
         "timeseries"),
        ("Publication time p50/p90: first attempt vs retries", "s",
         "Publish request to published / first packet, successful attempts only.",
         quantiles("otel_rtc_publication_duration_seconds",
                   'otel_rtc_outcome="success", otel_rtc_media_kind=~"$kind"',
                   by="otel_rtc_attempt", qs=(0.5, 0.9), legend="{{otel_rtc_attempt}}"),
         "timeseries"),
        ("Subscription success rate by attempt", "percentunit",
         "Successful subscription attempts / attempts that reached an outcome of their "
         "own (success, failure, abandoned), by otel_rtc.attempt. Attempts interrupted "
         "by a resume or superseded by a newer attempt are left out: their outcome is "
         "the newer attempt's.",
         [t(f'sum by (otel_rtc_attempt) (rate(otel_rtc_subscription_outcomes_total'
            f'{{otel_rtc_outcome="success", otel_rtc_media_kind=~"$kind"}}[{RI}])) / '
            f'(sum by (otel_rtc_attempt) (rate(otel_rtc_subscription_outcomes_total'
            f'{{{CONCLUDED}, otel_rtc_media_kind=~"$kind"}}[{RI}])) > 0)',
            "{{otel_rtc_attempt}}")],
         "timeseries"),
        ("Publication success rate by attempt", "percentunit",
         "Successful publication attempts / attempts that reached an outcome of their "
         "own (success, failure, abandoned).",
         [t(f'sum by (otel_rtc_attempt) (rate(otel_rtc_publication_outcomes_total'
            f'{{otel_rtc_outcome="success", otel_rtc_media_kind=~"$kind"}}[{RI}])) / '
            f'(sum by (otel_rtc_attempt) (rate(otel_rtc_publication_outcomes_total'
            f'{{{CONCLUDED}, otel_rtc_media_kind=~"$kind"}}[{RI}])) > 0)',
            "{{otel_rtc_attempt}}")],
         "timeseries"),
        ("Subscription attempts per second", "ops",
         "Attempts started, by reason: first, retry, migration, resume, unmuted.",
         [t(f'sum by (otel_rtc_attempt) (rate(otel_rtc_subscription_attempts_total'
            f'{{otel_rtc_media_kind=~"$kind"}}[{RI}]))', "{{otel_rtc_attempt}}")],
         "timeseries"),
        ("Wait on muted publishers p90", "s",
         "Time subscribers waited for a muted or paused publisher (excluded from the "
         "durations above).",
         quantiles("otel_rtc_subscription_muted_wait_seconds", 'otel_rtc_media_kind=~"$kind"',
                   qs=(0.9,), legend="subscription")
         + quantiles("otel_rtc_publication_muted_wait_seconds",
                     'otel_rtc_media_kind=~"$kind"', qs=(0.9,), legend="publication"),
         "timeseries"),
    ]),
    ("Traffic", [
        ("Traffic rate, mean per export and over 1 min (otel_rtc)", "bps",
         "Bits per second per room and direction from otel_rtc's rate processor: the "
         "increase over each export's own span divided by that span (never "
         "extrapolated), and the 1 min average of the room's sum downstream "
         "(avg_over_time of a subquery).",
         [t(f'sum by (otel_rtc_room, otel_rtc_direction) ('
            f'{{{BYTES_RATE}, {WINDOW}, otel_rtc_room=~"$room"}}) * 8',
            "{{otel_rtc_room}} {{otel_rtc_direction}}"),
          # The sum first, then its average over time (a subquery): a participant who
          # left adds nothing after leaving, instead of its own average of its samples.
          t(f'avg_over_time((sum by (otel_rtc_room, otel_rtc_direction) ('
            f'{{{BYTES_RATE}, {WINDOW}, otel_rtc_room=~"$room"}}))[1m:]) * 8',
            "{{otel_rtc_room}} {{otel_rtc_direction}} 1 min")], "timeseries"),
        ("Traffic peak rate over sub-windows (otel_rtc)", "bps",
         "Highest 1 s rate (otel_rtc.rate.subwindow) within each export's span: the "
         "spikes a mean smooths away, and the one figure no downstream query can rebuild.",
         [t(f'max by (otel_rtc_room, otel_rtc_direction, otel_rtc_rate_subwindow) '
            f'({{{BYTES_PEAK}, otel_rtc_room=~"$room"}}) * 8',
            "{{otel_rtc_room}} {{otel_rtc_direction}} {{otel_rtc_rate_subwindow}}")],
         "timeseries"),
        ("Traffic rate, PromQL rate() for comparison", "bps",
         "The same counters through Prometheus rate(), which extrapolates to the range "
         "boundaries (docs/rates.md).",
         [t(f'sum by (otel_rtc_room, otel_rtc_direction) '
            f'(rate(otel_rtc_traffic_bytes_total{{otel_rtc_room=~"$room"}}[{RI}])) * 8',
            "{{otel_rtc_room}} {{otel_rtc_direction}}")], "timeseries"),
        ("Packet rate by media kind", "pps",
         "Packets per second by media kind and direction (otel_rtc rate processor).",
         [t(f'sum by (otel_rtc_media_kind, otel_rtc_direction) ({PACKETS_RATE}'
            f'{{{WINDOW}, otel_rtc_room=~"$room"}})',
            "{{otel_rtc_media_kind}} {{otel_rtc_direction}}")], "timeseries"),
        ("Packet loss ratio", "percentunit",
         "Packets lost / packets, per room and direction.",
         [t(f'sum by (otel_rtc_room, otel_rtc_direction) (rate(otel_rtc_traffic_packets_lost_'
            f'total{{otel_rtc_room=~"$room"}}[{RI}])) / (sum by (otel_rtc_room, '
            f'otel_rtc_direction) (rate(otel_rtc_traffic_packets_total{{otel_rtc_room=~'
            f'"$room"}}[{RI}])) > 0)', "{{otel_rtc_room}} {{otel_rtc_direction}}")],
         "timeseries"),
        ("Top-N participants by load share", "percentunit",
         "Share of the room's load score of the heaviest participants (otel_rtc traffic "
         "load, top-N plus one `_other` aggregate per room; opt-in with "
         "OTEL_RTC_LOAD_TOP_N).",
         [t(f'topk(10, max by (otel_rtc_room, otel_rtc_participant) '
            f'({{{LOAD_SHARE}, otel_rtc_room=~"$room"}}))',
            "{{otel_rtc_room}} {{otel_rtc_participant}}")], "bargauge"),
        ("Load score per room", "short",
         "Weighted bits+packets per second per room (docs/rates.md, traffic load).",
         [t(f'sum by (otel_rtc_room) ({LOAD_SCORE}{{otel_rtc_participant="", '
            f'otel_rtc_room=~"$room"}})',
            "{{otel_rtc_room}}")], "timeseries"),
    ]),
    ("Sessions", [
        ("Participant joins and leaves per second", "ops",
         "participant_joined / participant_left, exactly once per session "
         "(docs/sessions.md), leaves by reason.",
         [t(f"sum(rate(otel_rtc_session_joins_total[{RI}]))", "joins"),
          t(f"sum by (otel_rtc_session_leave_reason) (rate(otel_rtc_session_leaves_total"
            f"[{RI}]))", "leaves {{otel_rtc_session_leave_reason}}")], "timeseries"),
        ("Active sessions", "short",
         "Open plus suspended (mid-resume) sessions.",
         [t("sum(otel_rtc_session_active)", "active")], "timeseries"),
        ("Session duration p50/p90", "s",
         "Length of closed sessions.",
         quantiles("otel_rtc_session_duration_seconds", qs=(0.5, 0.9)), "timeseries"),
    ]),
]

VARIABLES = [
    ("destination", "Destination",
     "label_values(messaging_process_duration_seconds_count, messaging_destination_name)"),
    ("room", "Room", "label_values(otel_rtc_traffic_bytes_total, otel_rtc_room)"),
    ("kind", "Media kind",
     "label_values(otel_rtc_subscription_attempts_total, otel_rtc_media_kind)"),
]


def panel(pid: int, title: str, unit: str, desc: str, targets: list[dict], kind: str,
          x: int, y: int) -> dict:
    tg = []
    for i, tt in enumerate(targets):
        tg.append({"datasource": DS, "refId": chr(ord("A") + i), "range": True,
                   "instant": False, "exemplar": tt.get("exemplar", False),
                   "expr": tt["expr"], "legendFormat": tt["legendFormat"] or "__auto"})
    defaults: dict = {"unit": unit}
    if unit == "percentunit":
        defaults.update(min=0, max=1)
    p = {"id": pid, "type": kind, "title": title, "description": desc, "datasource": DS,
         "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
         "fieldConfig": {"defaults": defaults, "overrides": []},
         "targets": tg}
    if kind == "timeseries":
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom",
                                   "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                              "showPoints": "never", "spanNulls": False}
    else:
        p["options"] = {"orientation": "horizontal", "displayMode": "gradient",
                        "reduceOptions": {"calcs": ["lastNotNull"], "values": False}}
    return p


def dashboard() -> dict:
    panels = []
    pid = 1
    y = 0
    for row_title, row_panels in ROWS:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid += 1
        y += 1
        for i, (title, unit, desc, targets, kind) in enumerate(row_panels):
            panels.append(panel(pid, title, unit, desc, targets, kind, 12 * (i % 2),
                                y + 8 * (i // 2)))
            pid += 1
        y += 8 * ((len(row_panels) + 1) // 2)
    templating = [{
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": {"query": q, "refId": f"var-{name}"}, "definition": q,
        "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2, "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    } for name, label, q in VARIABLES]
    return {
        "uid": "otel-rtc-overview",
        "title": "otel_rtc: messaging, bursts, pub/sub, traffic, sessions",
        "description": "Generated by collector_config/grafana/make_dashboards.py; every "
                       "query is evaluated against a real Prometheus in "
                       "tests/test_dashboards.py.",
        "tags": ["otel_rtc"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-15m", "to": "now"},
        "templating": {"list": templating},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def render() -> dict[str, str]:
    """{file name: JSON text} of every generated dashboard."""
    return {"otel_rtc.json": json.dumps(dashboard(), indent=2) + "\n"}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
