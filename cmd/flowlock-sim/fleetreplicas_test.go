package main

import (
	"context"
	"strings"
	"testing"

	"github.com/flowlock/flowlock/internal/redisstore/redistest"
	"github.com/flowlock/flowlock/internal/traffic"
)

// TestReplicasShareFleets runs lockstep and period fleets (F1, F2) through
// three replicas, each request to one at random, sharing state through a
// real redis-server, and through three that share nothing, on the same
// trials. Each unshared replica sees a third of every member's requests:
// too few for three shared windows or two agreeing gaps within 15 minutes,
// so it clearly misses the fleets (which is what shows this test can fail).
// The shared replicas exchange their fleet notes and catch them as one
// replica does, taking no person with them.
func TestReplicasShareFleets(t *testing.T) {
	srv := redistest.Start(t)
	trials := 8
	if raceEnabled || testing.Short() {
		trials = 4
	}
	var groups []traffic.Scenario
	var ids []string
	var n []int
	for _, name := range []string{"F1", "F2"} {
		g, ok := traffic.LookupGroup(name)
		if !ok {
			t.Fatalf("no group scenario %s", name)
		}
		groups, ids, n = append(groups, g), append(ids, g.ID), append(n, trials)
	}
	ctx := context.Background()
	o := evalOptions{replicas: 3, redisAddr: srv.Addr}
	rep, cleanup, err := o.replicaSetup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shared := newSetup()
	shared.rep = rep
	sh, _, err := runGroups(ctx, shared, groups, ids, n, holdoutSeed, 0)
	if err == nil {
		err = rep.run.err
	}
	cleanup()
	if err != nil {
		t.Fatal(err)
	}
	unshared := newSetup()
	unshared.rep = replicaSetup{n: 3, run: &replicaRun{}}
	un, _, err := runGroups(ctx, unshared, groups, ids, n, holdoutSeed, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sh {
		s, u := &sh[i], &un[i]
		sw, uw := s.caughtWithin(fleetCatchWithin), u.caughtWithin(fleetCatchWithin)
		t.Logf("%s: caught within %v in %s of %d trials shared, %s unshared; people as fleet %d shared",
			s.id, fleetCatchWithin, pct1(sw), s.trials, pct1(uw), s.sum.peopleFleet)
		if sw < minFleetCaught {
			t.Errorf("%s: three shared replicas caught %s of %d trials within %v, want at least %s",
				s.id, pct1(sw), s.trials, fleetCatchWithin, pct0(minFleetCaught))
		}
		if uw > 0.5 {
			t.Errorf("%s: three unshared replicas caught %s of %d trials: sharing should matter here", s.id, pct1(uw), u.trials)
		}
		if s.sum.peopleFleet > 0 {
			t.Errorf("%s: %d of %d people quarantined as a fleet by the shared replicas", s.id, s.sum.peopleFleet, s.sum.people)
		}
	}
	if out, err := srv.CLI("--scan", "--pattern", "flowlock-sim:*"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("keys left in Redis: %q (%v)", out, err)
	}
}
