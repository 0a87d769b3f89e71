package calibrate

import (
	"math"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/risk"
)

const sec = int64(time.Second)

// hour0 is a clock-hour boundary, so that tests place requests in hours.
var hour0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC).UnixNano()

// feed observes scores one second apart from hour0+at and returns the
// histogram after closing the hour.
func feed(t *testing.T, at int64, scores []uint8, shared func(i int) bool) *Histogram {
	t.Helper()
	var h Histogram
	var tr Track
	tr.Observe(hour0+at, 0, false, false, &h) // the first request is no evaluation
	for i, s := range scores {
		tr.Observe(hour0+at+int64(i+1)*sec, s, shared != nil && shared(i), false, &h)
	}
	tr.Close(&h)
	return &h
}

// TestPeakIsTheBestRunMinimum: the peak for confirm c is the highest
// score c consecutive evaluations all reached, which is what decides a
// quarantine at any threshold.
func TestPeakIsTheBestRunMinimum(t *testing.T) {
	h := feed(t, 0, []uint8{90, 70, 85, 88, 40, 95}, nil)
	want := map[int]int{1: 95, 2: 85, 3: 70, 4: 70, 5: 40, 6: 40, 7: 0}
	for c, v := range want {
		if got := peak(h, c); got != v {
			t.Errorf("confirm %d: peak %d, want %d", c, got, v)
		}
	}
	if h.Windows != 1 {
		t.Errorf("windows %d, want 1", h.Windows)
	}
	if h.Over(85, 2) != 1 || h.Over(86, 2) != 0 {
		t.Errorf("Over(85, 2) = %d, Over(86, 2) = %d; want 1 and 0", h.Over(85, 2), h.Over(86, 2))
	}
}

// peak returns the one window's peak for confirm c.
func peak(h *Histogram, c int) int {
	for v := MaxScore; v >= 0; v-- {
		if h.Peaks[c-1][v] > 0 {
			return v
		}
	}
	return -1
}

// TestBatchedRequestsAreNoEvaluations: requests closer than risk.BatchGap
// repeat the latest verdict; counting them would make runs the engine
// never sees.
func TestBatchedRequestsAreNoEvaluations(t *testing.T) {
	var h Histogram
	var tr Track
	tr.Observe(hour0, 0, false, false, &h)
	tr.Observe(hour0+sec, 90, false, false, &h)
	for i := int64(1); i <= 3; i++ { // a batch: same verdict, no evaluation
		if _, n := tr.Observe(hour0+sec+i*int64(risk.BatchGap)/4, 90, false, false, &h); n != 0 {
			t.Fatalf("batched request %d counted as an evaluation", i)
		}
	}
	tr.Close(&h)
	if got := peak(&h, 2); got != 0 {
		t.Errorf("peak for confirm 2 = %d after one evaluation and a batch; want 0", got)
	}
}

// TestSharedEvaluationsConfirmNothing: the engine never confirms while the
// identity is labelled shared.
func TestSharedEvaluationsConfirmNothing(t *testing.T) {
	h := feed(t, 0, []uint8{90, 90, 90, 90}, func(i int) bool { return i < 3 })
	if got := peak(h, 3); got != 90 {
		t.Errorf("confirm 3 peak = %d; want 90 (the run ends unshared)", got)
	}
	h = feed(t, 0, []uint8{90, 90, 90, 90}, func(int) bool { return true })
	if got := peak(h, 1); got != 0 {
		t.Errorf("shared throughout: confirm 1 peak = %d; want 0", got)
	}
}

// TestWindowsAreClockHours: an identity active in two clock hours counts
// two identity-hours, each with its own peak; runs carry over.
func TestWindowsAreClockHours(t *testing.T) {
	var h Histogram
	var tr Track
	tr.Observe(hour0+3590*sec, 0, false, false, &h)
	tr.Observe(hour0+3595*sec, 90, false, false, &h)
	tr.Observe(hour0+3605*sec, 90, false, false, &h) // next hour
	tr.Close(&h)
	if h.Windows != 2 {
		t.Fatalf("windows %d, want 2", h.Windows)
	}
	if h.Over(90, 2) != 1 || h.Over(90, 1) != 2 {
		t.Errorf("Over(90, 2) = %d, Over(90, 1) = %d; want 1 (the run ends in hour 2) and 2", h.Over(90, 2), h.Over(90, 1))
	}
}

func TestUpper95(t *testing.T) {
	// Exact one-sided 95 % Poisson upper bounds (chi-square/2).
	for k, want := range map[uint64]float64{0: 2.996, 1: 4.744, 5: 10.51, 20: 29.06} {
		if got := upper95(k); math.Abs(got-want)/want > 0.01 {
			t.Errorf("upper95(%d) = %.3f, want %.3f", k, got, want)
		}
	}
}

// TestSuggestKeepsTheBudget: the suggested threshold is the lowest at or
// above the floor whose 95 % bound is within the budget, and the delays
// are read from the bots at that threshold.
func TestSuggestKeepsTheBudget(t *testing.T) {
	var h Histogram
	h.Windows = 10_000
	// 30 identity-hours peak at 70 (runs of 3), 2 at 75, none higher.
	for c := 1; c <= MaxConfirm; c++ {
		h.AtRisk[c-1] = 10_000
		h.Peaks[c-1][0] = 10_000 - 32
		h.Peaks[c-1][70] = 30
		h.Peaks[c-1][75] = 2
	}
	// One bot at 95 from its 10th request (10 s), one never above 50.
	var h2 Histogram
	fast, slow := new(Bot), new(Bot)
	for i := int64(0); i < 40; i++ {
		s := uint8(20)
		if i >= 9 {
			s = 95
		}
		fast.Observe(hour0+i*sec, s, false, false, &h2)
		slow.Observe(hour0+i*sec, 50, false, false, &h2)
	}
	s := Suggest(&h, []*Bot{fast, slow}, Options{FPR: 0.001, MinConfirm: 1, MaxConfirm: 3})
	// 32/10000 is over 0.001; 2 → bound 6.3/10000 is within.
	if s.RiskThreshold != 71 || s.Confirm != 1 {
		t.Fatalf("suggested threshold %d confirm %d; want 71 and 1 (fastest)", s.RiskThreshold, s.Confirm)
	}
	r := s.Rows[0]
	if r.Detected != 1 || r.MedianRequests != 10 || r.MedianSeconds != 9 {
		t.Errorf("row %+v: want 1 detected at request 10, 9 s after the first", r)
	}
	if s.Rows[2].MedianRequests != 12 {
		t.Errorf("confirm 3 detected at request %v; want 12", s.Rows[2].MedianRequests)
	}
	if s.ChallengeThreshold != DefaultChallengeFloor {
		t.Errorf("challenge %d, want the floor %d (32/10000 is within 1 %%)", s.ChallengeThreshold, DefaultChallengeFloor)
	}
	if s := Suggest(&h, nil, Options{FPR: 0.001, ChallengeFPR: 0.001}); s.ChallengeThreshold != 70 {
		t.Errorf("challenge %d at a 0.1 %% budget, want 70 (just below the risk threshold)", s.ChallengeThreshold)
	}

	// Too little data for the budget: nothing is suggested.
	h.Windows = 1000
	for c := range h.AtRisk {
		h.AtRisk[c] = 1000
	}
	if s := Suggest(&h, nil, Options{FPR: 0.001}); s.RiskThreshold != 0 || s.NeededWindows != 2969 {
		t.Errorf("with 1000 identity-hours: suggested %d, needed %d; want 0 and 2969", s.RiskThreshold, s.NeededWindows)
	}
	// The floor holds however clean the data.
	var clean Histogram
	clean.Windows = 1_000_000
	for c := range clean.AtRisk {
		clean.AtRisk[c] = 1_000_000
	}
	if s := Suggest(&clean, nil, Options{FPR: 0.001, Floor: 65}); s.RiskThreshold != 65 {
		t.Errorf("clean data: suggested %d, want the floor 65", s.RiskThreshold)
	}
}
