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

	"github.com/flowlock/flowlock/internal/identity"
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

const shardCount = 64

// Agents counts distinct user agents per identity within a window. It is
// safe for concurrent use; the zero value is not usable, call New.
type Agents struct {
	window int64 // ns
	seed   maphash.Seed
	shards [shardCount]shard
}

type shard struct {
	mu      sync.Mutex
	limit   int
	entries map[identity.ID]*entry // keys cloned on insert, never assigned again
	_       [40]byte               // keep neighbouring shards' locks off one cache line
}

// entry is one identity's window: when it started and the hashes of the
// distinct agents seen in it.
type entry struct {
	start  int64
	agents [maxAgents]uint64
	n      uint8
}

// New returns a counter over window (≤ 0: DefaultWindow) holding at most
// maxEntries identities (≤ 0: DefaultMaxEntries).
func New(window time.Duration, maxEntries int) *Agents {
	if window <= 0 {
		window = DefaultWindow
	}
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	a := &Agents{window: int64(window), seed: maphash.MakeSeed()}
	for i := range a.shards {
		a.shards[i].limit = max(maxEntries/shardCount, 1)
		a.shards[i].entries = make(map[identity.ID]*entry)
	}
	return a
}

// Note records that id sent a request with user agent ua at now, and
// returns how many distinct agents id has shown in the current window
// (saturating at 4). An empty agent counts as none. When the counter is
// full, an arbitrary entry makes room: the evidence is a hint, and losing
// one only delays a label.
func (a *Agents) Note(id identity.ID, ua string, now time.Time) int {
	if ua == "" || id.IsZero() {
		return 0
	}
	h := maphash.String(a.seed, ua)
	t := now.UnixNano()
	sh := &a.shards[id.Hash(a.seed)%shardCount]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// The entry is updated through its pointer: assigning to a key already
	// in the map would replace the stored key with id, whose name may
	// point into a buffer the caller reuses.
	e := sh.entries[id]
	if e == nil {
		if len(sh.entries) >= sh.limit {
			for k := range sh.entries {
				delete(sh.entries, k)
				break
			}
		}
		e = &entry{start: t}
		sh.entries[id.Clone()] = e
	}
	if t-e.start >= a.window || t < e.start {
		*e = entry{start: t}
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

// Len returns how many identities are being counted.
func (a *Agents) Len() int {
	n := 0
	for i := range a.shards {
		sh := &a.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}
