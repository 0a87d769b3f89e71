package dashboard

import (
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// largeBackend is a Backend over a quarantine of any size whose costs are
// those of the real one: Quarantined copies limit entries, not all of them;
// QuarantineOf is a lookup; Events returns at most the last 1024.
type largeBackend struct {
	qs    []Quarantine // soonest release first
	index map[string]int

	mu      sync.Mutex // guards limits
	limits  []int      // limit of each Quarantined call
	events  []Decision
	explain Explanation
}

func newLargeBackend(n int) *largeBackend {
	b := &largeBackend{qs: make([]Quarantine, n), index: make(map[string]int, n)}
	for i := range b.qs {
		id := fmt.Sprintf("10.%d.%d.%d", byte(i>>16), byte(i>>8), byte(i))
		b.qs[i] = Quarantine{Identity: id, Reason: "periodic", Score: 90, Strikes: 1,
			Since: testNow.Add(-time.Minute), Until: testNow.Add(time.Duration(i) * time.Millisecond), RetryAfter: 300}
		b.index[id] = i
	}
	for i := range 1024 {
		q := b.qs[len(b.qs)-1-i%len(b.qs)]
		b.events = append(b.events, Decision{Time: q.Since, Identity: q.Identity, Action: actionAdmitted,
			Reason: q.Reason, Score: q.Score, Strikes: q.Strikes, Until: q.Until, By: "detector"})
	}
	b.explain = Explanation{Identity: Identity{Identity: "10.0.0.7", Score: 91}, Features: []Feature{{Name: "periodic"}}}
	return b
}

func (b *largeBackend) Quarantined(limit int, now time.Time) ([]Quarantine, int) {
	b.mu.Lock()
	b.limits = append(b.limits, limit)
	b.mu.Unlock()
	return slices.Clone(b.qs[:min(max(limit, 0), len(b.qs))]), len(b.qs)
}

func (b *largeBackend) QuarantineOf(id identity.ID, now time.Time) (Quarantine, bool) {
	i, ok := b.index[IdentityText(id)]
	if !ok {
		return Quarantine{}, false
	}
	return b.qs[i], true
}

func (b *largeBackend) Decisions(limit int, of identity.ID) []Decision {
	return latestOf(b.events[max(0, len(b.events)-1024):], limit, of)
}

func (b *largeBackend) Explain(id identity.ID, now time.Time) (Explanation, bool) {
	if IdentityText(id) != b.explain.Identity.Identity {
		return Explanation{}, false
	}
	return b.explain, true
}

func (b *largeBackend) Identities(limit int, now time.Time) []Identity { return nil }
func (b *largeBackend) Ban(identity.ID, time.Duration, string, time.Time) (Quarantine, error) {
	return Quarantine{}, nil
}
func (b *largeBackend) Release(identity.ID, time.Time) (bool, error) { return false, nil }
func (b *largeBackend) Extend(identity.ID, time.Duration, time.Time) (Quarantine, bool, error) {
	return Quarantine{}, false, nil
}
func (b *largeBackend) Tracked() int { return 0 }
func (b *largeBackend) Lists() Lists { return Lists{} }

// largeCost returns the allocations and bytes of one f, averaged over runs.
func largeCost(runs int, f func()) (allocs, bytes float64) {
	f() // warm up: pools
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(runs), float64(after.TotalAlloc-before.TotalAlloc) / float64(runs)
}

// TestLargeQuarantineBounded pins that with a quarantine an attacker has
// filled, what anyone can ask for (explain, the stream's snapshot, the
// default quarantine listing) costs what the page shows, not what the
// quarantine holds: the same allocations for 200k entries as for 2k.
func TestLargeQuarantineBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 200k quarantine")
	}
	type costs struct{ explain, snapshot, list [2]float64 }
	measure := func(n int) (costs, *largeBackend) {
		b := newLargeBackend(n)
		s := newServer(Options{Backend: b, Now: func() time.Time { return testNow }})
		h := s.handler()
		var c costs
		c.explain[0], c.explain[1] = largeCost(20, func() {
			if rec := do(t, h, "GET", "/api/v1/identities/10.0.0.7", ""); rec.Code != http.StatusOK {
				t.Fatalf("explain = %d %s", rec.Code, rec.Body)
			}
		})
		c.snapshot[0], c.snapshot[1] = largeCost(20, func() { s.snapshotEvent(1) })
		c.list[0], c.list[1] = largeCost(5, func() { do(t, h, "GET", "/api/v1/quarantine", "") })
		return c, b
	}
	small, _ := measure(2_000)
	large, b := measure(200_000)
	t.Logf("2k entries:   explain %.0f allocs %.0f B; snapshot %.0f allocs %.0f B; list %.0f allocs %.0f B",
		small.explain[0], small.explain[1], small.snapshot[0], small.snapshot[1], small.list[0], small.list[1])
	t.Logf("200k entries: explain %.0f allocs %.0f B; snapshot %.0f allocs %.0f B; list %.0f allocs %.0f B",
		large.explain[0], large.explain[1], large.snapshot[0], large.snapshot[1], large.list[0], large.list[1])

	for _, c := range []struct {
		name         string
		small, large [2]float64
		allocs       float64 // bound for 200k entries
		bytes        float64
	}{
		{"explain", small.explain, large.explain, 200, 64 << 10},
		{"snapshot", small.snapshot, large.snapshot, 2_000, 512 << 10},
		{"GET /api/v1/quarantine", small.list, large.list, 10_000, 4 << 20},
	} {
		if c.large[0] > c.allocs || c.large[1] > c.bytes {
			t.Errorf("%s with 200k quarantined: %.0f allocs, %.0f bytes; want at most %.0f, %.0f", c.name, c.large[0], c.large[1], c.allocs, c.bytes)
		}
		// Independent of the quarantine's size (a little slack for noise).
		if c.large[0] > c.small[0]*1.1+10 {
			t.Errorf("%s: %.0f allocs with 200k quarantined, %.0f with 2k: cost grows with the quarantine", c.name, c.large[0], c.small[0])
		}
	}
	for _, limit := range b.limits {
		if limit > defaultQuarantineLimit {
			t.Errorf("the dashboard asked the backend for %d quarantine entries", limit)
		}
	}
}

func BenchmarkExplainLargeQuarantine(b *testing.B) {
	h := New(Options{Backend: newLargeBackend(200_000), Now: func() time.Time { return testNow }})
	b.ReportAllocs()
	for b.Loop() {
		do(b, h, "GET", "/api/v1/identities/10.0.0.7", "")
	}
}

func BenchmarkSnapshotLargeQuarantine(b *testing.B) {
	s := newServer(Options{Backend: newLargeBackend(200_000), Now: func() time.Time { return testNow }})
	b.ReportAllocs()
	for b.Loop() {
		s.snapshotEvent(1)
	}
}
