package risk

import (
	"cmp"
	"container/heap"
	"hash/maphash"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/offheap"
)

// Defaults for the zero Options.
const (
	DefaultMaxClients         = 1_000_000
	DefaultShards             = 256
	DefaultThreshold          = 80
	DefaultChallengeThreshold = 60
	DefaultConfirm            = 3
	DefaultIdleTTL            = 30 * time.Minute
	DefaultHighRiskIdleTTL    = 24 * time.Hour
)

// maxShards bounds Options.Shards; more shards than this buy nothing.
const maxShards = 1 << 16

// Options configures an Engine. The zero value gives the defaults.
type Options struct {
	// MaxClients is the hard cap on tracked identities; 0 means
	// DefaultMaxClients (1,000,000, about 265 MB when full, outside the
	// Go heap: see BenchmarkMemoryPerClient and MappedAtCap).
	//
	// Each shard gets its share of the cap. When a new identity arrives at
	// a full shard, the engine samples a few of the shard's entries and
	// evicts the least valuable: the one idle longest. An entry whose last
	// score is at or above ChallengeThreshold, or that is confirmed, is
	// never evicted, so a flood of new identities cannot wash a known bot
	// out of memory. The price: when every sampled entry is protected, the
	// new identity is not tracked at all and Observe returns a zero
	// Verdict for it. A cap filled with high-risk identities therefore
	// stops timing detection for newcomers until Sweep frees room;
	// Evictions and Len show it, and volume limits still apply.
	MaxClients int

	// Shards is the number of independently locked parts of the map, a
	// power of two (other values are rounded up); 0 means DefaultShards
	// (256). It is lowered to at most MaxClients.
	Shards int

	// Threshold is the score (0–100) at which a confirmed verdict means
	// quarantine; 0 means DefaultThreshold (80). Values above 100 mean 100.
	Threshold uint8

	// ChallengeThreshold is where the "challenge/watch" band starts: below
	// it a verdict carries ReasonNone, and entries at or above it are never
	// evicted and survive Sweep. 0 means DefaultChallengeThreshold (60).
	ChallengeThreshold uint8

	// Confirm is how many consecutive evaluations must score at least
	// Threshold before a verdict is confirmed; 0 (or less) means
	// DefaultConfirm (3). Values above 255 mean 255.
	Confirm int

	// IdleTTL is how long an entry may go without a request before Sweep
	// drops it, unless it is high-risk; 0 (or less) means DefaultIdleTTL
	// (30 minutes).
	IdleTTL time.Duration

	// HighRiskIdleTTL is how long a high-risk entry (last score at or above
	// ChallengeThreshold, or confirmed) may stay idle before Sweep drops it
	// anyway, so that identities that stopped long ago cannot hold the cap
	// forever. Quarantine keeps its own record; a bot that returns after
	// this long is detected again from scratch. 0 (or less) means
	// DefaultHighRiskIdleTTL (24 hours); it is never below IdleTTL.
	HighRiskIdleTTL time.Duration
}

// Verdict is the engine's judgement of one identity after a request.
// The zero Verdict means "nothing known".
type Verdict struct {
	// Score is how machine-like the rhythm is, 0–100.
	Score uint8
	// Reason is the component that contributed most; ReasonNone below the
	// challenge band.
	Reason Reason
	// Confirmed reports that Score has been at least Threshold on Confirm
	// consecutive evaluations and the stream is not Shared: quarantine now.
	Confirmed bool
	// Shared reports a stream that looks like many humans behind one
	// address (NAT, CGNAT). Timing never confirms a shared stream.
	Shared bool
	// Requests is the number of requests seen for this identity
	// (saturating at 2³²−1).
	Requests uint32
	// Consecutive is how many consecutive evaluations, up to this one,
	// scored at least Threshold (saturating at 255): a policy with a prior
	// against the client (a flagged fingerprint) may confirm before
	// Confirm.
	Consecutive uint8
}

// Summary describes one tracked identity for operators.
type Summary struct {
	ID        identity.ID
	Score     uint8
	Reason    Reason // ReasonNone below the challenge band
	Requests  uint32
	FirstSeen time.Time
	LastSeen  time.Time // start of the latest batch (≤ 5 ms early)
	Shared    bool
	// Recent holds the last (up to 32) intervals in ms, oldest first, for
	// a sparkline. Intervals of 2 s and more are stored to 11 significant
	// bits, so they read back within 0.1 %.
	Recent []uint32
}

// Explanation is a Summary plus every scoring component, for an operator
// asking "why this score?".
type Explanation struct {
	Summary
	// Features lists the components in a fixed order: periodic,
	// low_entropy, anti_bursty, periodic_bursts, no_pause, continuity,
	// human_signature, shared, periodic_cycle (appended last, so the
	// positions of the others stay).
	Features []Feature
	// Intervals is how many intervals have been seen in all (batched
	// requests add none).
	Intervals int
	// Threshold, ChallengeThreshold and Confirm are the engine's settings.
	Threshold          uint8
	ChallengeThreshold uint8
	Confirm            int
	// Consecutive is how many consecutive evaluations scored at least
	// Threshold (saturating at 255).
	Consecutive int
	// Confirmed is Verdict.Confirmed at the time of the explanation.
	Confirmed bool
}

// Feature is one scoring component in an Explanation.
type Feature struct {
	// Name is the component: a Reason's name, or "human_signature" or
	// "shared".
	Name string
	// Value is the component's statistic, e.g. MAD/median for periodic,
	// bits for low_entropy, max(A, A_ew) for anti_bursty, seconds without
	// a pause for no_pause, active 5-minute buckets for continuity.
	Value float64
	// Probability is the component's output in [0, 1] before its gate.
	// For human_signature it is 1 when the discount applies, for shared 1
	// when the label holds.
	Probability float64
	// Gate is the weight the evidence gets (how much data there is times
	// the component's fixed weight); the term in the fusion is
	// Gate·Probability.
	Gate float64
	// Threshold says, as text, when the component fires.
	Threshold string
}

// Engine scores identities. It is safe for concurrent use. Create it with
// New; the zero Engine is not usable.
type Engine struct {
	shards    []shard
	mask      uint64
	seed      maphash.Seed
	threshold uint8
	challenge uint8
	confirm   uint8
	idleTTL   int64 // ns
	highTTL   int64 // ns

	count     atomic.Int64
	evictions atomic.Uint64
}

// evictSample is how many entries of a full shard are looked at to find
// one to evict, per round; evictRounds rounds are tried.
const (
	evictSample = 8
	evictRounds = 2
)

// shard is one independently locked part of the table: a slab of slots
// and an index into it, both pointer-free (see slab.go for the layout and
// why).
type shard struct {
	limit int // most entries this shard may hold; set by New, then read-only

	mu       sync.Mutex            // guards the following fields
	chunks   []offheap.Array[slot] // the slab: slot i is in chunk chunkOf(i)
	used     int32                 // slots handed out so far: [0, used); st.n == 0 marks a free one
	freeHead int32                 // first free slot below used, -1 for none; linked through slot.next
	index    offheap.Array[uint32] // open-addressing index of the live slots (see slab.go)
	count    int                   // live slots (entries in index)
	names    []identity.ID         // slot i's identity when it is a name; nil until one arrives
	rng      uint64                // xorshift state for eviction sampling

	_ [64]byte // keep neighbouring shards' hot fields off one cache line
}

// New returns an Engine configured by opts. It starts no goroutine: call
// Sweep periodically.
func New(opts Options) *Engine {
	maxClients := opts.MaxClients
	if maxClients <= 0 {
		maxClients = DefaultMaxClients
	}
	n := opts.Shards
	if n <= 0 {
		n = DefaultShards
	}
	n = min(n, maxShards)
	n = 1 << bits.Len(uint(n-1)) // round up to a power of two
	for n > maxClients {
		n /= 2
	}
	for maxClients/n >= maxShardSlots && n < maxShards {
		n *= 2 // a shard's index addresses at most maxShardSlots slots
	}
	maxClients = min(maxClients, n*maxShardSlots)
	e := &Engine{
		shards:    make([]shard, n),
		mask:      uint64(n - 1),
		seed:      maphash.MakeSeed(),
		threshold: cmp.Or(min(opts.Threshold, 100), DefaultThreshold),
		challenge: cmp.Or(min(opts.ChallengeThreshold, 100), DefaultChallengeThreshold),
		confirm:   DefaultConfirm,
		idleTTL:   int64(DefaultIdleTTL),
		highTTL:   int64(DefaultHighRiskIdleTTL),
	}
	if opts.Confirm > 0 {
		e.confirm = uint8(min(opts.Confirm, 255))
	}
	if opts.IdleTTL > 0 {
		e.idleTTL = int64(opts.IdleTTL)
	}
	if opts.HighRiskIdleTTL > 0 {
		e.highTTL = int64(opts.HighRiskIdleTTL)
	}
	e.highTTL = max(e.highTTL, e.idleTTL)
	for i := range e.shards {
		sh := &e.shards[i]
		sh.limit = maxClients / n
		if i < maxClients%n {
			sh.limit++
		}
		sh.freeHead = -1
		sh.rng = uint64(i)*0x9e3779b97f4a7c15 | 1
	}
	// Mapped memory is not the GC's: give it back when the engine is
	// unreachable. The cleanup holds the shards, not e, and takes each
	// shard's lock, so no call still in a shard can see its slab go.
	runtime.AddCleanup(e, releaseShards, e.shards)
	return e
}

// releaseShards returns every shard's slab and index to the system.
func releaseShards(shards []shard) {
	for i := range shards {
		sh := &shards[i]
		sh.mu.Lock()
		sh.releaseLocked()
		sh.mu.Unlock()
	}
}

// locate returns id's key, name, hash and shard.
func (e *Engine) locate(id identity.ID) (key, string, uint64, *shard) {
	k, name := keyOf(id)
	h := hashKey(e.seed, &k, name)
	return k, name, h, &e.shards[h&e.mask]
}

// lockFind locks id's shard and returns it with id's slot, if tracked. The
// caller unlocks the shard.
func (e *Engine) lockFind(id identity.ID) (*shard, int32, bool) {
	k, name, h, sh := e.locate(id)
	sh.mu.Lock()
	i, ok := e.findLocked(sh, &k, name, h)
	return sh, i, ok
}

// find returns the slot of id in its shard, which the caller has locked.
func (e *Engine) findLocked(sh *shard, k *key, name string, h uint64) (int32, bool) {
	if sh.count == 0 {
		return 0, false
	}
	return sh.lookupLocked(h, k, name)
}

// Observe records one request from id at now and returns the verdict after
// it. It does not allocate for an identity already tracked. The zero ID is
// not tracked (zero Verdict), nor is a new identity when its shard is full
// of entries that may not be evicted (see Options.MaxClients).
func (e *Engine) Observe(id identity.ID, now time.Time) Verdict {
	if id.IsZero() {
		return Verdict{}
	}
	t := unixNano(now)
	k, name, h, sh := e.locate(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := e.findLocked(sh, &k, name, h)
	if !ok {
		i, ok = e.insertLocked(sh, id, &k, h)
		if !ok {
			return Verdict{}
		}
		st := &sh.slot(i).st
		st.start(t)
		return e.verdict(st, t)
	}
	st := &sh.slot(i).st
	if st.record(t) {
		var f features
		st.evaluate(st.last, &f)
		st.score, st.reason = f.score, f.reason
		if f.score >= e.threshold {
			st.over = min(st.over, 254) + 1
		} else {
			st.over = 0
		}
	}
	return e.verdict(st, t)
}

// verdict builds the Verdict of st as of now from its latest evaluation.
func (e *Engine) verdict(st *state, now int64) Verdict {
	shared := st.shared(max(now, st.last))
	return Verdict{
		Score:     st.score,
		Reason:    e.reasonOf(st),
		Confirmed: st.over >= e.confirm && (!shared || st.crowdOnly()),
		Shared:    shared,
		Requests:  st.n,

		Consecutive: st.over,
	}
}

// reasonOf returns st's reason, or ReasonNone below the challenge band.
func (e *Engine) reasonOf(st *state) Reason {
	if st.score < e.challenge {
		return ReasonNone
	}
	return st.reason
}

// protected reports whether st may be neither evicted nor swept as idle:
// its last score is in the challenge band or above, or it is confirmed.
func (e *Engine) protected(st *state) bool {
	return st.score >= e.challenge || st.over >= e.confirm
}

// insertLocked finds a slot for the new identity id (key k, hash h) in
// sh, evicting if the shard is full, and records id there. It returns
// false when no slot can be had.
func (e *Engine) insertLocked(sh *shard, id identity.ID, k *key, h uint64) (int32, bool) {
	i, ok := sh.newSlotLocked()
	if !ok {
		v, ok := e.victimLocked(sh)
		if !ok {
			return 0, false
		}
		e.removeLocked(sh, v)
		e.evictions.Add(1)
		i, _ = sh.newSlotLocked()
	}
	s := sh.slot(i)
	s.key = *k
	if k.named() {
		sh.setNameLocked(i, id)
	}
	sh.indexLocked(e.seed, h, i)
	e.count.Add(1)
	return i, true
}

// victimLocked picks the least valuable entry among a small random sample
// of the full shard sh: among entries that are not protected, the one idle
// longest, then the one with the lowest score. Sampling keeps eviction O(1)
// with no per-entry bookkeeping on the hot path; it is an approximation of
// LRU that is good enough when most entries are idle humans.
func (e *Engine) victimLocked(sh *shard) (int32, bool) {
	best := int32(-1)
	for range evictRounds {
		for range evictSample {
			sh.rng ^= sh.rng << 13
			sh.rng ^= sh.rng >> 7
			sh.rng ^= sh.rng << 17
			i := int32(sh.rng % uint64(sh.used))
			st := &sh.slot(i).st
			if st.n == 0 || e.protected(st) {
				continue
			}
			if best < 0 {
				best = i
				continue
			}
			b := &sh.slot(best).st
			if st.last < b.last || (st.last == b.last && st.score < b.score) {
				best = i
			}
		}
		if best >= 0 {
			return best, true
		}
	}
	return 0, false
}

// removeLocked drops slot i of sh.
func (e *Engine) removeLocked(sh *shard, i int32) {
	sh.unindexLocked(e.seed, sh.hashSlotLocked(e.seed, i), i)
	sh.freeSlotLocked(i)
	e.count.Add(-1)
}

// Peek returns id's verdict from its latest evaluation, without recording
// a request; now decides whether the shared label still holds. It reports
// false for an identity that is not tracked.
func (e *Engine) Peek(id identity.ID, now time.Time) (Verdict, bool) {
	sh, i, ok := e.lockFind(id)
	defer sh.mu.Unlock()
	if !ok {
		return Verdict{}, false
	}
	return e.verdict(&sh.slot(i).st, unixNano(now)), true
}

// Explain describes id's latest evaluation component by component, with
// its recent intervals. The features are recomputed from the state as of
// the latest request, so they match the score; now decides whether the
// shared label still holds. It reports false for an identity that is not
// tracked.
func (e *Engine) Explain(id identity.ID, now time.Time) (Explanation, bool) {
	sh, i, ok := e.lockFind(id)
	if !ok {
		sh.mu.Unlock()
		return Explanation{}, false
	}
	st := sh.slot(i).st // copy, then work without the lock
	key := sh.idLocked(i)
	sh.mu.Unlock()

	t := unixNano(now)
	var f features
	st.evaluate(st.last, &f)
	v := e.verdict(&st, t)
	x := Explanation{
		Summary:            e.summary(key, &st, t),
		Intervals:          int(st.nInt),
		Threshold:          e.threshold,
		ChallengeThreshold: e.challenge,
		Confirm:            int(e.confirm),
		Consecutive:        int(st.over),
		Confirmed:          v.Confirmed,
	}
	x.Features = f.list(v.Shared)
	return x, true
}

// list turns f into Explanation features. shared is the label at the time
// of the explanation.
func (f *features) list(shared bool) []Feature {
	human, sh := 0.0, 0.0
	if f.human {
		human = 1
	}
	if shared {
		sh = 1
	}
	return []Feature{
		{Name: ReasonPeriodic.String(), Value: f.rcv, Probability: f.pPer, Gate: f.gPer, Threshold: thresholds.periodic},
		{Name: ReasonLowEntropy.String(), Value: f.entropy, Probability: f.pLowH, Gate: f.gLowH, Threshold: thresholds.lowEntropy},
		{Name: ReasonAntiBursty.String(), Value: max(f.a, f.aEW), Probability: f.pAnti, Gate: f.gAnti, Threshold: thresholds.antiBursty},
		{Name: ReasonPeriodicBursts.String(), Value: f.bRcv, Probability: f.pBper, Gate: f.gBper, Threshold: thresholds.periodicBursts},
		{Name: ReasonNoPause.String(), Value: f.stretch, Probability: f.pFast, Gate: f.gFast, Threshold: thresholds.noPause},
		{Name: ReasonContinuity.String(), Value: float64(f.activeN), Probability: f.pCont, Gate: f.gCont, Threshold: thresholds.continuity},
		{Name: "human_signature", Value: f.a, Probability: human, Gate: humanDiscount, Threshold: thresholds.human},
		{Name: "shared", Value: f.rate, Probability: sh, Gate: 1, Threshold: thresholds.shared},
		{Name: ReasonPeriodicCycle.String(), Value: f.cycEta, Probability: f.pCyc, Gate: f.gCyc, Threshold: thresholds.periodicCycle},
	}
}

// summary builds id's Summary from st; now decides the shared label.
func (e *Engine) summary(id identity.ID, st *state, now int64) Summary {
	return Summary{
		ID:        id,
		Score:     st.score,
		Reason:    e.reasonOf(st),
		Requests:  st.n,
		FirstSeen: fromUnixNano(st.first),
		LastSeen:  fromUnixNano(st.last),
		Shared:    st.shared(max(now, st.last)),
		Recent:    st.ring.recent(),
	}
}

// candidate is an entry considered by Top, copied out of its shard.
type candidate struct {
	id identity.ID
	st state
}

// candidates is a min-heap of Top's best n so far: the root is the entry
// that would be dropped first.
type candidates []candidate

func (c candidates) Len() int           { return len(c) }
func (c candidates) Less(i, j int) bool { return riskier(&c[j].st, &c[i].st) }
func (c candidates) Swap(i, j int)      { c[i], c[j] = c[j], c[i] }
func (c *candidates) Push(x any)        { *c = append(*c, x.(candidate)) }
func (c *candidates) Pop() any {
	old := *c
	x := old[len(old)-1]
	*c = old[:len(old)-1]
	return x
}

// riskier orders Top: score descending, then last seen descending.
func riskier(a, b *state) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return a.last > b.last
}

// Top returns up to n tracked identities, riskiest first (score
// descending, then most recently seen first). It locks one shard at a
// time, so it never stalls Observe for long, and its result is not an
// atomic snapshot across shards.
func (e *Engine) Top(n int, now time.Time) []Summary {
	n = min(n, int(e.count.Load()))
	if n <= 0 {
		return nil
	}
	t := unixNano(now)
	h := make(candidates, 0, n)
	for si := range e.shards {
		sh := &e.shards[si]
		sh.mu.Lock()
		for i := range sh.used {
			st := &sh.slot(i).st
			if st.n == 0 {
				continue
			}
			if len(h) < n {
				heap.Push(&h, candidate{id: sh.idLocked(i), st: *st})
			} else if riskier(st, &h[0].st) {
				h[0] = candidate{id: sh.idLocked(i), st: *st}
				heap.Fix(&h, 0)
			}
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(h, func(a, b candidate) int {
		switch {
		case riskier(&a.st, &b.st):
			return -1
		case riskier(&b.st, &a.st):
			return 1
		}
		return 0
	})
	out := make([]Summary, len(h))
	for i := range h {
		out[i] = e.summary(h[i].id, &h[i].st, t)
	}
	return out
}

// Forget drops id's state, as when an operator releases a client: its next
// request starts a fresh record.
func (e *Engine) Forget(id identity.ID) {
	sh, i, ok := e.lockFind(id)
	defer sh.mu.Unlock()
	if ok {
		e.removeLocked(sh, i)
	}
}

// Sweep drops entries idle for longer than IdleTTL at now, except
// high-risk ones (score in the challenge band or above, or confirmed),
// which it drops only after HighRiskIdleTTL. It returns how many entries
// it dropped. It locks one shard at a time.
func (e *Engine) Sweep(now time.Time) int {
	t := unixNano(now)
	dropped := 0
	for si := range e.shards {
		sh := &e.shards[si]
		sh.mu.Lock()
		for i := range sh.used {
			st := &sh.slot(i).st
			if st.n == 0 {
				continue
			}
			idle := t - st.last
			if idle > e.highTTL || (idle > e.idleTTL && !e.protected(st)) {
				e.removeLocked(sh, i)
				dropped++
			}
		}
		sh.mu.Unlock()
	}
	return dropped
}

// Len returns the number of tracked identities.
func (e *Engine) Len() int { return int(e.count.Load()) }

// Evictions returns how many entries have been evicted to make room for
// new identities because of the cap.
func (e *Engine) Evictions() uint64 { return e.evictions.Load() }
