package main

import (
	"context"
	"testing"
)

// TestCalibrationHoldsNextWeek is the calibration experiment at test size:
// thresholds calibrated on one simulated week keep the false-positive
// budget on the next week, replayed through the real decision stack with
// the suggested settings. It fails when the test week's rate is more than
// twice the budget, or when the suggestion catches clearly fewer bots than
// the defaults.
func TestCalibrationHoldsNextWeek(t *testing.T) {
	p := calibrationPlan{budget: 0.01, humanStreams: 40, botStreams: 10, seeds: [2]uint64{2_000_000, 3_000_000}}
	if raceEnabled {
		p.humanStreams, p.botStreams = 20, 3
		p.budget = 0.02
	}
	res, err := runCalibration(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	s := res.suggestion
	if s.RiskThreshold == 0 {
		t.Fatalf("no suggestion from %d identity-hours (need %d)", s.Windows, s.NeededWindows)
	}
	rate := float64(res.test.quarantined) / float64(res.test.humans.Windows)
	model := modelRate(&res.test.humans, s.RiskThreshold, s.Confirm)
	t.Logf("suggested --risk-threshold %d --challenge-threshold %d --confirm %d on %d identity-hours; "+
		"next week: %d of %d human identity-hours quarantined by replay (%.4f; model %.4f), %d of %d bots caught",
		s.RiskThreshold, s.ChallengeThreshold, s.Confirm, s.Windows, res.test.quarantined, res.test.humans.Windows,
		rate, model, res.test.caught, len(res.test.bots))
	if rate > 2*p.budget || model > 2*p.budget {
		t.Errorf("next week's false-positive rate %.4f (model %.4f) is over twice the budget %g", rate, model, p.budget)
	}
	def := calibrateDefaults(&res.test)
	if res.test.caught < def.Detected*95/100 {
		t.Errorf("the suggestion caught %d bots in the test week, the defaults %d", res.test.caught, def.Detected)
	}
}
