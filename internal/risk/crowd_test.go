package risk

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// TestCrowdNeedsTimingToAgree: crowd evidence labels a Poisson-like stream
// shared at once, but not a jittered timer (a bot rotating user agents),
// nor a stream seen too briefly.
func TestCrowdNeedsTimingToAgree(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	r := rand.New(rand.NewPCG(1, 2))
	gaps := map[string]func() time.Duration{
		"poisson": func() time.Duration { return time.Duration(r.ExpFloat64() * float64(time.Second)) },
		"timer":   func() time.Duration { return time.Duration((1.6 + 0.8*r.Float64()) * float64(time.Second)) },
	}
	for name, want := range map[string]bool{"poisson": true, "timer": false} {
		t.Run(name, func(t *testing.T) {
			e := New(Options{})
			id := identity.FromAddr(netip.MustParseAddr("192.0.2.7"), 64)
			now := t0
			for i := range 60 {
				now = now.Add(max(gaps[name](), 10*time.Millisecond))
				e.Observe(id, now)
				if i == 10 && e.Crowd(id, now) {
					t.Fatalf("labelled shared after %d requests: too few to judge the timing", i+1)
				}
			}
			if got := e.Crowd(id, now); got != want {
				t.Fatalf("Crowd after 60 requests = %v, want %v", got, want)
			}
			v, _ := e.Peek(id, now)
			if v.Shared != want {
				t.Errorf("Peek.Shared = %v, want %v", v.Shared, want)
			}
			if want {
				// The crowd label is short: it lapses unless renewed.
				if v, _ := e.Peek(id, now.Add(time.Duration(crowdFor)+2*time.Second)); v.Shared {
					t.Errorf("still shared %v after the evidence", time.Duration(crowdFor)+2*time.Second)
				}
			}
		})
	}
	if New(Options{}).Crowd(identity.FromAddr(netip.MustParseAddr("192.0.2.8"), 64), t0) {
		t.Error("an untracked identity was labelled")
	}
}
