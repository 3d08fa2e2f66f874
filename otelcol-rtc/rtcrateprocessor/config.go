package rtcrateprocessor

import (
	"errors"
	"fmt"
	"path"
	"time"
)

// Config of the rtcrate processor. The defaults are the Python core's
// (otel_rtc/core/rates.py, docs/rates.md "The v2 contract").
type Config struct {
	// Metrics are glob patterns (path.Match) of the source metric names that get
	// `<name>.rate` (mean over the span the data covers) and `<name>.rate.peak`.
	// Monotonic sums and histograms (their count) qualify.
	Metrics []string `mapstructure:"metrics"`
	// PeakSubwindows of the peak rates (strictly increasing; default 1 s).
	PeakSubwindows []time.Duration `mapstructure:"peak_subwindows"`
	// Windows are opt-in trailing windows (multiples of WindowBucket).
	Windows      []time.Duration `mapstructure:"windows"`
	WindowBucket time.Duration   `mapstructure:"window_bucket"`
	// QuietIntervals: a series without a point at this many consecutive emissions of
	// its resource gets one final 0 reading and is forgotten.
	QuietIntervals int `mapstructure:"quiet_intervals"`
	// MaxSeries bounds the series tracked at once (beyond: dropped, series_cap).
	MaxSeries int `mapstructure:"max_series"`
	// GapAfter: a longer interval between two points is counted as a gap.
	GapAfter time.Duration `mapstructure:"gap_after"`
	// WrapModulus is the width of fixed-size transport counters (e.g. 4294967296): a
	// decrease within half of it is a wrap, not a reset. 0: every decrease is a reset.
	WrapModulus float64 `mapstructure:"wrap_modulus"`
	// ReadingSpan: a series is read once its new data spans this (data time, with the
	// peaks' 0.95 tolerance), or at the first batch of its resource without it, so the
	// output is one reading per series per ReadingSpan of data, not one per batch.
	// 0: a reading at every batch.
	ReadingSpan time.Duration `mapstructure:"reading_span"`
	// ResourceIdle: the series of a resource that sent nothing for this long are
	// forgotten (their quiet readings need emissions of their resource).
	ResourceIdle time.Duration `mapstructure:"resource_idle"`
	// Load configures the per-room traffic load.
	Load LoadConfig `mapstructure:"load"`
}

// LoadConfig configures the per-room traffic load (docs/rates.md#traffic-load).
type LoadConfig struct {
	Enabled bool `mapstructure:"enabled"`
	// TopN participants are listed per room with their score and share; the rest form
	// `_other`. 0 (default): room rates, score and participant count only.
	TopN    int         `mapstructure:"top_n"`
	Weights LoadWeights `mapstructure:"weights"`
}

// LoadWeights of the load score: sum over (direction, media) of
// direction_weight * media_weight * (bit_weight * 8 * bytes/s + packet_weight * packets/s).
type LoadWeights struct {
	Bit    float64 `mapstructure:"bit"`
	Packet float64 `mapstructure:"packet"`
	Up     float64 `mapstructure:"up"`
	Down   float64 `mapstructure:"down"`
	Audio  float64 `mapstructure:"audio"`
	Video  float64 `mapstructure:"video"`
	Data   float64 `mapstructure:"data"`
}

func createDefaultConfig() *Config {
	return &Config{
		Metrics:        []string{"otel_rtc.traffic.packets", "otel_rtc.traffic.bytes"},
		PeakSubwindows: []time.Duration{time.Second},
		WindowBucket:   10 * time.Second,
		QuietIntervals: 2,
		MaxSeries:      2000,
		GapAfter:       60 * time.Second,
		ReadingSpan:    10 * time.Second,
		ResourceIdle:   10 * time.Minute,
		Load: LoadConfig{
			Enabled: true,
			TopN:    0,
			Weights: LoadWeights{Bit: 1, Packet: 4000, Up: 1, Down: 1, Audio: 1, Video: 1, Data: 1},
		},
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	for _, p := range c.Metrics {
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("metrics: bad pattern %q: %w", p, err))
		}
	}
	if !increasing(c.PeakSubwindows, false) {
		errs = append(errs, errors.New("peak_subwindows must be positive and strictly increasing"))
	}
	if !increasing(c.Windows, true) {
		errs = append(errs, errors.New("windows must be positive and strictly increasing"))
	}
	if c.WindowBucket <= 0 {
		errs = append(errs, errors.New("window_bucket must be positive"))
	} else {
		for _, w := range c.Windows {
			if w%c.WindowBucket != 0 {
				errs = append(errs, errors.New("each of windows must be a multiple of window_bucket"))
				break
			}
		}
	}
	if c.QuietIntervals < 1 {
		errs = append(errs, errors.New("quiet_intervals must be >= 1"))
	}
	if c.ReadingSpan < 0 {
		errs = append(errs, errors.New("reading_span must be >= 0"))
	}
	if c.ResourceIdle <= 0 {
		errs = append(errs, errors.New("resource_idle must be positive"))
	}
	if c.MaxSeries < 1 {
		errs = append(errs, errors.New("max_series must be >= 1"))
	}
	if c.GapAfter <= 0 {
		errs = append(errs, errors.New("gap_after must be positive"))
	}
	if c.WrapModulus != 0 && c.WrapModulus < 2 {
		errs = append(errs, errors.New("wrap_modulus must be 0 (off) or >= 2"))
	}
	if c.Load.TopN < 0 {
		errs = append(errs, errors.New("load.top_n must be >= 0"))
	}
	w := c.Load.Weights
	for _, v := range []float64{w.Bit, w.Packet, w.Up, w.Down, w.Audio, w.Video, w.Data} {
		if !(v >= 0) || v > 1e300 {
			errs = append(errs, errors.New("load.weights must be finite and >= 0"))
			break
		}
	}
	return errors.Join(errs...)
}

func increasing(ds []time.Duration, emptyOK bool) bool {
	if len(ds) == 0 {
		return emptyOK
	}
	for i, d := range ds {
		if d <= 0 || (i > 0 && d <= ds[i-1]) {
			return false
		}
	}
	return true
}

func (c *Config) engineConfig() EngineConfig {
	e := EngineConfig{BucketNs: int64(c.WindowBucket), MaxSeries: c.MaxSeries,
		QuietIntervals: c.QuietIntervals, WrapModulus: c.WrapModulus, GapAfterNs: int64(c.GapAfter)}
	for _, p := range c.PeakSubwindows {
		e.PeakSubwindowsNs = append(e.PeakSubwindowsNs, int64(p))
	}
	for _, w := range c.Windows {
		e.WindowsNs = append(e.WindowsNs, int64(w))
	}
	return e
}
