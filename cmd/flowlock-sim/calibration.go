package main

import (
	"context"
	"net/netip"
	"time"

	"github.com/flowlock/flowlock/internal/calibrate"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/replay"
	"github.com/flowlock/flowlock/internal/traffic"
)

// The calibration experiment (docs/detection.md, "Thresholds from a week of
// traffic"): calibrate on one simulated week, then replay the next week,
// drawn from other seeds, with the suggested settings.
const (
	week = 7 * 24 * time.Hour
	// calibrationChunk is how many streams are replayed at once: the
	// streams are independent identities, so replaying them in chunks
	// gives the same result in bounded memory.
	calibrationChunk = 50
)

// calibrationPlan is one run of the experiment.
type calibrationPlan struct {
	// budget is the false-positive budget per identity-hour.
	budget float64
	// humanStreams and botStreams are the streams per scenario and week.
	humanStreams, botStreams int
	// seeds are the first seeds of the calibration and the test week.
	seeds [2]uint64
}

// docCalibration is the experiment of docs/detection.md: the product
// target of 0.1 % per identity-hour, on enough identity-hours to show it.
var docCalibration = calibrationPlan{budget: 0.001, humanStreams: 180, botStreams: 25, seeds: [2]uint64{2_000_000, 3_000_000}}

// weekResult is what one week's traffic shows.
type weekResult struct {
	humans      calibrate.Histogram // identity-hours of human streams
	humanIDs    int
	bots        []*calibrate.Bot
	quarantined int // human identities quarantined by the real replay (the test week)
	caught      int // bots quarantined by the real replay
	requests    int
}

// calibrationResult is the experiment's outcome.
type calibrationResult struct {
	plan       calibrationPlan
	humanIDs   []string // scenario ids
	botIDs     []string
	suggestion calibrate.Suggestion
	train      weekResult // the calibration week
	test       weekResult // the next week, replayed with the suggestion
}

// calibrationScenarios returns the week's human scenarios (single clients
// and small NATs: the big NATs and CGNAT are one identity of many people,
// a different exposure) and its bot scenarios, and the configuration that
// excludes the human scenarios' timer routes as an operator would.
func calibrationScenarios() (humans, bots []traffic.Scenario, cfg config.Config) {
	cfg = config.Default()
	for _, s := range traffic.Scenarios() {
		switch {
		case s.Label == traffic.Human && s.Clients <= 10:
			humans = append(humans, s)
			cfg.ExcludePaths = append(cfg.ExcludePaths, s.ExcludedPaths...)
		case s.Label == traffic.Bot:
			bots = append(bots, s)
		}
	}
	return humans, bots, cfg
}

// runCalibration runs the experiment.
func runCalibration(ctx context.Context, p calibrationPlan) (calibrationResult, error) {
	humans, bots, cfg := calibrationScenarios()
	res := calibrationResult{plan: p}
	for _, s := range humans {
		res.humanIDs = append(res.humanIDs, s.ID)
	}
	for _, s := range bots {
		res.botIDs = append(res.botIDs, s.ID)
	}
	start, _ := time.Parse(time.RFC3339, "2026-01-05T00:00:00Z") // a Monday
	var err error
	if res.train, err = runWeek(ctx, humans, bots, p, p.seeds[0], start, cfg, nil); err != nil {
		return res, err
	}
	res.suggestion = calibrate.Suggest(&res.train.humans, res.train.bots, calibrate.Options{FPR: p.budget})
	if res.suggestion.RiskThreshold == 0 {
		return res, nil
	}
	tuned := cfg
	tuned.RiskThreshold = res.suggestion.RiskThreshold
	tuned.ChallengeThreshold = res.suggestion.ChallengeThreshold
	tuned.Confirm = res.suggestion.Confirm
	res.test, err = runWeek(ctx, humans, bots, p, p.seeds[1], start.Add(week), cfg, &tuned)
	return res, err
}

// runWeek simulates one week: each scenario's streams start at random
// times in the week (less the scenario's horizon). It collects the week's
// calibration data and, with a tuned configuration, replays the week with
// it as the service would decide.
func runWeek(ctx context.Context, humans, bots []traffic.Scenario, p calibrationPlan, seed uint64, start time.Time, cfg config.Config, tuned *config.Config) (weekResult, error) {
	var w weekResult
	addr := netip.AddrFrom4([4]byte{10, 0, 0, 1})
	for _, group := range []struct {
		scs     []traffic.Scenario
		streams int
	}{{humans, p.humanStreams}, {bots, p.botStreams}} {
		for _, sc := range group.scs {
			for k := 0; k < group.streams; k += calibrationChunk {
				sim := replay.Simulation{
					Scenarios: []traffic.Scenario{sc}, Streams: min(calibrationChunk, group.streams-k),
					Seed: seed + uint64(k), Start: start, Spread: week - sc.Horizon, First: addr,
				}
				recs, next := sim.Records()
				addr = next
				w.requests += len(recs)
				c, b, err := replay.Collect(ctx, recs, cfg)
				if err != nil {
					return w, err
				}
				w.humans.Add(&c.Humans)
				w.bots = append(w.bots, b...)
				if sc.Label == traffic.Human {
					w.humanIDs += sim.Streams
				}
				if tuned == nil {
					continue
				}
				results, _, err := replay.Run(ctx, recs, *tuned)
				if err != nil {
					return w, err
				}
				for _, r := range results {
					switch {
					case r.Quarantined && r.Label == string(traffic.Human):
						w.quarantined++
					case r.Quarantined && r.Label == string(traffic.Bot):
						w.caught++
					}
				}
			}
		}
	}
	return w, nil
}

// modelRate returns the share of h's identity-hours that would see a
// quarantine at threshold t with confirm c.
func modelRate(h *calibrate.Histogram, t, c int) float64 {
	if h.Windows == 0 {
		return 0
	}
	return float64(h.Over(t, c)) / float64(h.Windows)
}


// calibrateDefaults returns how the service's default settings fare on a
// week's bots, from the week's collected data.
func calibrateDefaults(w *weekResult) calibrate.Row {
	d := config.Default()
	return calibrate.Detection(w.bots, d.RiskThreshold, d.Confirm)
}
