package calibrate

import (
	"math"
	"slices"
)

// Defaults of the zero Options.
const (
	DefaultChallengeFPR   = 0.01
	DefaultFloor          = 60
	DefaultChallengeFloor = 30
	DefaultMinConfirm     = 2
	DefaultMaxConfirm     = MaxConfirm
)

// z95 is the one-sided 95 % standard normal quantile.
const z95 = 1.6448536269514722

// Options says what calibration must hold.
type Options struct {
	// FPR is the false-positive budget: the share of innocent identity-hours
	// that may see a quarantine (0.001 = one in a thousand). Required.
	FPR float64
	// ChallengeFPR is the share of innocent identity-hours that may reach
	// the challenge band; 0 means DefaultChallengeFPR (1 %).
	ChallengeFPR float64
	// Floor is the lowest risk threshold suggested, whatever the data say;
	// 0 means DefaultFloor (60). ChallengeFloor is the same for the
	// challenge threshold; 0 means DefaultChallengeFloor (30).
	Floor, ChallengeFloor int
	// MinConfirm and MaxConfirm bound the confirms considered; 0 means
	// DefaultMinConfirm (2) and DefaultMaxConfirm (8).
	MinConfirm, MaxConfirm int
}

func (o Options) withDefaults() Options {
	if o.ChallengeFPR <= 0 {
		o.ChallengeFPR = DefaultChallengeFPR
	}
	if o.Floor <= 0 {
		o.Floor = DefaultFloor
	}
	if o.ChallengeFloor <= 0 {
		o.ChallengeFloor = DefaultChallengeFloor
	}
	if o.MinConfirm <= 0 {
		o.MinConfirm = DefaultMinConfirm
	}
	if o.MaxConfirm <= 0 || o.MaxConfirm > MaxConfirm {
		o.MaxConfirm = DefaultMaxConfirm
	}
	o.MinConfirm = min(o.MinConfirm, o.MaxConfirm)
	o.Floor = min(max(o.Floor, 2), MaxScore)
	return o
}

// Row is calibration's answer for one confirm.
type Row struct {
	// Confirm is the run length (--confirm).
	Confirm int `json:"confirm"`
	// Threshold is the lowest risk threshold, at or above the floor, whose
	// false-positive rate is within the budget with 95 % confidence; 0
	// when none is.
	Threshold int `json:"threshold"`
	// FalsePositives is how many innocent identity-hours would have seen a
	// quarantine at Threshold; FPR is that over the identity-hours at risk
	// (Suggestion.Windows), and
	// FPRUpper its one-sided 95 % upper bound (Poisson), which is what
	// must be within the budget.
	FalsePositives uint64  `json:"false_positives"`
	FPR            float64 `json:"fpr"`
	FPRUpper       float64 `json:"fpr_upper"`
	// Bots is how many bots the delays are measured on; Detected how many
	// of them would have been quarantined at Threshold with Confirm.
	Bots     int     `json:"bots"`
	Detected int     `json:"detected"`
	TPR      float64 `json:"tpr"`
	// MedianRequests and MedianSeconds are the median detection delay over
	// the detected bots, in the bot's requests and seconds since its first
	// request; P90Seconds the 90th percentile.
	MedianRequests float64 `json:"median_requests"`
	MedianSeconds  float64 `json:"median_seconds"`
	P90Seconds     float64 `json:"p90_seconds"`
}

// Suggestion is calibration's result.
type Suggestion struct {
	// RiskThreshold, ChallengeThreshold and Confirm are the suggested
	// settings: the row that detects the most bots, then the fastest,
	// then the longest confirm; 0 when no row meets the budget.
	RiskThreshold      int `json:"risk_threshold"`
	ChallengeThreshold int `json:"challenge_threshold"`
	Confirm            int `json:"confirm"`
	// FPR and ChallengeFPR are the budgets, Floor the lowest threshold
	// considered.
	FPR          float64 `json:"fpr_budget"`
	ChallengeFPR float64 `json:"challenge_fpr_budget"`
	Floor        int     `json:"floor"`
	// Windows is the number of identity-hours the budget was judged on:
	// those that could have seen a quarantine at the shortest confirm
	// considered (Histogram.AtRisk); NeededWindows the fewest with which
	// any threshold can meet it (with no false positive at all, the 95 %
	// bound is about 3/Windows).
	Windows       uint64 `json:"identity_hours"`
	NeededWindows uint64 `json:"identity_hours_needed"`
	// Rows has one Row per confirm considered.
	Rows []Row `json:"rows"`
}

// upper95 returns the one-sided 95 % upper confidence bound of a Poisson
// mean given k events (Wilson–Hilferty; within 1 % of the exact bound).
func upper95(k uint64) float64 {
	n := float64(k) + 1
	x := 1 - 1/(9*n) + z95/(3*math.Sqrt(n))
	return n * x * x * x
}

// Suggest returns the settings that keep h's false-positive rate within
// o.FPR, with the detection delay of each on bots.
func Suggest(h *Histogram, bots []*Bot, o Options) Suggestion {
	o = o.withDefaults()
	// The budget is judged on the identity-hours that could have seen a
	// quarantine at some confirm considered: a run of at least MinConfirm
	// evaluations ended in them. An hour with fewer never risked one at
	// any candidate, so it says nothing of innocence; counted, it would
	// let a flood of one-request identities lower the threshold.
	exposed := h.Exposed(o.MinConfirm)
	s := Suggestion{FPR: o.FPR, ChallengeFPR: o.ChallengeFPR, Floor: o.Floor, Windows: exposed}
	if o.FPR > 0 {
		s.NeededWindows = uint64(math.Ceil(upper95(0) / o.FPR))
	}
	within := func(k uint64, budget float64) bool {
		return exposed > 0 && upper95(k)/float64(exposed) <= budget
	}
	best := -1
	for c := o.MinConfirm; c <= o.MaxConfirm; c++ {
		r := Row{Confirm: c, Bots: len(bots)}
		for t := o.Floor; t <= MaxScore; t++ {
			if k := h.Over(t, c); within(k, o.FPR) {
				r.Threshold, r.FalsePositives = t, k
				r.FPR = float64(k) / float64(exposed)
				r.FPRUpper = upper95(k) / float64(exposed)
				break
			}
		}
		if r.Threshold > 0 {
			d := Detection(bots, r.Threshold, c)
			r.Detected, r.TPR, r.MedianRequests, r.MedianSeconds, r.P90Seconds = d.Detected, d.TPR, d.MedianRequests, d.MedianSeconds, d.P90Seconds
			if best < 0 || better(r, s.Rows[best]) {
				best = len(s.Rows)
			}
		}
		s.Rows = append(s.Rows, r)
	}
	if best < 0 {
		return s
	}
	r := s.Rows[best]
	s.RiskThreshold, s.Confirm = r.Threshold, r.Confirm
	// The challenge band starts at the lowest score that few enough
	// identity-hours reach even once, and ends below the risk threshold.
	s.ChallengeThreshold = r.Threshold - 1
	for t := min(o.ChallengeFloor, r.Threshold-1); t < r.Threshold; t++ {
		if within(h.Over(t, 1), o.ChallengeFPR) {
			s.ChallengeThreshold = t
			break
		}
	}
	return s
}

// better reports whether row a beats b: more bots detected, then a shorter
// median delay, then (equal otherwise) the longer confirm.
func better(a, b Row) bool {
	if a.Detected != b.Detected {
		return a.Detected > b.Detected
	}
	if a.MedianSeconds != b.MedianSeconds {
		return a.MedianSeconds < b.MedianSeconds
	}
	return a.Confirm > b.Confirm
}

// Detection returns how bots fare at threshold t with confirm c: a Row
// with the detection figures (and no false-positive figures).
func Detection(bots []*Bot, t, c int) Row {
	r := Row{Confirm: c, Threshold: t, Bots: len(bots)}
	var reqs, secs []float64
	for _, b := range bots {
		if n, after, ok := b.Detected(t, c); ok {
			reqs = append(reqs, float64(n))
			secs = append(secs, after.Seconds())
		}
	}
	r.Detected = len(reqs)
	if len(bots) > 0 {
		r.TPR = float64(r.Detected) / float64(len(bots))
	}
	r.MedianRequests = quantile(reqs, 0.5)
	r.MedianSeconds = quantile(secs, 0.5)
	r.P90Seconds = quantile(secs, 0.9)
	return r
}

// quantile returns the q-quantile of xs (nearest rank; 0 for none). It
// sorts xs.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}
