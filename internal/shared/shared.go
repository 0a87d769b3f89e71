// Package shared makes replicas of Flow Lock decide as one, through Redis.
//
// Envoy spreads one client's Checks over every replica, and a random share
// of a metronome's requests looks human, so each replica ships what its
// Checks saw (identity and request time) in batches, and feeds its local
// engine the merged stream of every replica's requests, in request-time
// order, as Redis returns it (redisstore.Merge). Admissions happen there,
// off the Check path. The quarantine list is mirrored both ways: local
// changes (admissions, bans, extensions, releases) are written to Redis,
// and the other replicas' changes arrive by pub/sub and are merged into the
// local list, which is what every Check reads.
//
// The Check path never waits on Redis: Observe only queues the time and
// answers from local state. Every background call has a deadline of
// milliseconds and goes through a breaker; while Redis is slow, down or
// not yet reached, the replica feeds its engine its own requests and
// keeps what it decides locally, and when Redis is back it writes the
// quarantines it made meanwhile and reads the rest.
package shared

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowlock/flowlock/internal/fleet"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/redisstore"
	"github.com/flowlock/flowlock/internal/risk"
)

// Defaults of Options.
const (
	// DefaultBatch is how often the queued observations are shipped.
	DefaultBatch = 5 * time.Millisecond
	// DefaultDeadline bounds every background call to Redis.
	DefaultDeadline = 50 * time.Millisecond
	// DefaultSettle is how long a request time may wait for the other
	// replicas' before the merged stream passes it: a few batches plus
	// the proxies' clock skew on one host or one cluster.
	DefaultSettle = 25 * time.Millisecond
	// DefaultRetry is how often an unreachable Redis is tried again.
	DefaultRetry = 2 * time.Second
)

// perBatch bounds the request times one identity queues in one batch: a
// flood beyond it (thousands a second from one identity) lands within the
// engine's 5 ms batching anyway.
const perBatch = 64

// pendShards spreads the Check path's queue over this many locks.
const pendShards = 64

// maxPerMerge bounds the identities of one Merge call: a flood of new
// identities is shipped in several calls, each within the deadline,
// rather than one call that never makes it.
const maxPerMerge = 512

// staleAdmit is how far behind the newest request time a confirming time
// may be and still admit: a replica that (re)joins and replays an old
// ring must not quarantine a client for what it did long ago.
const staleAdmit = 10 * time.Second

// resyncBudget bounds one read of the whole shared list after the first
// (Start gives its own context): 100,000 bans read in about a second.
const resyncBudget = 5 * time.Second

// resyncRetry is how long a failed resync waits before the next try.
const resyncRetry = time.Second

// hitsEvery is how often a replica adds the refusals it counted to the
// shared entries: each addition is also an event to every replica.
const hitsEvery = time.Second

// Admitter quarantines id for a confirmed verdict at now (the policy's
// Admit, with the client's address unknown: timing is keyed by identity)
// and reports whether that started a quarantine here.
type Admitter func(id identity.ID, v risk.Verdict, now time.Time) bool

// Options configure a Replica.
type Options struct {
	// Redis is where to connect; Open is retried until it works.
	Redis redisstore.Options
	// Engine and Quarantine are the replica's local state.
	Engine     *risk.Engine
	Quarantine *quarantine.List
	// Batch, Deadline, Settle and Retry: 0 means the defaults above.
	Batch, Deadline, Settle, Retry time.Duration
	// Logger receives connection changes; nil discards.
	Logger *slog.Logger
	// OnAdmit is told of each quarantine the replicas admit, once over all
	// replicas: on the one whose write to Redis started it (or, while
	// Redis is away, when it is written back). nil tells nobody.
	OnAdmit func(risk.Reason)
}

// Replica is one replica's link to the others. Create it with New, set its
// Admitter, start it with Start, and run Run until shutdown. Observe is
// safe for concurrent use; Tick, Sync and Run must not run at once.
type Replica struct {
	opts  Options
	log   *slog.Logger
	seed  maphash.Seed
	admit Admitter

	store   atomic.Pointer[redisstore.Store]
	breaker redisstore.Breaker
	lastErr atomic.Pointer[string]

	pend [pendShards]pendShard

	// Tick's state, guarded by mu.
	mu         sync.Mutex
	fed        map[identity.ID]int64       // last request time fed to the engine, Unix µs
	held       map[identity.ID]int64       // identities with times held back in Redis: when to ask again, Unix µs
	dirty      map[identity.ID]struct{}    // local quarantine changes not yet in Redis
	admitted   map[identity.ID]risk.Reason // local admissions not yet counted (see Options.OnAdmit)
	unsent     map[identity.ID][]int64     // times fed locally while Redis was away, for the others
	hitsBase   map[identity.ID]uint64      // each quarantine's refusals already added to Redis
	knocking   map[identity.ID]struct{}    // quarantined identities seen since the last hits round
	cursor     uint64                      // quarantine events read so far
	epoch      string                      // the shared state's epoch when last read; "" before
	nextResync time.Time                   // a failed resync waits until then
	nextHits   time.Time                   // the next hits round
	resync     atomic.Bool                 // read the whole shared list at the next chance

	// Fleet notes (fleet.go), guarded by fleetMu: the detector, this
	// replica's name in the stream and the last batch read.
	fleetMu     sync.Mutex
	fleet       *fleet.Detector
	name        string
	notesCursor string
	fleetBreak  redisstore.Breaker // the exchange's own: its failures leave the timing batches' alone

	stats Stats
}

// pendShard queues the request times of the Check path until the next
// batch.
type pendShard struct {
	mu    sync.Mutex
	m     map[identity.ID][]int64
	spare map[identity.ID][]int64
	_     [32]byte // keep neighbouring locks off one cache line
}

// Stats counts what a Replica did, for metrics. Read them with Snapshot.
type Stats struct {
	Batches      atomic.Uint64 // batches shipped to Redis
	Fallbacks    atomic.Uint64 // batches fed locally because Redis failed or was off
	Merged       atomic.Uint64 // request times fed from the merged stream
	Admitted     atomic.Uint64 // quarantines admitted from the merged stream
	Mirrored     atomic.Uint64 // local quarantine changes written to Redis
	Applied      atomic.Uint64 // other replicas' changes merged into the local list
	Resyncs      atomic.Uint64 // full reads of the shared list
	Dropped      atomic.Uint64 // request times dropped over perBatch
	CallFailures atomic.Uint64 // background calls that failed or timed out
	// FleetShipped counts fleet notes written for the other replicas,
	// FleetMalformed their batches that did not decode.
	FleetShipped, FleetMalformed atomic.Uint64
	// FleetRefused counts batches refused for their clock (fleet.ErrClock),
	// FleetFailures the exchange's calls that failed or timed out.
	FleetRefused, FleetFailures atomic.Uint64
}

// New returns a Replica over the local engine and quarantine. It does not
// connect: Start does.
func New(o Options) *Replica {
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.Deadline <= 0 {
		o.Deadline = DefaultDeadline
	}
	if o.Settle <= 0 {
		o.Settle = DefaultSettle
	}
	if o.Retry <= 0 {
		o.Retry = DefaultRetry
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Replica{
		opts:     o,
		log:      log.With("component", "shared"),
		seed:     maphash.MakeSeed(),
		admit:    func(identity.ID, risk.Verdict, time.Time) bool { return false },
		fed:      make(map[identity.ID]int64),
		held:     make(map[identity.ID]int64),
		dirty:    make(map[identity.ID]struct{}),
		admitted: make(map[identity.ID]risk.Reason),
		unsent:   make(map[identity.ID][]int64),
		hitsBase: make(map[identity.ID]uint64),
		knocking: make(map[identity.ID]struct{}),
	}
	for i := range r.pend {
		r.pend[i].m = make(map[identity.ID][]int64)
		r.pend[i].spare = make(map[identity.ID][]int64)
	}
	return r
}

// SetAdmitter sets what a confirmed verdict from the merged stream does;
// the decision stack sets the policy's Admit before the replica runs.
func (r *Replica) SetAdmitter(a Admitter) { r.admit = a }

// Observe queues one request of id at now for the next batch and returns
// id's verdict from the merged stream so far. Its Confirmed is always
// false: the replica admits from the merged stream itself, so that every
// replica admits at the same request and the same time.
func (r *Replica) Observe(id identity.ID, now time.Time) risk.Verdict {
	if id.IsZero() {
		return risk.Verdict{}
	}
	us := now.UnixMicro()
	p := &r.pend[id.Hash(r.seed)%pendShards]
	p.mu.Lock()
	ts := p.m[id]
	if len(ts) < perBatch {
		p.m[id] = append(ts, us)
		p.mu.Unlock()
	} else {
		p.mu.Unlock()
		r.stats.Dropped.Add(1)
	}
	v, _ := r.opts.Engine.Peek(id, now)
	v.Confirmed = false
	return v
}

// Start connects to Redis and reads the whole shared list into the local
// one, within ctx, so that a replica enforces every standing quarantine
// before it serves. An unreachable Redis is not an error: the replica
// starts on local state and Run keeps trying. A Redis that refuses the
// credentials, is not Redis, or holds another format is an error naming
// the setting, since retrying will not help.
func (r *Replica) Start(ctx context.Context, now time.Time) error {
	// What this replica holds already (restored from --state-file) may be
	// missing from Redis: write it, so that no quarantine is lost.
	r.mu.Lock()
	local, _ := r.opts.Quarantine.SnapshotN(now, r.opts.Quarantine.Len()+1)
	for _, e := range local {
		r.dirty[e.ID] = struct{}{}
	}
	_, r.cursor = r.opts.Quarantine.Events(^uint64(0)) // what came before is in local
	r.mu.Unlock()
	s, err := redisstore.Open(ctx, r.opts.Redis)
	if err != nil {
		if errors.Is(err, redisstore.ErrUnreachable) {
			r.setErr(err)
			r.log.Warn("redis unreachable: deciding on local state until it answers", "redis", r.opts.Redis.String(), "err", err)
			return nil
		}
		return err
	}
	r.store.Store(s)
	r.resync.Store(true)
	r.mu.Lock()
	budget := resyncBudget
	if d, ok := ctx.Deadline(); ok {
		budget = time.Until(d)
	}
	r.syncLocked(ctx, now, budget)
	r.mu.Unlock()
	if r.resync.Load() {
		r.log.Warn("could not read the shared quarantine before serving: deciding on local state until it is read", "redis", r.opts.Redis.String(), "err", r.Status().Err)
	} else {
		r.log.Info("sharing state through redis", "redis", r.opts.Redis.String(), "cluster", s.Cluster(), "quarantined", r.opts.Quarantine.Len())
	}
	return nil
}

// Run keeps the replica linked until ctx is done: it connects if Start
// could not, ships a batch every Batch, mirrors the quarantine, and
// follows the other replicas' changes. It closes the connection when it
// returns.
func (r *Replica) Run(ctx context.Context) error {
	defer func() {
		if s := r.store.Load(); s != nil {
			s.Close()
		}
	}()
	var subscribed bool
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { r.runFleet(ctx) })
	tk := time.NewTicker(r.opts.Batch)
	defer tk.Stop()
	nextDial := time.Now()
	for {
		select {
		case <-ctx.Done():
			r.final()
			return nil
		case <-tk.C:
		}
		now := time.Now()
		if r.store.Load() == nil && !now.Before(nextDial) {
			nextDial = now.Add(r.opts.Retry)
			r.dial(ctx)
		}
		if s := r.store.Load(); s != nil && !subscribed {
			subscribed = true
			wg.Go(func() { r.Follow(ctx) })
		}
		r.Tick(ctx, now)
	}
}

// final ships what is queued and writes the last local quarantine
// changes (a ban made while the service drained), within a second.
func (r *Replica) final() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushLocked(ctx, now)
	r.noteLocalLocked(now)
	r.pushDirtyLocked(ctx, now)
	r.pushHitsLocked(ctx, now)
}

// dial tries to open the store once, bounded by the retry interval.
func (r *Replica) dial(ctx context.Context) {
	dctx, cancel := context.WithTimeout(ctx, r.opts.Retry)
	defer cancel()
	s, err := redisstore.Open(dctx, r.opts.Redis)
	if err != nil {
		r.setErr(err)
		return
	}
	r.store.Store(s)
	r.resync.Store(true)
	r.log.Info("redis reachable: sharing state again", "redis", r.opts.Redis.String())
}

// Follow merges the other replicas' changes into the local list until ctx
// is done. Run starts it once connected; a virtual-time driver, which
// calls Tick itself, starts it after Start.
func (r *Replica) Follow(ctx context.Context) {
	s := r.store.Load()
	if s == nil {
		return
	}
	_ = s.Subscribe(ctx, func(c redisstore.Change) {
		now := time.Now()
		switch c.Op {
		case redisstore.OpResync:
			r.resync.Store(true)
		case redisstore.OpPut:
			e, ok := localEntry(c.Entry)
			if ok && r.opts.Quarantine.Apply(e, now) {
				r.stats.Applied.Add(1)
			}
		case redisstore.OpDelete:
			var id identity.ID
			if id.UnmarshalText([]byte(c.Entry.ID)) == nil && r.opts.Quarantine.Withdraw(id, now) {
				// As Policy.Release does: the client starts over.
				r.opts.Engine.Forget(id)
				r.stats.Applied.Add(1)
				r.mu.Lock()
				delete(r.hitsBase, id) // a later quarantine counts from 0
				r.mu.Unlock()
			}
		case redisstore.OpHits:
			var id identity.ID
			if id.UnmarshalText([]byte(c.Entry.ID)) != nil {
				return
			}
			r.mu.Lock()
			if e, ok := r.opts.Quarantine.Check(id, now); ok && c.Entry.Hits > e.Hits {
				// Others' refusals: raise the count, and the base this
				// replica's own refusals are measured from.
				r.hitsBase[id] += c.Entry.Hits - e.Hits
				e.Hits = c.Entry.Hits
				r.opts.Quarantine.Apply(e, now)
			}
			r.mu.Unlock()
		}
	})
}

// Tick ships the queued observations and feeds the merged stream to the
// engine, then mirrors the quarantine: what Run does every Batch, and what
// a virtual-time driver (the simulator) calls at its own times.
func (r *Replica) Tick(ctx context.Context, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushLocked(ctx, now)
	r.mirrorLocked(ctx, now)
}

// Sync writes the local quarantine changes Redis does not have yet, reads
// the whole shared list and merges it in, and withdraws local quarantines
// the shared list no longer holds (released or ended elsewhere while this
// replica was away). It does nothing while Redis is off.
func (r *Replica) Sync(ctx context.Context, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.syncLocked(ctx, now, resyncBudget)
}

// Refresh feeds the engine id's merged request times now, for a view of
// one identity (the explain view) on a replica that may not have had a
// Check for it lately. It is bounded by the call deadline, and does
// nothing while Redis is away.
func (r *Replica) Refresh(ctx context.Context, id identity.ID, now time.Time) {
	key, err := id.MarshalText()
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	obs := []redisstore.Observation{{ID: string(key), After: r.fed[id], Before: now.Add(-r.opts.Settle).UnixMicro()}}
	var merged []redisstore.Merged
	if r.call(ctx, now, func(ctx context.Context, s *redisstore.Store) error {
		var err error
		merged, err = s.Merge(ctx, obs)
		return err
	}) && len(merged) == 1 {
		r.feedLocked(id, merged[0].Times, now.UnixMicro())
	}
}

// call runs f against Redis under the breaker and the deadline, and
// reports whether it succeeded; false means Redis is off, open or failed.
func (r *Replica) call(ctx context.Context, now time.Time, f func(context.Context, *redisstore.Store) error) bool {
	tried, err := r.through(ctx, now, &r.breaker, f)
	if !tried {
		return false
	}
	if err != nil {
		r.stats.CallFailures.Add(1)
		r.setErr(err)
		if r.breaker.State() == redisstore.BreakerOpen {
			r.resync.Store(true) // whatever was missed is read back later
		}
		return false
	}
	r.lastErr.Store(nil)
	return true
}

// flushLocked ships one batch.
func (r *Replica) flushLocked(ctx context.Context, now time.Time) {
	nowUS := now.UnixMicro()
	batch := r.takeBatch()
	// Times this replica decided on alone while Redis was away: the other
	// replicas count them too once they are shipped. They are older than
	// this replica's merge position, so they are stored, not fed twice.
	for id, times := range r.unsent {
		batch[id] = append(batch[id], times...)
	}
	// Identities whose times Redis held back are asked again once those
	// times have settled, not at every batch.
	for id, due := range r.held {
		if _, ok := batch[id]; !ok && nowUS >= due {
			batch[id] = nil
		}
	}
	if len(batch) == 0 {
		return
	}
	q := r.opts.Quarantine
	ids := make([]identity.ID, 0, len(batch))
	obs := make([]redisstore.Observation, 0, len(batch))
	before := now.Add(-r.opts.Settle).UnixMicro()
	for id, times := range batch {
		key, err := id.MarshalText()
		if err != nil {
			continue
		}
		if len(times) > 0 {
			if _, ok := q.Check(id, now); ok {
				r.knocking[id] = struct{}{} // for the hits round
			}
		}
		ids = append(ids, id)
		obs = append(obs, redisstore.Observation{ID: string(key), After: r.fed[id], Before: before, Times: times})
	}
	clear(r.unsent)
	for start := 0; start < len(ids); start += maxPerMerge {
		end := min(start+maxPerMerge, len(ids))
		r.mergeLocked(ctx, now, ids[start:end], obs[start:end])
	}
}

// mergeLocked sends one part of a batch and feeds what comes back, or
// decides on this replica's own times if Redis fails.
func (r *Replica) mergeLocked(ctx context.Context, now time.Time, ids []identity.ID, obs []redisstore.Observation) {
	nowUS := now.UnixMicro()
	var merged []redisstore.Merged
	ok := r.call(ctx, now, func(ctx context.Context, s *redisstore.Store) error {
		var err error
		merged, err = s.Merge(ctx, obs)
		if err == nil && len(merged) != len(obs) {
			err = fmt.Errorf("redis answered %d identities for %d", len(merged), len(obs))
		}
		return err
	})
	if !ok {
		// Redis is off: decide on what this replica saw. What it admits
		// now is its own decision, counted now (see countLocalAdmissions).
		r.stats.Fallbacks.Add(1)
		defer r.countLocalAdmissionsLocked(ids)
		for i, id := range ids {
			// A copy: a Merge that ran out of its deadline may still be
			// reading obs in its own goroutine (redisstore.within).
			times := slices.Clone(obs[i].Times)
			slices.Sort(times)
			r.feedLocked(id, times, nowUS)
			delete(r.held, id)
			r.keepUnsentLocked(id, times)
		}
		return
	}
	r.stats.Batches.Add(1)
	for i, id := range ids {
		r.feedLocked(id, merged[i].Times, nowUS)
		if merged[i].Pending > 0 {
			r.held[id] = nowUS + r.opts.Settle.Microseconds()
		} else {
			delete(r.held, id)
		}
	}
}

// countLocalAdmissionsLocked counts the admissions this replica made on
// its own state (Redis away) at once: they would otherwise wait for Redis,
// or never be counted if they ended first. Their later write to Redis then
// counts nothing more.
func (r *Replica) countLocalAdmissionsLocked(ids []identity.ID) {
	for _, id := range ids {
		if reason, ok := r.admitted[id]; ok {
			delete(r.admitted, id)
			if r.opts.OnAdmit != nil {
				r.opts.OnAdmit(reason)
			}
		}
	}
}

// feedLocked feeds id's request times (Unix µs, ascending) later than the
// last one fed to the engine, and admits at the first that confirms, unless
// that time is long past (a replay of old times, not new evidence).
func (r *Replica) feedLocked(id identity.ID, times []int64, nowUS int64) {
	last := r.fed[id]
	admitted := false
	for _, us := range times {
		if us <= last {
			continue
		}
		last = us
		at := time.UnixMicro(us).UTC()
		v := r.opts.Engine.Observe(id, at)
		r.stats.Merged.Add(1)
		if v.Confirmed && !admitted && us >= nowUS-staleAdmit.Microseconds() {
			admitted = true
			r.stats.Admitted.Add(1)
			if r.admit(id, v, at) {
				r.admitted[id] = v.Reason
			}
		}
	}
	if last != 0 {
		r.fed[id] = last
	}
}

// maxUnsent bounds the identities whose times wait for Redis to return.
const maxUnsent = 100_000

// keepUnsentLocked keeps id's latest times (at most perBatch) for the next
// batch that reaches Redis.
func (r *Replica) keepUnsentLocked(id identity.ID, times []int64) {
	if len(times) == 0 {
		return
	}
	if _, ok := r.unsent[id]; !ok && len(r.unsent) >= maxUnsent {
		r.stats.Dropped.Add(uint64(len(times)))
		return
	}
	if len(times) > perBatch {
		r.stats.Dropped.Add(uint64(len(times) - perBatch))
		times = times[len(times)-perBatch:]
	}
	r.unsent[id] = times
}

// takeBatch swaps out every shard's queue.
func (r *Replica) takeBatch() map[identity.ID][]int64 {
	out := make(map[identity.ID][]int64)
	for i := range r.pend {
		p := &r.pend[i]
		p.mu.Lock()
		m := p.m
		p.m, p.spare = p.spare, m
		p.mu.Unlock()
		for id, ts := range m {
			out[id] = ts
		}
		clear(m)
	}
	return out
}

// mirrorLocked writes the local quarantine changes since the last call to
// Redis, or the whole list after a gap, reads the shared list back when a
// resync is due, and adds this replica's refusals to the shared counts.
func (r *Replica) mirrorLocked(ctx context.Context, now time.Time) {
	r.noteLocalLocked(now)
	if r.resync.Load() {
		if now.Before(r.nextResync) {
			return
		}
		r.syncLocked(ctx, now, resyncBudget)
		if r.resync.Load() {
			r.nextResync = now.Add(resyncRetry)
		}
		return
	}
	r.pushDirtyLocked(ctx, now)
	if !now.Before(r.nextHits) {
		r.nextHits = now.Add(hitsEvery)
		r.pushHitsLocked(ctx, now)
	}
}

// pushHitsLocked adds the refusals this replica counted since the last
// round, for the quarantined identities that knocked, to Redis.
func (r *Replica) pushHitsLocked(ctx context.Context, now time.Time) {
	q := r.opts.Quarantine
	for id := range r.knocking {
		delete(r.knocking, id)
		e, ok := q.Check(id, now)
		if !ok || e.Hits <= r.hitsBase[id] {
			continue
		}
		key, err := id.MarshalText()
		if err != nil {
			continue
		}
		delta := e.Hits - r.hitsBase[id]
		var total uint64
		if !r.call(ctx, now, func(ctx context.Context, s *redisstore.Store) error {
			var err error
			total, err = s.AddHits(ctx, string(key), delta)
			return err
		}) {
			return
		}
		r.hitsBase[id] += delta
		if total > e.Hits {
			r.hitsBase[id] += total - e.Hits
			e.Hits = total
			q.Apply(e, now)
		}
	}
}

// noteLocalLocked marks the identities whose quarantine changed here
// (not by another replica) since the last call, to be written to Redis.
func (r *Replica) noteLocalLocked(now time.Time) {
	q := r.opts.Quarantine
	events, next := q.Events(r.cursor)
	if len(events) > 0 && events[0].Seq > r.cursor+1 {
		// The event log wrapped: every local quarantine may be unsent.
		entries, _ := q.SnapshotN(now, q.Len()+1)
		for _, e := range entries {
			r.dirty[e.ID] = struct{}{}
		}
	}
	r.cursor = next
	for _, ev := range events {
		switch {
		case ev.Remote:
		case ev.Kind == quarantine.EventAdmitted, ev.Kind == quarantine.EventBanned,
			ev.Kind == quarantine.EventExtended, ev.Kind == quarantine.EventReleased:
			r.dirty[ev.ID] = struct{}{}
		}
	}
}

// pushDirtyLocked writes each changed identity's current quarantine (or
// its release) to Redis, until a call fails.
func (r *Replica) pushDirtyLocked(ctx context.Context, now time.Time) bool {
	q := r.opts.Quarantine
	for id := range r.dirty {
		key, err := id.MarshalText()
		if err != nil {
			delete(r.dirty, id)
			continue
		}
		e, active := q.Check(id, now)
		var grew bool
		ok := r.call(ctx, now, func(ctx context.Context, s *redisstore.Store) error {
			if !active {
				// A release (or an end): the client starts over everywhere,
				// also on a replica that would replay its old request times.
				if _, err := s.Delete(ctx, string(key)); err != nil {
					return err
				}
				return s.ForgetTiming(ctx, string(key))
			}
			var err error
			_, grew, err = s.PutGrew(ctx, sharedEntry(string(key), e))
			return err
		})
		if !ok {
			return false
		}
		r.stats.Mirrored.Add(1)
		delete(r.dirty, id)
		if !active {
			delete(r.hitsBase, id) // a later quarantine counts from 0
		}
		if reason, ok := r.admitted[id]; ok {
			delete(r.admitted, id)
			if grew && r.opts.OnAdmit != nil {
				r.opts.OnAdmit(reason) // this replica's write started it: count it once
			}
		}
	}
	return true
}

// syncLocked writes what Redis lacks and merges in what it has.
func (r *Replica) syncLocked(ctx context.Context, now time.Time, budget time.Duration) {
	q := r.opts.Quarantine
	var epoch string
	if !r.call(ctx, now, func(ctx context.Context, s *redisstore.Store) error {
		var err error
		epoch, err = s.Epoch(ctx)
		return err
	}) {
		return
	}
	if r.epoch != "" && epoch != r.epoch {
		// Redis lost its data (restarted empty, flushed): what this
		// replica holds is the truth now, not the empty list.
		r.log.Warn("redis lost the shared state: writing back this replica's quarantines", "redis", r.opts.Redis.String())
		local, _ := q.SnapshotN(now, q.Len()+1)
		for _, e := range local {
			r.dirty[e.ID] = struct{}{}
		}
	}
	r.epoch = epoch
	if !r.pushDirtyLocked(ctx, now) {
		return
	}
	// What this replica held before reading the shared list: of these, the
	// ones the list no longer has were released or ended elsewhere. Entries
	// that arrive while it is read are left alone.
	before, _ := q.SnapshotN(now, q.Len()+1)
	var all []redisstore.Entry
	// A long list takes more than one call deadline to read.
	ok := r.call(ctx, now, func(ctx context.Context, s *redisstore.Store) error {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(budget, r.opts.Deadline))
		defer cancel()
		var err error
		all, err = s.All(lctx, now)
		return err
	})
	if !ok {
		return
	}
	r.resync.Store(false)
	r.stats.Resyncs.Add(1)
	standing := make(map[identity.ID]struct{}, len(all))
	for _, se := range all {
		e, ok := localEntry(se)
		if !ok {
			continue
		}
		standing[e.ID] = struct{}{}
		if q.Apply(e, now) {
			r.stats.Applied.Add(1)
		}
	}
	r.noteLocalLocked(now) // a ban made while the list was read is not withdrawn
	for _, e := range before {
		if _, ok := standing[e.ID]; ok {
			continue
		}
		if _, ok := r.dirty[e.ID]; ok {
			continue
		}
		if q.Withdraw(e.ID, now) {
			r.opts.Engine.Forget(e.ID)
		}
	}
}

// Sweep forgets the merge positions of identities the engine no longer
// tracks, so that the replica's own state stays bounded by the engine's.
func (r *Replica) Sweep(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.fed {
		if _, ok := r.opts.Engine.Peek(id, now); !ok {
			delete(r.fed, id)
		}
	}
	for id := range r.hitsBase {
		if _, ok := r.opts.Quarantine.Check(id, now); !ok {
			delete(r.hitsBase, id)
		}
	}
}

// Status is what a replica reports about its link, for readiness,
// metrics and the dashboard.
type Status struct {
	// Connected reports that Redis was reached and the breaker is closed.
	Connected bool
	// Breaker is "closed", "open" or "half-open".
	Breaker string
	// Err is the last failure, "" after a success.
	Err string
}

// Status returns the link's current state.
func (r *Replica) Status() Status {
	st := Status{Breaker: r.breaker.State().String()}
	// Connected only once the shared list has been read: until then this
	// replica decides on what it holds itself.
	st.Connected = r.store.Load() != nil && r.breaker.State() == redisstore.BreakerClosed && !r.resync.Load()
	if p := r.lastErr.Load(); p != nil {
		st.Err = *p
	}
	return st
}

// Stats returns the replica's counters.
func (r *Replica) Stats() *Stats { return &r.stats }

func (r *Replica) setErr(err error) {
	s := err.Error()
	r.lastErr.Store(&s)
}

// sharedEntry is e as the shared list holds it.
func sharedEntry(key string, e quarantine.Entry) redisstore.Entry {
	return redisstore.Entry{
		ID: key, Since: e.Since, Until: e.Until, Strikes: e.Strikes,
		Reason: e.Reason, Score: int(e.Score), Manual: e.Manual, Hits: e.Hits,
	}
}

// localEntry is a shared entry as the local list holds it; false when its
// identity does not parse (written by another build, or damaged).
func localEntry(se redisstore.Entry) (quarantine.Entry, bool) {
	var id identity.ID
	if id.UnmarshalText([]byte(se.ID)) != nil {
		return quarantine.Entry{}, false
	}
	return quarantine.Entry{
		ID: id, Since: se.Since, Until: se.Until, Strikes: se.Strikes,
		Reason: se.Reason, Score: uint8(min(max(se.Score, 0), 100)), Manual: se.Manual, Hits: se.Hits,
	}, true
}
