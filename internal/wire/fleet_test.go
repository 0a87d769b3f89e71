package wire

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/risk"
)

// TestFleetQuarantine: requests decided by the policy reach the fleet
// detector, and its sweep quarantines a lockstep fleet with reason fleet
// (telling OnFleetAdmit), except an allow-listed member; with
// --fleet-min-members 0 there is no detector.
func TestFleetQuarantine(t *testing.T) {
	c := config.Default()
	c.Allow = []netip.Prefix{netip.MustParsePrefix("10.9.0.3/32")}
	told := 0
	s := Build(c, Extra{OnFleetAdmit: func(r risk.Reason) {
		if r != risk.ReasonFleet {
			t.Errorf("OnFleetAdmit(%v)", r)
		}
		told++
	}})
	member := func(i int) authz.Client { return fleetMember(s, i) }
	next, _ := lockstepFleet(s, c, nil)
	s.Sweep(next)
	for i := range 25 {
		e, ok := s.Quarantine.Check(member(i).ID, next)
		if i == 3 {
			if ok {
				t.Errorf("allow-listed member quarantined: %+v", e)
			}
			continue
		}
		if !ok || e.Reason != "fleet" {
			t.Errorf("member %d: quarantined %v, reason %q; want fleet", i, ok, e.Reason)
		}
	}
	if told < 24 { // and again as quarantines end and the fleet goes on
		t.Errorf("OnFleetAdmit told %d times, want at least 24", told)
	}
	if fs := s.Fleet.Fleets(); len(fs) != 1 || fs[0].Size != 25 {
		t.Errorf("fleets = %+v, want one of 25", fs)
	}

	c.FleetMinMembers = 0
	if off := Build(c, Extra{}); off.Fleet != nil {
		t.Error("--fleet-min-members 0 built a detector")
	}
}

// fleetMember is member i (10.9.0.i) of lockstepFleet's fleet.
func fleetMember(s *Stack, i int) authz.Client {
	return s.Rules.Resolve(netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}), "", "")
}

// lockstepFleet plays a fleet through s from 2026-12-04 10:00 UTC, sweeping
// every c.SweepInterval on the way: 25 clients (fleetMember 0-24) fired
// together every 40-100 s, one request each, far too few for their own
// timing. It plays 8 rounds, or stops after the first round at whose end
// stop(next) holds (nil never stops). It returns the next sweep due and the
// time of the last request.
func lockstepFleet(s *Stack, c config.Config, stop func(next time.Time) bool) (next, last time.Time) {
	start := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	next = start.Add(c.SweepInterval)
	tick := start
	for k := range 8 {
		tick = tick.Add(time.Duration(40+k*60%61) * time.Second)
		for i := range 25 {
			at := tick.Add(time.Duration(i*50) * time.Millisecond)
			for !at.Before(next) {
				s.Sweep(next)
				next = next.Add(c.SweepInterval)
			}
			s.Policy.Decide(authz.Request{Client: fleetMember(s, i), Path: "/api/prices", Now: at})
			last = at
		}
		if stop != nil && stop(next) {
			break
		}
	}
	return next, last
}
