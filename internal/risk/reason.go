package risk

import (
	"fmt"
)

// Reason names the scoring component that contributed most to a score.
// Its values are a small closed set, safe to use as a metric label.
type Reason uint8

// The reasons, in the order Reasons returns them.
const (
	// ReasonNone means the score is below the challenge band, or nothing fired.
	ReasonNone Reason = iota
	// ReasonPeriodic means the intervals are nearly equal (low MAD/median).
	ReasonPeriodic
	// ReasonLowEntropy means the intervals occupy only one or two octaves.
	ReasonLowEntropy
	// ReasonAntiBursty means the stream is more regular than Poisson over at
	// least 64 intervals, on both the short and the long horizon.
	ReasonAntiBursty
	// ReasonPeriodicBursts means bursts start on a timer.
	ReasonPeriodicBursts
	// ReasonNoPause means minutes of requests without a 3 s pause.
	ReasonNoPause
	// ReasonContinuity means the client was active in nearly every 5-minute bucket for 2 hours
	// without human burstiness.
	ReasonContinuity
	// ReasonFleet means the client is one of a fleet: many identities that
	// share one schedule or script (internal/fleet). No score component
	// gives it; the fleet detector quarantines with it.
	ReasonFleet
	// ReasonPeriodicCycle means the intervals repeat a short cycle of 2-4
	// beats, or follow one period that drifts slowly.
	ReasonPeriodicCycle

	numReasons
)

var reasonNames = [numReasons]string{
	ReasonNone:           "none",
	ReasonPeriodic:       "periodic",
	ReasonLowEntropy:     "low_entropy",
	ReasonAntiBursty:     "anti_bursty",
	ReasonPeriodicBursts: "periodic_bursts",
	ReasonNoPause:        "no_pause",
	ReasonContinuity:     "continuity",
	ReasonFleet:          "fleet",
	ReasonPeriodicCycle:  "periodic_cycle",
}

// String returns the reason's snake_case name, e.g. "periodic".
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Reasons returns every reason, ReasonNone first, so that metric label
// children can be resolved once at start-up.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}
