package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/replay"
	"github.com/flowlock/flowlock/internal/traffic"
	"github.com/flowlock/flowlock/test/flowlocktest"
)

// calibration is the part of calibrate's JSON output the tests read.
type calibration struct {
	RiskThreshold      int    `json:"risk_threshold"`
	ChallengeThreshold int    `json:"challenge_threshold"`
	Confirm            int    `json:"confirm"`
	Windows            uint64 `json:"identity_hours"`
	Source             string `json:"source"`
	DelaysFrom         string `json:"delays_from"`
	Rows               []struct {
		Confirm   int `json:"confirm"`
		Threshold int `json:"threshold"`
		Bots      int `json:"bots"`
		Detected  int `json:"detected"`
	} `json:"rows"`
}

// writeSimulatedTrace writes streams of each scenario as a labelled JSON
// Lines trace (DESIGN.md §3) and returns its path.
func writeSimulatedTrace(t *testing.T, streams int, scs ...string) string {
	t.Helper()
	var sim replay.Simulation
	for _, name := range scs {
		sc, ok := traffic.Lookup(name)
		if !ok {
			t.Fatalf("no scenario %q", name)
		}
		sim.Scenarios = append(sim.Scenarios, sc)
	}
	sim.Streams, sim.Seed = streams, 7
	sim.Start = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	recs, _ := sim.Records()
	path := filepath.Join(t.TempDir(), "trace.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for _, r := range recs {
		fmt.Fprintf(w, `{"ts":%q,"ip":%q,"method":"GET","path":%q,"label":%q,"scenario":%q}`+"\n",
			r.TS.Format(time.RFC3339Nano), r.Addr, r.Path, r.Label, r.Scenario)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCalibrateTrace runs "flowlock-authz calibrate" on a labelled trace:
// the humans judge the budget, the trace's bots give the delays.
func TestCalibrateTrace(t *testing.T) {
	trace := writeSimulatedTrace(t, 100, "human-spa", "power-user", "fixed-2s", "uniform-20pct-2s")
	out, err := flowlocktest.Run(60*time.Second, "", authz(), "calibrate", "--fpr", "0.02", "--format", "json", trace)
	if err != nil {
		t.Fatalf("calibrate: %v\n%s", err, out)
	}
	var c calibration
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if c.Windows != 200 || !strings.Contains(c.Source, "labelled human") {
		t.Errorf("judged on %d identity-hours (%s); want the 200 human streams", c.Windows, c.Source)
	}
	if c.RiskThreshold < 60 || c.RiskThreshold > 100 || c.Confirm < 2 || c.ChallengeThreshold >= c.RiskThreshold {
		t.Errorf("suggested threshold %d, challenge %d, confirm %d: out of the floor and order rules", c.RiskThreshold, c.ChallengeThreshold, c.Confirm)
	}
	if !strings.Contains(c.DelaysFrom, "200 identities labelled bot") {
		t.Errorf("delays from %q; want the trace's 200 bots", c.DelaysFrom)
	}
	for _, r := range c.Rows {
		if r.Confirm == c.Confirm && r.Detected < r.Bots*95/100 {
			t.Errorf("suggested row detects %d of %d fixed and ±20 %% bots", r.Detected, r.Bots)
		}
	}

	// The table says the same for people.
	out, err = flowlocktest.Run(60*time.Second, "", authz(), "calibrate", "--fpr", "0.02", trace)
	if err != nil || !strings.Contains(out, fmt.Sprintf("--risk-threshold %d --challenge-threshold %d --confirm %d", c.RiskThreshold, c.ChallengeThreshold, c.Confirm)) {
		t.Errorf("table: %v\n%s", err, out)
	}

	// A budget the data cannot show fails, saying why.
	out, err = flowlocktest.Run(60*time.Second, "", authz(), "calibrate", "--fpr", "0.0001", trace)
	if err == nil || !strings.Contains(out, "no setting keeps the budget") {
		t.Errorf("--fpr 0.0001 on 200 identity-hours: %v\n%s", err, out)
	}
}

// TestCalibrateFromService runs calibrate against a running service's
// recorded history, through the admin API, under flowlocktest limits.
func TestCalibrateFromService(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	const token = "calibrate-test-token-0123456789"
	if err := writeFile(tokenFile, token); err != nil {
		t.Fatal(err)
	}
	s := flowlocktest.StartLimited(t, flowlocktest.DefaultLimits, authz(), "--admin-token-file", tokenFile)
	ac, hc := clients(t, s)
	waitServing(t, hc)

	// 40 identities, 6 requests each: every one is an identity-hour.
	for round := range 6 {
		for i := range 40 {
			check(t, ac, fmt.Sprintf("198.51.100.%d", i+1))
		}
		if round < 5 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	base := "http://" + s.HTTPAddr

	out, err := flowlocktest.Run(60*time.Second, "", authz(), "calibrate", "--fpr", "0.2", "--format", "json",
		"--bot-streams", "3", "--from", base, "--admin-token-file", tokenFile)
	if err != nil {
		t.Fatalf("calibrate --from: %v\n%s", err, out)
	}
	var c calibration
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if c.Windows != 40 || !strings.Contains(c.Source, base) || c.RiskThreshold == 0 {
		t.Errorf("from the service: %d identity-hours, source %q, threshold %d; want 40, the URL and a suggestion", c.Windows, c.Source, c.RiskThreshold)
	}
	if !strings.Contains(c.DelaysFrom, "simulated bots") {
		t.Errorf("delays from %q; want the simulator's bots (the service has no labels)", c.DelaysFrom)
	}

	// The history is the admin's: a wrong token is refused.
	bad := filepath.Join(dir, "bad")
	if err := writeFile(bad, "not-the-token-0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	outBad, err := flowlocktest.Run(30*time.Second, "", authz(), "calibrate", "--fpr", "0.2", "--from", base, "--admin-token-file", bad)
	if err == nil || !strings.Contains(outBad, "401") {
		t.Errorf("wrong token: %v\n%s", err, outBad)
	}
}
