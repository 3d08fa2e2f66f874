package rtcrateprocessor

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"
)

const t0 = int64(1_700_000_000_000_000_000)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	f := NewFactory()
	for _, tc := range []struct {
		id      string
		want    *Config
		invalid bool
	}{
		{id: "rtcrate", want: createDefaultConfig()},
		{id: "rtcrate/custom", want: func() *Config {
			c := createDefaultConfig()
			c.Metrics = []string{"app.*.bytes", "otel_rtc.traffic.*"}
			c.PeakSubwindows = []time.Duration{time.Second, 5 * time.Second}
			c.Windows = []time.Duration{time.Minute, 5 * time.Minute}
			c.QuietIntervals, c.MaxSeries, c.GapAfter = 3, 500, 30*time.Second
			c.WrapModulus, c.ResourceIdle = 4294967296, 5*time.Minute
			c.Load.TopN, c.Load.Weights.Packet = 5, 2000
			return c
		}()},
		{id: "rtcrate/bad", invalid: true},
	} {
		t.Run(tc.id, func(t *testing.T) {
			cfg := f.CreateDefaultConfig()
			sub, err := cm.Sub(tc.id)
			if err != nil {
				t.Fatal(err)
			}
			if err := sub.Unmarshal(cfg); err != nil {
				t.Fatal(err)
			}
			err = confmap.Validate(cfg)
			if tc.invalid {
				if err == nil {
					t.Fatal("invalid config accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.(*Config)
			if got.QuietIntervals != tc.want.QuietIntervals || got.MaxSeries != tc.want.MaxSeries ||
				len(got.PeakSubwindows) != len(tc.want.PeakSubwindows) || len(got.Windows) != len(tc.want.Windows) ||
				got.WrapModulus != tc.want.WrapModulus || got.Load.TopN != tc.want.Load.TopN ||
				got.Load.Weights != tc.want.Load.Weights || got.GapAfter != tc.want.GapAfter ||
				len(got.Metrics) != len(tc.want.Metrics) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// batch builds one export of a traffic bytes counter: cumulative points of one series
// per call, with the resource of a sender.
func batch(points ...[3]int64) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "sfu")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName(metricBytes)
	m.SetUnit("By")
	s := m.SetEmptySum()
	s.SetIsMonotonic(true)
	s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	for _, p := range points { // time, value, flags
		dp := s.DataPoints().AppendEmpty()
		dp.SetStartTimestamp(pcommon.Timestamp(t0))
		dp.SetTimestamp(pcommon.Timestamp(p[0]))
		dp.SetIntValue(p[1])
		dp.SetFlags(pmetric.DataPointFlags(p[2]))
		a := dp.Attributes()
		a.PutStr(attrRoom, "r1")
		a.PutStr(attrParticipant, "alice")
		a.PutStr(attrDirection, "up")
		a.PutStr(attrMedia, "video")
	}
	return md
}

func newTestProcessor(t *testing.T, cfg *Config) (*consumertest.MetricsSink, func(pmetric.Metrics)) {
	t.Helper()
	sink := new(consumertest.MetricsSink)
	p, err := NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(Type), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return sink, func(md pmetric.Metrics) {
		if err := p.ConsumeMetrics(context.Background(), md); err != nil {
			t.Fatal(err)
		}
	}
}

// derived returns the points of one derived metric in the last batch the sink got.
func derived(t *testing.T, sink *consumertest.MetricsSink, name string) []pmetric.NumberDataPoint {
	t.Helper()
	all := sink.AllMetrics()
	md := all[len(all)-1]
	var out []pmetric.NumberDataPoint
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			if sms.At(j).Scope().Name() != scopeName {
				continue
			}
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				if m.Name() != name {
					continue
				}
				var dps pmetric.NumberDataPointSlice
				if m.Type() == pmetric.MetricTypeGauge {
					dps = m.Gauge().DataPoints()
				} else {
					dps = m.Sum().DataPoints()
				}
				for d := 0; d < dps.Len(); d++ {
					out = append(out, dps.At(d))
				}
			}
		}
	}
	return out
}

func attr(dp pmetric.NumberDataPoint, k string) string {
	v, _ := dp.Attributes().Get(k)
	return v.AsString()
}

// The reference spike through pdata: 1 s exports of a counter that runs at 100 Mbit/s
// for 10 s inside 5 minutes of 0; one batch holds the whole 5 minutes: mean 3.33 Mbit/s
// over the span, 1 s peak 100 Mbit/s, and the source passes through untouched.
func TestSpikeThroughPdata(t *testing.T) {
	sink, consume := newTestProcessor(t, createDefaultConfig())
	var pts [][3]int64
	v := int64(0)
	for s := int64(0); s <= 300; s++ {
		if s > 100 && s <= 110 {
			v += 12_500_000 // 100 Mbit/s
		}
		pts = append(pts, [3]int64{t0 + s*1e9, v, 0})
	}
	consume(batch(pts...))
	rate := derived(t, sink, metricBytes+rateSuffix)
	peak := derived(t, sink, metricBytes+peakSuffix)
	if len(rate) != 1 || len(peak) != 1 {
		t.Fatalf("rate %d points, peak %d", len(rate), len(peak))
	}
	if got := rate[0].DoubleValue() * 8; !closeTo(got, 100e6*10/300, 1e-9, 0) {
		t.Errorf("mean %v bit/s, want 3.33e6", got)
	}
	if got := peak[0].DoubleValue() * 8; !closeTo(got, 100e6, 1e-9, 0) {
		t.Errorf("1 s peak %v bit/s, want 1e8", got)
	}
	if attr(rate[0], attrWindow) != "span" || attr(peak[0], attrSubwindow) != "1s" ||
		attr(rate[0], attrRoom) != "r1" || attr(rate[0], attrParticipant) != "alice" {
		t.Errorf("attributes %v / %v", rate[0].Attributes().AsRaw(), peak[0].Attributes().AsRaw())
	}
	if int64(rate[0].StartTimestamp()) != t0 || int64(rate[0].Timestamp()) != t0+300e9 {
		t.Errorf("span [%d, %d]", rate[0].StartTimestamp(), rate[0].Timestamp())
	}
	score := derived(t, sink, loadPrefix+"score")
	if len(score) != 1 || !closeTo(score[0].DoubleValue(), 100e6*10/300, 1e-9, 0) || attr(score[0], attrRoom) != "r1" {
		t.Errorf("room score %v", score)
	}
	src := sink.AllMetrics()[0].ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0)
	if src.Name() != metricBytes || src.Sum().DataPoints().Len() != 301 {
		t.Errorf("source not passed through: %s %d", src.Name(), src.Sum().DataPoints().Len())
	}
}

// The NoRecordedValue example through pdata: 10/s sampled every 1 s with a
// staleness marker at 50 s reads 10/s, not a fake spike, and the marker is counted.
func TestStalenessMarkerThroughPdata(t *testing.T) {
	sink, consume := newTestProcessor(t, createDefaultConfig())
	readings := 0
	for s := int64(0); s <= 100; s++ {
		flags := int64(0)
		v := 10 * s
		if s == 50 {
			flags, v = 1, 0
		}
		consume(batch([3]int64{t0 + s*1e9, v, flags}))
		for _, dp := range derived(t, sink, metricBytes+rateSuffix) {
			readings++
			if !closeTo(dp.DoubleValue(), 10, 1e-9, 0) {
				t.Fatalf("at %d s: rate %v", s, dp.DoubleValue())
			}
		}
		for _, dp := range derived(t, sink, metricBytes+peakSuffix) {
			if !closeTo(dp.DoubleValue(), 10, 1e-9, 0) {
				t.Fatalf("at %d s: peak %v", s, dp.DoubleValue())
			}
		}
	}
	if readings < 9 { // one per 10 s reading span (the marker's batch is held)
		t.Errorf("%d readings in 100 s", readings)
	}
	var stale int64
	for _, dp := range derived(t, sink, metricAnomalies) {
		if attr(dp, attrAnomaly) == AnomalyStale {
			stale = dp.IntValue()
		}
	}
	if stale != 1 {
		t.Errorf("stale count %d, want 1", stale)
	}
}

// An app that derives in-process (its batches carry the otel_rtc.rates scope) is passed
// through: the collector never derives the same series twice.
func TestInProcessDerivationPassesThrough(t *testing.T) {
	sink, consume := newTestProcessor(t, createDefaultConfig())
	for s := int64(0); s < 3; s++ {
		md := batch([3]int64{t0 + s*1e9, 100 * s, 0})
		md.ResourceMetrics().At(0).ScopeMetrics().AppendEmpty().Scope().SetName(inProcessScope)
		consume(md)
		if n := len(derived(t, sink, metricBytes+rateSuffix)); n != 0 {
			t.Fatalf("derived %d points from an app that derives in-process", n)
		}
	}
}

// Rejections are counted by reason in otel_rtc.telemetry.dropped, never raised.
func TestRejectionsAreCounted(t *testing.T) {
	sink, consume := newTestProcessor(t, createDefaultConfig())
	consume(batch([3]int64{t0 + 1e9, 10, 0}, [3]int64{t0 + 1e9, 10, 0}, [3]int64{t0 + 5e8, 10, 0}))
	got := map[string]int64{}
	for _, dp := range derived(t, sink, metricDropped) {
		got[attr(dp, attrDropReason)] = dp.IntValue()
		if attr(dp, attrComponent) != componentName {
			t.Errorf("component %q", attr(dp, attrComponent))
		}
	}
	if got[RejectDuplicate] != 1 || got[RejectOutOfOrder] != 1 {
		t.Errorf("dropped %v", got)
	}
}

func TestShutdownVerifier(t *testing.T) {
	processortest.VerifyShutdown(t, NewFactory(), createDefaultConfig())
}

// The reading span: 1 s batches of one series give one reading per 10 s of data, and
// what the span still holds at shutdown is sent then, with the series' own resource.
func TestReadingSpanAndShutdownFlush(t *testing.T) {
	sink := new(consumertest.MetricsSink)
	p, err := NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(Type),
		createDefaultConfig(), sink)
	if err != nil {
		t.Fatal(err)
	}
	for s := int64(0); s <= 14; s++ { // 0 s: the baseline (start == time)
		md := batch([3]int64{t0 + s*1e9, 10 * s, 0})
		if err := p.ConsumeMetrics(context.Background(), md); err != nil {
			t.Fatal(err)
		}
		got := derived(t, sink, metricBytes+rateSuffix)
		if (s == 10) != (len(got) == 1) || len(got) > 1 {
			t.Fatalf("at %d s: %d readings", s, len(got))
		}
		if s == 10 && (int64(got[0].StartTimestamp()) != t0 || int64(got[0].Timestamp()) != t0+10e9) {
			t.Fatalf("span [%d, %d]", got[0].StartTimestamp(), got[0].Timestamp())
		}
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	all := sink.AllMetrics()
	if len(all) != 16 {
		t.Fatalf("%d batches, want 15 and the shutdown's", len(all))
	}
	got := derived(t, sink, metricBytes+rateSuffix)
	if len(got) != 1 || int64(got[0].StartTimestamp()) != t0+10e9 ||
		int64(got[0].Timestamp()) != t0+14e9 || !closeTo(got[0].DoubleValue(), 10, 1e-9, 0) {
		t.Fatalf("shutdown reading %v", got)
	}
	if v, _ := all[15].ResourceMetrics().At(0).Resource().Attributes().Get("service.name"); v.Str() != "sfu" {
		t.Errorf("shutdown batch resource %v", all[15].ResourceMetrics().At(0).Resource().Attributes().AsRaw())
	}
}

// A series is one series whatever order its attributes come in; values, keys and types
// all count.
func TestAttrsHash(t *testing.T) {
	m := func(kv ...any) pcommon.Map {
		a := pcommon.NewMap()
		for i := 0; i < len(kv); i += 2 {
			switch v := kv[i+1].(type) {
			case string:
				a.PutStr(kv[i].(string), v)
			case int:
				a.PutInt(kv[i].(string), int64(v))
			}
		}
		return a
	}
	if attrsHash(m("a", "x", "b", "y")) != attrsHash(m("b", "y", "a", "x")) {
		t.Error("order changed the hash")
	}
	for _, other := range []pcommon.Map{m("a", "y", "b", "x"), m("a", "x"), m("a", "x", "b", "y", "c", "z"),
		m("x", "a", "y", "b"), m("a", "x", "b", 1)} {
		if attrsHash(m("a", "x", "b", "y")) == attrsHash(other) {
			t.Errorf("%v hashes like a=x, b=y", other.AsRaw())
		}
	}
	if attrsHash(m("a", "1")) == attrsHash(m("a", 1)) {
		t.Error("a string and an int of the same text hash alike")
	}
}

// A resource forgotten as idle sends what its series still held, with its own resource,
// after the batch that found it idle.
func TestIdleResourceSendsWhatItHeld(t *testing.T) {
	cfg := createDefaultConfig()
	cfg.ResourceIdle = time.Nanosecond
	sink, consume := newTestProcessor(t, cfg)
	consume(batch([3]int64{t0, 0, 0}, [3]int64{t0 + 1e9, 1000, 0})) // 1 s of data: held
	if got := derived(t, sink, metricBytes+rateSuffix); len(got) != 0 {
		t.Fatalf("read before its span: %d points", len(got))
	}
	other := pmetric.NewMetrics()
	other.ResourceMetrics().AppendEmpty().Resource().Attributes().PutStr("service.name", "other")
	for i := 1; i < resourceIdleScan; i++ { // the 64th call looks for idle resources
		consume(other)
	}
	all := sink.AllMetrics()
	if len(all) != resourceIdleScan+1 {
		t.Fatalf("%d batches, want %d and the idle resource's", len(all), resourceIdleScan)
	}
	got := derived(t, sink, metricBytes+rateSuffix)
	if len(got) != 1 || !closeTo(got[0].DoubleValue(), 1000, 1e-9, 0) {
		t.Fatalf("idle flush %v", got)
	}
	if v, _ := all[resourceIdleScan].ResourceMetrics().At(0).Resource().Attributes().Get("service.name"); v.Str() != "sfu" {
		t.Errorf("flushed with resource %v", all[resourceIdleScan].ResourceMetrics().At(0).Resource().Attributes().AsRaw())
	}
}
