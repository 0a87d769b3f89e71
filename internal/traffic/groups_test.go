package traffic

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestGroups checks what the fleet and crowd scenarios promise: streams in
// order within the horizon, every client on its identity, a lockstep fleet
// firing together, a script fleet walking one script, a flash crowd
// arriving within a minute on one page, and the app's refresh on the
// minute.
func TestGroups(t *testing.T) {
	var ids []string
	for _, s := range Groups() {
		ids = append(ids, s.ID)
		if s.Spread < 1 || s.Spread > s.Clients || s.Description == "" || s.Params == "" {
			t.Errorf("%s: spread %d of %d clients, description %q", s.ID, s.Spread, s.Clients, s.Description)
		}
		if _, ok := Lookup(s.ID); ok {
			t.Errorf("%s is in Scenarios too: its streams are many identities", s.ID)
		}
		if g, ok := LookupGroup(strings.ToLower(s.Name)); !ok || g.ID != s.ID {
			t.Errorf("LookupGroup(%q) = %q, %v", s.Name, g.ID, ok)
		}
		reqs := collect(s, 1)
		if len(reqs) == 0 {
			t.Fatalf("%s: empty stream", s.ID)
		}
		firstOf := map[int]Request{}
		for i, r := range reqs {
			if i > 0 && r.TS.Before(reqs[i-1].TS) || !r.TS.Before(t0.Add(s.Horizon)) {
				t.Fatalf("%s: request %d at %v out of order or past the horizon", s.ID, i, r.TS)
			}
			if id := s.Identity(r.Member); id < 0 || id >= s.Spread {
				t.Fatalf("%s: member %d on identity %d of %d", s.ID, r.Member, id, s.Spread)
			}
			if _, ok := firstOf[r.Member]; !ok {
				firstOf[r.Member] = r
			}
		}
		switch s.ID {
		case "F1":
			// Every bot's first request within 2 s of the first bot's.
			var at []time.Time
			for m := range s.Fleet {
				at = append(at, firstOf[m].TS)
			}
			if spread := slices.MaxFunc(at, time.Time.Compare).Sub(slices.MinFunc(at, time.Time.Compare)); spread > 2100*time.Millisecond {
				t.Errorf("F1: first requests spread over %v, want within 2 s", spread)
			}
		case "F3":
			for m := range s.Fleet {
				if firstOf[m].Path != loginPath {
					t.Errorf("F3: bot %d starts at %s, want %s", m, firstOf[m].Path, loginPath)
				}
			}
		case "C1":
			for m, r := range firstOf {
				if r.Path != newsletterPath || r.TS.Sub(t0) > 61*time.Second {
					t.Fatalf("C1: person %d starts with %s at %v", m, r.Path, r.TS.Sub(t0))
				}
			}
			if len(firstOf) < s.Clients*9/10 {
				t.Errorf("C1: %d of %d people came", len(firstOf), s.Clients)
			}
		case "C2":
			for _, r := range reqs {
				if r.Path == refreshPath {
					// Observation noise may move it a few ms early.
					if off := r.TS.Sub(t0) % time.Minute; off > 3100*time.Millisecond && off < time.Minute-50*time.Millisecond {
						t.Fatalf("C2: refresh %v past the minute", off)
					}
				}
			}
		}
	}
	if want := []string{"F1", "F2", "F3", "F4", "C1", "C2", "C3", "C4"}; !slices.Equal(ids, want) {
		t.Errorf("groups = %v, want %v", ids, want)
	}
}
