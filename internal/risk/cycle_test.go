package risk

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// Multi-beat schedules (issue 14). The parameters here are the tuning set;
// internal/traffic's B13 scenarios use other beats, jitters and drifts,
// and flowlock-sim measures those on held-out seeds.

// cycleGaps returns a gap source that waits beats in turn, each times
// U[1−j, 1+j], starting at a random beat.
func cycleGaps(beats []time.Duration, j float64) func(*rand.Rand) time.Duration {
	i := -1
	return func(r *rand.Rand) time.Duration {
		if i < 0 {
			i = r.IntN(len(beats))
		}
		d := time.Duration(float64(beats[i]) * (1 + j*(2*r.Float64()-1)))
		i = (i + 1) % len(beats)
		return d
	}
}

// driftGaps returns a gap source with period p·e^(amp·sin(2π·t/span)),
// each gap times U[1−j, 1+j].
func driftGaps(p time.Duration, amp float64, span time.Duration, j float64) func(*rand.Rand) time.Duration {
	var t time.Duration
	return func(r *rand.Rand) time.Duration {
		scale := math.Exp(amp * math.Sin(2*math.Pi*float64(t)/float64(span)))
		d := time.Duration(float64(p) * scale * (1 + j*(2*r.Float64()-1)))
		t += d
		return d
	}
}

func TestMultiBeatBotsConfirmed(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name string
		gap  func() func(*rand.Rand) time.Duration
	}{
		{"2 beats 1s,2.5s ±10%", func() func(*rand.Rand) time.Duration { return cycleGaps(ms(1000, 2500), 0.10) }},
		{"2 beats 0.2s,0.7s ±10%", func() func(*rand.Rand) time.Duration { return cycleGaps(ms(200, 700), 0.10) }},
		{"3 beats 0.5s,1s,3s ±8%", func() func(*rand.Rand) time.Duration { return cycleGaps(ms(500, 1000, 3000), 0.08) }},
		// Nothing but the cycle catches this one within 100 requests:
		// its octave entropy is near 2 bits and A_n about −0.1.
		{"4 beats 2s,2s,5s,1s ±10%", func() func(*rand.Rand) time.Duration { return cycleGaps(ms(2000, 2000, 5000, 1000), 0.10) }},
		{"4 beats 10s,50s,20s,35s ±10%", func() func(*rand.Rand) time.Duration {
			return cycleGaps(ms(10000, 50000, 20000, 35000), 0.10)
		}},
		{"drift 2s·e^(0.7 sin) over 10 min ±5%", func() func(*rand.Rand) time.Duration {
			return driftGaps(2*time.Second, 0.7, 10*time.Minute, 0.05)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := runSeeds(seeds(100, 25), func(r *rand.Rand) []time.Duration {
				return gaps(r, 100, tc.gap())
			})
			within, median, missed := rtdStats(res, 40)
			if within < 0.99 || median > 30 || missed > 0 {
				t.Errorf("%.1f%% confirmed within 40 requests, median %d, %d missed; want >= 99%%, median <= 30",
					100*within, median, missed)
			}
		})
	}
}

// TestCycleNeedsTheCycle: the four-beat schedule is caught by
// periodic_cycle and by nothing else in its first 60 requests, so the test
// fails if the component is removed; i.i.d. gaps as narrow as a log-normal
// with σ = 0.25 never get a cycle term (D/S stays near √2).
func TestCycleNeedsTheCycle(t *testing.T) {
	r := newRand(3)
	ts := observe(r, gaps(r, 60, cycleGaps([]time.Duration{2 * time.Second, 2 * time.Second, 5 * time.Second, time.Second}, 0.1)), 2*time.Millisecond)
	e := New(Options{})
	got := run(e, testID(1), ts)
	if got.confirmedAt == 0 || got.reason != ReasonPeriodicCycle {
		t.Fatalf("four-beat cycle: confirmed at %d, reason %v; want confirmed as periodic_cycle", got.confirmedAt, got.reason)
	}
	x, _ := e.Explain(testID(1), ts[len(ts)-1])
	cyc := x.Features[len(x.Features)-1]
	if cyc.Name != "periodic_cycle" || cyc.Probability < 0.9 || cyc.Value > 0.5 || cyc.Threshold == "" {
		t.Errorf("explain: %+v, want periodic_cycle with D/S <= 0.5 and probability >= 0.9", cyc)
	}
	for seed := range uint64(50) {
		r := newRand(seed)
		ts := observe(r, gaps(r, 400, lnGap(2*time.Second, 0.25)), 2*time.Millisecond)
		e := New(Options{})
		for _, at := range ts {
			e.Observe(testID(1), at)
			x, _ := e.Explain(testID(1), at)
			if c := x.Features[len(x.Features)-1]; c.Gate*c.Probability > 0.05 {
				t.Fatalf("seed %d: i.i.d. LN(2s, 0.25) gaps got a cycle term %.2f (D/S %.2f)", seed, c.Gate*c.Probability, c.Value)
			}
		}
	}
}

func TestLog2ms(t *testing.T) {
	for _, x := range []uint32{1, 2, 3, 7, 100, 255, 256, 257, 1000, 1023, 4095, 65535, 1 << 20, math.MaxUint32} {
		if got, want := float64(log2ms(x))/logOne, math.Log2(float64(x)); math.Abs(got-want) > 0.01 {
			t.Errorf("log2ms(%d) = %.4f, want %.4f", x, got, want)
		}
	}
	if log2ms(0) != 0 {
		t.Errorf("log2ms(0) = %v, want 0", log2ms(0))
	}
}
