package dashboard

import (
	"sync/atomic"
	"time"
)

// Tracker counts Checks for the dashboard's headline figures: checks and
// denies per second over the last minute, totals, and the latency of the
// last ten seconds. Record is lock-free and does not allocate, so it can sit
// on the Check path; the stream reads it once per tick.
//
// Per-second counts live in a ring of trackerSlots seconds. Each counter
// packs the Unix second it belongs to (low 32 bits of it, in the high half)
// with the count (low half): the first Record of a new second swaps in a
// fresh counter with a compare-and-swap, every later one is a plain atomic
// add. A sample older than the second its slot already holds is dropped, so
// a late writer never wipes newer counts. Memory is fixed: about 13 KB.
//
// The zero Tracker is ready to use; a nil *Tracker records nothing and
// reports zeros.
type Tracker struct {
	allowed atomic.Uint64
	denied  atomic.Uint64
	failed  atomic.Uint64
	slots   [trackerSlots]trackerSecond
}

// trackerSecond is one second of the ring.
type trackerSecond struct {
	checks  atomic.Uint64
	denies  atomic.Uint64
	latency [len(latencyBounds) + 1]atomic.Uint64 // last bucket: above every bound
}

const (
	trackerSlots  = 64 // a power of two, more than seriesSeconds + 1
	seriesSeconds = 60 // seconds in Stats' series
	latencyWindow = 10 // seconds the latency quantiles cover, the current one included
)

// latencyBounds are the upper bounds of the Check latency buckets, growing
// by about half each: fine enough for a p50 and p99 within ±25 %, from
// 10 µs (a Check that is all in-memory) to 100 ms (something is wrong).
var latencyBounds = [...]time.Duration{
	10 * time.Microsecond, 15 * time.Microsecond, 22 * time.Microsecond, 33 * time.Microsecond,
	50 * time.Microsecond, 75 * time.Microsecond, 110 * time.Microsecond, 170 * time.Microsecond,
	250 * time.Microsecond, 380 * time.Microsecond, 560 * time.Microsecond, 850 * time.Microsecond,
	1300 * time.Microsecond, 1900 * time.Microsecond, 2800 * time.Microsecond, 4200 * time.Microsecond,
	6300 * time.Microsecond, 9500 * time.Microsecond, 14 * time.Millisecond, 21 * time.Millisecond,
	32 * time.Millisecond, 48 * time.Millisecond, 72 * time.Millisecond, 100 * time.Millisecond,
}

// NewTracker returns an empty Tracker. It starts no goroutine.
func NewTracker() *Tracker { return new(Tracker) }

// Record counts one Check that ended at now and took d. denied is what the
// policy decided (in shadow mode: what it would have enforced); failed marks
// a Check that Flow Lock itself could not answer, counted as a check but
// neither allowed nor denied.
func (t *Tracker) Record(now time.Time, denied, failed bool, d time.Duration) {
	if t == nil {
		return
	}
	switch {
	case failed:
		t.failed.Add(1)
	case denied:
		t.denied.Add(1)
	default:
		t.allowed.Add(1)
	}
	sec := uint32(now.Unix())
	s := &t.slots[sec%trackerSlots]
	if !bump(&s.checks, sec) {
		return // older than the slot: the sample missed its ring turn
	}
	if denied && !failed {
		bump(&s.denies, sec)
	}
	bump(&s.latency[latencyBucket(d)], sec)
}

// bump adds one to the count that c keeps for second sec, starting a fresh
// count if c holds an older second. It reports false, and counts nothing,
// if c already holds a newer second.
func bump(c *atomic.Uint64, sec uint32) bool {
	for {
		v := c.Load()
		held := uint32(v >> 32)
		if held == sec {
			c.Add(1)
			return true
		}
		if int32(sec-held) < 0 && v != 0 {
			return false
		}
		if c.CompareAndSwap(v, uint64(sec)<<32|1) {
			return true
		}
	}
}

// countAt returns what c counted in second sec, or 0 if it holds another.
func countAt(c *atomic.Uint64, sec uint32) uint64 {
	v := c.Load()
	if uint32(v>>32) != sec {
		return 0
	}
	return v & 0xffff_ffff
}

// latencyBucket returns the index of the bucket that d falls in.
func latencyBucket(d time.Duration) int {
	lo, hi := 0, len(latencyBounds) // binary search: the first bound >= d
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if latencyBounds[mid] < d {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// Stats are the headline figures of the dashboard.
type Stats struct {
	// ChecksPerSec and DeniesPerSec count the last complete second.
	ChecksPerSec float64 `json:"checks_per_sec"`
	DeniesPerSec float64 `json:"denies_per_sec"`
	// AllowedTotal, DeniedTotal and FailedTotal count since the start.
	// In shadow mode, denied means "would have been denied".
	AllowedTotal uint64 `json:"allowed_total"`
	DeniedTotal  uint64 `json:"denied_total"`
	FailedTotal  uint64 `json:"failed_total"`
	// Tracked is the number of identities with timing state, Quarantined
	// the number in quarantine now.
	Tracked     int `json:"tracked"`
	Quarantined int `json:"quarantined"`
	// LatencyP50 and LatencyP99 are quantiles of the Check duration over
	// the last 10 seconds, in milliseconds; 0 when there was no Check.
	LatencyP50 float64 `json:"latency_p50_ms"`
	LatencyP99 float64 `json:"latency_p99_ms"`
	// ChecksSeries and DeniesSeries are per-second counts of the last 60
	// complete seconds, oldest first.
	ChecksSeries []uint64 `json:"checks_series"`
	DeniesSeries []uint64 `json:"denies_series"`
}

// Stats returns the figures as of now. Tracked and Quarantined are left to
// the caller.
func (t *Tracker) Stats(now time.Time) Stats {
	st := Stats{
		ChecksSeries: make([]uint64, seriesSeconds),
		DeniesSeries: make([]uint64, seriesSeconds),
	}
	if t == nil {
		return st
	}
	st.AllowedTotal, st.DeniedTotal, st.FailedTotal = t.allowed.Load(), t.denied.Load(), t.failed.Load()
	cur := uint32(now.Unix())
	for i := range seriesSeconds {
		sec := cur - seriesSeconds + uint32(i)
		s := &t.slots[sec%trackerSlots]
		st.ChecksSeries[i] = countAt(&s.checks, sec)
		st.DeniesSeries[i] = countAt(&s.denies, sec)
	}
	st.ChecksPerSec = float64(st.ChecksSeries[seriesSeconds-1])
	st.DeniesPerSec = float64(st.DeniesSeries[seriesSeconds-1])

	var hist [len(latencyBounds) + 1]uint64
	var total uint64
	for back := range uint32(latencyWindow) {
		sec := cur - back
		s := &t.slots[sec%trackerSlots]
		for b := range hist {
			n := countAt(&s.latency[b], sec)
			hist[b] += n
			total += n
		}
	}
	st.LatencyP50 = quantile(&hist, total, 0.50)
	st.LatencyP99 = quantile(&hist, total, 0.99)
	return st
}

// quantile estimates the q-quantile of a latency histogram in milliseconds,
// interpolating linearly within the bucket it falls in. Durations above the
// last bound report that bound.
func quantile(hist *[len(latencyBounds) + 1]uint64, total uint64, q float64) float64 {
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for b, n := range hist {
		if n == 0 {
			continue
		}
		if seen+float64(n) >= rank {
			if b == len(latencyBounds) {
				return ms(latencyBounds[len(latencyBounds)-1])
			}
			lo := time.Duration(0)
			if b > 0 {
				lo = latencyBounds[b-1]
			}
			frac := (rank - seen) / float64(n)
			return ms(lo) + frac*(ms(latencyBounds[b])-ms(lo))
		}
		seen += float64(n)
	}
	return ms(latencyBounds[len(latencyBounds)-1])
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
