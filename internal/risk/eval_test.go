package risk

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var evalFlag = flag.Int("risk.eval", 0, "run TestEvalTable over this many seeds per scenario and log the table")

// TestEvalTable prints detection and false-positive rates per scenario, in
// the shape of DETECTION.md §8, for tuning and for the record. It asserts
// nothing; the other tests do. Run it with
//
//	go test -run TestEvalTable -v -risk.eval 1000 ./internal/risk/
func TestEvalTable(t *testing.T) {
	if *evalFlag <= 0 {
		t.Skip("use -risk.eval N to run")
	}
	n := uint64(*evalFlag)
	ms := time.Millisecond
	scenarios := []struct {
		name string
		gen  func(r *rand.Rand) []time.Duration
	}{
		{"H1 single human 30m", func(r *rand.Rand) []time.Duration { return h1.times(r, 0, 30*time.Minute) }},
		{"H2 power user 30m", func(r *rand.Rand) []time.Duration { return h2.times(r, 0, 30*time.Minute) }},
		{"H4 calm human 30m", func(r *rand.Rand) []time.Duration { return h4.times(r, 0, 30*time.Minute) }},
		{"H5 heavy SPA 30m", func(r *rand.Rand) []time.Duration { return h5.times(r, 0, 30*time.Minute) }},
		{"H10 regular worker 30m", func(r *rand.Rand) []time.Duration { return h10.times(r, 0, 30*time.Minute) }},
		{"H1 single human 4h", func(r *rand.Rand) []time.Duration { return h1.times(r, 0, 4*time.Hour) }},
		{"H4 calm human 4h", func(r *rand.Rand) []time.Duration { return h4.times(r, 0, 4*time.Hour) }},
		{"LN(100ms,1) x60", func(r *rand.Rand) []time.Duration { return gaps(r, 60, lnGap(100*ms, 1)) }},
		{"B1 fixed 50ms", func(r *rand.Rand) []time.Duration { return gaps(r, 200, fixed(50*ms)) }},
		{"B1 fixed 0.5s", func(r *rand.Rand) []time.Duration { return gaps(r, 200, fixed(500*ms)) }},
		{"B1 fixed 2s", func(r *rand.Rand) []time.Duration { return gaps(r, 200, fixed(2*time.Second)) }},
		{"B1 fixed 10s", func(r *rand.Rand) []time.Duration { return gaps(r, 200, fixed(10*time.Second)) }},
		{"B1 fixed 60s", func(r *rand.Rand) []time.Duration { return gaps(r, 200, fixed(time.Minute)) }},
		{"B2 uniform 5% @2s", func(r *rand.Rand) []time.Duration { return gaps(r, 300, uniform(1900*ms, 2100*ms)) }},
		{"B2 uniform 20% @2s", func(r *rand.Rand) []time.Duration { return gaps(r, 300, uniform(1600*ms, 2400*ms)) }},
		{"B2 uniform 50% @2s", func(r *rand.Rand) []time.Duration { return gaps(r, 300, uniform(1000*ms, 3000*ms)) }},
		{"B3 gaussian 20% @2s", func(r *rand.Rand) []time.Duration { return gaps(r, 300, gaussian(2*time.Second, 0.2)) }},
		{"B3 gaussian 50% @2s", func(r *rand.Rand) []time.Duration { return gaps(r, 400, gaussian(2*time.Second, 0.5)) }},
		{"B2b uniform 50% @30s", func(r *rand.Rand) []time.Duration { return gaps(r, 240, uniform(15*time.Second, 45*time.Second)) }},
		{"B2c cobalt 50% @60s", func(r *rand.Rand) []time.Duration { return gaps(r, 120, uniform(30*time.Second, 60*time.Second)) }},
		{"B4 low-and-slow", func(r *rand.Rand) []time.Duration { return gaps(r, 240, uniform(10*time.Second, 60*time.Second)) }},
		{"B5 sequential scraper", func(r *rand.Rand) []time.Duration { return gaps(r, 3000, lnGap(170*ms, 0.4)) }},
		{"B10 burst mimic ±10%", func(r *rand.Rand) []time.Duration { return burstMimic(r, 10*time.Second, 0.1, 30*time.Minute) }},
		{"B6 poisson 3s", func(r *rand.Rand) []time.Duration {
			return gaps(r, 1200, func(r *rand.Rand) time.Duration { return time.Duration(r.ExpFloat64() * 3e9) })
		}},
		{"B7 log-normal mimic", func(r *rand.Rand) []time.Duration { return gaps(r, 450, lnGap(8*time.Second, 1.2)) }},
		{"B10b burst mimic ±50%", func(r *rand.Rand) []time.Duration { return burstMimic(r, 10*time.Second, 0.5, 30*time.Minute) }},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-24s %6s %6s %6s %5s %5s %5s  %s\n", "scenario", "quar%", "chal%", "shrd%", "RTD50", "RTD95", "max", "reasons")
	for _, sc := range scenarios {
		res := runSeeds(n, sc.gen)
		var rtd []int
		chal, shared := 0, 0
		reasons := map[Reason]int{}
		for _, r := range res {
			if r.confirmedAt > 0 {
				rtd = append(rtd, r.confirmedAt)
				reasons[r.reason]++
			}
			if r.maxScore >= DefaultChallengeThreshold {
				chal++
			}
			if r.shared {
				shared++
			}
		}
		slices.Sort(rtd)
		p := func(q float64) int {
			if len(rtd) == 0 {
				return 0
			}
			return rtd[min(len(rtd)-1, int(q*float64(len(rtd))))]
		}
		pct := func(k int) float64 { return 100 * float64(k) / float64(len(res)) }
		fmt.Fprintf(&b, "%-24s %6.1f %6.1f %6.1f %5d %5d %5d  %v\n", sc.name, pct(len(rtd)), pct(chal), pct(shared), p(0.5), p(0.95), p(1), reasons)
	}
	t.Log(b.String())
}
