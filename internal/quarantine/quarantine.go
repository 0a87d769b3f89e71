// Package quarantine keeps the self-healing quarantine: which clients are
// blocked until when, how often each has offended (strikes, for escalating
// repeat offenders), the operator's allow and deny lists, and the state file
// that lets quarantines survive a restart.
//
// Everything takes the time as a parameter; only the sweeper loop (Run)
// reads a clock, and only the one its owner passes in. Expiry is lazy: an
// entry is over as soon as a call's now reaches its Until, whether or not
// Sweep has run. Sweep only reclaims memory and counts expirations. There is
// never a goroutine or timer per entry.
package quarantine

import (
	"cmp"
	"container/heap"
	"hash/maphash"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// Defaults for the zero fields of Options.
const (
	DefaultBaseTTL      = 5 * time.Minute
	DefaultMaxTTL       = 24 * time.Hour
	DefaultFactor       = 2.0
	DefaultStrikeWindow = 24 * time.Hour
	DefaultMaxEntries   = 1_000_000
)

// MaxBanTTL is the longest manual ban Ban accepts; longer requests are cut to
// it. For a permanent block use the deny list.
const MaxBanTTL = 30 * 24 * time.Hour

// maxStrikes is how many strike times one identity remembers. Older strikes
// beyond it are dropped, so Strikes never exceeds it; with the default
// escalation the TTL is capped after 10 strikes anyway.
const maxStrikes = 64

// Options configures a List. The zero value gives the defaults.
type Options struct {
	// BaseTTL is the length of a first quarantine. 0 (or less) means 5m.
	BaseTTL time.Duration

	// MaxTTL caps escalation: no automatic quarantine lasts longer, and
	// Extend never pushes a quarantine further than MaxTTL from now.
	// 0 (or less) means 24h. A MaxTTL below BaseTTL is raised to BaseTTL.
	MaxTTL time.Duration

	// Factor multiplies the TTL for every further strike within
	// StrikeWindow: strike n quarantines for min(BaseTTL*Factor^(n-1),
	// MaxTTL). 0 means 2. Values below 1 (or NaN) mean 1: no escalation.
	Factor float64

	// StrikeWindow is how long a strike counts towards escalation: a strike
	// is forgotten StrikeWindow after it was recorded. 0 (or less) means 24h.
	StrikeWindow time.Duration

	// MaxEntries bounds memory: the most identities the List holds, counting
	// both active quarantines and identities kept only for their strike
	// history. When a new identity arrives at the bound, the List first
	// drops the strike-only identity whose quarantine ended longest ago, and
	// only if there is none, the active quarantine that ends soonest (see
	// Stats). The bound is enforced per shard (the List has up to 64 shards
	// of MaxEntries/shards each), so eviction order is exact within a shard
	// and approximate across the List. Each identity costs about 255 bytes
	// (BenchmarkMemoryPerEntry: IPv4 identity, one strike), so the default is about
	// 250 MB at worst. 0 (or less) means 1,000,000.
	MaxEntries int
}

// withDefaults returns o with zero and out-of-range fields replaced.
func (o Options) withDefaults() Options {
	if o.BaseTTL <= 0 {
		o.BaseTTL = DefaultBaseTTL
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = DefaultMaxTTL
	}
	if o.MaxTTL < o.BaseTTL {
		o.MaxTTL = o.BaseTTL
	}
	switch {
	case o.Factor == 0:
		o.Factor = DefaultFactor
	case !(o.Factor >= 1): // also NaN
		o.Factor = 1
	}
	if o.StrikeWindow <= 0 {
		o.StrikeWindow = DefaultStrikeWindow
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	return o
}

// Entry describes one quarantine. It is a copy; changing it changes nothing.
type Entry struct {
	// ID is the quarantined client.
	ID identity.ID `json:"id"`
	// Since is when this quarantine began.
	Since time.Time `json:"since"`
	// Until is when it ends (or ended); the client is blocked while now is
	// before Until.
	Until time.Time `json:"until"`
	// Strikes is the number of automatic quarantines of this identity
	// within StrikeWindow when this quarantine began, this one included.
	// It is 0 for a manual ban of an identity that never struck.
	Strikes int `json:"strikes"`
	// Reason says why: the detector that fired, or the operator's note.
	Reason string `json:"reason"`
	// Score is the risk score (0-100) at admission; 0 for manual bans.
	Score uint8 `json:"score"`
	// Manual reports a ban by an operator rather than by the detector.
	Manual bool `json:"manual"`
	// Hits is the number of requests refused by this quarantine so far
	// (Hit calls), so an operator can tell a client that keeps knocking
	// from one that went away. It is not kept across restarts.
	Hits uint64 `json:"hits"`
}

// Remaining returns the quarantine time left at now, or 0 if it is over.
func (e Entry) Remaining(now time.Time) time.Duration {
	return max(e.Until.Sub(now), 0)
}

// RetryAfterSeconds returns the whole seconds left at now, rounded up and at
// least 1: the value for an HTTP Retry-After header, which must not tell a
// client to come back before its quarantine ends.
func (e Entry) RetryAfterSeconds(now time.Time) int {
	return retryAfterSeconds(e.Remaining(now))
}

// retryAfterSeconds is d in whole seconds, rounded up and at least 1.
func retryAfterSeconds(d time.Duration) int {
	s := (max(d, 0) + time.Second - 1) / time.Second
	return int(max(s, 1))
}

// Stats reports the List's size and eviction counters, for metrics.
type Stats struct {
	// Active is the same as Len: quarantines not yet over as of the last
	// Sweep and later mutations.
	Active int
	// Entries counts all identities held: active plus strike-only history.
	Entries int
	// EvictedHistory counts strike-only identities dropped at MaxEntries.
	EvictedHistory uint64
	// EvictedActive counts active quarantines ended early at MaxEntries.
	// A non-zero value means MaxEntries is too small for the attack.
	EvictedActive uint64
}

// List is the set of quarantined identities and their strike history. It is
// safe for concurrent use. Check, called for every request, takes a shared
// lock on one of up to 64 shards and does not allocate (a miss for an IPv6
// client also probes the ranges Regroup kept, while there are any);
// mutations lock one shard, and record what they changed in a small log of
// events (see Events) under its own lock.
//
// Create a List with New; the zero List is not usable.
type List struct {
	opts    Options
	seed    maphash.Seed
	shards  []shard
	mask    uint64
	changed chan struct{}
	events  *eventLog
	// wide is nil unless Regroup kept IPv6 entries from a shorter prefix
	// as ranges; then it names their lengths for Check's second look.
	wide atomic.Pointer[wideSet]
}

// shard holds the identities whose hash selects it. Its fields after mu are
// guarded by mu.
type shard struct {
	mu sync.RWMutex // guards the following fields
	ev *eventLog    // the List's events; nil while ReadState builds a shard
	m  map[identity.ID]*record
	h  recordHeap // every record in m, soonest Until first: the eviction order
	// limit is the most records this shard holds (its part of MaxEntries).
	limit int
	// active counts records in stateActive.
	active int
	// expired counts quarantines seen to be over, outside Sweep, since the
	// last Sweep (replaced on re-admission, evicted), for Sweep to report.
	expired        int
	evictedHistory uint64
	evictedActive  uint64

	_ [64]byte // keep the next shard's mutex off this cache line
}

// Record states. A record is active from admission until its quarantine is
// noticed to be over (by Sweep, Release, re-admission or eviction); Check
// does not need the state, it compares Until with now.
const (
	stateActive uint8 = iota
	stateEnded
)

// record is one identity's quarantine and strike history. Times are Unix
// nanoseconds, which keeps records small and free of pointers to locations.
type record struct {
	id      identity.ID
	since   int64
	until   int64
	strikeT []int64 // strike times, ascending, at most maxStrikes
	strikes int     // Entry.Strikes
	reason  string
	score   uint8
	manual  bool
	state   uint8
	index   int // position in shard.h
	// hits counts the requests refused during the current quarantine
	// (Entry.Hits). Hit adds to it under the shard's read lock, so it is
	// atomic; it starts at 0 with each quarantine and is not persisted.
	hits atomic.Uint64
}

// New returns an empty List. It starts no goroutine: run the sweeper with Run.
func New(opts Options) *List {
	opts = opts.withDefaults()
	n := 1
	// Powers of two up to 64 shards, keeping at least 1024 entries a shard so
	// that small lists evict in exact order.
	for n < 64 && opts.MaxEntries/(n*2) >= 1024 {
		n *= 2
	}
	return newList(opts, n)
}

// newList returns a List of n shards (a power of two) for defaulted opts.
func newList(opts Options, n int) *List {
	l := &List{
		opts:    opts,
		seed:    maphash.MakeSeed(),
		shards:  make([]shard, n),
		mask:    uint64(n - 1),
		changed: make(chan struct{}, 1),
		events:  new(eventLog),
	}
	for i := range l.shards {
		s := &l.shards[i]
		s.ev = l.events
		s.m = make(map[identity.ID]*record)
		s.limit = opts.MaxEntries / n
		if i < opts.MaxEntries%n {
			s.limit++
		}
	}
	return l
}

func (l *List) shardFor(id identity.ID) *shard {
	return &l.shards[l.shardIndex(id)]
}

// shardIndex picks id's shard with a hash keyed by the list's seed.
func (l *List) shardIndex(id identity.ID) uint64 {
	if l.mask == 0 {
		return 0
	}
	return id.Hash(l.seed) & l.mask
}

// notify signals Changed without blocking.
func (l *List) notify() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// Changed returns a channel, buffered with room for one signal, that
// receives a value after every mutation: Admit or Ban that started or
// changed a quarantine, Extend that moved one, Release, a Sweep that expired
// or dropped anything, and ReadState. Signals coalesce: one receive may stand
// for many mutations, so a persister should save the whole state on each.
func (l *List) Changed() <-chan struct{} { return l.changed }

// Check reports whether id is quarantined at now, and the quarantine. It
// sees expiry exactly (an entry is over when now reaches Until), does not
// change the List, and does not allocate. After Regroup kept entries from
// a shorter IPv6 prefix as ranges, an IPv6 client without an active entry
// of its own is quarantined by the most specific active range containing
// it, and the Entry is the range's.
func (l *List) Check(id identity.ID, now time.Time) (Entry, bool) {
	// Refuse's body without the count, written out: Refuse is the lookup
	// of every request, and a helper shared with it would cost it a call.
	s := l.shardFor(id)
	t := now.UnixNano()
	s.mu.RLock()
	if r, ok := s.m[id]; ok && r.until > t {
		e := r.entry()
		s.mu.RUnlock()
		return e, true
	}
	s.mu.RUnlock()
	if w := l.wide.Load(); w != nil {
		return l.checkWide(w, id, t, false)
	}
	return Entry{}, false
}

// Refusal is what a refused request needs of its quarantine: a small
// part of Entry.
type Refusal struct {
	Reason     string    // Entry.Reason
	RetryAfter int       // Entry.RetryAfterSeconds at the refusal
	Since      time.Time // Entry.Since
}

// Refuse is Check for a request that the quarantine refuses: on a hit it
// also counts the request in the quarantine's Hits, and it returns only
// the Refusal instead of building the whole Entry. A quarantined client's
// every request makes this call; it does not allocate.
func (l *List) Refuse(id identity.ID, now time.Time) (Refusal, bool) {
	s := l.shardFor(id)
	t := now.UnixNano()
	s.mu.RLock()
	if r, found := s.m[id]; found && r.until > t {
		r.hits.Add(1)
		reason, since, until := r.reason, r.since, r.until
		s.mu.RUnlock()
		return Refusal{Reason: reason, RetryAfter: retryAfterSeconds(time.Duration(until - t)), Since: time.Unix(0, since).UTC()}, true
	}
	s.mu.RUnlock()
	if w := l.wide.Load(); w != nil {
		if e, found := l.checkWide(w, id, t, true); found {
			return Refusal{Reason: e.Reason, RetryAfter: e.RetryAfterSeconds(now), Since: e.Since}, true
		}
	}
	return Refusal{}, false
}

// Admit quarantines id automatically, as the detector's verdict: it records
// a strike, counts the strikes within StrikeWindow (n, this one included),
// and quarantines for min(BaseTTL*Factor^(n-1), MaxTTL) from now. If id is
// already quarantined at now, Admit changes nothing and returns the
// existing entry (a bot that keeps knocking does not escalate itself).
func (l *List) Admit(id identity.ID, now time.Time, reason string, score uint8) Entry {
	s := l.shardFor(id)
	t := now.UnixNano()
	s.mu.Lock()
	r := s.m[id]
	if r != nil && r.until > t {
		e := r.entry()
		s.mu.Unlock()
		return e
	}
	if r == nil {
		r = s.insertLocked(id, t)
	} else {
		s.endLocked(r, true)
	}
	r.pruneStrikes(t, l.opts.StrikeWindow)
	r.addStrike(t)
	r.strikes = len(r.strikeT)
	r.since = t
	r.until = addClamped(t, l.ttl(r.strikes))
	r.reason = strings.Clone(reason)
	r.score = score
	r.manual = false
	s.startLocked(r)
	s.ev.add(EventAdmitted, r, t)
	e := r.entry()
	s.mu.Unlock()
	l.notify()
	return e
}

// Ban quarantines id by hand for ttl from now (0 or less means BaseTTL;
// more than MaxBanTTL means MaxBanTTL), with Manual set and the reason
// replaced. A ban does not add a strike. If id is already quarantined and
// would stay so for longer, the later end is kept: a ban never shortens a
// quarantine (Release and Ban again to do that).
func (l *List) Ban(id identity.ID, now time.Time, ttl time.Duration, reason string) Entry {
	if ttl <= 0 {
		ttl = l.opts.BaseTTL
	}
	ttl = min(ttl, MaxBanTTL)
	s := l.shardFor(id)
	t := now.UnixNano()
	s.mu.Lock()
	r := s.m[id]
	switch {
	case r == nil:
		r = s.insertLocked(id, t)
	case r.until > t:
		// Active: keep since and score, push the end if later.
		r.until = max(r.until, addClamped(t, ttl))
		r.reason = strings.Clone(reason)
		r.manual = true
		heap.Fix(&s.h, r.index)
		s.ev.add(EventBanned, r, t)
		e := r.entry()
		s.mu.Unlock()
		l.notify()
		return e
	default:
		s.endLocked(r, true)
	}
	r.pruneStrikes(t, l.opts.StrikeWindow)
	r.strikes = len(r.strikeT)
	r.since = t
	r.until = addClamped(t, ttl)
	r.reason = strings.Clone(reason)
	r.score = 0
	r.manual = true
	s.startLocked(r)
	s.ev.add(EventBanned, r, t)
	e := r.entry()
	s.mu.Unlock()
	l.notify()
	return e
}

// Extend lengthens id's active quarantine by `by`, for the dashboard's
// "extend" action. The new end is capped at now+MaxTTL, and Extend never
// shortens: extending a quarantine that already ends after now+MaxTTL (a
// long manual ban) changes nothing; use Ban for longer. by <= 0 changes
// nothing. It reports false, and changes nothing, if id is not quarantined.
// It extends the quarantine Check reports, which may be a range (see
// Regroup).
func (l *List) Extend(id identity.ID, now time.Time, by time.Duration) (Entry, bool) {
	t := now.UnixNano()
	s, r := l.lockActive(id, t)
	if r == nil {
		return Entry{}, false
	}
	old := r.until
	if by > 0 {
		r.until = max(old, min(addClamped(old, by), addClamped(t, l.opts.MaxTTL)))
	}
	changed := r.until != old
	if changed {
		heap.Fix(&s.h, r.index)
		s.ev.add(EventExtended, r, t)
	}
	e := r.entry()
	s.mu.Unlock()
	if changed {
		l.notify()
	}
	return e, true
}

// Release ends id's quarantine by hand at now. It keeps the strike history,
// so a client that offends again still escalates. It reports false if id
// was not quarantined. A released quarantine is not counted by Sweep as
// expired. It releases the quarantine Check reports: id's own active entry
// if it has one, else the most specific range containing it (see Regroup),
// so naming a client inside a range releases the range, and a client with
// an entry of its own inside a range needs a second Release for the range.
func (l *List) Release(id identity.ID, now time.Time) bool {
	t := now.UnixNano()
	s, r := l.lockActive(id, t)
	if r == nil {
		return false
	}
	r.until = t
	s.endLocked(r, false)
	s.ev.add(EventReleased, r, t)
	r.pruneStrikes(t, l.opts.StrikeWindow)
	if len(r.strikeT) == 0 {
		s.removeLocked(r)
	} else {
		heap.Fix(&s.h, r.index)
	}
	s.mu.Unlock()
	l.notify()
	return true
}

// Sweep reclaims identities whose quarantine is over and whose strikes have
// all left the StrikeWindow, and returns how many quarantines expired (ran
// out, as opposed to Release) since the previous Sweep: the increment for a
// releases{reason="expired"} counter. Each expiry is counted once, even if
// the identity was re-admitted or evicted before this Sweep. Sweep visits
// every entry, one shard at a time, so each lock is held for about
// MaxEntries/64 map entries. When the last range of a length Regroup kept
// is gone, Check stops looking for ranges of that length.
func (l *List) Sweep(now time.Time) (expired int) {
	t := now.UnixNano()
	changed := false
	w := l.wide.Load()
	var live wideLengths
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		expired += s.expired
		if s.expired > 0 {
			changed = true
		}
		s.expired = 0
		for _, r := range s.m {
			if r.until <= t {
				if r.state == stateActive {
					r.state = stateEnded
					s.active--
					expired++
					changed = true
					s.ev.add(EventExpired, r, r.until)
				}
				r.pruneStrikes(t, l.opts.StrikeWindow)
				if len(r.strikeT) == 0 {
					s.removeLocked(r)
					changed = true
					continue
				}
			}
			if w != nil && r.until > t {
				live.add(w, r.id) // only an active range still denies
			}
		}
		s.mu.Unlock()
	}
	if w != nil {
		// A Regroup or ReadState since the Load has replaced w: leave theirs.
		l.wide.CompareAndSwap(w, live.shrink(w))
	}
	if changed {
		l.notify()
	}
	return expired
}

// SnapshotN returns the limit quarantines active at now that end soonest,
// soonest release first (ties in identity.Compare order), and total, the number of all quarantines active at
// now. It costs one pass over the entries, a shard at a time, in
// O(n log limit) time, and allocates only for the limit entries it
// returns, however many are active. limit <= 0 returns no entries, only
// the total.
func (l *List) SnapshotN(now time.Time, limit int) (entries []Entry, total int) {
	t := now.UnixNano()
	limit = max(limit, 0)
	// top is a max-heap of the best limit entries so far: its root is the
	// one that ends last, the first to give way to a better one.
	var top []Entry
	var worst int64 // top[0].Until in Unix nanoseconds, once top is full
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.RLock()
		for _, r := range s.m {
			if r.until <= t {
				continue
			}
			total++
			switch {
			case len(top) < limit:
				if top == nil {
					top = make([]Entry, 0, min(limit, 1024))
				}
				top = append(top, r.entry())
				siftUp(top, len(top)-1)
				if len(top) == limit {
					worst = top[0].Until.UnixNano()
				}
			case limit == 0 || r.until > worst:
				// Cannot beat the root; the common case costs no copy.
			case r.until < worst || identity.Compare(r.id, top[0].ID) < 0:
				top[0] = r.entry()
				siftDown(top, 0)
				worst = top[0].Until.UnixNano()
			}
		}
		s.mu.RUnlock()
	}
	slices.SortFunc(top, compareEntries)
	return top, total
}

// compareEntries orders entries by Until, then by identity.Compare, which
// does not allocate: a total order, since identities are unique in a List.
func compareEntries(a, b Entry) int {
	if c := a.Until.Compare(b.Until); c != 0 {
		return c
	}
	return identity.Compare(a.ID, b.ID)
}

// siftUp and siftDown keep h a max-heap under compareEntries. They are
// written out rather than using container/heap, whose interface would box
// every Entry.
func siftUp(h []Entry, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if compareEntries(h[i], h[p]) <= 0 {
			return
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func siftDown(h []Entry, i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && compareEntries(h[c+1], h[c]) > 0 {
			c++
		}
		if compareEntries(h[c], h[i]) <= 0 {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// Len returns the number of active quarantines as of the last Sweep and the
// mutations since. A quarantine that ran out after the last Sweep is still
// counted until the next one; Check and Snapshot see expiry exactly. Len
// costs one lock per shard, not a walk of the entries, so it suits a gauge.
func (l *List) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.RLock()
		n += s.active
		s.mu.RUnlock()
	}
	return n
}

// Stats returns the List's size and eviction counters.
func (l *List) Stats() Stats {
	var st Stats
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.RLock()
		st.Active += s.active
		st.Entries += len(s.m)
		st.EvictedHistory += s.evictedHistory
		st.EvictedActive += s.evictedActive
		s.mu.RUnlock()
	}
	return st
}

// ttl returns the quarantine length for the n-th strike.
func (l *List) ttl(n int) time.Duration {
	f := float64(l.opts.BaseTTL) * math.Pow(l.opts.Factor, float64(max(n-1, 0)))
	if !(f < float64(l.opts.MaxTTL)) { // also +Inf and NaN
		return l.opts.MaxTTL
	}
	return time.Duration(math.Round(f))
}

// addClamped returns t+d in Unix nanoseconds, saturating instead of
// overflowing.
func addClamped(t int64, d time.Duration) int64 {
	if d > 0 && t > math.MaxInt64-int64(d) {
		return math.MaxInt64
	}
	return t + int64(d)
}

// entry returns r as an Entry. It does not allocate.
func (r *record) entry() Entry {
	return Entry{
		ID:      r.id,
		Since:   time.Unix(0, r.since).UTC(),
		Until:   time.Unix(0, r.until).UTC(),
		Strikes: r.strikes,
		Reason:  r.reason,
		Score:   r.score,
		Manual:  r.manual,
		Hits:    r.hits.Load(),
	}
}

// pruneStrikes forgets strikes recorded StrikeWindow or longer before t.
func (r *record) pruneStrikes(t int64, window time.Duration) {
	cut := t - int64(window)
	i := 0
	for i < len(r.strikeT) && r.strikeT[i] <= cut {
		i++
	}
	if i > 0 {
		r.strikeT = slices.Delete(r.strikeT, 0, i)
	}
}

// liveStrikes returns the strike times within window before t, without
// changing r (for readers holding a shared lock).
func (r *record) liveStrikes(t int64, window time.Duration) []int64 {
	cut := t - int64(window)
	i, _ := slices.BinarySearch(r.strikeT, cut+1)
	return r.strikeT[i:]
}

// addStrike records a strike at t, keeping the times sorted (callers' clocks
// may step back a little) and at most maxStrikes of them.
func (r *record) addStrike(t int64) {
	i, _ := slices.BinarySearch(r.strikeT, t)
	r.strikeT = slices.Insert(r.strikeT, i, t)
	if len(r.strikeT) > maxStrikes {
		r.strikeT = slices.Delete(r.strikeT, 0, len(r.strikeT)-maxStrikes)
	}
}

// insertLocked adds a new, ended record for id, evicting first if the shard
// is full. The caller fills it in and calls startLocked.
func (s *shard) insertLocked(id identity.ID, t int64) *record {
	for len(s.m) >= s.limit && len(s.h) > 0 {
		s.evictLocked(t)
	}
	r := &record{id: id.Clone(), state: stateEnded, since: t, until: t}
	s.m[r.id] = r
	heap.Push(&s.h, r)
	return r
}

// evictLocked drops the record that ends soonest: strike-only history
// (ended longest ago) before any active quarantine.
func (s *shard) evictLocked(t int64) {
	r := s.h[0]
	ranOut := r.until <= t
	if ranOut {
		s.evictedHistory++
	} else {
		s.evictedActive++
		r.until = t // it ends now
		s.ev.add(EventEvicted, r, t)
	}
	s.endLocked(r, ranOut)
	s.removeLocked(r)
}

// startLocked marks r active after its fields were set, and re-sorts it.
func (s *shard) startLocked(r *record) {
	r.hits.Store(0)
	if r.state != stateActive {
		r.state = stateActive
		s.active++
	}
	heap.Fix(&s.h, r.index)
}

// endLocked marks r ended. If its quarantine ran out (as opposed to being
// released) and Sweep has not counted it yet, countExpiry saves the expiry
// for the next Sweep.
func (s *shard) endLocked(r *record, countExpiry bool) {
	if r.state != stateActive {
		return
	}
	r.state = stateEnded
	s.active--
	if countExpiry {
		s.expired++
		s.ev.add(EventExpired, r, r.until)
	}
}

// removeLocked deletes an ended record.
func (s *shard) removeLocked(r *record) {
	heap.Remove(&s.h, r.index)
	delete(s.m, r.id)
}

// recordHeap orders records by Until, soonest first. It implements
// heap.Interface; records know their index.
type recordHeap []*record

func (h recordHeap) Len() int { return len(h) }
func (h recordHeap) Less(i, j int) bool {
	return cmp.Less(h[i].until, h[j].until)
}
func (h recordHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *recordHeap) Push(x any) {
	r := x.(*record)
	r.index = len(*h)
	*h = append(*h, r)
}
func (h *recordHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	r.index = -1
	return r
}
