package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flowlock/flowlock/internal/traffic"
)

// Margins of TestDetectionTargets. The test runs a sample of the held-out
// streams (6,444; 4,018 under -race or -short; the eval runs 36,450), so it
// cannot prove the DETECTION.md §9 targets; it fails when one is missed by a
// clear margin, defined here once for all scenarios:
//
//   - humans (single-user and shared addresses, H1–H5, H7–H9, H11–H13):
//     not one sampled stream quarantined;
//   - single humans challenged (score ≥ 60): at most 2 % (target 1 %);
//   - H10 (regular worker) and H6 (poller excluded) quarantined: at most
//     2 % (target 1 %);
//   - H7/H8/H9 labelled shared within 2 minutes: at least 85 % (target
//     95 %; H7 meets it through crowd evidence, distinct user agents);
//   - bots: the target's share less 5 points (99 % → 94 %, 95 % → 90 %)
//     detected within 1.25 times the target's request budget (60 → 75,
//     70 → 87, 80 → 100, 150 → 187, 400 → 500); fixed-interval bots: TPR ≥ 94 % and a
//     median RTD ≤ 25 (target 20);
//   - multi-beat and drifting timers (B13, issue 14): TPR ≥ 94 % and a
//     median RTD ≤ 45 (target 99 %, 40);
//   - fast, steady humans (H14, issue 14): not one sampled stream
//     quarantined, as for the other single humans (the model before the
//     brisk-human gates quarantined one in the sample of H14-1s and of
//     H14-2s); the held-out brisk pagers (H14-1.5s, H14-2.5s, H14-1.2s,
//     H14-2s3) have no target and are not run here; B7n and B7s (σ 0.3 and
//     0.25 log-normal timers) are bots with a 400-request budget;
//   - naive baseline vs Flow Lock: at least 10× more human streams
//     quarantined by the naive formula (target 100×, which a sample this
//     size cannot show).
//
// The eval command reports the targets themselves on the full held-out set.
const (
	marginChallenged   = 0.02
	marginHumanLimited = 0.02 // H10, H6
	marginSharedWithin = 0.85
	marginShare        = 0.05 // points below the target share
	marginRequests     = 1.25 // times the target's request budget
	marginMedianExtra  = 5    // requests above a median-RTD target (20 → 25, 40 → 45)
	marginNaiveFactor  = 10.0
)

// testSample returns how many streams of s TestDetectionTargets runs, and
// after how many requests it stops each (0: at the horizon). Bots only need
// their first requests: every bot target is about detection within a
// request budget, so their streams stop at twice the largest budget.
// Scenarios without a target are not run. The sample is smaller under the
// race detector and with -short; seeds are fixed, so either size gives the
// same result on every run.
func testSample(s traffic.Scenario, small bool) (streams, limit int) {
	pick := func(full, reduced int) int {
		if small {
			return reduced
		}
		return full
	}
	if in(s.ID, briskHeldOut) {
		return 0, 0 // no target: reported by the eval only
	}
	if s.Label != traffic.Human {
		for _, bt := range botTargets {
			if in(s.ID, bt.ids) {
				return 100, 2 * max(bt.within, bt.medianMax+marginMedianExtra)
			}
		}
		return 0, 0
	}
	switch {
	case s.Clients <= 1 && s.Horizon.Hours() > 4:
		return pick(20, 6), 0 // H12: 8 hours each
	case s.Clients <= 1:
		return pick(300, 100), 0
	case s.Clients <= 10:
		// H7: 100 streams either way, for its labelled-shared share.
		return 100, 0
	}
	return pick(8, 4), 0 // H8, H9: 10,000-30,000 requests each
}

func TestDetectionTargets(t *testing.T) {
	plan := evalPlan{seed: holdoutSeed, setup: newSetup()}
	for _, s := range traffic.Scenarios() {
		n, limit := testSample(s, raceEnabled || testing.Short())
		if n == 0 {
			continue
		}
		plan.scenarios = append(plan.scenarios, s)
		plan.streams = append(plan.streams, n)
		plan.limits = append(plan.limits, limit)
	}
	res, err := plan.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*scenarioStats{}
	for i, s := range plan.scenarios {
		st := summarise(s.ID, s, res.main[i], nil, uint8(plan.setup.cfg.ChallengeThreshold))
		byID[s.ID] = &st
	}
	get := func(id string) *scenarioStats {
		t.Helper()
		s, ok := byID[id]
		if !ok {
			t.Fatalf("scenario %s is missing from traffic.Scenarios", id)
		}
		return s
	}
	t.Logf("%d requests in %d scenarios", res.reqs, len(plan.scenarios))

	for _, id := range slices.Concat(singleHumans, sharedHumans, briskHumans) {
		if s := get(id); s.quarantined > 0 {
			t.Errorf("%s: %d of %d human streams quarantined (reason %s, RTD %v), want 0",
				id, s.quarantined, s.streams, s.reason, s.rtd)
		}
	}
	for _, id := range singleHumans {
		if s := get(id); s.rate(s.challenged) > marginChallenged {
			t.Errorf("%s: %s challenged (%d of %d, mostly %s), want at most %s",
				id, pct1(s.rate(s.challenged)), s.challenged, s.streams, s.reason, pct0(marginChallenged))
		}
	}
	for _, id := range []string{"H10", "H6"} {
		if s := get(id); s.rate(s.quarantined) > marginHumanLimited {
			t.Errorf("%s: %s quarantined (%d of %d), want at most %s",
				id, pct1(s.rate(s.quarantined)), s.quarantined, s.streams, pct0(marginHumanLimited))
		}
	}
	for _, id := range sharedLabel {
		s := get(id)
		if s.rate(s.sharedWithin) < marginSharedWithin {
			t.Errorf("%s: %s labelled shared within 2 minutes, want at least %s",
				id, pct1(s.rate(s.sharedWithin)), pct0(marginSharedWithin))
		}
	}
	for _, bt := range botTargets {
		minShare := bt.minShare - marginShare
		for _, id := range bt.ids {
			s := get(id)
			if bt.within == 0 {
				medMax := bt.medianMax + marginMedianExtra
				if tpr := s.rate(s.quarantined); tpr < minShare || s.medianRTD() > medMax {
					t.Errorf("%s: TPR %s, median RTD %d; want TPR >= %s and median <= %d (%s)",
						id, pct1(tpr), s.medianRTD(), pct0(minShare), medMax, bt.what)
				}
				continue
			}
			budget := int(math.Ceil(marginRequests * float64(bt.within)))
			if got := s.within(budget); got < minShare {
				t.Errorf("%s: %s detected within %d requests (TPR %s, median RTD %d); want >= %s (%s)",
					id, pct1(got), budget, pct1(s.rate(s.quarantined)), s.medianRTD(), pct0(minShare), bt.what)
			}
		}
	}
	for _, id := range naiveVersus {
		s := get(id)
		naive := s.rate(s.naive)
		_, _, hi := s.quarantineRate()
		fl := max(s.rate(s.quarantined), hi/10) // 0 quarantines: a tenth of the Wilson bound
		if f := ratio(naive, fl); f < marginNaiveFactor {
			t.Errorf("%s: naive %s vs Flow Lock %s: %.1fx, want at least %.0fx",
				id, pct1(naive), pct1(s.rate(s.quarantined)), f, marginNaiveFactor)
		}
	}
}

// TestEvalDeterministic checks that the report does not depend on how many
// workers ran it.
func TestEvalDeterministic(t *testing.T) {
	args := []string{"eval", "--scenarios", "H1,fixed-2s,B3-50,H7", "--streams", "6", "--format", "json"}
	one, _, err := runArgs(t, append(args, "--workers", "1")...)
	if err != nil {
		t.Fatal(err)
	}
	two, _, err := runArgs(t, append(args, "--workers", "3")...)
	if err != nil {
		t.Fatal(err)
	}
	if one != two {
		t.Error("the report differs between 1 and 3 workers")
	}
	var rep jsonReport
	if err := json.Unmarshal([]byte(one), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.SeedSet != "holdout" || rep.FirstSeed != holdoutSeed || len(rep.Scenarios) != 4 {
		t.Fatalf("report = %+v", rep)
	}
	if s := rep.Scenarios[1]; s.ID != "B1-2s" || s.Quarantined != 6 || s.RTDMedian < 10 || s.RTDMedian > 25 {
		t.Errorf("fixed-2s: %+v", s)
	}
	// The naive baseline fires on a fixed 2 s timer at the earliest it
	// can: 3 timestamps, then 3 consecutive scores ≥ 70, so request 5,
	// 8 s after the first.
	if s := rep.Scenarios[1]; s.NaiveQuarantined != 6 || s.NaiveRate != 1 || s.NaiveRTDMedian != 5 || s.NaiveRTDP90 != 5 ||
		math.Abs(s.NaiveSTDMedian-8) > 0.1 || s.NaiveWilsonLow <= 0.5 || s.NaiveWilsonHigh != 1 {
		t.Errorf("fixed-2s naive: %+v", s)
	}
	for _, s := range rep.Scenarios {
		if s.NaiveWilsonLow > s.NaiveRate || s.NaiveRate > s.NaiveWilsonHigh ||
			(s.NaiveQuarantined == 0) != (s.NaiveRTDMedian == 0) || s.NaiveRTDMedian > s.NaiveRTDP90 ||
			s.NaiveSTDMedian > s.NaiveSTDP90 || math.Abs(s.NaivePerIPHour*s.IPHours-float64(s.NaiveQuarantined)) > 1e-9 {
			t.Errorf("%s: inconsistent naive figures: %+v", s.ID, s)
		}
	}
	if rep.Scenarios[3].SharedWithin == nil || rep.Scenarios[0].SharedWithin != nil {
		t.Error("shared-within rate given for the wrong scenarios")
	}

	tune, _, err := runArgs(t, "eval", "--scenarios", "H1", "--streams", "3", "--format", "json", "--seed-set", "tune")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tune, `"first_seed": 1,`) {
		t.Errorf("tune seed set does not start at seed 1: %.200s", tune)
	}
}

func TestEvalTable(t *testing.T) {
	out, errOut, err := runArgs(t, "eval", "--scenarios", "fixed-10s,poisson,H10", "--streams", "4", "--threshold-sweep")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"seed set holdout: stream k of every scenario uses seed 1000000+k",
		"B1-10s", "periodic", "no target (out of scope)", "RESULT", "fixed interval 0.5-60 s",
		"threshold sweep", ">=50", ">=90",
		"naive baseline", "NAIVE QUARANTINED [WILSON 95%]", "NAIVE RTD 50/90", "FLOW LOCK QUARANTINED",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "requests decided in") {
		t.Errorf("stderr lacks the timing line: %q", errOut)
	}
	// Targets of scenarios that were not run are left out.
	if strings.Contains(out, "naive vs Flow Lock") {
		t.Error("naive target reported without its scenarios")
	}
}

func TestEvalMarkdown(t *testing.T) {
	out, _, err := runArgs(t, "eval", "--scenarios", "H1,fixed-2s", "--streams", "3", "--markdown")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Detection", "## Method", "## Results", "## Targets", "## Known blind spots",
		"go run ./cmd/flowlock-sim eval --markdown", "| B1-2s |", "### Naive baseline, same streams",
		"| B1-2s | fixed-2s | bot | 3 | 100.0% ["} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
}

// TestEvalMarkdownH7 checks that H7's shared label, earned by crowd
// evidence, is stated with its limits: in the targets and the blind spots.
func TestEvalMarkdownH7(t *testing.T) {
	out, _, err := runArgs(t, "eval", "--scenarios", "H7", "--streams", "20", "--markdown")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| PASS | H7 | shared address: labelled shared within 2 min ≥ 95 % |",
		"- **H7, ten humans behind an office NAT, is labelled shared within 2 minutes by crowd evidence:**",
		"meeting the ≥ 95 % target", "Timing quarantined 0 of 20 H7 addresses",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
}

func TestEvalOutput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "detection.md")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := runArgs(t, "eval", "--scenarios", "fixed-2s", "--streams", "2", "--markdown", "--output", path)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if out != "" || !strings.HasPrefix(string(data), "# Detection") {
		t.Errorf("stdout %q, file starts %.40q", out, data)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	// A failing run leaves the file alone.
	if _, _, err := runArgs(t, "eval", "--scenarios", "nope", "--output", path); err == nil {
		t.Fatal("bad scenario accepted")
	}
	if again, _ := os.ReadFile(path); string(again) != string(data) {
		t.Error("a failed run changed the file")
	}
}

func TestEvalStrict(t *testing.T) {
	// Three fixed-2s streams cannot show a 0.1 % FPR on H1, but they do
	// pass the fixed-interval target; H1 with 3 streams fails the pooled
	// human bound and the naive comparison.
	_, _, err := runArgs(t, "eval", "--scenarios", "H1", "--streams", "3", "--strict")
	if err == nil || !strings.Contains(err.Error(), "targets failed") {
		t.Errorf("err = %v, want targets failed", err)
	}
	if _, _, err := runArgs(t, "eval", "--scenarios", "fixed-2s", "--streams", "3", "--strict"); err != nil {
		t.Errorf("fixed-2s --strict: %v", err)
	}
}

func TestEvalErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--seed-set", "other"}, "--seed-set"},
		{[]string{"--streams", "-1"}, "--streams"},
		{[]string{"--format", "csv"}, "--format"},
		{[]string{"--scenarios", "H1,nope"}, `unknown scenario "nope"`},
		{[]string{"--workers", "-2"}, "--workers"},
	} {
		_, _, err := runArgs(t, append([]string{"eval"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestWilson(t *testing.T) {
	for _, tc := range []struct {
		k, n   float64
		lo, hi float64
	}{
		{0, 1000, 0, 0.00383},
		{1000, 1000, 0.99617, 1},
		{50, 100, 0.4038, 0.5962},
		{0, 0, 0, 1},
	} {
		lo, hi := wilson(tc.k, tc.n)
		if math.Abs(lo-tc.lo) > 1e-4 || math.Abs(hi-tc.hi) > 1e-4 {
			t.Errorf("wilson(%v, %v) = [%.5f, %.5f], want [%.5f, %.5f]", tc.k, tc.n, lo, hi, tc.lo, tc.hi)
		}
	}
}

func TestPercentileAndNum(t *testing.T) {
	v := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if got := percentile(v, 0.5); got != 5 {
		t.Errorf("median = %d, want 5", got)
	}
	if got := percentile(v, 0.9); got != 9 {
		t.Errorf("p90 = %d, want 9", got)
	}
	if got := percentile([]int(nil), 0.5); got != 0 {
		t.Errorf("empty = %d", got)
	}
	for f, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", 2.5: "2.5", 193.4: "193", 1e10: "inf"} {
		if got := num(f); got != want {
			t.Errorf("num(%v) = %q, want %q", f, got, want)
		}
	}
	var b bytes.Buffer
	fmt.Fprint(&b, secs(7), " ", secs(960), " ", secs(7200))
	if b.String() != "7s 16m 2.0h" {
		t.Errorf("secs = %q", b.String())
	}
}

// Margins of TestGroupTargets: fleets caught in at least 80 % of the sampled
// trials within their window (target 90 %), no person of a crowd
// quarantined as a fleet (the target itself), and at most 1 % of the
// people browsing beside a fleet.
const (
	marginFleetCaught = 0.80
	marginBystanders  = 0.01
)

// TestGroupTargets runs a sample of the fleet and crowd trials (the eval
// runs 100 per fleet and 20 per crowd) and fails when a target is missed by
// a clear margin.
func TestGroupTargets(t *testing.T) {
	small := raceEnabled || testing.Short()
	var groups []traffic.Scenario
	var trials []int
	var ids []string
	for _, g := range traffic.Groups() {
		n := 30
		switch {
		case g.Fleet == 0 && small:
			n = 1
		case g.Fleet == 0:
			n = 3
		case small:
			n = 10
		}
		groups, trials, ids = append(groups, g), append(trials, n), append(ids, g.ID)
	}
	stats, reqs, err := runGroups(context.Background(), newSetup(), groups, ids, trials, holdoutSeed, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d requests in %d group scenarios", reqs, len(groups))
	for i := range stats {
		g := &stats[i]
		if g.sc.Fleet > 0 {
			within := fleetCatchWithin
			if w := g.caughtWithin(within); w < marginFleetCaught {
				t.Errorf("%s: %s of %d trials caught within %v, want at least %s", g.id, pct1(w), g.trials, within, pct0(marginFleetCaught))
			}
			if p := float64(g.sum.peopleFleet) / float64(max(g.sum.people, 1)); p > marginBystanders {
				t.Errorf("%s: %d of %d people beside the fleet quarantined as a fleet", g.id, g.sum.peopleFleet, g.sum.people)
			}
			continue
		}
		if g.sum.peopleFleet > 0 {
			t.Errorf("%s: %d of %d people of a crowd quarantined as a fleet, want 0", g.id, g.sum.peopleFleet, g.sum.people)
		}
	}
}
