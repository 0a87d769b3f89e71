package risk

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Detection tests: simulated streams (gen_test.go) through a fresh engine
// each, with the clock passed in and fixed seeds, so every run sees the
// same traffic. Scenario ids refer to DETECTION.md §6.2; limits come from
// the brief and from DETECTION.md §9.

// noise returns a per-stream observation-noise sd, uniform in 1–5 ms.
func noise(r *rand.Rand) time.Duration {
	return time.Millisecond + time.Duration(r.Int64N(int64(4*time.Millisecond)))
}

// seeds returns how many seeds a scenario runs: full in a normal run,
// fewer with -short.
func seeds(full, short int) uint64 {
	if testing.Short() {
		return uint64(short)
	}
	return uint64(full)
}

// runSeeds runs gen for n seeds and returns the results.
func runSeeds(n uint64, gen func(r *rand.Rand) []time.Duration) []runResult {
	out := make([]runResult, 0, n)
	for seed := range n {
		r := newRand(seed)
		sd := noise(r)
		ts := observe(r, gen(r), sd)
		e := New(Options{MaxClients: 16, Shards: 1})
		out = append(out, run(e, testID(1), ts))
	}
	return out
}

func TestFixedIntervalBotsConfirmed(t *testing.T) {
	tests := []struct {
		period time.Duration
		within int // requests, counted from the stream's first
	}{
		{50 * time.Millisecond, 40}, // noise is up to 10 % of the period here
		{500 * time.Millisecond, 20},
		{2 * time.Second, 20},
		{10 * time.Second, 20},
		{60 * time.Second, 20},
	}
	for _, tc := range tests {
		t.Run(tc.period.String(), func(t *testing.T) {
			res := runSeeds(seeds(200, 50), func(r *rand.Rand) []time.Duration {
				return gaps(r, 100, fixed(tc.period))
			})
			for seed, got := range res {
				if got.confirmedAt == 0 || got.confirmedAt > tc.within {
					t.Errorf("seed %d: confirmed at request %d (max score %d), want within %d",
						seed, got.confirmedAt, got.maxScore, tc.within)
				}
				if got.reason != ReasonPeriodic && got.reason != ReasonLowEntropy {
					t.Errorf("seed %d: reason %v, want periodic or low_entropy", seed, got.reason)
				}
			}
		})
	}
}

// rtdStats returns the share of streams confirmed within limit requests,
// the median requests-to-detection over confirmed streams, and how many
// were never confirmed.
func rtdStats(res []runResult, limit int) (within float64, median, missed int) {
	var rtd []int
	in := 0
	for _, r := range res {
		if r.confirmedAt == 0 {
			missed++
			continue
		}
		rtd = append(rtd, r.confirmedAt)
		if r.confirmedAt <= limit {
			in++
		}
	}
	if len(rtd) > 0 {
		slices.Sort(rtd)
		median = rtd[len(rtd)/2]
	}
	return float64(in) / float64(len(res)), median, missed
}

func TestJitteredBotsConfirmed(t *testing.T) {
	tests := []struct {
		name string
		gen  func(r *rand.Rand) []time.Duration
		// At least share of the streams must be confirmed within limit
		// requests, and every stream by the end of the stream.
		limit int
		share float64
	}{
		// The brief: uniform ±20 % at 2 s within 60, every stream.
		{"B2 uniform 20% @2s", func(r *rand.Rand) []time.Duration {
			return gaps(r, 200, uniform(1600*time.Millisecond, 2400*time.Millisecond))
		}, 60, 1},
		// Low-and-slow within 80: DETECTION §9 asks 95 %; about 2 % of
		// streams draw a ring that looks less regular and need up to ~170.
		{"B4 low-and-slow U(10s,60s)", func(r *rand.Rand) []time.Duration {
			return gaps(r, 240, uniform(10*time.Second, 60*time.Second))
		}, 80, 0.95},
		{"B2 uniform 5% @2s", func(r *rand.Rand) []time.Duration {
			return gaps(r, 200, uniform(1900*time.Millisecond, 2100*time.Millisecond))
		}, 20, 0.99},
		{"B3 gaussian 20% @2s", func(r *rand.Rand) []time.Duration {
			return gaps(r, 200, gaussian(2*time.Second, 0.2))
		}, 65, 0.99},
		{"B2 uniform 50% @2s", func(r *rand.Rand) []time.Duration {
			return gaps(r, 300, uniform(time.Second, 3*time.Second))
		}, 150, 0.95},
		{"B3 gaussian 50% @2s", func(r *rand.Rand) []time.Duration {
			return gaps(r, 400, gaussian(2*time.Second, 0.5))
		}, 150, 0.95},
		{"B2c cobalt-strike 50% @60s", func(r *rand.Rand) []time.Duration {
			return gaps(r, 120, uniform(30*time.Second, 60*time.Second))
		}, 150, 0.95},
		{"B10 burst mimic 10s ±10%", func(r *rand.Rand) []time.Duration {
			return burstMimic(r, 10*time.Second, 0.1, 30*time.Minute)
		}, 60, 0.95},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runSeeds(seeds(400, 100), tc.gen)
			within, median, missed := rtdStats(res, tc.limit)
			t.Logf("%d streams: %.1f%% within %d requests, median %d, %d never", len(res), 100*within, tc.limit, median, missed)
			if within < tc.share {
				t.Errorf("%.1f%% of streams confirmed within %d requests, want ≥ %.0f%%", 100*within, tc.limit, 100*tc.share)
			}
			if missed > 0 {
				t.Errorf("%d of %d streams never confirmed", missed, len(res))
			}
		})
	}
}

// TestOutOfScopeBotsStayQuiet checks the scenarios DETECTION §4 declares
// undetectable by timing: a detector that catches them is overfitting the
// generator, and would catch humans who happen to look the same.
func TestOutOfScopeBotsStayQuiet(t *testing.T) {
	tests := []struct {
		name string
		gen  func(r *rand.Rand) []time.Duration
	}{
		{"B6 poisson 3s", func(r *rand.Rand) []time.Duration {
			return gaps(r, 1200, func(r *rand.Rand) time.Duration { return time.Duration(r.ExpFloat64() * 3e9) })
		}},
		{"B7 log-normal mimic", func(r *rand.Rand) []time.Duration {
			return gaps(r, 300, lnGap(8*time.Second, 1.2))
		}},
		{"B10b burst mimic 10s ±50%", func(r *rand.Rand) []time.Duration {
			return burstMimic(r, 10*time.Second, 0.5, 30*time.Minute)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runSeeds(seeds(400, 100), tc.gen)
			confirmed := 0
			for _, r := range res {
				if r.confirmedAt > 0 {
					confirmed++
				}
			}
			if rate := float64(confirmed) / float64(len(res)); rate > 0.02 {
				t.Errorf("%d of %d streams confirmed (%.1f%%), want ≤ 2%%", confirmed, len(res), 100*rate)
			}
		})
	}
}

func TestHumansNeverConfirmed(t *testing.T) {
	tests := []struct {
		name string
		gen  func(r *rand.Rand) []time.Duration
	}{
		{"H1 single human", func(r *rand.Rand) []time.Duration { return h1.times(r, 0, 30*time.Minute) }},
		{"H2 power user", func(r *rand.Rand) []time.Duration { return h2.times(r, 0, 30*time.Minute) }},
		{"H4 calm, no fan-out", func(r *rand.Rand) []time.Duration { return h4.times(r, 0, 30*time.Minute) }},
		{"H5 heavy SPA", func(r *rand.Rand) []time.Duration { return h5.times(r, 0, 30*time.Minute) }},
		// The end-to-end suite's "human-like" client: i.i.d. log-normal
		// gaps, median 100 ms, sigma 1.0, 60 requests.
		{"log-normal 100ms sigma 1", func(r *rand.Rand) []time.Duration {
			return gaps(r, 60, lnGap(100*time.Millisecond, 1.0))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runSeeds(seeds(1000, 200), tc.gen)
			for seed, got := range res {
				if got.confirmedAt > 0 {
					t.Errorf("seed %d: confirmed at request %d of %d (reason %v)", seed, got.confirmedAt, got.requests, got.reason)
				}
			}
		})
	}
}

// TestLongSessionHumans runs people through four busy hours, long enough
// for the continuity component to have its say.
func TestLongSessionHumans(t *testing.T) {
	if testing.Short() {
		t.Skip("long sessions; run without -short")
	}
	for _, tc := range []struct {
		name string
		h    human
	}{{"H1", h1}, {"H4", h4}} {
		t.Run(tc.name, func(t *testing.T) {
			res := runSeeds(100, func(r *rand.Rand) []time.Duration { return tc.h.times(r, 0, 4*time.Hour) })
			for seed, got := range res {
				if got.confirmedAt > 0 {
					t.Errorf("seed %d: confirmed at request %d of %d (reason %v)", seed, got.confirmedAt, got.requests, got.reason)
				}
			}
		})
	}
}

func TestNATIsSharedNeverConfirmed(t *testing.T) {
	tests := []struct {
		name    string
		humans  int
		horizon time.Duration
		seeds   uint64
	}{
		{"H8 office NAT, 50 humans", 50, 15 * time.Minute, seeds(20, 5)},
		{"H9 CGNAT, 200 humans", 200, 15 * time.Minute, seeds(5, 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range tc.seeds {
				r := newRand(seed)
				ts := observe(r, nat(r, h1, tc.humans, tc.horizon), noise(r))
				e := New(Options{MaxClients: 16, Shards: 1})
				id := testID(1)
				sharedAt := time.Duration(-1)
				for i, at := range ts {
					v := e.Observe(id, at)
					if v.Confirmed {
						t.Fatalf("seed %d: confirmed at request %d (score %d, reason %v)", seed, i+1, v.Score, v.Reason)
					}
					if v.Shared && sharedAt < 0 {
						sharedAt = at.Sub(epoch)
					}
				}
				// DETECTION §9: labelled shared within 2 minutes.
				if sharedAt < 0 || sharedAt > 2*time.Minute {
					t.Errorf("seed %d: shared from %v, want within 2m", seed, sharedAt)
				}
			}
		})
	}
}

func TestFewIntervalsNeverConfirmed(t *testing.T) {
	// Thresholds as low as they go, so only the evidence gate can hold.
	opts := Options{Threshold: 1, ChallengeThreshold: 1, Confirm: 1}
	periods := []time.Duration{5 * time.Millisecond, 50 * time.Millisecond, time.Second, 2999 * time.Millisecond, time.Minute, time.Hour}
	for _, p := range periods {
		t.Run(p.String(), func(t *testing.T) {
			e := New(opts)
			id := testID(1)
			at := epoch
			for i := range minIntervals { // 8 requests: 7 intervals
				// A batch of extra requests inside every gap adds requests
				// but no intervals.
				for j := range 5 {
					v := e.Observe(id, at.Add(time.Duration(j)*time.Millisecond/2))
					if v.Confirmed || v.Score != 0 {
						t.Fatalf("request %d.%d: verdict %+v, want score 0 before %d intervals", i, j, v, minIntervals)
					}
				}
				at = at.Add(p)
			}
		})
	}
}

// TestConfirmNeedsConsecutiveEvaluations drives a timer until it scores at
// the threshold and checks that confirmation comes exactly Confirm
// evaluations later, and that one low score resets the count.
func TestConfirmNeedsConsecutiveEvaluations(t *testing.T) {
	for _, confirm := range []int{1, 3, 5} {
		e := New(Options{Confirm: confirm})
		id := testID(1)
		at := epoch
		first := 0 // first request scoring ≥ threshold
		for i := 1; i <= 40; i++ {
			at = at.Add(time.Second)
			v := e.Observe(id, at)
			if v.Score >= DefaultThreshold && first == 0 {
				first = i
			}
			want := first > 0 && i-first+1 >= confirm
			if v.Confirmed != want {
				t.Fatalf("confirm=%d request %d: Confirmed=%v score=%d, want %v (first over at %d)", confirm, i, v.Confirmed, v.Score, want, first)
			}
		}
		// Then a person takes over the identity: once a score falls below
		// the threshold the count restarts, and Confirmed goes with it.
		reset := false
		r := newRand(7)
		start := at.Sub(epoch) + time.Minute
		for _, d := range h1.times(r, start, start+30*time.Minute) {
			v := e.Observe(id, epoch.Add(d))
			if v.Score < DefaultThreshold {
				reset = true
			}
			if reset && v.Confirmed {
				t.Fatalf("confirm=%d: confirmed again after a low score (score %d)", confirm, v.Score)
			}
		}
		x, _ := e.Explain(id, epoch.Add(start+30*time.Minute))
		if !reset || x.Confirmed || x.Consecutive != 0 {
			t.Errorf("confirm=%d after a human took over: reset %v, consecutive %d, confirmed %v", confirm, reset, x.Consecutive, x.Confirmed)
		}
	}
}

// TestSingleHumansRarelyShared checks that the shared label needs evidence
// of concurrency: one person, however busy, pauses between actions, so a
// single human is almost never labelled (DETECTION §6.3 reports the rate).
// A label on a single human would switch off most of the timing model.
func TestSingleHumansRarelyShared(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    human
	}{{"H1", h1}, {"H2", h2}, {"H5", h5}} {
		t.Run(tc.name, func(t *testing.T) {
			res := runSeeds(seeds(300, 60), func(r *rand.Rand) []time.Duration { return tc.h.times(r, 0, 30*time.Minute) })
			shared := 0
			for _, got := range res {
				if got.shared {
					shared++
				}
			}
			if max := len(res) / 50; shared > max {
				t.Errorf("%d of %d streams labelled shared, want at most %d", shared, len(res), max)
			}
		})
	}
}

// TestBotBehindNATNotConfirmed: a fixed 2 s bot among ten people on one
// address (DETECTION §6.2 B12) is a NAT, for volume limits; timing must not
// quarantine the address.
func TestBotBehindNATNotConfirmed(t *testing.T) {
	n := seeds(100, 20)
	confirmed := 0
	for seed := range n {
		r := newRand(seed)
		ts := nat(r, h1, 10, 30*time.Minute)
		start := time.Duration(r.Int64N(int64(2 * time.Second)))
		for at := start; at < 30*time.Minute; at += 2 * time.Second {
			ts = append(ts, at)
		}
		slices.Sort(ts)
		if got := run(New(Options{}), testID(1), observe(r, ts, noise(r))); got.confirmedAt > 0 {
			confirmed++
		}
	}
	if max := int(n) / 20; confirmed > max {
		t.Errorf("%d of %d NATs with a bot confirmed, want at most %d", confirmed, n, max)
	}
}

// TestSymmetryTellsJitterFromRegularHuman: at the same anti-burstiness,
// symmetric Gaussian jitter is confirmed and a right-skewed log-normal
// rhythm of the same CV at a human pace mostly is not, within 150
// requests. Without symmetry the two are one case (DETECTION §1.3).
func TestSymmetryTellsJitterFromRegularHuman(t *testing.T) {
	const n = 150
	bot := runSeeds(seeds(100, 30), func(r *rand.Rand) []time.Duration {
		return gaps(r, n, gaussian(2*time.Second, 0.5))
	})
	hum := runSeeds(seeds(100, 30), func(r *rand.Rand) []time.Duration {
		// log-normal σ = 0.5 has CV 0.53, like 50 % Gaussian jitter: the
		// H10 worker without the breaks that usually give it away.
		return gaps(r, n, lnGap(4*time.Second, 0.5))
	})
	var botHits, humHits int
	for i := range bot {
		if bot[i].confirmedAt > 0 {
			botHits++
		}
		if hum[i].confirmedAt > 0 {
			humHits++
		}
	}
	t.Logf("confirmed within %d requests: Gaussian jitter %d of %d, log-normal %d of %d", n, botHits, len(bot), humHits, len(hum))
	if botHits < len(bot)*9/10 {
		t.Errorf("Gaussian 50 %% jitter: %d of %d confirmed, want >= 90 %%", botHits, len(bot))
	}
	if humHits > len(hum)/20 {
		t.Errorf("log-normal σ 0.5 at 4 s: %d of %d confirmed, want <= 5 %%", humHits, len(hum))
	}
}

// TestSubSecondPaceNeedsOneClient: a regular sub-second rhythm counts as
// anti-bursty from A = 0 (antiCutPace) only while its requests do not
// overlap. The same gaps with every eighth request doubled within 1 ms (a
// browser's fan-out, or several clients on one address) keep the bar at
// antiCutMachine: the intervals are the same, so only the cut differs.
func TestSubSecondPaceNeedsOneClient(t *testing.T) {
	anti := func(ts []time.Duration, overlap bool) float64 {
		e := New(Options{})
		id := testID(1)
		for i, d := range ts {
			e.Observe(id, epoch.Add(d))
			if overlap && i%8 == 0 {
				e.Observe(id, epoch.Add(d+time.Millisecond))
			}
		}
		x, _ := e.Explain(id, epoch.Add(ts[len(ts)-1]))
		return x.Features[2].Probability
	}
	want := (antiCutPace - antiCutMachine) / antiWidth
	compared := 0
	for seed := uint64(1); seed <= 20; seed++ {
		// CV ≈ 0.6 (A ≈ −0.25): between the two cuts.
		ts := gaps(newRand(seed), 60, lnGap(200*time.Millisecond, 0.55))
		one, many := anti(ts, false), anti(ts, true)
		if many > one {
			t.Errorf("seed %d: anti-bursty %.3f with overlapping requests > %.3f without", seed, many, one)
		}
		if one > 0 && one < 1 && many > 0 {
			compared++
			if math.Abs(one-many-want) > 1e-9 {
				t.Errorf("seed %d: anti-bursty %.3f alone vs %.3f overlapping, want a difference of %.3f", seed, one, many, want)
			}
		}
	}
	if compared < 5 {
		t.Errorf("only %d of 20 streams fell between the cuts; the test proves nothing", compared)
	}
}
