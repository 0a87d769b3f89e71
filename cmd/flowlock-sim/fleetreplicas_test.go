package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

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
// replica does, taking no person with them, and Redis holds no client's
// address or path in clear outside the quarantine entries.
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
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute) // a stalled replica fails the test
	defer cancel()
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
	if err == nil {
		inClear(t, srv, rep.prefix)
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

// clearText matches what must not be in Redis in clear: a client's IPv4
// address (the simulator's clients are 10.x.y.z) or a path.
var clearText = regexp.MustCompile(`10\.\d{1,3}\.\d{1,3}\.\d{1,3}|/api/`)

// inClear fails t when a key under prefix other than the quarantine's (its
// entries, its index and its events are the shared list, which names the
// quarantined) holds a client's address or a path in clear: the timing
// rings are named by hash and the fleet notes carry hashes.
func inClear(t *testing.T, srv *redistest.Server, prefix string) {
	t.Helper()
	out, err := srv.CLI("--scan", "--pattern", prefix+"*")
	if err != nil {
		t.Fatal(err)
	}
	keys := strings.Fields(out)
	streams := 0
	for _, k := range keys {
		if strings.Contains(k, "q:{q}") || strings.HasSuffix(k, "events") { // each trial's own prefix
			continue
		}
		if m := clearText.FindString(k); m != "" {
			t.Errorf("key %q names %q in clear", k, m)
		}
		typ, err := srv.CLI("TYPE", k)
		if err != nil {
			t.Fatal(err)
		}
		var v string
		switch strings.TrimSpace(typ) {
		case "stream":
			streams++
			v, err = srv.CLI("XRANGE", k, "-", "+")
		case "string":
			v, err = srv.CLI("GET", k)
		case "hash":
			v, err = srv.CLI("HGETALL", k)
		case "zset":
			v, err = srv.CLI("ZRANGE", k, "0", "-1")
		case "list":
			v, err = srv.CLI("LRANGE", k, "0", "-1")
		case "set":
			v, err = srv.CLI("SMEMBERS", k)
		}
		if err != nil {
			t.Fatal(err)
		}
		if m := clearText.FindString(v); m != "" {
			t.Errorf("key %q holds %q in clear", k, m)
		}
	}
	t.Logf("scanned %d keys under %s (%d streams) for addresses and paths in clear", len(keys), prefix, streams)
	if streams == 0 {
		t.Errorf("no fleet notes stream under %s to scan", prefix)
	}
}
