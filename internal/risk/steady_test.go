package risk

import (
	"math/rand/v2"
	"testing"
	"time"
)

// Fast, steady humans (issue 14): one call per page at an even pace, with
// now and then a pause. The parameters are the tuning set; internal/
// traffic's H14 scenarios use others, measured by flowlock-sim on
// held-out seeds.

// pagers are brisk single people: log-normal think times with a small σ,
// one call per action, a Pareto(60 s) pause after 4 % of the actions.
var pagers = []human{
	{think: 1200 * time.Millisecond, thinkSigma: 0.5, burstMean: 1, burstCap: 1, away: 0.04},
	{think: 2500 * time.Millisecond, thinkSigma: 0.45, burstMean: 1, burstCap: 1, away: 0.04},
}

// TestSteadyHumansWaitForEvidence: brisk pagers are not quarantined in
// their first half hour. Without the pause clock (calm) and the
// evidence gates beside it, about 2-8 % of them were, as anti_bursty,
// low_entropy or periodic, before their first pause.
func TestSteadyHumansWaitForEvidence(t *testing.T) {
	neverQuarantined(t, pagers)
}

// neverQuarantined fails t for every stream of the pagers, on this
// package's seeds, quarantined within half an hour.
func neverQuarantined(t *testing.T, pagers []human) {
	t.Helper()
	for _, h := range pagers {
		res := runSeeds(seeds(300, 100), func(r *rand.Rand) []time.Duration {
			return h.times(r, 0, 30*time.Minute)
		})
		for seed, got := range res {
			if got.confirmedAt > 0 {
				t.Errorf("pager %v/%.2f seed %d: quarantined at request %d as %v",
					h.think, h.thinkSigma, seed, got.confirmedAt, got.reason)
			}
		}
	}
}

// TestPauseClock: a gap of at least pauseRatio times the EW mean, and
// longer than pauseGap, restarts the clock and marks the stream as one
// that pauses; shorter gaps add to it.
func TestPauseClock(t *testing.T) {
	var s state
	now := int64(0)
	s.start(now)
	step := func(ms int64) {
		now += ms * int64(time.Millisecond)
		s.record(now)
	}
	for range 20 {
		step(2000)
	}
	if s.calm&calmPaused != 0 || s.calm != 400 {
		t.Fatalf("after 20 × 2 s: calm = %#x, want 400 ds (40 s) and no pause", s.calm)
	}
	step(5000) // 2.5 × the mean: not a pause
	if s.calm != 450 {
		t.Fatalf("after a 5 s gap: calm = %#x, want 450 ds", s.calm)
	}
	step(9000) // 4.5 × the mean and > 3 s: a pause
	if s.calm != calmPaused {
		t.Fatalf("after a 9 s gap: calm = %#x, want the paused flag and 0 ms", s.calm)
	}
	step(2000)
	if s.calm != calmPaused|20 {
		t.Fatalf("2 s after the pause: calm = %#x, want flag | 20 ds", s.calm)
	}
}
