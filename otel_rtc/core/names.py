"""Metric names, attribute keys and sentinel values, defined once.

Pure core: stdlib only (no imports at all), so the in-process SDK side and the collector
processor spell every name from here. ``docs/metrics.md`` describes each metric.

Names that come from the OpenTelemetry semantic conventions (``messaging.*``,
``error.type``) keep their semconv spelling.
"""

from __future__ import annotations

# -- sentinels -------------------------------------------------------------------------
OTHER = "_other"
"""Attribute value that stands for "everything beyond a cardinality cap" (participants,
rooms, media kinds) and for "everyone outside the top-N" in the traffic load."""

ERROR_TYPE_OTHER = "_OTHER"
"""The semantic conventions' fallback value of ``error.type`` (their spelling, kept)."""

# -- attribute keys --------------------------------------------------------------------
ATTR_ROOM = "otel_rtc.room"
ATTR_PARTICIPANT = "otel_rtc.participant"
ATTR_DIRECTION = "otel_rtc.direction"
ATTR_MEDIA_KIND = "otel_rtc.media.kind"
ATTR_TRACK = "otel_rtc.track"
ATTR_PUBLISHER = "otel_rtc.publisher"
ATTR_ATTEMPT = "otel_rtc.attempt"
ATTR_ATTEMPT_NUMBER = "otel_rtc.attempt.number"
ATTR_OUTCOME = "otel_rtc.outcome"
ATTR_COMPONENT = "otel_rtc.component"
ATTR_DROP_REASON = "otel_rtc.drop.reason"
ATTR_BUFFER_NAME = "otel_rtc.buffer.name"
ATTR_LEAVE_REASON = "otel_rtc.session.leave_reason"
ATTR_RATE_WINDOW = "otel_rtc.rate.window"
ATTR_RATE_SUBWINDOW = "otel_rtc.rate.subwindow"
ATTR_BURST_SOURCE = "otel_rtc.burst.source"
ATTR_BURST_MESSAGE_COUNT = "otel_rtc.burst.message_count"
ATTR_BURST_BREAK_BEFORE = "otel_rtc.burst.break_before"
ATTR_BURST_WORST_CASE = "otel_rtc.burst.worst_case_latency"
ATTR_BURST_INCOMPLETE = "otel_rtc.burst.incomplete"
ATTR_ERROR_TYPE = "error.type"
ATTR_MESSAGING_SYSTEM = "messaging.system"
ATTR_MESSAGING_DESTINATION = "messaging.destination.name"
ATTR_MESSAGING_OPERATION_NAME = "messaging.operation.name"
ATTR_MESSAGING_OPERATION_TYPE = "messaging.operation.type"
ATTR_MESSAGE_ID = "messaging.message.id"
ATTR_RETRY_COUNT = "messaging.message.retry.count"

# -- self-telemetry --------------------------------------------------------------------
TELEMETRY_DROPPED = "otel_rtc.telemetry.dropped"
INTERNAL_ERRORS = "otel_rtc.internal.errors"
INTERNAL_CLAMPED = "otel_rtc.internal.clamped"
LOCAL_AGGREGATION_SERIES = "otel_rtc.local_aggregation.series"

# -- message handlers and buffers -------------------------------------------------------
PROCESS_DURATION = "messaging.process.duration"
QUEUE_WAIT_DURATION = "otel_rtc.message.queue_wait.duration"
RECEIVE_TO_FINISH_DURATION = "otel_rtc.message.receive_to_finish.duration"
CONSUMED_MESSAGES = "messaging.client.consumed.messages"
BUFFER_ENQUEUED = "otel_rtc.buffer.enqueued"
BUFFER_DROPPED = "otel_rtc.buffer.dropped"
BUFFER_DEPTH = "otel_rtc.buffer.depth"

# -- bursts ----------------------------------------------------------------------------
BURST_DURATION = "otel_rtc.burst.duration"
BURST_MESSAGES = "otel_rtc.burst.messages"
BURST_BREAK_DURATION = "otel_rtc.burst.break.duration"

# -- publish/subscribe -----------------------------------------------------------------
PUBLICATION = "otel_rtc.publication"
SUBSCRIPTION = "otel_rtc.subscription"
"""Prefixes of the ``.duration``, ``.muted_wait``, ``.attempts`` and ``.outcomes`` metrics."""

# -- sessions --------------------------------------------------------------------------
SESSION_JOINS = "otel_rtc.session.joins"
SESSION_LEAVES = "otel_rtc.session.leaves"
SESSION_DURATION = "otel_rtc.session.duration"
SESSION_ACTIVE = "otel_rtc.session.active"

# -- traffic ---------------------------------------------------------------------------
TRAFFIC_PACKETS = "otel_rtc.traffic.packets"
TRAFFIC_BYTES = "otel_rtc.traffic.bytes"
TRAFFIC_PACKETS_LOST = "otel_rtc.traffic.packets_lost"
TRAFFIC_PACKETS_OUT_OF_ORDER = "otel_rtc.traffic.packets_out_of_order"
TRAFFIC_PADDING_BYTES = "otel_rtc.traffic.padding_bytes"
TRAFFIC_BASELINED_REPORTS = "otel_rtc.traffic.baselined_reports"

# -- derived by the processors (rates and traffic load) ---------------------------------
RATES_SCOPE = "otel_rtc.rates"
"""Instrumentation scope of the in-process processors' output."""
LOAD_PREFIX = "otel_rtc.traffic.load."
LOAD_SCORE = LOAD_PREFIX + "score"
LOAD_SHARE = LOAD_PREFIX + "share"
LOAD_BYTES_RATE = LOAD_PREFIX + "bytes.rate"
LOAD_PACKETS_RATE = LOAD_PREFIX + "packets.rate"
LOAD_PARTICIPANTS = LOAD_PREFIX + "participants"
