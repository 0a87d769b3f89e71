package risk

import (
	"encoding/binary"
	"math"
	"math/bits"
	"time"
)

// Sizes and time constants of the per-identity record (DETECTION.md §7.1).
const (
	// ringSize is how many intervals, and how many burst-start intervals,
	// are kept for the shape statistics. It must fit the uint8 positions of
	// sortedRing.
	ringSize = 32

	batchGap   = int64(5 * time.Millisecond) // closer requests are one batch
	burstGap   = int64(time.Second)          // a gap this long starts a burst
	pauseGap   = int64(3 * time.Second)      // a gap longer than this is a human pause
	rateWindow = int64(time.Minute)          // sliding-window rate counter
	bucketLen  = int64(5 * time.Minute)      // activity bitmap bucket
	bucketMask = 1<<24 - 1                   // 24 buckets = 2 hours

	// sharedFor is how long the shared label sticks after it last held.
	sharedFor = int64(900 * time.Second)
	// ewHorizon is the time horizon of the EW statistics: a gap of dt
	// weighs dt/ewHorizon, at most 1/64 (so at least 64 intervals and about
	// 60 s are averaged).
	ewHorizon = float64(time.Minute)
)

// state is one identity's timing record. It is fixed-size, holds no
// pointers (so a slab of states can live outside the Go heap, see slab.go),
// and with its key must fit a 256-byte slot (TestSlotSize): 232 bytes now.
// Fields are ordered largest alignment first so that the compiler adds no
// padding between them.
//
// Times are Unix nanoseconds. Values that grow (counts, stretches) saturate
// instead of wrapping.
type state struct {
	first int64 // first request
	last  int64 // start of the latest batch; never decreases

	ewMean float32 // EW mean of the intervals (ms)
	ewVar  float32 // EW variance of the intervals (ms²)
	ewM3   float32 // EW third central moment of the intervals (ms³)

	// sharedTill: the shared label holds while now < first + sharedTill
	// seconds (0: never labelled). Whole seconds since first keep it in 4
	// bytes; the label may hold up to 1 s longer than sharedFor.
	// The top bit (crowdOnlyBit) marks a label set by crowd evidence alone
	// (Engine.Crowd): it does not keep timing from confirming, and timing's
	// renewal does not extend it.
	sharedTill uint32

	n          uint32 // requests, batched ones included
	nInt       uint32 // intervals pushed
	sinceBurst uint32 // ms since the current burst started
	active     uint32 // bit i: a request in the 5-minute bucket i buckets before last's

	ratePrev uint16 // requests in the 60 s window before last's window
	rateCur  uint16 // requests in last's 60 s window

	// stretch: centiseconds since the last gap > 3 s (the no-pause
	// stretch), saturating at 655.35 s, past where no_pause is certain
	// (fastAfterPaused + fastSpan = 300 s). Two bytes: with the pause
	// clock below, they keep a client's slot at 256 bytes.
	stretch uint16
	// calm: deciseconds since the last human pause (a gap longer than
	// pauseGap and at least pauseRatio times the EW mean before it),
	// saturating at 54 minutes, in the low 15 bits; the top bit
	// (calmPaused) is set once the stream has paused. A jittered timer
	// never pauses; see calmFirst in score.go.
	calm uint16

	ring   sortedRing // last intervals
	bursts sortedRing // last burst-start intervals

	over   uint8  // consecutive evaluations with score ≥ threshold
	score  uint8  // score of the latest evaluation
	reason Reason // largest component of the latest evaluation (not masked)
	// oneClient: when the latest interval was pushed, at most
	// paceMaxConcurrent of the requests had been batched (see antiCutPace).
	// Kept here rather than computed when scoring, because batched
	// requests change n without a new evaluation, and Explain must
	// reproduce the latest score.
	oneClient bool
}

// sortedRing keeps the last ringSize durations (ms, packed by packMS) in
// arrival order, together with their order by value, updated on every push
// in O(ringSize). The shape statistics (median, MAD, octave entropy) then
// need no sort on the request path.
//
// The order is a permutation of 32 positions, kept as 32 five-bit fields in
// 20 bytes (perm) rather than one byte each: 24 bytes less per client over
// the two rings, which brings a slot to 256 bytes (TestSlotSize). Why not
// drop the order and sort when scoring: an insertion sort of 32 values
// costs about 300 ns, a read through the packed order about 35 ns
// (BenchmarkSortedRing; 17 ns when the order was a byte an entry), and
// scoring reads both rings on every interval.
type sortedRing struct {
	vals  [ringSize]uint16 // packed durations; vals[:count] filled until it wraps
	perm  [20]byte         // field k (5 bits at bit 5k, little-endian): position in vals of the k-th smallest
	head  uint8            // next write position in vals
	count uint8            // filled entries, ≤ ringSize
}

// The permutation is handled as a 160-bit number in three words (a: bits
// 0-63, b: 64-127, c: 128-159), so that moving fields takes a few word
// operations. Three scalars rather than an array: the compiler keeps
// scalars in registers, and an array in memory made Observe three times
// slower.

// loadPerm returns r.perm as three words.
func (r *sortedRing) loadPerm() (a, b, c uint64) {
	return binary.LittleEndian.Uint64(r.perm[0:8]),
		binary.LittleEndian.Uint64(r.perm[8:16]),
		uint64(binary.LittleEndian.Uint32(r.perm[16:20]))
}

// storePerm sets r.perm to the three words.
func (r *sortedRing) storePerm(a, b, c uint64) {
	binary.LittleEndian.PutUint64(r.perm[0:8], a)
	binary.LittleEndian.PutUint64(r.perm[8:16], b)
	binary.LittleEndian.PutUint32(r.perm[16:20], uint32(c))
}

// down shifts the permutation down one field.
func down(a, b, c uint64) (uint64, uint64, uint64) {
	return a>>5 | b<<59, b>>5 | c<<59, c >> 5
}

// below returns the mask of the bits below bit (any int; Go's shifts by 64
// or more give 0, so 1<<64 − 1 is all ones).
func below(bit int) (uint64, uint64, uint64) {
	m := func(b int) uint64 { return uint64(1)<<uint(max(b, 0)) - 1 }
	return m(bit), m(bit - 64), m(bit - 128)
}

// push adds the duration x (ms), replacing the oldest when the ring is full.
func (r *sortedRing) push(x uint32) {
	v := packMS(x)
	pos := r.head
	n := int(r.count)
	a, b, c := r.loadPerm()
	if n == ringSize {
		// Take the oldest entry, at pos, out of the order: the fields
		// above its field k move down one.
		k := 0
		for w := a; uint8(w&31) != pos; {
			k++
			switch k { // twelve whole fields a word, as in sorted
			case 12:
				w = a>>60 | b<<4
			case 24:
				w = b>>56 | c<<8
			default:
				w >>= 5
			}
		}
		ka, kb, kc := below(5 * k)
		da, db, dc := down(a, b, c)
		a, b, c = a&ka|da&^ka, b&kb|db&^kb, c&kc|dc&^kc
		n--
	}
	r.vals[pos] = v
	// The new entry goes after every entry with a smaller value (ties in
	// any order: sorted yields values only). vals[pos] is v itself, not
	// smaller, and the positions not yet filled are not counted.
	k := 0
	for _, y := range r.vals[:max(n+1, int(pos)+1)] {
		if y < v {
			k++
		}
	}
	// Fields from k move up one, and field k becomes pos.
	ka, kb, kc := below(5 * k)
	ha, hb, hc := below(5*k + 5)
	ua, ub, uc := a<<5, b<<5|a>>59, (c<<5|b>>59)&(1<<32-1)
	bit := 5 * k
	pa := uint64(pos) << uint(bit)
	pb := uint64(pos) << uint(max(bit-64, 0)) >> uint(max(64-bit, 0))
	pc := uint64(pos) << uint(max(bit-128, 0)) >> uint(max(128-bit, 0))
	r.storePerm(a&ka|ua&^ha|pa, b&kb|ub&^hb|pb, c&kc|uc&^hc|pc)
	r.count = uint8(n + 1)
	r.head = (pos + 1) % ringSize
}

// sorted unpacks the ring's durations in ascending order into dst and
// returns the filled part.
func (r *sortedRing) sorted(dst *[ringSize]uint32) []uint32 {
	n := int(r.count)
	a, b, c := r.loadPerm()
	// Twelve whole fields a word, so that each step is one shift.
	out := dst[:n]
	w := a
	for i := range out {
		switch i {
		case 12:
			w = a>>60 | b<<4
		case 24:
			w = b>>56 | c<<8
		}
		out[i] = unpackMS(r.vals[w&31])
		w >>= 5
	}
	return dst[:n]
}

// inOrder unpacks the ring's durations in arrival order, oldest first,
// into dst and returns the filled part. It allocates nothing, so scoring
// can read the sequence on the request path.
func (r *sortedRing) inOrder(dst *[ringSize]uint32) []uint32 {
	n := int(r.count)
	start := 0
	if n == ringSize {
		start = int(r.head)
	}
	for i := range n {
		dst[i] = unpackMS(r.vals[(start+i)%ringSize])
	}
	return dst[:n]
}

// recent returns the ring's durations oldest first, in a new slice.
func (r *sortedRing) recent() []uint32 {
	var buf [ringSize]uint32
	return append([]uint32(nil), r.inOrder(&buf)...)
}

// unixNano converts t to Unix nanoseconds, clamped to [0, maxNano] so that
// absurd timestamps (before 1970, after 2262) cannot overflow the arithmetic.
func unixNano(t time.Time) int64 {
	const maxSec = math.MaxInt64/int64(time.Second) - 1
	switch s := t.Unix(); {
	case s < 0:
		return 0
	case s >= maxSec:
		return maxSec * int64(time.Second)
	}
	return t.UnixNano()
}

// fromUnixNano is the inverse of unixNano, in UTC.
func fromUnixNano(ns int64) time.Time { return time.Unix(0, ns).UTC() }

// start initialises s for the first request of an identity at now.
func (s *state) start(now int64) {
	*s = state{first: now, last: now, n: 1, rateCur: 1, active: 1}
}

// record adds one request at now to s. It reports whether the request
// closed an interval (and so needs a new evaluation); a request within
// batchGap of the current batch's start, or out of order, joins the batch.
func (s *state) record(now int64) bool {
	s.n = satAdd32(s.n, 1)
	gap := now - s.last
	if gap < batchGap { // also out-of-order timestamps: a zero gap
		// A batch counts once in the rate, at its start: the rate is of
		// client actions, and a batched request changes nothing that
		// scoring reads, so an explanation between two evaluations
		// reproduces the latest score.
		return false
	}
	s.advanceWindows(now)
	s.last = now
	ms := uint32(min(gap/int64(time.Millisecond), math.MaxUint32))

	s.ring.push(ms)
	s.nInt = satAdd32(s.nInt, 1)
	s.oneClient = float64(int64(s.n)-1-int64(s.nInt)) <= paceMaxConcurrent*float64(s.n)

	// EW mean and variance (Finch 2009): exact (Welford) while 1/k is the
	// larger weight, then a time-based weight, so that a high-rate stream
	// averages over about a minute instead of a few hundred milliseconds.
	// Without the time base, a CGNAT's statistics swing enough to look
	// regular now and then, and every request is a new look.
	x := float64(ms)
	if gap > pauseGap && s.nInt > minIntervals && x >= pauseRatio*float64(s.ewMean) {
		s.calm = calmPaused
	} else {
		ds := min((ms+50)/100, calmPaused) // whole deciseconds, rounded
		s.calm = s.calm&calmPaused | uint16(min(uint32(s.calm&^calmPaused)+ds, calmPaused-1))
	}
	alpha := min(1.0/64, float64(gap)/ewHorizon)
	alpha = max(alpha, 1/float64(s.nInt))
	// The third central moment follows from mixing the old distribution
	// (weight 1 − α, shifted by the mean's move α·diff) with the new point
	// (weight α, at (1 − α)·diff from the new mean).
	mean, v, m3 := float64(s.ewMean), float64(s.ewVar), float64(s.ewM3)
	diff := x - mean
	incr := alpha * diff
	mean += incr
	m3 = (1-alpha)*(m3-3*incr*v-incr*incr*incr) + alpha*(1-alpha)*(1-alpha)*(1-alpha)*diff*diff*diff
	v = (1 - alpha) * (v + diff*incr)
	s.ewMean, s.ewVar, s.ewM3 = float32(mean), float32(v), float32(m3)

	if gap > pauseGap {
		s.stretch = 0
	} else {
		cs := min((ms+5)/10, math.MaxUint16) // whole centiseconds, rounded
		s.stretch = uint16(min(uint32(s.stretch)+cs, math.MaxUint16))
	}

	s.sinceBurst = satAdd32(s.sinceBurst, ms)
	if gap >= burstGap {
		s.bursts.push(s.sinceBurst)
		s.sinceBurst = 0
	}

	// The shared label is decided here rather than in evaluate, so that
	// evaluate is a pure function of the state.
	if s.labelShared(now) {
		till := (now-s.first)/int64(time.Second) + sharedFor/int64(time.Second) + 1
		s.sharedTill = uint32(min(till, crowdOnlyBit-1))
	}
	return true
}

// advanceWindows moves the rate window and the activity bitmap from last's
// time to now (now ≥ last) and counts one request at now.
func (s *state) advanceWindows(now int64) {
	switch now/rateWindow - s.last/rateWindow {
	case 0:
		s.rateCur = satAdd16(s.rateCur, 1)
	case 1:
		s.ratePrev, s.rateCur = s.rateCur, 1
	default:
		s.ratePrev, s.rateCur = 0, 1
	}
	if d := now/bucketLen - s.last/bucketLen; d >= 24 {
		s.active = 1
	} else {
		s.active = (s.active<<d | 1) & bucketMask
	}
}

// rate estimates requests per second over the 60 s before t (t ≥ last)
// with a sliding-window counter: the previous window's count, weighted by
// the part of it still inside the 60 s, plus the current window's.
func (s *state) rate(t int64) float64 {
	prev, cur := float64(s.ratePrev), float64(s.rateCur)
	w := t / rateWindow
	switch w - s.last/rateWindow {
	case 0:
	case 1:
		prev, cur = cur, 0
	default:
		return 0
	}
	elapsed := float64(t-w*rateWindow) / float64(rateWindow)
	return (prev*(1-elapsed) + cur) / (float64(rateWindow) / float64(time.Second))
}

// ewBurstiness returns A_ew = (CV − 1)/(CV + 1) from the EW statistics: −1
// for a perfect timer, 0 for Poisson, positive for bursty streams.
func (s *state) ewBurstiness() float64 {
	if s.ewMean <= 0 {
		return 0
	}
	cv := math.Sqrt(max(float64(s.ewVar), 0)) / float64(s.ewMean)
	return (cv - 1) / (cv + 1)
}

// labelShared reports whether the request at now (just recorded) sets or
// renews the shared label.
func (s *state) labelShared(now int64) bool {
	if s.nInt <= sharedMinIntervals {
		return false
	}
	r, aEW := s.rate(now), s.ewBurstiness()
	if s.shared(now) && !s.crowdOnly() {
		return r >= sharedKeepRate && aEW >= sharedKeepAEW
	}
	return aEW >= sharedMinAEW && (r >= sharedFastRate || r >= sharedMinRate && int64(s.stretch)*10 >= sharedMinStretch)
}

// shared reports whether the shared label holds at now.
func (s *state) shared(now int64) bool {
	till := s.sharedTill &^ crowdOnlyBit
	return till > 0 && now-s.first < int64(till)*int64(time.Second)
}

// crowdOnlyBit marks sharedTill as set by crowd evidence alone.
const crowdOnlyBit = 1 << 31

// crowdOnly reports whether the shared label, if it holds, was set by crowd
// evidence alone.
func (s *state) crowdOnly() bool { return s.sharedTill&crowdOnlyBit != 0 }

// ewSkewness returns the moment skewness of the EW statistics: about 0 for
// symmetric jitter, positive for right-skewed (human) gaps.
func (s *state) ewSkewness() float64 {
	v := float64(s.ewVar)
	if v <= 0 {
		return 0
	}
	return float64(s.ewM3) / (v * math.Sqrt(v))
}

// packMS stores a duration in ms in 16 bits as a small float with 11
// significant bits: exact below 2048 ms, within 0.1 % above, up to 49 days.
// The statistics are scale-free, so 0.1 % is far below what they resolve.
// The encoding is monotonic, so packed values sort like the durations.
func packMS(x uint32) uint16 {
	e := max(bits.Len32(x)-11, 0)
	return uint16(e<<11 | int(x>>e))
}

// unpackMS reverses packMS (to 11 significant bits).
func unpackMS(p uint16) uint32 { return uint32(p&2047) << (p >> 11) }

func satAdd32(a, b uint32) uint32 {
	if c := a + b; c >= a {
		return c
	}
	return math.MaxUint32
}

func satAdd16(a, b uint16) uint16 {
	if c := a + b; c >= a {
		return c
	}
	return math.MaxUint16
}
