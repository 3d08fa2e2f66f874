package rtcrateprocessor

import (
	"math"
)

// The rate engine: the Go twin of otel_rtc's Python rate core (otel_rtc/core/rates.py).
// Its semantics are "The v2 contract" of docs/rates.md, held together with the Python
// core by the shared JSON vectors in tests/vectors/rates (engine_vectors_test.go runs
// them). Pure: no pdata, no clock; every time comes from the data.

const (
	nsPerS = 1e9
	// peakJitter: a run of intervals lasting at least 0.95 x the sub-window counts as
	// one sub-window (1 s samples arriving 0.999 s apart still resolve a 1 s peak).
	peakJitter = 0.95
	// peakMaxRun: a run longer than 2 x the sub-window is too coarse for its peak.
	peakMaxRun = 2.0
	// maxValue: beyond it sums of increments could overflow.
	maxValue = 1e30
	// FlagNoRecordedValue is OTLP's DataPointFlags.FLAG_NO_RECORDED_VALUE.
	FlagNoRecordedValue = 1
)

// Rejected points (Observe returns false) and anomalies of accepted points or series.
const (
	RejectNonFinite     = "non_finite"
	RejectOutOfRange    = "out_of_range"
	RejectNegativeDelta = "negative_delta"
	RejectNegativeValue = "negative_value"
	RejectBadSpan       = "bad_span"
	RejectDuplicate     = "duplicate"
	RejectOutOfOrder    = "out_of_order"
	RejectSeriesCap     = "series_cap"
	RejectInvalid       = "invalid"

	AnomalyReset           = "reset"
	AnomalyStartTimeChange = "start_time_change"
	AnomalyWrap            = "wrap"
	AnomalyGap             = "gap"
	AnomalyShortSpan       = "short_span"
	AnomalyStale           = "stale"
	AnomalyQuiet           = "quiet"
)

// IsRejection tells a rejection reason from an anomaly of an accepted point.
func IsRejection(reason string) bool {
	switch reason {
	case RejectNonFinite, RejectOutOfRange, RejectNegativeDelta, RejectNegativeValue,
		RejectBadSpan, RejectDuplicate, RejectOutOfOrder, RejectSeriesCap, RejectInvalid:
		return true
	}
	return false
}

// EngineConfig holds the engine's settings (docs/rates.md, "The v2 contract").
type EngineConfig struct {
	PeakSubwindowsNs []int64 // strictly increasing; the first is the default 1 s
	WindowsNs        []int64 // opt-in trailing windows, multiples of BucketNs
	BucketNs         int64
	MaxSeries        int
	QuietIntervals   int
	WrapModulus      float64 // 0: off
	GapAfterNs       int64
}

// Reading is what one series did since its previous reading.
type Reading[K comparable, T any] struct {
	Key     K
	Tag     T
	Mean    float64 // increase over [Start, Time] per second
	Start   int64
	Time    int64
	Peaks   []float64 // per sub-window; NaN when no run counts
	Windows []Window  // per window; Ok false when empty
	Final   bool      // the series went quiet: this 0 reading is its last
}

// Window is one trailing window's mean and span.
type Window struct {
	Rate        float64
	Start, Time int64
	Ok          bool
}

type interval struct {
	t0, t1 int64
	inc    float64
}

type run struct {
	ivs []interval // the current run, oldest first
	sum float64
}

type bucket struct {
	inc    float64
	t0, t1 int64
}

type series[T any] struct {
	tag     T
	cum     bool
	start   int64   // OTLP start reported by the source (0: unset)
	lastT   int64   // time of the last real point
	lastV   float64 // cumulative: its value
	stale   bool    // a NoRecordedValue marker came after the last point
	has     bool    // the open span holds at least one interval
	p0      int64   // start of the open span
	inc     float64 // increase over the open span
	pk      []float64
	runs    []run
	chain   bool // the last interval can be continued by the next one
	touched bool // a point arrived since the previous reading
	silent  int  // consecutive readings without a point
	buckets map[int64]*bucket
}

// Engine derives true rates from cumulative or delta counter points, per series.
// Not safe for concurrent use.
type Engine[K comparable, T any] struct {
	cfg       EngineConfig
	need, cap []int64
	minSpan   int64
	windowsN  []int64
	series    map[K]*series[T]
	order     []K // series in the order they appeared (deterministic reads)
	counts    map[string]int64
	onAnomaly func(reason string)
	total     *int // series tracked by every engine sharing the cap
}

// HoldNs is the hold of a reading span of spanNs for Read: new data must span 0.95 x it
// (the peaks' jitter tolerance).
func HoldNs(spanNs int64) int64 { return int64(float64(spanNs) * peakJitter) }

// NewEngine returns an engine. total, if not nil, is a series count shared by several
// engines under one MaxSeries cap; onAnomaly (may be nil) sees every reason.
func NewEngine[K comparable, T any](cfg EngineConfig, total *int, onAnomaly func(string)) *Engine[K, T] {
	e := &Engine[K, T]{cfg: cfg, series: map[K]*series[T]{}, counts: map[string]int64{},
		onAnomaly: onAnomaly, total: total}
	if e.total == nil {
		e.total = new(int)
	}
	for _, p := range cfg.PeakSubwindowsNs {
		e.need = append(e.need, int64(float64(p)*peakJitter))
		e.cap = append(e.cap, int64(float64(p)*peakMaxRun))
	}
	e.minSpan = e.need[0]
	for _, w := range cfg.WindowsNs {
		e.windowsN = append(e.windowsN, w/cfg.BucketNs)
	}
	return e
}

// Len is the number of series tracked.
func (e *Engine[K, T]) Len() int { return len(e.series) }

// Counts returns the count of every reason reported so far.
func (e *Engine[K, T]) Counts() map[string]int64 { return e.counts }

// Has tells whether key is tracked.
func (e *Engine[K, T]) Has(key K) bool { _, ok := e.series[key]; return ok }

func (e *Engine[K, T]) note(reason string) {
	e.counts[reason]++
	if e.onAnomaly != nil {
		e.onAnomaly(reason)
	}
}

func (e *Engine[K, T]) reject(reason string) bool {
	e.note(reason)
	return false
}

// Observe feeds one point. value: cumulative, the running total since start; delta,
// the increase over (start, time]. start 0 means unset. flags: OTLP data point flags.
// tag is attached to a new series and handed back in its readings. It returns false
// when the point was rejected (counted by reason).
func (e *Engine[K, T]) Observe(key K, value float64, time, start int64, cumulative bool, flags uint32, tag T) bool {
	if time < 0 || start < 0 {
		return e.reject(RejectInvalid)
	}
	s := e.series[key]
	if flags&FlagNoRecordedValue != 0 {
		// A staleness marker: neither a value nor a reset.
		if s != nil && !s.stale {
			s.stale = true
			e.note(AnomalyStale)
		}
		return true
	}
	if math.IsNaN(value) || math.IsInf(value, 0) {
		return e.reject(RejectNonFinite)
	}
	if math.Abs(value) > maxValue {
		return e.reject(RejectOutOfRange)
	}
	if value < 0 {
		if cumulative {
			return e.reject(RejectNegativeValue)
		}
		return e.reject(RejectNegativeDelta)
	}
	if start > time {
		return e.reject(RejectBadSpan)
	}
	if !cumulative && start != 0 && start == time {
		return e.reject(RejectBadSpan)
	}
	if cumulative && e.cfg.WrapModulus > 0 && value >= e.cfg.WrapModulus {
		return e.reject(RejectOutOfRange)
	}
	if s == nil {
		if *e.total >= e.cfg.MaxSeries {
			return e.reject(RejectSeriesCap)
		}
		*e.total++
		s = &series[T]{tag: tag, cum: cumulative, pk: make([]float64, len(e.need)),
			runs: make([]run, len(e.need))}
		for i := range s.pk {
			s.pk[i] = -1
		}
		e.series[key] = s
		e.order = append(e.order, key)
		s.touched = true
		e.open(s, value, time, start, -1)
		return true
	}
	lastT := s.lastT
	if time == lastT && (cumulative || start == 0 || start == s.start) {
		return e.reject(RejectDuplicate)
	}
	if time < lastT {
		return e.reject(RejectOutOfOrder)
	}
	if cumulative != s.cum {
		// Temporality changed: nothing before is comparable; start a new run.
		e.note(AnomalyReset)
		s.cum = cumulative
		s.touched = true
		e.open(s, value, time, start, lastT)
		return true
	}
	if cumulative {
		return e.cumulative(s, value, time, start, lastT)
	}
	return e.delta(s, value, time, start, lastT)
}

func (e *Engine[K, T]) cumulative(s *series[T], value float64, time, start, lastT int64) bool {
	if s.stale {
		s.stale = false
		if !(start != 0 && start == s.start && value >= s.lastV) {
			// No continuity shown by the start time: a new baseline (or a new run whose
			// own span starts after the last real point).
			s.touched = true
			e.open(s, value, time, start, lastT)
			return true
		}
	} else if start != s.start && start != 0 {
		// The source says it restarted (OTLP start time changed).
		e.note(AnomalyStartTimeChange)
		s.touched = true
		e.open(s, value, time, start, lastT)
		return true
	}
	inc := value - s.lastV
	if inc < 0 {
		m := e.cfg.WrapModulus
		if w := inc + m; m > 0 && w >= 0 && w < m/2 {
			e.note(AnomalyWrap)
			inc = w
		} else {
			// Restarted at an unknown instant in (lastT, time]: value is a lower bound
			// of the increase over that interval, never an overestimate.
			e.note(AnomalyReset)
			inc = value
		}
	}
	if time-lastT > e.cfg.GapAfterNs {
		e.note(AnomalyGap)
	}
	s.start = start
	s.lastV = value
	e.push(s, lastT, time, inc)
	return true
}

func (e *Engine[K, T]) delta(s *series[T], value float64, time, start, lastT int64) bool {
	if s.stale {
		s.stale = false
		if start == 0 {
			// The previous point's end no longer tells where this increment began.
			s.touched = true
			e.open(s, value, time, start, lastT)
			return true
		}
	}
	t0 := start
	if t0 == 0 {
		t0 = lastT
	}
	if t0 < lastT {
		return e.reject(RejectOutOfOrder) // overlaps known data
	}
	if t0-lastT > e.cfg.GapAfterNs || time-t0 > e.cfg.GapAfterNs {
		e.note(AnomalyGap)
	}
	s.start = start
	if t0 != lastT {
		s.chain = false // uncovered time between the two: no run crosses it
	}
	e.push(s, t0, time, value)
	return true
}

// push adds the interval (t0, t1] with increase inc to the open span.
func (e *Engine[K, T]) push(s *series[T], t0, t1 int64, inc float64) {
	s.lastT = t1
	s.touched = true
	if !s.has {
		s.has = true
		s.p0 = t0
	}
	s.inc += inc
	// Peaks: for each sub-window the run ending at this interval is the shortest run of
	// consecutive intervals lasting at least need; it counts if it lasts at most cap.
	// Every interval enters and leaves a run once: O(1) amortised per point.
	for j := range s.runs {
		r := &s.runs[j]
		if !s.chain || len(r.ivs) == 0 || r.ivs[len(r.ivs)-1].t1 != t0 {
			r.ivs = r.ivs[:0]
			r.sum = 0
		}
		r.ivs = append(r.ivs, interval{t0, t1, inc})
		r.sum += inc
		need := e.need[j]
		drop := 0
		for len(r.ivs)-drop > 1 && t1-r.ivs[drop+1].t0 >= need {
			r.sum -= r.ivs[drop].inc
			drop++
		}
		if drop > 0 {
			r.ivs = append(r.ivs[:0], r.ivs[drop:]...)
		}
		if dur := t1 - r.ivs[0].t0; dur >= need && dur <= e.cap[j] {
			if v := math.Max(r.sum, 0) * nsPerS / float64(dur); v > s.pk[j] {
				s.pk[j] = v
			}
		}
	}
	s.chain = true
	if len(e.windowsN) > 0 {
		if s.buckets == nil {
			s.buckets = map[int64]*bucket{}
		}
		k := floorDiv(t1-1, e.cfg.BucketNs) // buckets are (kB, (k+1)B]
		if b := s.buckets[k]; b == nil {
			s.buckets[k] = &bucket{inc, t0, t1}
			horizon := k - e.windowsN[len(e.windowsN)-1]
			for old := range s.buckets {
				if old <= horizon {
					delete(s.buckets, old)
				}
			}
		} else {
			b.inc += inc
			b.t0 = min(b.t0, t0)
			b.t1 = max(b.t1, t1)
		}
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// open starts a run at this point. after: time of the last real point (-1: none).
func (e *Engine[K, T]) open(s *series[T], value float64, time, start, after int64) {
	s.lastT = time
	s.start = start
	s.lastV = value
	s.chain = false
	real := start != 0 && start < time && (after < 0 || start >= after)
	if real && s.cum && value > 0 && time-start < e.minSpan {
		// Too short a span to hold this value (docs/rates.md): a baseline.
		e.note(AnomalyShortSpan)
		real = false
	}
	if real {
		// The value was accumulated over (start, time]: a real interval.
		e.push(s, start, time, value)
	} else if !s.has {
		s.p0 = time
	}
}

// Read closes the open span of each series (keys: these only; nil: all) at the
// emission instant now and returns their readings: one per series with a new interval
// since its previous reading, and a final 0 reading over [last point, now] for a series
// without a point at QuietIntervals consecutive reads (then forgotten).
//
// holdNs is the reading span's hold (docs/rates.md, "Held"): a series whose new data
// spans less than holdNs and that got a point since the previous read is not read now.
// 0 reads all new data.
func (e *Engine[K, T]) Read(now int64, keys []K, holdNs int64, out []Reading[K, T]) []Reading[K, T] {
	if keys == nil {
		keys = e.order
	}
	removed := false
	// One backing array for the peaks of every reading of this call.
	var peakBuf []float64
	for _, key := range keys {
		s := e.series[key]
		if s == nil {
			continue
		}
		switch {
		case s.has && !(s.touched && s.lastT-s.p0 < holdNs):
			if len(peakBuf) < len(s.pk) {
				peakBuf = make([]float64, len(s.pk)*64)
			}
			peaks := peakBuf[:len(s.pk):len(s.pk)]
			peakBuf = peakBuf[len(s.pk):]
			for i, p := range s.pk {
				peaks[i] = math.NaN()
				if p >= 0 {
					peaks[i] = p
				}
				s.pk[i] = -1
			}
			end := s.lastT
			out = append(out, Reading[K, T]{Key: key, Tag: s.tag,
				Mean: s.inc * nsPerS / float64(end-s.p0), Start: s.p0, Time: end,
				Peaks: peaks, Windows: e.windows(s, now)})
			s.has, s.inc, s.p0 = false, 0, end
			s.touched, s.silent = false, 0
		case s.touched:
			s.touched, s.silent = false, 0
		default:
			s.silent++
			if s.silent >= e.cfg.QuietIntervals {
				delete(e.series, key)
				*e.total--
				removed = true
				e.note(AnomalyQuiet)
				if now > s.lastT {
					out = append(out, Reading[K, T]{Key: key, Tag: s.tag, Start: s.lastT,
						Time: now, Peaks: make([]float64, len(s.pk)),
						Windows: make([]Window, len(e.windowsN)), Final: true})
				}
			}
		}
	}
	if removed {
		kept := e.order[:0]
		for _, k := range e.order {
			if _, ok := e.series[k]; ok {
				kept = append(kept, k)
			}
		}
		e.order = kept
	}
	return out
}

func (e *Engine[K, T]) windows(s *series[T], now int64) []Window {
	if len(e.windowsN) == 0 {
		return nil
	}
	res := make([]Window, len(e.windowsN))
	if len(s.buckets) == 0 {
		return res
	}
	kNow := floorDiv(now-1, e.cfg.BucketNs)
	for i, n := range e.windowsN {
		lo := kNow - n
		inc := 0.0
		t0, t1 := int64(-1), int64(-1)
		for k, b := range s.buckets {
			if lo < k && k <= kNow {
				inc += b.inc
				if t0 < 0 || b.t0 < t0 {
					t0 = b.t0
				}
				t1 = max(t1, b.t1)
			}
		}
		if t1 > t0 && t0 >= 0 {
			res[i] = Window{Rate: inc * nsPerS / float64(t1-t0), Start: t0, Time: t1, Ok: true}
		}
	}
	return res
}
