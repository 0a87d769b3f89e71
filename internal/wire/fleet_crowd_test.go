package wire

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
)

// TestPushAlertCrowdNotQuarantined: the default service (fleet detection on
// at 20) and internal/fleet's push-alert crowd: 300 subscribers each open
// the article within 8 s of three alerts with probability 1/2, 1,500
// others browse slowly. People are quarantined with reason fleet.
func TestPushAlertCrowdNotQuarantined(t *testing.T) {
	c := config.Default()
	s := Build(c, Extra{})
	r := rand.New(rand.NewPCG(11, 11))
	type req struct {
		ip   netip.Addr
		path string
		at   time.Time
	}
	start := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	var reqs []req
	for i := range 300 {
		ip := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		for _, p := range []time.Duration{5 * time.Minute, 13 * time.Minute, 22 * time.Minute} {
			if r.IntN(2) == 0 {
				continue
			}
			at := p + time.Duration(r.Float64()*8e9)
			for range 2 + r.IntN(4) {
				reqs = append(reqs, req{ip, "/api/article/42", start.Add(at)})
				at += time.Duration((3 + 10*r.Float64()) * 1e9)
			}
		}
	}
	paths := []string{"/api/prices", "/api/items", "/api/feed", "/api/quotes", "/api/status", "/api/cart"}
	for i := range 1500 {
		ip := netip.AddrFrom4([4]byte{10, 100, byte(i >> 8), byte(i)})
		for at := time.Duration(r.Float64() * 300e9); at < 30*time.Minute; at += time.Duration((30 + 270*r.Float64()) * 1e9) {
			reqs = append(reqs, req{ip, paths[r.IntN(len(paths))], start.Add(at)})
		}
	}
	slices.SortStableFunc(reqs, func(a, b req) int { return a.at.Compare(b.at) })
	next := start.Add(c.SweepInterval)
	people := map[netip.Addr]bool{}
	for _, q := range reqs {
		for !q.at.Before(next) {
			s.Sweep(next)
			next = next.Add(c.SweepInterval)
		}
		d := s.Policy.Decide(authz.Request{Client: s.Rules.Resolve(q.ip, "", ""), Path: q.path, Now: q.at})
		if !d.Allow {
			people[q.ip] = true
		}
	}
	for end := start.Add(30 * time.Minute); next.Before(end); next = next.Add(c.SweepInterval) {
		s.Sweep(next)
	}
	if len(people) > 0 {
		t.Errorf("%d people refused (fleets %+v)", len(people), len(s.Fleet.Fleets()))
	}
}
