// Package volume limits how many requests one identity may make, whatever
// their rhythm. Timing cannot see some abuse — a parallel scraper whose
// merged stream looks like a crowd of people, a CGNAT carrying a bot — and a
// plain volume limit is the honest control for it. It is off by default.
//
// The limit is GCRA (the generic cell rate algorithm of ITU-T I.371): one
// "theoretical arrival time" per identity, 8 bytes, no timers. A request at
// time t conforms when TAT - t <= burst*T, where T = 1/rate; a conforming
// request moves TAT to max(TAT, t) + T. It is a token bucket without the
// bookkeeping.
package volume

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// Options configure a Limiter.
type Options struct {
	// Rate is the sustained requests per second allowed per identity.
	// Rate <= 0 disables the limit: New returns nil, and a nil *Limiter
	// allows everything.
	Rate float64
	// Burst is how many requests above the sustained rate an idle identity
	// may make at once; 0 means 10 × Rate (at least 1).
	Burst int
	// MaxClients bounds the identities tracked (8 bytes plus the key each);
	// 0 means 1,000,000. When full, entries whose limit has fully recovered
	// are dropped first: forgetting them changes nothing.
	MaxClients int
}

const shards = 64

// Limiter is a per-identity GCRA limiter, safe for concurrent use.
type Limiter struct {
	interval int64 // T: nanoseconds per request at the sustained rate
	tau      int64 // burst tolerance: Burst × T
	perShard int
	seed     maphash.Seed
	shards   [shards]shard
}

type shard struct {
	mu  sync.Mutex // guards tat
	tat map[identity.ID]int64
	_   [48]byte // keep neighbouring shards' locks off one cache line
}

// New returns a limiter, or nil when o.Rate <= 0 (no limit).
func New(o Options) *Limiter {
	if o.Rate <= 0 {
		return nil
	}
	burst := o.Burst
	if burst <= 0 {
		burst = max(1, int(10*o.Rate))
	}
	maxClients := o.MaxClients
	if maxClients <= 0 {
		maxClients = 1_000_000
	}
	interval := max(int64(float64(time.Second)/o.Rate), 1)
	l := &Limiter{interval: interval, tau: int64(burst) * interval, perShard: max(1, maxClients/shards), seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].tat = make(map[identity.ID]int64)
	}
	return l
}

// Allow records one request by id at now and reports whether it conforms;
// when it does not, retryAfter is how long until it would. Rejected requests
// do not count against the identity. It does not allocate for a known id.
func (l *Limiter) Allow(id identity.ID, now time.Time) (ok bool, retryAfter time.Duration) {
	if l == nil {
		return true, 0
	}
	t := now.UnixNano()
	sh := &l.shards[l.shardOf(id)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	tat, known := sh.tat[id]
	tat = max(tat, t)
	if wait := tat - t - l.tau; wait > 0 {
		return false, time.Duration(wait)
	}
	if !known {
		if len(sh.tat) >= l.perShard {
			l.evictLocked(sh, t)
		}
		id = id.Clone()
	}
	sh.tat[id] = tat + l.interval
	return true, 0
}

// evictLocked makes room in a full shard: an entry whose TAT has passed is
// indistinguishable from no entry; failing that, the one recovering soonest
// among a few goes (map order is random enough for a sample).
func (l *Limiter) evictLocked(sh *shard, now int64) {
	var victim identity.ID
	best, seen := int64(1<<63-1), 0
	for k, tat := range sh.tat {
		if tat <= now {
			delete(sh.tat, k)
			return
		}
		if tat < best {
			victim, best = k, tat
		}
		if seen++; seen == 8 {
			break
		}
	}
	delete(sh.tat, victim)
}

// Sweep drops every entry whose limit has fully recovered by now; they hold
// no information. main calls it with the other sweeps.
func (l *Limiter) Sweep(now time.Time) int {
	if l == nil {
		return 0
	}
	t, n := now.UnixNano(), 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, tat := range sh.tat {
			if tat <= t {
				delete(sh.tat, k)
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// Len returns the number of identities tracked.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	n := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		n += len(l.shards[i].tat)
		l.shards[i].mu.Unlock()
	}
	return n
}

// shardOf picks id's shard with a hash keyed by the limiter's seed, so
// that clients cannot aim their addresses at one shard.
func (l *Limiter) shardOf(id identity.ID) int {
	return int(id.Hash(l.seed) % shards)
}
