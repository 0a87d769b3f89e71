package traffic

import (
	"math"
	"math/rand/v2"
	"time"
)

// maxDraw bounds every drawn duration. Heavy-tailed draws (Pareto away
// periods) could otherwise overflow time.Duration when added to an offset.
const maxDraw = 30 * 24 * time.Hour

// seconds converts a non-negative number of seconds to a Duration, clamped to
// [0, maxDraw].
func seconds(s float64) time.Duration {
	switch {
	case !(s > 0): // also catches NaN
		return 0
	case s >= maxDraw.Seconds():
		return maxDraw
	}
	return time.Duration(s * float64(time.Second))
}

// logNormal is a log-normal distribution given by its median (seconds) and
// the standard deviation of its logarithm: LN(Median, Sigma) in DETECTION.md.
type logNormal struct {
	Median float64 // seconds
	Sigma  float64 // log-sd
}

func (d logNormal) draw(r *rand.Rand) float64 {
	return d.Median * math.Exp(d.Sigma*r.NormFloat64())
}

// pareto is a Pareto distribution with scale Xm (seconds, the minimum) and
// shape Alpha. Its mean is finite only for Alpha > 1.
type pareto struct {
	Xm    float64 // seconds
	Alpha float64
}

func (d pareto) draw(r *rand.Rand) float64 {
	u := 1 - r.Float64() // in (0, 1]
	return d.Xm * math.Pow(u, -1/d.Alpha)
}

// exponential draws an exponential variate with the given mean.
func exponential(r *rand.Rand, mean float64) float64 {
	return r.ExpFloat64() * mean
}

// uniform draws from U[lo, hi).
func uniform(r *rand.Rand, lo, hi float64) float64 {
	return lo + (hi-lo)*r.Float64()
}

// truncGauss draws from N(mean, sd²) conditioned on the value being > lo, by
// rejection. It gives up after 64 rejections and returns mean, which only
// happens when lo sits far into the upper tail.
func truncGauss(r *rand.Rand, mean, sd, lo float64) float64 {
	for range 64 {
		if x := mean + sd*r.NormFloat64(); x > lo {
			return x
		}
	}
	return mean
}

// geometric draws the number of trials up to and including the first success
// of a Bernoulli process with mean 1/p trials, capped at limit (values above
// the cap become the cap). A mean ≤ 1 always gives 1.
func geometric(r *rand.Rand, mean float64, limit int) int {
	if mean <= 1 || limit <= 1 {
		return 1
	}
	p := 1 / mean
	u := 1 - r.Float64() // in (0, 1]
	k := 1 + math.Floor(math.Log(u)/math.Log1p(-p))
	if k >= float64(limit) {
		return limit
	}
	return int(k)
}
