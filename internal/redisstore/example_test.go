package redisstore_test

import (
	"context"
	"time"

	"github.com/flowlock/flowlock/internal/redisstore"
)

// shipper is the part of a replica that ships its Checks' request times
// to Redis and feeds the merged stream to its engine. It is a sketch of
// how the decision stack uses Merge; observe stands for risk.Engine.Observe.
type shipper struct {
	store   *redisstore.Store
	breaker redisstore.Breaker
	observe func(id string, t time.Time)

	seen    map[string][]int64 // request times since the last batch, by identity
	after   map[string]int64   // last time fed to the engine, by identity
	pending map[string]bool    // Redis held times back for the identity
}

// settle is how long a time may take to reach Redis from any replica:
// a few batch intervals plus the proxies' clock skew.
const settle = 20 * time.Millisecond

// ship sends one batch. It runs every few milliseconds on the shipper's
// goroutine, never on the Check path.
func (s *shipper) ship(ctx context.Context, now time.Time) {
	batch := make([]redisstore.Observation, 0, len(s.seen)+len(s.pending))
	for id, times := range s.seen {
		batch = append(batch, redisstore.Observation{ID: id, After: s.after[id], Before: now.Add(-settle).UnixMicro(), Times: times})
	}
	for id := range s.pending {
		if _, ok := s.seen[id]; !ok {
			batch = append(batch, redisstore.Observation{ID: id, After: s.after[id], Before: now.Add(-settle).UnixMicro()})
		}
	}
	if len(batch) == 0 {
		return
	}
	if !s.breaker.Allow(now) {
		// Redis is away: feed the engine locally (and keep the times to
		// ship when it returns, not shown).
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel()
	merged, err := s.store.Merge(ctx, batch)
	s.breaker.Done(err, time.Now())
	if err != nil {
		return // as above
	}
	clear(s.seen)
	for _, m := range merged {
		for _, t := range m.Times {
			s.observe(m.ID, time.UnixMicro(t))
			s.after[m.ID] = t
		}
		if m.Pending > 0 {
			s.pending[m.ID] = true
		} else {
			delete(s.pending, m.ID)
		}
	}
}

// Example_shipper shows the shipper loop; see shipper.ship.
func Example_shipper() {
	ctx := context.Background()
	store, err := redisstore.Open(ctx, redisstore.Options{Addrs: []string{"127.0.0.1:6379"}})
	if err != nil {
		return // errors.Is(err, redisstore.ErrUnreachable): start on local state, retry Open
	}
	defer store.Close()
	s := &shipper{store: store, observe: func(string, time.Time) {},
		seen: map[string][]int64{}, after: map[string]int64{}, pending: map[string]bool{}}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for now := range tick.C {
		s.ship(ctx, now)
	}
}
