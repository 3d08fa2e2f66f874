package rtcrateprocessor

import (
	"sort"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

const scoreDesc = "Traffic load score: weighted bits/s + weighted packets/s (otel_rtc)."

// emitter appends derived metrics to one resource, under the scope otel_rtc.collector,
// one metric per name.
type emitter struct {
	sm      pmetric.ScopeMetrics
	metrics map[string]pmetric.NumberDataPointSlice
}

func newEmitter(rm pmetric.ResourceMetrics) *emitter {
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(scopeName)
	return &emitter{sm: sm, metrics: map[string]pmetric.NumberDataPointSlice{}}
}

func (e *emitter) points(name, unit, desc string, sum bool) pmetric.NumberDataPointSlice {
	if dps, ok := e.metrics[name]; ok {
		return dps
	}
	m := e.sm.Metrics().AppendEmpty()
	m.SetName(name)
	m.SetUnit(unit)
	m.SetDescription(desc)
	var dps pmetric.NumberDataPointSlice
	if sum {
		s := m.SetEmptySum()
		s.SetIsMonotonic(true)
		s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		dps = s.DataPoints()
	} else {
		dps = m.SetEmptyGauge().DataPoints()
	}
	e.metrics[name] = dps
	return dps
}

// gauge appends one point with the given attributes (built once per series).
func (e *emitter) gauge(name, unit, desc string, attrs pcommon.Map, start, t int64, value float64) {
	dp := e.points(name, unit, desc, false).AppendEmpty()
	attrs.CopyTo(dp.Attributes())
	dp.SetStartTimestamp(pcommon.Timestamp(start))
	dp.SetTimestamp(pcommon.Timestamp(t))
	dp.SetDoubleValue(value)
}

func (e *emitter) plain(name, unit, desc string, start, t int64, value float64, kv ...string) {
	dp := e.points(name, unit, desc, false).AppendEmpty()
	dp.Attributes().EnsureCapacity(len(kv) / 2)
	for i := 0; i+1 < len(kv); i += 2 {
		dp.Attributes().PutStr(kv[i], kv[i+1])
	}
	dp.SetStartTimestamp(pcommon.Timestamp(start))
	dp.SetTimestamp(pcommon.Timestamp(t))
	dp.SetDoubleValue(value)
}

func (e *emitter) load(room string, l *roomLoad) {
	keys := make([]streamKey, 0, len(l.byStream))
	for k := range l.byStream {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.direction != b.direction {
			return a.direction < b.direction
		}
		if a.media != b.media {
			return a.media < b.media
		}
		return a.unit < b.unit
	})
	for _, k := range keys {
		if k.unit == "bytes" {
			e.plain(loadPrefix+"bytes.rate", "By/s", "Room traffic rate in bytes.", l.start, l.time,
				l.byStream[k], attrDirection, k.direction, attrMedia, k.media, attrRoom, room)
		} else {
			e.plain(loadPrefix+"packets.rate", "{packet}/s", "Room traffic rate in packets.", l.start, l.time,
				l.byStream[k], attrDirection, k.direction, attrMedia, k.media, attrRoom, room)
		}
	}
	e.plain(loadPrefix+"score", "{score}/s", scoreDesc, l.start, l.time, l.score, attrRoom, room)
	e.plain(loadPrefix+"participants", "{participant}", "Participants with traffic in the room.",
		l.start, l.time, float64(l.participants), attrRoom, room)
	parts := l.top
	if l.others.count > 0 || l.others.score != 0 {
		parts = append(parts, l.others)
	}
	for _, p := range parts {
		e.plain(loadPrefix+"score", "{score}/s", scoreDesc, l.start, l.time, p.score,
			attrParticipant, p.id, attrRoom, room)
		e.plain(loadPrefix+"share", "1", "Participant's share of the room's load score.",
			l.start, l.time, p.share, attrParticipant, p.id, attrRoom, room)
	}
}

// counts appends the resource's cumulative problem counts.
func (e *emitter) counts(r *resourceState) {
	if len(r.problems) == 0 {
		return
	}
	now := pcommon.NewTimestampFromTime(time.Now())
	keys := make([][2]string, 0, len(r.problems))
	for k := range r.problems {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i][0] < keys[j][0] || keys[i][0] == keys[j][0] && keys[i][1] < keys[j][1]
	})
	for _, k := range keys {
		unit, desc, attr := "{item}", "Telemetry input rejected by otel_rtc (invalid, over a cap, ...).", attrDropReason
		if k[0] == metricAnomalies {
			unit, desc, attr = "{anomaly}", "Anomalies of the rate engine's input, by kind.", attrAnomaly
		}
		dp := e.points(k[0], unit, desc, true).AppendEmpty()
		dp.Attributes().PutStr(attrComponent, componentName)
		dp.Attributes().PutStr(attr, k[1])
		dp.SetStartTimestamp(pcommon.Timestamp(r.startNs))
		dp.SetTimestamp(now)
		dp.SetIntValue(r.problems[k])
	}
}
