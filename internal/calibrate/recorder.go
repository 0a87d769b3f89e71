package calibrate

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/offheap"
)

// Live recording bounds.
const (
	// DefaultSlots is how many identities a Recorder follows at once
	// (48 bytes each: 3 MB, outside the Go heap).
	DefaultSlots = 1 << 16
	// maxClasses is how many route classes a Recorder names; requests of
	// any other route count under "other".
	maxClasses = 15
	// maxSegment is the longest first path segment that names a class.
	maxSegment = 32
	// BucketWidth is the width of the per-route score buckets: 0-4, 5-9,
	// ..., 95-99, and 100 alone.
	BucketWidth = 5
	buckets     = MaxScore/BucketWidth + 1
	stripes     = 64
	// ways is how many slots an identity may use: a hash lands on a set
	// of ways slots, so two identities that share a set do not evict each
	// other at every request.
	ways = 4
)

// OtherClass names the requests of routes without a class of their own.
const OtherClass = "other"

// Recorder keeps, in the running service, the score distribution that
// calibration reads: the per-identity-hour peaks (a Histogram) and, for
// operators, the per-request score distribution per route class. Its
// memory is fixed at New; Record does not allocate once the route classes
// are named. It is safe for concurrent use.
//
// A route class is the first path segment ("/api/v1/items?x" → "/api"),
// named first come, first served, up to 15 classes of at most 32
// characters of [A-Za-z0-9._~-]; every other route counts as "other". The
// classes only describe where scores land: they never change a decision,
// and the peaks calibration needs are per identity, whatever the route.
//
// Identities are followed in a fixed table of slots, in sets of four chosen
// by a keyed hash; an identity that finds its set full takes the slot idle
// longest and closes that identity's hour early (counted in Takeovers). When Takeovers is a large
// share of Windows, the table is too small for the traffic and the peaks
// run low.
type Recorder struct {
	seed  maphash.Seed
	since time.Time

	names  [maxClasses]atomic.Pointer[string]
	scores [maxClasses + 1][buckets]atomic.Uint64 // [class][bucket]; "other" last

	locks [stripes]struct {
		sync.Mutex // guards the sets of slots whose number (index/ways) is this stripe's modulo stripes
		_          [56]byte
	}
	table offheap.Array[slot]
	mask  uint64

	hist      liveSplit
	takeovers atomic.Uint64
}

// slot follows one identity; tag 0 marks a free slot.
type slot struct {
	tag   uint64
	track Track
}

// liveHistogram is a Histogram updated with atomics.
type liveHistogram struct {
	windows atomic.Uint64
	atRisk  [MaxConfirm]atomic.Uint64
	peaks   [MaxConfirm][MaxScore + 1]atomic.Uint64
}

func (h *liveHistogram) add(p *[MaxConfirm]uint8, longest uint8) {
	h.windows.Add(1)
	for c := range int(min(longest, MaxConfirm)) {
		h.atRisk[c].Add(1)
	}
	for c, v := range p {
		h.peaks[c][min(v, MaxScore)].Add(1)
	}
}

func (h *liveHistogram) load() Histogram {
	var o Histogram
	o.Windows = h.windows.Load()
	for c := range o.Peaks {
		o.AtRisk[c] = h.atRisk[c].Load()
		for v := range o.Peaks[c] {
			o.Peaks[c][v] = h.peaks[c][v].Load()
		}
	}
	return o
}

// liveSplit keeps the caught identity-hours apart, as Split does.
type liveSplit struct {
	innocent, caught liveHistogram
}

func (s *liveSplit) close(p *[MaxConfirm]uint8, longest uint8, caught bool) {
	if caught {
		s.caught.add(p, longest)
	} else {
		s.innocent.add(p, longest)
	}
}

// Mapped returns the bytes NewRecorder(slots, ...) maps outside the Go
// heap, where a GOMEMLIMIT does not see them.
func Mapped(slots int) int64 {
	return int64(slotCount(slots)) * int64(unsafe.Sizeof(slot{}))
}

// slotCount is NewRecorder's table size for slots.
func slotCount(slots int) int {
	if slots <= 0 {
		return DefaultSlots
	}
	n := 1
	for n < max(slots, ways) {
		n <<= 1
	}
	return n
}

// NewRecorder returns a Recorder following up to slots identities at once
// (rounded up to a power of two; 0 means DefaultSlots), started at now.
func NewRecorder(slots int, now time.Time) *Recorder {
	n := slotCount(slots)
	// The slots are mapped outside the Go heap (3 MB that would cost about
	// twice that in RSS there, see internal/offheap), and unmapped when the
	// Recorder is collected.
	table := offheap.Alloc[slot](n)
	r := &Recorder{seed: maphash.MakeSeed(), since: now, table: table, mask: uint64(n - 1)}
	offheap.FreeWhenCollected(r, table)
	return r
}

// Record notes one scored request: its identity, path, the score after it,
// whether the identity is labelled shared, and whether the service refused
// the request as quarantined (an admission included): the identity-hours
// with such a request are the caught bots', kept out of the innocent
// ones. Requests left out of timing must not be passed.
func (r *Recorder) Record(id identity.ID, path string, score uint8, shared, caught bool, now time.Time) {
	if id.IsZero() {
		return
	}
	r.scores[r.class(path)][min(score, MaxScore)/BucketWidth].Add(1)
	h := id.Hash(r.seed)
	tag := h | 1
	set := h & r.mask &^ (ways - 1)
	mu := &r.locks[set/ways%stripes]
	mu.Lock()
	s := r.slotLocked(set, tag)
	s.track.Observe(now.UnixNano(), score, shared, caught, &r.hist)
	mu.Unlock()
}

// slotLocked returns the slot of tag in the set starting at index set:
// its own, a free one, or the one idle longest, whose identity-hour is
// closed early. The caller holds the set's stripe lock.
func (r *Recorder) slotLocked(set, tag uint64) *slot {
	ways := r.table.S[set : set+ways]
	victim := 0
	for i := range ways {
		switch {
		case ways[i].tag == tag:
			return &ways[i]
		case ways[i].tag == 0:
			ways[i] = slot{tag: tag}
			return &ways[i]
		case ways[i].track.batch < ways[victim].track.batch:
			victim = i
		}
	}
	s := &ways[victim]
	s.track.Close(&r.hist)
	r.takeovers.Add(1)
	*s = slot{tag: tag}
	return s
}

// class returns the index of path's route class; maxClasses is "other".
func (r *Recorder) class(path string) int {
	seg := firstSegment(path)
	if len(seg) > maxSegment {
		return maxClasses
	}
	for i := range seg {
		if c := seg[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == '~' || c == '-') {
			return maxClasses
		}
	}
	for i := range r.names {
		p := r.names[i].Load()
		if p == nil {
			name := "/" + seg // allocates once per class, at most maxClasses times
			if r.names[i].CompareAndSwap(nil, &name) {
				return i
			}
			p = r.names[i].Load()
		}
		if len(*p) == len(seg)+1 && (*p)[1:] == seg {
			return i
		}
	}
	return maxClasses
}

// firstSegment returns the first segment of a request path, without the
// leading slash, query or fragment: "" for "/".
func firstSegment(path string) string {
	if len(path) > 0 && path[0] == '/' {
		path = path[1:]
	}
	for i := range len(path) {
		if c := path[i]; c == '/' || c == '?' || c == '#' {
			return path[:i]
		}
	}
	return path
}

// Snapshot is what a Recorder has seen: GET /api/v1/calibration.
type Snapshot struct {
	// Since is when recording started; Now when the snapshot was taken.
	Since time.Time `json:"since"`
	Now   time.Time `json:"now"`
	// Histogram holds the closed identity-hours: those of past clock hours.
	// Current holds the current hour's, as they stand: their peaks can
	// still rise. They move to Histogram at the first snapshot after the
	// hour ends. Neither holds a caught identity-hour.
	Histogram Histogram `json:"histogram"`
	Current   Histogram `json:"current"`
	// Caught holds the closed identity-hours in which the service refused
	// the identity as quarantined: bots it caught, as far as it knows.
	// They are no evidence of innocence (counted as such, they would push
	// the threshold above the very bots the service catches).
	Caught Histogram `json:"caught"`
	// Slots is how many identities the recorder follows at once, and
	// Takeovers how many identity-hours were closed early because another
	// identity needed the slot.
	Slots     int    `json:"slots"`
	Takeovers uint64 `json:"takeovers"`
	// Routes is the per-request score distribution per route class.
	Routes []RouteScores `json:"routes"`
}

// RouteScores is the score distribution of one route class.
type RouteScores struct {
	// Class is the route class: "/" plus the first path segment, or
	// "other".
	Class string `json:"class"`
	// Requests is the number of scored requests; Buckets[i] how many of
	// them scored in [i·BucketWidth, (i+1)·BucketWidth), the last bucket
	// being 100 alone.
	Requests uint64   `json:"requests"`
	Buckets  []uint64 `json:"buckets"`
}

// Snapshot closes the identity-hours of past clock hours and returns what
// the recorder has seen. It walks every slot: call it for a view, not per
// request.
func (r *Recorder) Snapshot(now time.Time) Snapshot {
	snap := Snapshot{Since: r.since, Now: now, Slots: len(r.table.S), Takeovers: r.takeovers.Load()}
	hour := now.UnixNano() / window
	for i := range r.table.S {
		mu := &r.locks[uint64(i)/ways%stripes]
		mu.Lock()
		if s := &r.table.S[i]; s.tag != 0 && s.track.open {
			if s.track.window < hour {
				s.track.Close(&r.hist)
			} else if !s.track.caught {
				snap.Current.close(&s.track.peaks, s.track.longest, false)
			}
		}
		mu.Unlock()
	}
	snap.Histogram = r.hist.innocent.load()
	snap.Caught = r.hist.caught.load()
	for i := range maxClasses + 1 {
		name := OtherClass
		if i < maxClasses {
			p := r.names[i].Load()
			if p == nil {
				continue
			}
			name = *p
		}
		rs := RouteScores{Class: name, Buckets: make([]uint64, buckets)}
		for b := range buckets {
			rs.Buckets[b] = r.scores[i][b].Load()
			rs.Requests += rs.Buckets[b]
		}
		if rs.Requests > 0 || i < maxClasses {
			snap.Routes = append(snap.Routes, rs)
		}
	}
	return snap
}
