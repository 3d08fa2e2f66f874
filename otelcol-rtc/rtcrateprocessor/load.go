package rtcrateprocessor

import (
	"cmp"
	"math"
	"slices"
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
// (and traffic without a participant id) as `_other`.

// others is the participant id of the top-N rest (otel_rtc.core.names.OTHER).
const others = "_other"

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

// streamIndex maps a stream to its slot in a [12]float64 (direction x media x unit).
func streamIndex(k streamKey) int {
	i := 0
	if k.direction == "down" {
		i = 6
	}
	switch k.media {
	case "video":
		i += 2
	case "data":
		i += 4
	}
	if k.unit == "packets" {
		i++
	}
	return i
}

var streamKeys = func() [12]streamKey {
	var out [12]streamKey
	for _, d := range []string{"up", "down"} {
		for _, m := range []string{"audio", "video", "data"} {
			for _, u := range []string{"bytes", "packets"} {
				k := streamKey{d, m, u}
				out[streamIndex(k)] = k
			}
		}
	}
	return out
}()

// factors are the score weights of the 12 stream slots.
func (w LoadWeights) factors() [12]float64 {
	var f [12]float64
	for i, k := range streamKeys {
		f[i] = w.score(map[streamKey]float64{k: 1})
	}
	return f
}

// roomLoads is the load of every room of one emission's readings.
func roomLoads(rows []loadRow, topN int, w LoadWeights) map[string]*roomLoad {
	f := w.factors()
	// Group by (room, participant) through small integer ids: sorting integers is far
	// cheaper than comparing strings (the order of rooms does not matter).
	rooms, parts := map[string]uint64{}, map[string]uint64{}
	keys := make([]uint64, len(rows))
	for i := range rows {
		r, ok := rooms[rows[i].room]
		if !ok {
			r = uint64(len(rooms))
			rooms[rows[i].room] = r
		}
		p, ok := parts[rows[i].participant]
		if !ok {
			p = uint64(len(parts))
			parts[rows[i].participant] = p
		}
		keys[i] = r<<32 | p
	}
	order := make([]int32, len(rows))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return cmp.Compare(keys[a], keys[b]) })
	sorted := make([]loadRow, len(rows))
	for i, j := range order {
		sorted[i] = rows[j]
	}
	rows = sorted
	out := map[string]*roomLoad{}
	var scored []participantLoad
	for lo := 0; lo < len(rows); {
		room := rows[lo].room
		hi := lo
		var streams [12]float64
		var present [12]bool
		rl := &roomLoad{start: rows[lo].start, time: rows[lo].time}
		scored = scored[:0]
		named := 0
		for hi < len(rows) && rows[hi].room == room {
			pid := rows[hi].participant
			score := 0.0
			for ; hi < len(rows) && rows[hi].room == room && rows[hi].participant == pid; hi++ {
				r := &rows[hi]
				i := streamIndex(r.stream)
				streams[i] += r.rate
				present[i] = true
				score += f[i] * r.rate
				rl.start = min(rl.start, r.start)
				rl.time = max(rl.time, r.time)
			}
			scored = append(scored, participantLoad{id: pid, score: score, count: 1})
			if pid != "" {
				named++
			}
		}
		lo = hi
		rl.byStream = make(map[streamKey]float64, 4)
		for i, ok := range present {
			if ok {
				rl.byStream[streamKeys[i]] = streams[i]
			}
		}
		for _, p := range scored {
			rl.score += p.score
		}
		rl.participants = named
		rl.others = participantLoad{id: others}
		out[room] = rl
		if topN == 0 {
			continue
		}
		// Heaviest first; ties broken by id so the output is deterministic.
		sort.Slice(scored, func(i, j int) bool {
			if scored[i].score != scored[j].score {
				return scored[i].score > scored[j].score
			}
			return scored[i].id < scored[j].id
		})
		share := func(score float64, count int) float64 {
			// An idle room (score 0) is split evenly so that shares still sum to 1.
			sh := float64(count) / float64(max(named, 1))
			if rl.score > 0 {
				sh = score / rl.score
			}
			return math.Min(1, math.Max(0, sh))
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
