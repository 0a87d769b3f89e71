// Package crowd counts the distinct clients seen behind one identity, by
// their user agents, over a short window: evidence from the request itself,
// beyond timing, that an address is shared (an office NAT, a CGNAT).
//
// The evidence is cheap for a bot to fake (a user agent is one header), so
// it is only ever a hint: risk.Engine.Crowd accepts it only when the
// identity's timing agrees.
package crowd

import (
	"hash/maphash"
	"sync"
	"time"
	"unsafe"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/offheap"
)

// Defaults.
const (
	// DefaultWindow is how long distinct agents are collected before the
	// count starts again: two minutes, the time an office NAT should take
	// to be labelled shared.
	DefaultWindow = 2 * time.Minute
	// DefaultMaxEntries bounds the identities counted at once. Only
	// identities the caller deems worth counting are noted (see
	// authz.Policy), so this is far fewer than the clients tracked.
	DefaultMaxEntries = 1 << 16
	// maxAgents is how many distinct agents an entry remembers; the count
	// saturates there, which is more than any caller needs.
	maxAgents = 4
)

// The table is set-associative with two choices: an identity's hash picks
// two sets of ways slots, and its entry is in either. A new identity takes
// a free slot in the emptier set, and only when both are full the slot of
// the stalest window of the two. With one set of four, a table a quarter
// full already overflowed about 1 % of its sets, and five identities that
// took turns in one set evicted each other at every request, so none of
// them ever counted past one agent (a review's finding,
// TestQuarterFullTableLabelsEveryNAT); two choices keep sets from
// overflowing until the table is nearly full. stripes locks guard the
// sets.
const (
	ways    = 4
	stripes = 64
)

// Agents counts distinct user agents per identity within a window. It is
// safe for concurrent use; the zero value is not usable, call New.
//
// Its table is fixed at New, holds no pointer and is mapped outside the Go
// heap (internal/offheap): full, 65,536 entries take 3.7 MB, where a map of
// identities took 11.5 MB of heap and, at GOGC=100, about twice that in RSS.
// An identity is told apart by a 64-bit hash keyed with a seed of this
// process, so no identity is kept, and a client cannot aim at another's
// entry.
type Agents struct {
	window int64 // ns
	seed   maphash.Seed
	locks  [stripes]struct {
		sync.Mutex          // guards the sets whose number is this stripe's modulo stripes
		_          [56]byte // keep neighbouring locks off one cache line
	}
	table offheap.Array[entry]
	sets  uint64 // len(slots) / ways, a power of two
}

// entry is one identity's window: its tag (hash | 1; 0 marks a free slot),
// when the window started and the hashes of the distinct agents seen in it.
type entry struct {
	tag    uint64
	start  int64
	agents [maxAgents]uint64
	n      uint8
}

// New returns a counter over window (≤ 0: DefaultWindow) holding at most
// maxEntries identities (≤ 0: DefaultMaxEntries; rounded up to a power of
// two).
func New(window time.Duration, maxEntries int) *Agents {
	if window <= 0 {
		window = DefaultWindow
	}
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	n := entryCount(maxEntries)
	table := offheap.Alloc[entry](n)
	a := &Agents{window: int64(window), seed: maphash.MakeSeed(), table: table, sets: uint64(n / ways)}
	offheap.FreeWhenCollected(a, table)
	return a
}

// entryCount is New's table size for maxEntries (> 0).
func entryCount(maxEntries int) int {
	n := ways
	for n < maxEntries {
		n <<= 1
	}
	return n
}

// Mapped returns the bytes New(window, maxEntries) maps outside the Go
// heap, where a GOMEMLIMIT does not see them.
func Mapped(maxEntries int) int64 {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	return int64(entryCount(maxEntries)) * int64(unsafe.Sizeof(entry{}))
}

// Note records that id sent a request with user agent ua at now, and
// returns how many distinct agents id has shown in the current window
// (saturating at 4). An empty agent counts as none. When the identity's set
// is full, the entry whose window is stalest makes room: the evidence is a
// hint, and losing one only delays a label.
func (a *Agents) Note(id identity.ID, ua string, now time.Time) int {
	if ua == "" || id.IsZero() {
		return 0
	}
	h := maphash.String(a.seed, ua)
	t := now.UnixNano()
	key := id.Hash(a.seed)
	set1, set2 := (key&(a.sets-1))*ways, (key>>32&(a.sets-1))*ways
	first, second := a.stripeLocks(set1, set2)
	first.Lock()
	defer first.Unlock()
	if second != nil {
		second.Lock()
		defer second.Unlock()
	}
	e := a.entryLocked(set1, set2, key|1, t)
	if t-e.start >= a.window || t < e.start {
		*e = entry{tag: e.tag, start: t}
	}
	for _, x := range e.agents[:e.n] {
		if x == h {
			return int(e.n)
		}
	}
	if e.n < maxAgents {
		e.agents[e.n] = h
		e.n++
	}
	return int(e.n)
}

// stripeLocks returns the stripe locks of the sets starting at set1 and
// set2 in the order of their numbers, so that two Notes never wait on each
// other in turn; second is nil when one lock guards both.
func (a *Agents) stripeLocks(set1, set2 uint64) (first, second *sync.Mutex) {
	i, j := set1/ways%stripes, set2/ways%stripes
	if i == j {
		return &a.locks[i].Mutex, nil
	}
	if i > j {
		i, j = j, i
	}
	return &a.locks[i].Mutex, &a.locks[j].Mutex
}

// entryLocked returns the entry of tag in the sets starting at set1 and
// set2: its own, a free one in the emptier set, or, both full, the one
// whose window started longest ago, taken over with a window starting at
// t. The caller holds both sets' locks.
func (a *Agents) entryLocked(set1, set2, tag uint64, t int64) *entry {
	s1, s2 := a.table.S[set1:set1+ways], a.table.S[set2:set2+ways]
	free1, free2 := -1, -1
	for i := range ways {
		switch {
		case s1[i].tag == tag:
			return &s1[i]
		case s2[i].tag == tag:
			return &s2[i]
		}
		if s1[i].tag == 0 && free1 < 0 {
			free1 = i
		}
		if s2[i].tag == 0 && free2 < 0 {
			free2 = i
		}
	}
	// Slots fill in order and are never freed, so the first free slot of
	// a set tells how full it is.
	var e *entry
	switch {
	case free1 >= 0 && (free2 < 0 || free1 <= free2):
		e = &s1[free1]
	case free2 >= 0:
		e = &s2[free2]
	default:
		e = &s1[0]
		for _, s := range [2][]entry{s1, s2} {
			for i := range s {
				if s[i].start < e.start {
					e = &s[i]
				}
			}
		}
	}
	*e = entry{tag: tag, start: t}
	return e
}

// Len returns how many identities are being counted.
func (a *Agents) Len() int {
	n := 0
	for set := 0; set < len(a.table.S); set += ways {
		mu := &a.locks[set/ways%stripes]
		mu.Lock()
		for _, e := range a.table.S[set : set+ways] {
			if e.tag != 0 {
				n++
			}
		}
		mu.Unlock()
	}
	return n
}
