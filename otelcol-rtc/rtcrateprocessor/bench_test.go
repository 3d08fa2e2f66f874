package rtcrateprocessor

import (
	"context"
	"strconv"
	"testing"

	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor/processortest"
)

// benchBatch is one second of data of one sender: 500 cumulative traffic counters of
// distinct participants (the workload of benchmarks/bench_otelcol.py).
func benchBatch(round int) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "sfu-0")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName(metricBytes)
	m.SetUnit("By")
	s := m.SetEmptySum()
	s.SetIsMonotonic(true)
	s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	for i := 0; i < 500; i++ {
		dp := s.DataPoints().AppendEmpty()
		a := dp.Attributes()
		a.PutStr(attrRoom, "room"+strconv.Itoa(i/10))
		a.PutStr(attrParticipant, "p"+strconv.Itoa(i))
		a.PutStr(attrDirection, []string{"up", "down"}[i%2])
		a.PutStr(attrMedia, []string{"audio", "video", "data"}[i%3])
		dp.SetStartTimestamp(pcommon.Timestamp(t0))
		dp.SetTimestamp(pcommon.Timestamp(t0 + int64(round+1)*1e9))
		dp.SetIntValue(int64((round + 1) * 1000 * (i + 1)))
	}
	return md
}

// BenchmarkConsume: ns per source point through the processor (the batch is built
// outside the timer; the sink drops what it gets).
func BenchmarkConsume(b *testing.B) {
	p, err := NewFactory().CreateMetrics(context.Background(), processortest.NewNopSettings(Type),
		createDefaultConfig(), consumertest.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	// Few batches re-stamped in place: the source data does not dominate the heap.
	const n = 8
	batches := make([]pmetric.Metrics, n)
	for i := range batches {
		batches[i] = benchBatch(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		md := batches[i%n]
		dps := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Sum().DataPoints()
		for k := 0; k < dps.Len(); k++ {
			dp := dps.At(k)
			dp.SetTimestamp(pcommon.Timestamp(t0 + int64(i+1)*1e9))
			dp.SetIntValue(int64((i + 1) * 1000 * (k + 1)))
		}
		// the derived scope appended by the previous pass over this batch
		md.ResourceMetrics().At(0).ScopeMetrics().RemoveIf(func(sm pmetric.ScopeMetrics) bool {
			return sm.Scope().Name() == scopeName
		})
		if err := p.ConsumeMetrics(context.Background(), md); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*500), "ns/point")
}
