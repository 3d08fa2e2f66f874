package rtcrateprocessor

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The shared rate vectors (tests/vectors/rates, format in its README.md) run against
// the Go engine: the Python core runs the same files (tests/test_rate_vectors.py), so
// both implement one contract.

const vectorsDir = "../../tests/vectors/rates"

type vector struct {
	Name   string `json:"name"`
	Config struct {
		PeakSubwindowsS []float64 `json:"peak_subwindows_s"`
		WindowsS        []float64 `json:"windows_s"`
		WindowBucketS   float64   `json:"window_bucket_s"`
		QuietIntervals  int       `json:"quiet_intervals"`
		GapAfterS       float64   `json:"gap_after_s"`
		WrapModulus     *float64  `json:"wrap_modulus"`
		MaxSeries       int       `json:"max_series"`
		LoadTopN        int       `json:"load_top_n"`
		ReadingMinSpanS float64   `json:"reading_min_span_s"`
	} `json:"config"`
	Series map[string]struct {
		Temporality string `json:"temporality"`
		Load        *struct {
			Room, Participant, Direction, Media, Unit string
		} `json:"load"`
	} `json:"series"`
	Steps     []vectorStep     `json:"steps"`
	Anomalies map[string]int64 `json:"anomalies"`
	Tolerance struct {
		Rel float64 `json:"rel"`
		Abs float64 `json:"abs"`
	} `json:"tolerance"`
}

type vectorStep struct {
	Points [][]any      `json:"points"`
	Read   *json.Number `json:"read"`
	Expect []struct {
		Series  string          `json:"series"`
		Mean    float64         `json:"mean"`
		StartNs json.Number     `json:"start_ns"`
		TimeNs  json.Number     `json:"time_ns"`
		Peaks   []*float64      `json:"peaks"`
		Final   bool            `json:"final"`
		Windows [][]json.Number `json:"windows"`
	} `json:"expect"`
	Load map[string]struct {
		Score        float64            `json:"score"`
		Participants int                `json:"participants"`
		Rates        map[string]float64 `json:"rates"`
		Top          []struct {
			Participant string  `json:"participant"`
			Score       float64 `json:"score"`
			Share       float64 `json:"share"`
		} `json:"top"`
		Others struct {
			Participants int     `json:"participants"`
			Score        float64 `json:"score"`
			Share        float64 `json:"share"`
		} `json:"others"`
	} `json:"load"`
}

func seconds2ns(s float64) int64 { return int64(math.Round(s * nsPerS)) }

func engineConfigOf(v *vector) EngineConfig {
	c := EngineConfig{BucketNs: seconds2ns(v.Config.WindowBucketS), MaxSeries: v.Config.MaxSeries,
		QuietIntervals: v.Config.QuietIntervals, GapAfterNs: seconds2ns(v.Config.GapAfterS)}
	for _, p := range v.Config.PeakSubwindowsS {
		c.PeakSubwindowsNs = append(c.PeakSubwindowsNs, seconds2ns(p))
	}
	for _, w := range v.Config.WindowsS {
		c.WindowsNs = append(c.WindowsNs, seconds2ns(w))
	}
	if v.Config.WrapModulus != nil {
		c.WrapModulus = *v.Config.WrapModulus
	}
	return c
}

func mustInt(t *testing.T, n json.Number) int64 {
	t.Helper()
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("not an int64: %s", n)
	}
	return i
}

func mustFloat(t *testing.T, n json.Number) float64 {
	t.Helper()
	f, err := n.Float64()
	if err != nil {
		t.Fatalf("not a number: %s", n)
	}
	return f
}

func closeTo(got, want, rel, abs float64) bool {
	return math.Abs(got-want) <= math.Max(rel*math.Max(math.Abs(got), math.Abs(want)), abs)
}

func vectorFiles(t *testing.T) []string {
	files, err := filepath.Glob(filepath.Join(vectorsDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no vectors in %s (%v)", vectorsDir, err)
	}
	return files
}

func TestSharedRateVectors(t *testing.T) {
	for _, f := range vectorFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(strings.NewReader(string(raw)))
			dec.UseNumber()
			var v vector
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
			runVector(t, &v)
		})
	}
}

func runVector(t *testing.T, v *vector) {
	rel, abs := v.Tolerance.Rel, v.Tolerance.Abs
	eng := NewEngine[string, string](engineConfigOf(v), nil, nil)
	for n, step := range v.Steps {
		if step.Read == nil {
			for _, p := range step.Points {
				name := p[0].(string)
				cum := v.Series[name].Temporality == "cumulative"
				eng.Observe(name, mustFloat(t, p[2].(json.Number)), mustInt(t, p[1].(json.Number)),
					mustInt(t, p[3].(json.Number)), cum, uint32(mustInt(t, p[4].(json.Number))), name)
			}
			continue
		}
		at := mustInt(t, *step.Read)
		got := map[string]Reading[string, string]{}
		for _, r := range eng.Read(at, nil, HoldNs(seconds2ns(v.Config.ReadingMinSpanS)), nil) {
			got[r.Key] = r
		}
		var gotKeys, wantKeys []string
		for k := range got {
			gotKeys = append(gotKeys, k)
		}
		for _, e := range step.Expect {
			wantKeys = append(wantKeys, e.Series)
		}
		sort.Strings(gotKeys)
		sort.Strings(wantKeys)
		if strings.Join(gotKeys, ",") != strings.Join(wantKeys, ",") {
			t.Fatalf("step %d: series read %v, want %v", n, gotKeys, wantKeys)
		}
		for _, e := range step.Expect {
			r := got[e.Series]
			if !closeTo(r.Mean, e.Mean, rel, abs) {
				t.Errorf("step %d %s: mean %v, want %v", n, e.Series, r.Mean, e.Mean)
			}
			if r.Start != mustInt(t, e.StartNs) || r.Time != mustInt(t, e.TimeNs) {
				t.Errorf("step %d %s: span [%d, %d], want [%s, %s]", n, e.Series, r.Start, r.Time, e.StartNs, e.TimeNs)
			}
			if len(r.Peaks) != len(e.Peaks) {
				t.Fatalf("step %d %s: %d peaks, want %d", n, e.Series, len(r.Peaks), len(e.Peaks))
			}
			for i, w := range e.Peaks {
				g := r.Peaks[i]
				if (w == nil) != math.IsNaN(g) || (w != nil && !closeTo(g, *w, rel, abs)) {
					t.Errorf("step %d %s: peak %d = %v, want %v", n, e.Series, i, g, w)
				}
			}
			if r.Final != e.Final {
				t.Errorf("step %d %s: final %v, want %v", n, e.Series, r.Final, e.Final)
			}
			for i, w := range e.Windows {
				g := r.Windows[i]
				if w == nil {
					if g.Ok {
						t.Errorf("step %d %s: window %d = %+v, want none", n, e.Series, i, g)
					}
					continue
				}
				if !g.Ok || !closeTo(g.Rate, mustFloat(t, w[0]), rel, abs) ||
					g.Start != mustInt(t, w[1]) || g.Time != mustInt(t, w[2]) {
					t.Errorf("step %d %s: window %d = %+v, want %v", n, e.Series, i, g, w)
				}
			}
		}
		if step.Load != nil {
			var rows []loadRow
			for _, r := range got {
				l := v.Series[r.Key].Load
				if l == nil {
					continue
				}
				rows = append(rows, loadRow{room: l.Room, participant: l.Participant,
					stream: streamKey{l.Direction, l.Media, l.Unit}, rate: r.Mean, start: r.Start, time: r.Time})
			}
			loads := roomLoads(rows, v.Config.LoadTopN, createDefaultConfig().Load.Weights)
			if len(loads) != len(step.Load) {
				t.Fatalf("step %d: rooms %v, want %v", n, loads, step.Load)
			}
			for room, e := range step.Load {
				rl := loads[room]
				if rl == nil {
					t.Fatalf("step %d: no load for room %s", n, room)
				}
				if !closeTo(rl.score, e.Score, rel, abs) || rl.participants != e.Participants {
					t.Errorf("step %d %s: score %v participants %d, want %v %d", n, room, rl.score, rl.participants, e.Score, e.Participants)
				}
				if len(rl.byStream) != len(e.Rates) {
					t.Errorf("step %d %s: rates %v, want %v", n, room, rl.byStream, e.Rates)
				}
				for k, x := range rl.byStream {
					w, ok := e.Rates[k.direction+"/"+k.media+"/"+k.unit]
					if !ok || !closeTo(x, w, rel, abs) {
						t.Errorf("step %d %s: rate %v = %v, want %v", n, room, k, x, w)
					}
				}
				if len(rl.top) != len(e.Top) {
					t.Fatalf("step %d %s: top %v, want %v", n, room, rl.top, e.Top)
				}
				for i, w := range e.Top {
					p := rl.top[i]
					if p.id != w.Participant || !closeTo(p.score, w.Score, rel, abs) || !closeTo(p.share, w.Share, rel, abs) {
						t.Errorf("step %d %s: top %d = %+v, want %+v", n, room, i, p, w)
					}
				}
				o := e.Others
				if rl.others.count != o.Participants || !closeTo(rl.others.score, o.Score, rel, abs) ||
					!closeTo(rl.others.share, o.Share, rel, abs) {
					t.Errorf("step %d %s: others %+v, want %+v", n, room, rl.others, o)
				}
			}
		}
	}
	got := eng.Counts()
	if len(got) != len(v.Anomalies) {
		t.Errorf("anomalies %v, want %v", got, v.Anomalies)
	}
	for k, n := range v.Anomalies {
		if got[k] != n {
			t.Errorf("anomalies %v, want %v", got, v.Anomalies)
			break
		}
	}
}
