package fleet

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// TestPushAlertCrowdNotAFleet: a news app sends three push alerts in 30
// minutes; 300 subscribers each open the article for about a minute within
// 8 s of an alert with probability 1/2, independently, and do nothing else.
// They are people reacting to one stimulus, not a controller: none may be
// quarantined. 1,500 independent loners browse meanwhile.
func TestPushAlertCrowdNotAFleet(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 11))
	spread := 8e9
	pushes := []time.Duration{5 * time.Minute, 13 * time.Minute, 22 * time.Minute}
	var reqs []request
	for i := range 300 {
		for _, p := range pushes {
			if r.IntN(2) == 0 {
				continue
			}
			at := p + time.Duration(r.Float64()*spread)
			for range 2 + r.IntN(4) { // read the article: a few quick requests
				reqs = append(reqs, request{addr(i), "/api/article/42", t0.Add(at)})
				at += time.Duration((3 + 10*r.Float64()) * 1e9)
			}
		}
	}
	reqs = append(reqs, loners(r, 10_000, 1500, 30*time.Minute)...)
	sortByTime(reqs)
	admitted := map[identity.ID]bool{}
	d := New(Options{Admit: func(id identity.ID, f *Fleet, now time.Time) bool {
		admitted[id] = true
		return true
	}})
	run(d, reqs, t0.Add(30*time.Minute))
	if len(admitted) > 0 {
		t.Errorf("%d of 300 push readers quarantined as a fleet; fleets: %+v", len(admitted), d.Fleets())
	}
}

// TestLockstepFleetWithPrivateEpisodes: the lockstep fleet of
// TestFleets, each member adding four requests of its own at random times
// in the 15 minutes (after 20 s of silence each: private episodes). Four
// requests per member is cheap; the fleet must still be found.
func TestLockstepFleetWithPrivateEpisodes(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	reqs := lockstepFleet(r, 0, 25, 15*time.Minute)
	extra := 2
	for i := range 25 {
		for range extra {
			reqs = append(reqs, request{addr(i), endpoints[r.IntN(len(endpoints))], t0.Add(time.Duration(r.Float64() * float64(15*time.Minute)))})
		}
	}
	reqs = append(reqs, loners(r, 1000, 500, 15*time.Minute)...)
	sortByTime(reqs)
	admitted := map[identity.ID]bool{}
	d := New(Options{Admit: func(id identity.ID, f *Fleet, now time.Time) bool {
		admitted[id] = true
		return true
	}})
	run(d, reqs, t0.Add(15*time.Minute))
	fleet := 0
	for id := range admitted {
		if a, _ := id.Addr(); a.As4()[2] == 0 && a.As4()[3] < 25 {
			fleet++
		}
	}
	if fleet < 20 {
		t.Errorf("%d of 25 fleet members admitted, want >= 20 (as without the private requests)", fleet)
	}
}
