package shared

import (
	"context"
	"crypto/rand"
	"errors"
	"time"

	"github.com/flowlock/flowlock/internal/fleet"
	"github.com/flowlock/flowlock/internal/redisstore"
)

// Fleet detection across replicas (issue 14). Each replica's fleet
// detector is fed by its own Checks, a random share of every member's
// requests; the merged timing stream would not do, since it carries no
// paths (script fleets) and a replica reads an identity's merged times only
// when that identity next reaches it. So every fleetEvery the replica
// writes the requests its detector noted since the last round to a capped
// Redis stream and imports the other replicas' batches: every detector then
// holds every replica's requests, a round late. It runs on a goroutine of
// Run's own, off the Check path, through its own breaker (a failing
// exchange never opens the timing batches' breaker) and the call deadline;
// while Redis is away each detector works on its own share, and its outbox
// (bounded by fleet.Options.Outbox) waits for Redis to answer again.
//
// The exchange shares the store's pipelined connection with the timing
// batches, so every reply is kept small: a read takes notesPerRead batches
// of at most fleet.BatchSize(notesPerBatch) bytes, about 330 KB, under 3 ms
// on a 1 Gbit/s link, so a timing batch queued behind it still makes its
// deadline (TestFleetReadLeavesTimingAlone), and a replica that is behind
// catches up read by read instead of failing one huge read for ever.

// fleetEvery is how often a replica exchanges fleet notes.
const fleetEvery = time.Second

// Bounds of one exchange: batches of notesPerBatch requests (82 KB), at
// most fleetRounds batches written and fleetReads reads of notesPerRead
// batches.
const (
	notesPerBatch = 4096
	notesPerRead  = 4
	fleetRounds   = 8
	fleetReads    = 64
)

// errNotesID is the error of a batch whose stream entry ID is no time: it
// counts as malformed.
var errNotesID = errors.New("fleet notes: entry ID is no time")

// SetFleet makes the replica exchange d's notes with the other replicas
// (d is built with an Outbox); the decision stack sets it before the
// replica runs. A nil d exchanges nothing.
func (r *Replica) SetFleet(d *fleet.Detector) {
	r.fleetMu.Lock()
	defer r.fleetMu.Unlock()
	r.fleet = d
	if r.name == "" {
		r.name = rand.Text()
	}
}

// ShareFleet writes the requests the fleet detector noted since the last
// call to Redis and imports the other replicas' since then: what Run does
// every second, and what a virtual-time driver calls at its own times. It
// does nothing without a detector or while Redis is away.
func (r *Replica) ShareFleet(ctx context.Context, now time.Time) {
	r.fleetMu.Lock()
	defer r.fleetMu.Unlock()
	d := r.fleet
	if d == nil {
		return
	}
	// Redis stamps a batch with its own clock, the machine's clock here
	// reads now: shift turns the one into the other, zero in production
	// and the driver's offset in virtual time.
	shift := time.Until(now)
	for range fleetRounds {
		b, n := d.Outbox(notesPerBatch, now)
		if n == 0 {
			break
		}
		var id string
		if !r.fleetCall(ctx, now, func(ctx context.Context, s *redisstore.Store) error {
			var err error
			id, err = s.AddNotes(ctx, r.name, b)
			return err
		}) {
			break // kept in the outbox for the next round; reading may still work
		}
		at, ok := redisstore.NotesTime(id)
		if ok {
			at = at.Add(shift)
		}
		d.Shipped(n, at)
		r.stats.FleetShipped.Add(uint64(n))
	}
	for range fleetReads {
		var got []redisstore.NotesBatch
		if !r.fleetCall(ctx, now, func(ctx context.Context, s *redisstore.Store) error {
			var err error
			got, err = s.ReadNotes(ctx, r.notesCursor, notesPerRead)
			return err
		}) {
			return
		}
		for _, b := range got {
			r.notesCursor = b.ID
			if b.From == r.name {
				continue
			}
			at, ok := redisstore.NotesTime(b.ID)
			err := errNotesID
			if ok {
				err = d.Import(b.Data, at.Add(shift))
			}
			switch {
			case errors.Is(err, fleet.ErrClock):
				r.stats.FleetRefused.Add(1)
			case err != nil:
				r.stats.FleetMalformed.Add(1)
			}
		}
		if len(got) < notesPerRead {
			return
		}
	}
}

// fleetCall runs f on the store within the call deadline, through the
// exchange's own breaker, and reports whether it succeeded.
func (r *Replica) fleetCall(ctx context.Context, now time.Time, f func(context.Context, *redisstore.Store) error) bool {
	tried, err := r.through(ctx, now, &r.fleetBreak, f)
	if tried && err != nil {
		r.stats.FleetFailures.Add(1)
	}
	return tried && err == nil
}

// through runs f on the store within the call deadline if breaker b lets
// it, and reports whether f ran to an outcome that b counted (not when
// there is no store, b refused, or ctx ended: shutting down is not Redis's
// fault) and f's error.
func (r *Replica) through(ctx context.Context, now time.Time, b *redisstore.Breaker, f func(context.Context, *redisstore.Store) error) (tried bool, err error) {
	s := r.store.Load()
	if s == nil || !b.Allow(now) {
		return false, nil
	}
	cctx, cancel := context.WithTimeout(ctx, r.opts.Deadline)
	err = f(cctx, s)
	cancel()
	if ctx.Err() != nil {
		return false, nil
	}
	b.Done(err, time.Now())
	return true, err
}

// runFleet exchanges fleet notes every fleetEvery until ctx is done.
func (r *Replica) runFleet(ctx context.Context) {
	r.fleetMu.Lock()
	d := r.fleet
	r.fleetMu.Unlock()
	if d == nil {
		return
	}
	tk := time.NewTicker(fleetEvery)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			r.ShareFleet(ctx, time.Now())
		}
	}
}
