package wire

import (
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
	member := func(i int) authz.Client { return fleetMember(s, i) }
	next, last := lockstepFleet(s, c, func(next time.Time) bool {
		_, ok := s.Quarantine.Check(member(0).ID, next)
		return ok // caught: the fleet goes away for good
	})
	// Nothing more from anyone; sweep on for 60 minutes.
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
