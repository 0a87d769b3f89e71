package shared

import (
	"context"
	"crypto/rand"
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
// Run's own (so a slow exchange never delays the timing batches), off the
// Check path, through the breaker and the call deadline; while Redis
// is away each detector works on its own share, and its outbox (bounded
// by fleet.Options.Outbox) waits for Redis to answer again.

// fleetEvery is how often a replica exchanges fleet notes.
const fleetEvery = time.Second

// Bounds of one exchange: batches of notesPerBatch requests, at most
// fleetRounds batches written and fleetRounds reads of notesPerRead
// batches.
const (
	notesPerBatch = 4096
	notesPerRead  = 64
	fleetRounds   = 8
)

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
	for range fleetRounds {
		b, n := d.Outbox(notesPerBatch)
		if n == 0 {
			break
		}
		if !r.call(ctx, now, func(ctx context.Context, s *redisstore.Store) error {
			return s.AddNotes(ctx, r.name, b)
		}) {
			return // kept in the outbox for the next round
		}
		d.Shipped(n)
		r.stats.FleetShipped.Add(uint64(n))
	}
	for range fleetRounds {
		var got []redisstore.NotesBatch
		if !r.call(ctx, now, func(ctx context.Context, s *redisstore.Store) error {
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
			if err := d.Import(b.Data); err != nil {
				r.stats.FleetMalformed.Add(1)
			}
		}
		if len(got) < notesPerRead {
			return
		}
	}
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
