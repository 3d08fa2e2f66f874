package rtcrateprocessor

import (
	"context"
	"errors"
	"hash/maphash"
	"path"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatautil"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
)

// Names shared with the Python processors (docs/metrics.md, docs/processor.md), so the
// dashboards work on either tier.
const (
	scopeName        = "otel_rtc.collector"
	inProcessScope   = "otel_rtc.rates" // the app derives its own rates: pass through
	componentName    = "collector_processor"
	rateSuffix       = ".rate"
	peakSuffix       = ".rate.peak"
	loadPrefix       = "otel_rtc.traffic.load."
	metricDropped    = "otel_rtc.telemetry.dropped"
	metricAnomalies  = "otel_rtc.rates.anomalies"
	metricBytes      = "otel_rtc.traffic.bytes"
	metricPackets    = "otel_rtc.traffic.packets"
	attrWindow       = "otel_rtc.rate.window"
	attrSubwindow    = "otel_rtc.rate.subwindow"
	attrComponent    = "otel_rtc.component"
	attrDropReason   = "otel_rtc.drop.reason"
	attrAnomaly      = "otel_rtc.rate.anomaly"
	attrRoom         = "otel_rtc.room"
	attrParticipant  = "otel_rtc.participant"
	attrDirection    = "otel_rtc.direction"
	attrMedia        = "otel_rtc.media.kind"
	reasonMissing    = "missing_attributes"
	maxResources     = 10000
	resourceIdleScan = 64 // batches between two scans for idle resources
)

type seriesKey struct {
	name  string
	attrs [2]uint64 // attrsHash
}

// hashSeeds: attrsHash's two 64-bit halves (random per process: keys live in memory only).
var hashSeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

// attrsHash identifies a point's attributes whatever their order: per half, the sum of
// each attribute's hash. It neither sorts nor allocates for string values, which is
// what the per-point cost needs (pdatautil.MapHash sorts the keys: half of the
// processor's time in BenchmarkConsume).
func attrsHash(m pcommon.Map) [2]uint64 {
	var h [2]uint64
	m.Range(func(k string, v pcommon.Value) bool {
		val := v.Str()
		if v.Type() != pcommon.ValueTypeStr {
			val = v.AsString()
		}
		for i, seed := range hashSeeds {
			// key, value and type mixed so that swapping key and value differs
			h[i] += maphash.String(seed, k)*0x9E3779B97F4A7C15 ^
				(maphash.String(seed, val) + uint64(v.Type()))
		}
		return true
	})
	return h
}

// meta is what the derived points of one series need, built on its first point.
type meta struct {
	rateName, peakName, unit, rateDesc, peakDesc string
	spanAttrs                                    pcommon.Map   // source attributes + window="span"
	peakAttrs                                    []pcommon.Map // + subwindow, per peak
	windowAttrs                                  []pcommon.Map // + window, per opt-in window
	rates                                        bool          // emit .rate / .rate.peak
	load                                         *loadRow      // room, participant, stream
}

// resourceState is kept per resource (a collector derives per resource: its series
// are read at each of its batches).
type resourceState struct {
	resource pcommon.Resource // a copy: what a reading outside its batches is sent with
	engine   *Engine[seriesKey, *meta]
	problems map[[2]string]int64 // (metric, reason) -> count
	upstream bool                // the app derives in-process
	lastSeen time.Time
	startNs  int64
}

type rateProcessor struct {
	cfg   *Config
	eng   EngineConfig
	next  consumer.Metrics
	names map[string][2]bool // metric name -> (rates, load)
	peaks []string           // otel_rtc.rate.subwindow values
	wins  []string           // otel_rtc.rate.window values of the opt-in windows

	holdNs    int64 // HoldNs of ReadingSpan
	mu        sync.Mutex
	total     int // series tracked, under MaxSeries
	resources map[[16]byte]*resourceState
	calls     int
	flushed   []pmetric.Metrics // what forgetIdle read, sent by ConsumeMetrics after unlocking
}

func newProcessor(_ processor.Settings, cfg *Config, next consumer.Metrics) (*rateProcessor, error) {
	p := &rateProcessor{cfg: cfg, eng: cfg.engineConfig(), next: next,
		holdNs: HoldNs(int64(cfg.ReadingSpan)),
		names:  map[string][2]bool{}, resources: map[[16]byte]*resourceState{}}
	for _, d := range cfg.PeakSubwindows {
		p.peaks = append(p.peaks, secondsLabel(d))
	}
	for _, d := range cfg.Windows {
		p.wins = append(p.wins, secondsLabel(d))
	}
	return p, nil
}

// secondsLabel: 1s -> "1s", 500ms -> "0.5s" (the Python core's labels).
func secondsLabel(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'g', -1, 64) + "s"
}

func (p *rateProcessor) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: true}
}

func (p *rateProcessor) Start(context.Context, component.Host) error { return nil }

// Shutdown sends what each resource's series hold (a reading span's unread data) onward,
// so the last seconds before a shutdown are not lost.
func (p *rateProcessor) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	var out []pmetric.Metrics
	for k, r := range p.resources {
		out = p.flush(r, out)
		delete(p.resources, k)
	}
	p.total = 0
	p.mu.Unlock()
	return p.send(ctx, out)
}

// flush reads every series of r now, with no reading span, into a batch of its own
// resource (appended to out when it carries anything).
func (p *rateProcessor) flush(r *resourceState, out []pmetric.Metrics) []pmetric.Metrics {
	if r.upstream || r.engine.Len() == 0 {
		return out
	}
	readings := r.engine.Read(time.Now().UnixNano(), nil, 0, nil)
	if len(readings) == 0 {
		return out
	}
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	r.resource.CopyTo(rm.Resource())
	p.emitProblems(rm, r, readings)
	return append(out, md)
}

func (p *rateProcessor) send(ctx context.Context, mds []pmetric.Metrics) error {
	var errs []error
	for _, md := range mds {
		errs = append(errs, p.next.ConsumeMetrics(ctx, md))
	}
	return errors.Join(errs...)
}

// selects says whether a metric feeds the rate outputs and/or the load; by name only,
// so an unselected metric costs one map lookup.
func (p *rateProcessor) selects(name string) (rates, load bool) {
	if sel, ok := p.names[name]; ok {
		return sel[0], sel[1]
	}
	derived := hasPrefix(name, loadPrefix) || hasSuffix(name, rateSuffix) || hasSuffix(name, peakSuffix)
	if !derived {
		for _, pat := range p.cfg.Metrics {
			if m, _ := path.Match(pat, name); m {
				rates = true
				break
			}
		}
		load = p.cfg.Load.Enabled && (name == metricBytes || name == metricPackets)
	}
	if len(p.names) < 10000 {
		p.names[name] = [2]bool{rates, load}
	}
	return rates, load
}

func hasSuffix(s, suf string) bool { return len(s) >= len(suf) && s[len(s)-len(suf):] == suf }
func hasPrefix(s, pre string) bool { return len(s) >= len(pre) && s[:len(pre)] == pre }

// ConsumeMetrics reads every selected counter point; each batch of a resource is an
// emission instant for that resource's series (docs/rates.md: emission follows the
// data). The derived gauges are appended to the resource under the scope
// otel_rtc.collector, and everything is passed on.
func (p *rateProcessor) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	p.mu.Lock()
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		p.consumeResource(rms.At(i))
	}
	p.calls++
	if p.calls%resourceIdleScan == 0 {
		p.forgetIdle()
	}
	idle := p.flushed
	p.flushed = nil
	p.mu.Unlock()
	return errors.Join(p.next.ConsumeMetrics(ctx, md), p.send(ctx, idle))
}

// forgetIdle forgets the resources that sent nothing for ResourceIdle; what their series
// still held is read once more into p.flushed, to be sent with their own resource.
func (p *rateProcessor) forgetIdle() {
	limit := time.Now().Add(-p.cfg.ResourceIdle)
	for k, r := range p.resources {
		if r.lastSeen.Before(limit) {
			p.flushed = p.flush(r, p.flushed)
			p.total -= r.engine.Len()
			delete(p.resources, k)
		}
	}
}

// resource returns the state of the resource rm whose attributes hash to k, created on
// its first selected metric.
func (p *rateProcessor) resource(rm pmetric.ResourceMetrics, k [16]byte) *resourceState {
	r := p.resources[k]
	if r == nil {
		if len(p.resources) >= maxResources {
			p.forgetIdle()
		}
		r = &resourceState{resource: pcommon.NewResource(), problems: map[[2]string]int64{},
			startNs: time.Now().UnixNano()}
		rm.Resource().CopyTo(r.resource)
		r.engine = NewEngine[seriesKey, *meta](p.eng, &p.total, func(reason string) {
			if IsRejection(reason) {
				r.problems[[2]string{metricDropped, reason}]++
			} else {
				r.problems[[2]string{metricAnomalies, reason}]++
			}
		})
		p.resources[k] = r
	}
	r.lastSeen = time.Now()
	return r
}

func (p *rateProcessor) consumeResource(rm pmetric.ResourceMetrics) {
	// A resource with series is read at every batch of it, even one without them.
	rk := pdatautil.MapHash(rm.Resource().Attributes())
	res := p.resources[rk]
	if res != nil {
		res.lastSeen = time.Now()
	}
	var latest int64
	sms := rm.ScopeMetrics()
	for i := 0; i < sms.Len(); i++ {
		switch sms.At(i).Scope().Name() {
		case inProcessScope:
			// The app derives in-process: never derive the same series twice.
			res = p.resource(rm, rk)
			if !res.upstream {
				res.upstream = true
				p.total -= res.engine.Len()
				res.engine = NewEngine[seriesKey, *meta](p.eng, &p.total, res.engine.onAnomaly)
			}
		}
	}
	if res != nil && res.upstream {
		p.emitProblems(rm, res, nil)
		return
	}
	n := sms.Len()
	for i := 0; i < n; i++ {
		sm := sms.At(i)
		if sm.Scope().Name() == scopeName {
			continue // our own output (a second collector in a chain)
		}
		ms := sm.Metrics()
		for j := 0; j < ms.Len(); j++ {
			m := ms.At(j)
			rates, load := p.selects(m.Name())
			if !rates && !load {
				continue
			}
			if res == nil {
				res = p.resource(rm, rk)
			}
			var hist, cum bool
			switch m.Type() {
			case pmetric.MetricTypeSum:
				s := m.Sum()
				if !s.IsMonotonic() {
					continue
				}
				cum = s.AggregationTemporality() == pmetric.AggregationTemporalityCumulative
				if !cum && s.AggregationTemporality() != pmetric.AggregationTemporalityDelta {
					res.engine.note(RejectInvalid)
					continue
				}
				dps := s.DataPoints()
				for k := 0; k < dps.Len(); k++ {
					dp := dps.At(k)
					v := dp.DoubleValue()
					if dp.ValueType() == pmetric.NumberDataPointValueTypeInt {
						v = float64(dp.IntValue())
					}
					if p.observe(res, m, false, rates, load, dp.Attributes(), v, int64(dp.Timestamp()),
						int64(dp.StartTimestamp()), cum, uint32(dp.Flags())) {
						latest = max(latest, int64(dp.Timestamp()))
					}
				}
				continue
			case pmetric.MetricTypeHistogram:
				h := m.Histogram()
				hist = true
				cum = h.AggregationTemporality() == pmetric.AggregationTemporalityCumulative
				if !cum && h.AggregationTemporality() != pmetric.AggregationTemporalityDelta {
					res.engine.note(RejectInvalid)
					continue
				}
				dps := h.DataPoints()
				for k := 0; k < dps.Len(); k++ {
					dp := dps.At(k)
					if p.observe(res, m, hist, rates, false, dp.Attributes(), float64(dp.Count()),
						int64(dp.Timestamp()), int64(dp.StartTimestamp()), cum, uint32(dp.Flags())) {
						latest = max(latest, int64(dp.Timestamp()))
					}
				}
			}
		}
	}
	if res == nil {
		return
	}
	// One emission instant of the resource's series, at its data time.
	if latest == 0 {
		latest = time.Now().UnixNano()
	}
	p.emitProblems(rm, res, res.engine.Read(latest, nil, p.holdNs, nil))
}

// observe feeds one point; true when it was accepted.
func (p *rateProcessor) observe(res *resourceState, m pmetric.Metric, hist, rates, load bool,
	attrs pcommon.Map, v float64, t, start int64, cum bool, flags uint32) bool {
	key := seriesKey{name: m.Name(), attrs: attrsHash(attrs)}
	var tag *meta
	if !res.engine.Has(key) {
		tag = p.newMeta(m, hist, rates, load, attrs)
		if tag == nil {
			res.engine.note(reasonMissing)
			return false
		}
	}
	return res.engine.Observe(key, v, t, start, cum, flags, tag)
}

func (p *rateProcessor) newMeta(m pmetric.Metric, hist, rates, load bool, attrs pcommon.Map) *meta {
	name := m.Name()
	t := &meta{rates: rates}
	if load && !hist {
		t.load = trafficOf(name, attrs)
		if t.load == nil && !rates {
			return nil
		}
	}
	if rates {
		t.rateName, t.peakName, t.unit = name+rateSuffix, name+peakSuffix, rateUnit(m.Unit(), hist)
		t.rateDesc = "Rate of " + name + ": mean over the data since the previous reading."
		t.peakDesc = "Peak rate of " + name + " over short sub-windows, from real samples."
		with := func(k, v string) pcommon.Map {
			a := pcommon.NewMap()
			a.EnsureCapacity(attrs.Len() + 1)
			attrs.CopyTo(a)
			a.PutStr(k, v)
			return a
		}
		t.spanAttrs = with(attrWindow, "span")
		for _, l := range p.peaks {
			t.peakAttrs = append(t.peakAttrs, with(attrSubwindow, l))
		}
		for _, l := range p.wins {
			t.windowAttrs = append(t.windowAttrs, with(attrWindow, l))
		}
	}
	return t
}

func rateUnit(unit string, histogram bool) string {
	switch {
	case histogram:
		return "{measurement}/s"
	case unit == "" || unit == "1":
		return "1/s"
	}
	return unit + "/s"
}

func trafficOf(name string, attrs pcommon.Map) *loadRow {
	str := func(k string) (string, bool) {
		v, ok := attrs.Get(k)
		if !ok || v.Type() != pcommon.ValueTypeStr {
			return "", false
		}
		return v.Str(), true
	}
	room, ok1 := str(attrRoom)
	dir, ok2 := str(attrDirection)
	media, ok3 := str(attrMedia)
	if !ok1 || !ok2 || !ok3 || (dir != "up" && dir != "down") ||
		(media != "audio" && media != "video" && media != "data") {
		return nil
	}
	part, _ := str(attrParticipant)
	unit := "packets"
	if name == metricBytes {
		unit = "bytes"
	}
	return &loadRow{room: room, participant: part, stream: streamKey{dir, media, unit}}
}

// emitProblems appends the readings, the load of their rooms and the resource's
// problem counts under the scope otel_rtc.collector.
func (p *rateProcessor) emitProblems(rm pmetric.ResourceMetrics, res *resourceState,
	readings []Reading[seriesKey, *meta]) {
	if len(readings) == 0 && len(res.problems) == 0 {
		return
	}
	em := newEmitter(rm)
	var rows []loadRow
	for i := range readings {
		r := &readings[i]
		t := r.Tag
		if t.rates {
			em.gauge(t.rateName, t.unit, t.rateDesc, t.spanAttrs, r.Start, r.Time, r.Mean)
			for j, w := range r.Windows {
				if w.Ok {
					em.gauge(t.rateName, t.unit, t.rateDesc, t.windowAttrs[j], w.Start, w.Time, w.Rate)
				}
			}
			for j, pk := range r.Peaks {
				if pk == pk { // not NaN: a run counted
					em.gauge(t.peakName, t.unit, t.peakDesc, t.peakAttrs[j], r.Start, r.Time, pk)
				}
			}
		}
		if t.load != nil {
			row := *t.load
			row.rate, row.start, row.time = r.Mean, r.Start, r.Time
			rows = append(rows, row)
		}
	}
	if len(rows) > 0 {
		loads := roomLoads(rows, p.cfg.Load.TopN, p.cfg.Load.Weights)
		rooms := make([]string, 0, len(loads))
		for room := range loads {
			rooms = append(rooms, room)
		}
		sort.Strings(rooms)
		for _, room := range rooms {
			em.load(room, loads[room])
		}
	}
	em.counts(res)
}
