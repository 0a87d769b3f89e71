package main

import (
	"math"
	"slices"
)

// z95 is the standard normal quantile for two-sided 95 % intervals.
const z95 = 1.959963984540054

// wilson returns the Wilson score interval (95 %, two-sided) for k
// successes in n trials. n may be fractional (IP-hours); n ≤ 0 gives
// [0, 1].
func wilson(k, n float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	p := k / n
	z2 := z95 * z95
	den := 1 + z2/n
	center := (p + z2/(2*n)) / den
	half := z95 * math.Sqrt(p*(1-p)/n+z2/(4*n*n)) / den
	return max(0, center-half), min(1, center+half)
}

// percentile returns the q-quantile (0 < q ≤ 1) of the sorted values by
// the nearest-rank method, or 0 for an empty slice.
func percentile[T int | float64](sorted []T, q float64) T {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// topKey returns the most frequent key of counts, ties broken by name, or
// "" when counts is empty.
func topKey(counts map[string]int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	best, bestN := "", 0
	for _, k := range keys {
		if counts[k] > bestN {
			best, bestN = k, counts[k]
		}
	}
	return best
}
