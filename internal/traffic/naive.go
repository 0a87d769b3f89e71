package traffic

import "time"

// Naive baseline constants (DETECTION.md §6.4).
const (
	naiveWindow  = 20 // timestamps kept
	naiveTrigger = 70 // score that counts towards quarantine
	naiveConfirm = 3  // consecutive requests at or above naiveTrigger
	naiveMin     = 3  // timestamps (2 intervals) before the first score
)

// Naive is the product brief's scoring formula, kept only as the baseline
// that DETECTION.md §6.4 measures every claim against. Do not ship it: its
// 1/variance term has the wrong units (a 60 s beacon has a large absolute
// variance and scores low, a human page-load burst a tiny one and scores
// high), and its RPM term cannot tell fifty humans behind a NAT from one
// scraper.
//
// It keeps the last 20 request timestamps of one client. With N of them,
// RPM = 60·(N−1)/(t_last − t_first) and var is the population variance of
// the N−1 intervals in s²; the score is 50·min(1, RPM/60) + 50·min(1,
// 0.25/var). The client is quarantined once the score is ≥ 70 on 3
// consecutive requests, and stays quarantined (the baseline has no expiry).
// The score is 0 until the window holds 3 timestamps (2 intervals); from
// then on it is computed over however many the window holds. That warm-up is
// the one DETECTION.md §8's prototype used: with it this type reproduces the
// baseline column of §8 (H1 ≈ 37 %, H4 ≈ 0.3 %, B8 ≈ 42 %), while waiting for
// a full window would not (H1 ≈ 11 %).
//
// The zero value is ready to use. A Naive is not safe for concurrent use.
type Naive struct {
	ts          [naiveWindow]time.Time // ring of the last timestamps
	n           int                    // timestamps seen, saturating at naiveWindow
	head        int                    // index of the oldest timestamp when full
	streak      int                    // consecutive scores ≥ naiveTrigger
	quarantined bool
}

// Observe records a request at now (timestamps must not decrease) and
// returns the score after it and whether the client is quarantined.
func (nv *Naive) Observe(now time.Time) (score float64, quarantined bool) {
	if nv.n < naiveWindow {
		nv.ts[nv.n] = now
		nv.n++
	} else {
		nv.ts[nv.head] = now
		nv.head = (nv.head + 1) % naiveWindow
	}
	score = nv.score()
	if score >= naiveTrigger {
		nv.streak++
	} else {
		nv.streak = 0
	}
	if nv.streak >= naiveConfirm {
		nv.quarantined = true
	}
	return score, nv.quarantined
}

// Quarantined reports whether the client has been quarantined.
func (nv *Naive) Quarantined() bool { return nv.quarantined }

// score computes the brief's formula over the window.
func (nv *Naive) score() float64 {
	if nv.n < naiveMin {
		return 0
	}
	at := func(i int) time.Time { return nv.ts[(nv.head+i)%naiveWindow] }
	if nv.n < naiveWindow {
		at = func(i int) time.Time { return nv.ts[i] }
	}
	m := nv.n - 1 // intervals
	span := at(m).Sub(at(0)).Seconds()
	var sum float64
	for i := 1; i <= m; i++ {
		sum += at(i).Sub(at(i - 1)).Seconds()
	}
	mean := sum / float64(m)
	var ss float64
	for i := 1; i <= m; i++ {
		d := at(i).Sub(at(i-1)).Seconds() - mean
		ss += d * d
	}
	variance := ss / float64(m)

	rpmPart := 1.0 // a zero span is an infinite rate
	if span > 0 {
		rpmPart = min(1, 60*float64(m)/span/60)
	}
	varPart := 1.0
	if variance > 0 {
		varPart = min(1, 0.25/variance)
	}
	return 50*rpmPart + 50*varPart
}
