package main

import (
	"slices"

	"github.com/flowlock/flowlock/internal/traffic"
)

// scenarioStats summarises the streams of one scenario (DETECTION.md §6.3).
type scenarioStats struct {
	id string // the scenario's id, or a variant's (H6-all)
	sc traffic.Scenario

	streams  int
	requests int64
	ipHours  float64 // streams × horizon

	quarantined int // streams quarantined at any time
	challenged  int // streams whose score reached the challenge band
	naive       int // streams the naive baseline quarantined

	rtd []int     // requests to detection of the detected streams, sorted
	std []float64 // seconds to detection, sorted

	naiveRTD []int     // requests to the naive baseline's quarantine, sorted
	naiveSTD []float64 // seconds to it, sorted

	// reason is the most frequent quarantine reason, or, when no stream was
	// quarantined, the most frequent reason at the peak score of the
	// challenged streams (challengeReason set).
	reason          string
	challengeReason bool

	shared       int       // streams labelled shared at some point
	sharedWithin int       // … within sharedWithin of their first request
	sharedAt     []float64 // seconds to the first shared label of those labelled, sorted
	beforeShared int       // streams quarantined before they were first labelled shared

	sweep map[uint8]int // threshold → streams quarantined (--threshold-sweep)
}

// summarise aggregates the results of the scenario sc, shown as id.
// challenge is the challenge threshold.
func summarise(id string, sc traffic.Scenario, main []streamResult, sweep map[uint8][]streamResult, challenge uint8) scenarioStats {
	s := scenarioStats{id: id, sc: sc, streams: len(main)}
	s.ipHours = float64(len(main)) * sc.Horizon.Hours()
	reasons := map[string]int{}
	challenges := map[string]int{}
	for _, r := range main {
		s.requests += int64(r.requests)
		if r.detected {
			s.quarantined++
			s.rtd = append(s.rtd, r.rtd)
			s.std = append(s.std, r.std.Seconds())
			reasons[r.reason]++
			if !r.shared || r.std < r.sharedAt {
				s.beforeShared++
			}
		}
		if r.maxScore >= challenge {
			s.challenged++
			challenges[r.maxReason]++
		}
		if r.naive {
			s.naive++
			s.naiveRTD = append(s.naiveRTD, r.naiveRTD)
			s.naiveSTD = append(s.naiveSTD, r.naiveSTD.Seconds())
		}
		if r.shared {
			s.shared++
			s.sharedAt = append(s.sharedAt, r.sharedAt.Seconds())
			if r.sharedAt <= sharedWithin {
				s.sharedWithin++
			}
		}
	}
	slices.Sort(s.rtd)
	slices.Sort(s.std)
	slices.Sort(s.naiveRTD)
	slices.Sort(s.naiveSTD)
	slices.Sort(s.sharedAt)
	s.reason = topKey(reasons)
	if s.reason == "" {
		s.reason = topKey(challenges)
		s.challengeReason = s.reason != ""
	}
	if sweep != nil {
		s.sweep = make(map[uint8]int, len(sweep))
		for t, rs := range sweep {
			n := 0
			for _, r := range rs {
				if r.detected {
					n++
				}
			}
			s.sweep[t] = n
		}
	}
	return s
}

// rate returns k/streams.
func (s *scenarioStats) rate(k int) float64 {
	if s.streams == 0 {
		return 0
	}
	return float64(k) / float64(s.streams)
}

// quarantineRate is the share of streams quarantined (TPR for bots, FPR
// for humans) and its Wilson 95 % interval.
func (s *scenarioStats) quarantineRate() (p, lo, hi float64) {
	lo, hi = wilson(float64(s.quarantined), float64(s.streams))
	return s.rate(s.quarantined), lo, hi
}

// perIPHour is the number of quarantined streams per IP-hour observed.
func (s *scenarioStats) perIPHour() float64 {
	if s.ipHours == 0 {
		return 0
	}
	return float64(s.quarantined) / s.ipHours
}

// naiveRate is the share of streams the naive baseline quarantined and its
// Wilson 95 % interval.
func (s *scenarioStats) naiveRate() (p, lo, hi float64) {
	lo, hi = wilson(float64(s.naive), float64(s.streams))
	return s.rate(s.naive), lo, hi
}

// naivePerIPHour is the number of streams the naive baseline quarantined
// per IP-hour observed.
func (s *scenarioStats) naivePerIPHour() float64 {
	if s.ipHours == 0 {
		return 0
	}
	return float64(s.naive) / s.ipHours
}

// within returns the share of streams quarantined within n requests.
func (s *scenarioStats) within(n int) float64 {
	k, _ := slices.BinarySearch(s.rtd, n+1) // rtd is sorted: count of values ≤ n
	return s.rate(k)
}

// medianRTD is the median requests-to-detection, 0 when none was detected.
func (s *scenarioStats) medianRTD() int { return percentile(s.rtd, 0.5) }
