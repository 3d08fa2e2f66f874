package rtcrateprocessor

import (
	"math"
	"sort"
)

// The per-room traffic load of one emission, as otel_rtc's Python core computes it
// (otel_rtc/core/load.py room_loads, docs/rates.md "Traffic load"):
//
//	score = sum over (direction, media) of
//	        direction_weight * media_weight * (bit * 8 * bytes/s + packet * packets/s)
//
// per participant, from the readings of that emission; the room's score is the sum.
// Opt-in (top_n > 0): the top-N named participants' scores and shares, everyone else
// (and traffic without a participant id) as `_others`.

const others = "_others"

type streamKey struct {
	direction, media, unit string
}

// loadRow is one reading of a traffic series.
type loadRow struct {
	room, participant string
	stream            streamKey
	rate              float64
	start, time       int64
}

type participantLoad struct {
	id    string
	score float64
	share float64
	count int
}

type roomLoad struct {
	byStream     map[streamKey]float64
	score        float64
	participants int // distinct non-empty participant ids
	top          []participantLoad
	others       participantLoad
	start, time  int64
}

func (w LoadWeights) score(s map[streamKey]float64) float64 {
	total := 0.0
	for k, v := range s {
		d := w.Down
		if k.direction == "up" {
			d = w.Up
		}
		m := w.Data
		switch k.media {
		case "audio":
			m = w.Audio
		case "video":
			m = w.Video
		}
		per := w.Packet
		if k.unit == "bytes" {
			per = w.Bit * 8
		}
		total += d * m * per * v
	}
	return total
}

// roomLoads is the load of every room of one emission's readings.
func roomLoads(rows []loadRow, topN int, w LoadWeights) map[string]*roomLoad {
	per := map[string]map[string]map[streamKey]float64{}
	out := map[string]*roomLoad{}
	for _, r := range rows {
		parts := per[r.room]
		if parts == nil {
			parts = map[string]map[streamKey]float64{}
			per[r.room] = parts
			out[r.room] = &roomLoad{byStream: map[streamKey]float64{}, start: r.start, time: r.time}
		}
		s := parts[r.participant]
		if s == nil {
			s = map[streamKey]float64{}
			parts[r.participant] = s
		}
		s[r.stream] += r.rate
		rl := out[r.room]
		rl.byStream[r.stream] += r.rate
		rl.start = min(rl.start, r.start)
		rl.time = max(rl.time, r.time)
	}
	for room, parts := range per {
		rl := out[room]
		scored := make([]participantLoad, 0, len(parts))
		named := 0
		for id, s := range parts {
			scored = append(scored, participantLoad{id: id, score: w.score(s), count: 1})
			if id != "" {
				named++
			}
		}
		// Heaviest first; ties broken by id so the output is deterministic.
		sort.Slice(scored, func(i, j int) bool {
			if scored[i].score != scored[j].score {
				return scored[i].score > scored[j].score
			}
			return scored[i].id < scored[j].id
		})
		for _, p := range scored {
			rl.score += p.score
		}
		rl.participants = named
		share := func(score float64, count int) float64 {
			// An idle room (score 0) is split evenly so that shares still sum to 1.
			sh := float64(count) / float64(max(named, 1))
			if rl.score > 0 {
				sh = score / rl.score
			}
			return math.Min(1, math.Max(0, sh))
		}
		rl.others = participantLoad{id: others}
		if topN == 0 {
			continue
		}
		// Traffic without a participant id (per-room series) is never listed, only summed.
		rest := false
		for _, p := range scored {
			if p.id != "" && len(rl.top) < topN {
				p.share = share(p.score, 1)
				rl.top = append(rl.top, p)
				continue
			}
			rest = true
			rl.others.score += p.score
			if p.id != "" {
				rl.others.count++
			}
		}
		if rest {
			rl.others.share = share(rl.others.score, rl.others.count)
		}
	}
	return out
}
