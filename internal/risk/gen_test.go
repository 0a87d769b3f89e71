package risk

import (
	"cmp"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// Small traffic generators for the tests, after DETECTION.md §6.2. They
// return request times as offsets from the start of a stream. The full
// scenario generator lives in internal/traffic; these stay here so the
// engine's tests do not depend on it.

// epoch is the wall-clock start of every test stream.
var epoch = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// newRand returns a deterministic generator for seed.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0xf10f10c)) }

// logNormal draws from a log-normal with the given median and log-sd.
func logNormal(r *rand.Rand, median time.Duration, sigma float64) time.Duration {
	return time.Duration(float64(median) * math.Exp(sigma*r.NormFloat64()))
}

// pareto draws from a Pareto(xm, alpha).
func pareto(r *rand.Rand, xm time.Duration, alpha float64) time.Duration {
	u := 1 - r.Float64() // (0, 1]
	return time.Duration(float64(xm) / math.Pow(u, 1/alpha))
}

// geometric draws k ≥ 1 with the given mean, capped.
func geometric(r *rand.Rand, mean float64, cap int) int {
	k := 1
	for k < cap && r.Float64() > 1/mean {
		k++
	}
	return k
}

// human is a single person behind an SPA: an action fires a burst of calls
// (client fan-out), then the person thinks, and now and then goes away.
type human struct {
	think      time.Duration // median think time
	thinkSigma float64
	burstMean  float64 // calls per action (geometric)
	burstCap   int
	intra      time.Duration // median gap between a burst's calls
	intraSigma float64
	away       float64       // probability of an away period after an action
	awayMin    time.Duration // shortest away period, Pareto(awayMin, 1.5); 0: a minute
}

var (
	// h1 is DETECTION §6.2 H1, a single human on an SPA.
	h1 = human{think: 8 * time.Second, thinkSigma: 1.2, burstMean: 3.3, burstCap: 15,
		intra: 150 * time.Millisecond, intraSigma: 0.8, away: 0.05}
	// h2 is H2, a fast power user.
	h2 = human{think: 2 * time.Second, thinkSigma: 1.0, burstMean: 3.3, burstCap: 15,
		intra: 150 * time.Millisecond, intraSigma: 0.8, away: 0.05}
	// h4 is H4, a calm API human with no fan-out.
	h4 = human{think: 8 * time.Second, thinkSigma: 1.2, burstMean: 1, burstCap: 1, away: 0.05}
	// h5 is H5, a heavy SPA.
	h5 = human{think: 6 * time.Second, thinkSigma: 1.2, burstMean: 10, burstCap: 30,
		intra: 60 * time.Millisecond, intraSigma: 0.8, away: 0.05}
	// h10 is H10, a repetitive worker with one call per action.
	h10 = human{think: 4 * time.Second, thinkSigma: 0.5, burstMean: 1, burstCap: 1, away: 0.05}
)

// times returns the person's request times in [start, horizon).
func (h human) times(r *rand.Rand, start, horizon time.Duration) []time.Duration {
	var ts []time.Duration
	t := start
	for t < horizon {
		k := geometric(r, h.burstMean, h.burstCap)
		for i := range k {
			if i > 0 {
				t += logNormal(r, h.intra, h.intraSigma)
			}
			if t >= horizon {
				return ts
			}
			ts = append(ts, t)
		}
		t += logNormal(r, h.think, h.thinkSigma)
		if r.Float64() < h.away {
			t += pareto(r, cmp.Or(h.awayMin, time.Minute), 1.5)
		}
	}
	return ts
}

// nat merges k people of model h, starting at random times within the
// first minute, into one stream.
func nat(r *rand.Rand, h human, k int, horizon time.Duration) []time.Duration {
	var ts []time.Duration
	for range k {
		start := time.Duration(r.Int64N(int64(time.Minute)))
		ts = append(ts, h.times(r, start, horizon)...)
	}
	slices.Sort(ts)
	return ts
}

// gaps returns n request times whose gaps are drawn from gap.
func gaps(r *rand.Rand, n int, gap func(*rand.Rand) time.Duration) []time.Duration {
	ts := make([]time.Duration, n)
	for i := 1; i < n; i++ {
		ts[i] = ts[i-1] + gap(r)
	}
	return ts
}

func fixed(p time.Duration) func(*rand.Rand) time.Duration {
	return func(*rand.Rand) time.Duration { return p }
}

// uniform draws from U[lo, hi].
func uniform(lo, hi time.Duration) func(*rand.Rand) time.Duration {
	return func(r *rand.Rand) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo)+1)) }
}

// gaussian draws from N(p, (j·p)²) truncated to positive values.
func gaussian(p time.Duration, j float64) func(*rand.Rand) time.Duration {
	return func(r *rand.Rand) time.Duration {
		for {
			if d := time.Duration(float64(p) * (1 + j*r.NormFloat64())); d > 0 {
				return d
			}
		}
	}
}

func lnGap(median time.Duration, sigma float64) func(*rand.Rand) time.Duration {
	return func(r *rand.Rand) time.Duration { return logNormal(r, median, sigma) }
}

// burstMimic is DETECTION B10: three calls per burst (gaps LN(150 ms,
// 0.8)), burst starts every p ± j (uniform).
func burstMimic(r *rand.Rand, p time.Duration, j float64, horizon time.Duration) []time.Duration {
	var ts []time.Duration
	for start := time.Duration(0); start < horizon; {
		t := start
		for i := range 3 {
			if i > 0 {
				t += logNormal(r, 150*time.Millisecond, 0.8)
			}
			ts = append(ts, t)
		}
		start += time.Duration(float64(p) * (1 + j*(2*r.Float64()-1)))
	}
	slices.Sort(ts)
	return ts
}

// observe models how the engine sees a stream (DETECTION §6.1): Gaussian
// noise with the given sd on every timestamp, then 1 ms quantisation. The
// noise can put close requests out of order; they are not re-sorted, as
// the engine must cope.
func observe(r *rand.Rand, ts []time.Duration, sd time.Duration) []time.Time {
	out := make([]time.Time, len(ts))
	for i, t := range ts {
		t += time.Duration(float64(sd) * r.NormFloat64())
		out[i] = epoch.Add(t.Round(time.Millisecond))
	}
	return out
}

// testID returns a distinct address identity for i.
func testID(i int) identity.ID {
	return identity.FromAddr(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 64)
}

// run feeds one stream to a fresh engine as identity 0 and reports the
// 1-based request at which the verdict was first confirmed (0 if never),
// the highest score, and whether the shared label was ever seen.
type runResult struct {
	confirmedAt int
	maxScore    uint8
	reason      Reason // reason at confirmation, or at the highest score
	shared      bool
	requests    int
}

func run(e *Engine, id identity.ID, ts []time.Time) runResult {
	var res runResult
	res.requests = len(ts)
	for i, t := range ts {
		v := e.Observe(id, t)
		if v.Shared {
			res.shared = true
		}
		if v.Score > res.maxScore {
			res.maxScore = v.Score
			if res.confirmedAt == 0 {
				res.reason = v.Reason
			}
		}
		if v.Confirmed && res.confirmedAt == 0 {
			res.confirmedAt = i + 1
			res.reason = v.Reason
		}
	}
	return res
}
