// Package rtcrateprocessor is otel_rtc's native rate processor for the OpenTelemetry
// Collector: true mean rates over the data's own span, the 1 s peak and the per-room
// traffic load, with the semantics (and the shared test vectors) of otel_rtc's Python
// core (docs/rates.md).
package rtcrateprocessor

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
)

// Type is the processor's config key.
var Type = component.MustNewType("rtcrate")

// NewFactory returns the rtcrate processor factory.
func NewFactory() processor.Factory {
	return processor.NewFactory(Type, func() component.Config { return createDefaultConfig() },
		processor.WithMetrics(createMetrics, component.StabilityLevelAlpha))
}

func createMetrics(_ context.Context, set processor.Settings, cfg component.Config,
	next consumer.Metrics) (processor.Metrics, error) {
	return newProcessor(set, cfg.(*Config), next)
}
