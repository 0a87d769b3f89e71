package wire

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
)

// TestFleetGoneMembersNotReadmitted: the fleet of TestFleetQuarantine
// stops for good the moment it is quarantined. Its tracks stay in the
// detector for --window (30 min) after their last request, and every Sweep
// calls Admit for every member again, so each quarantine that ends is
// started again with one more strike: a client that sent nothing more is
// quarantined for 5+10+... minutes, escalated, and a person caught in a
// wrong fleet is locked out three times as long as the first TTL says.
func TestFleetGoneMembersNotReadmitted(t *testing.T) {
	c := config.Default()
	s := Build(c, Extra{})
	member := func(i int) authz.Client {
		return s.Rules.Resolve(netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}), "", "")
	}
	start := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	next := start.Add(c.SweepInterval)
	tick := start
	last := start
	for k := range 8 {
		tick = tick.Add(time.Duration(40+k*60%61) * time.Second)
		for i := range 25 {
			at := tick.Add(time.Duration(i*50) * time.Millisecond)
			for !at.Before(next) {
				s.Sweep(next)
				next = next.Add(c.SweepInterval)
			}
			s.Policy.Decide(authz.Request{Client: member(i), Path: "/api/prices", Now: at})
			last = at
		}
		if _, ok := s.Quarantine.Check(member(0).ID, next); ok {
			break // caught: the fleet goes away for good
		}
	}
	// Nothing more from anyone; sweep on for 40 minutes.
	var worst int
	var lastUntil time.Duration
	for end := last.Add(60 * time.Minute); next.Before(end); next = next.Add(c.SweepInterval) {
		s.Sweep(next)
		for i := range 25 {
			if e, ok := s.Quarantine.Check(member(i).ID, next); ok {
				worst = max(worst, int(e.Strikes))
				lastUntil = max(lastUntil, e.Until.Sub(last))
			}
		}
	}
	t.Logf("highest strike %d; quarantined until %v after the last request", worst, lastUntil)
	if worst > 1 {
		t.Errorf("members that sent nothing after their quarantine were re-admitted up to strike %d", worst)
	}
}
