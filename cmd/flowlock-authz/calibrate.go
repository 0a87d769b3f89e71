package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flowlock/flowlock/internal/calibrate"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/replay"
	"github.com/flowlock/flowlock/internal/traffic"
)

// calibrateUsage is the first part of "calibrate -h"; the service flags
// follow.
const calibrateUsage = `usage: flowlock-authz calibrate --fpr RATE [calibrate flags] [--config FILE] [service flags] TRACE...
       flowlock-authz calibrate --fpr RATE [calibrate flags] --from URL [--admin-token-file FILE]

Suggests --risk-threshold, --challenge-threshold and --confirm for a
false-positive budget: the share of innocent identity-hours (one identity
active in one clock hour) that may see a quarantine. For each confirm it
finds the lowest threshold whose rate, at 95 % confidence, is within the
budget, and says how soon each choice catches bots.

Input: a trace (JSON Lines, Envoy or nginx access log, as replay reads it),
run through the same engine in virtual time; or the running service's
recorded history (GET URL/api/v1/calibration, with the admin token given by
--admin-token-file or FLOWLOCK_ADMIN_TOKEN). In a trace labelled as
flowlock-sim writes it, identities labelled human are the innocent ones and
those labelled bot give the detection delays. Without labels every identity
counts as innocent: with bots in the traffic the rate is overstated and the
threshold errs high. Delays then come from the simulator's bot scenarios.
Identity-hours in which the identity was refused as quarantined are caught
bots, not innocent ones (a labelled human excepted), and only the hours in
which a run of --min-confirm evaluations ended count: the others could not
have seen a quarantine.

Calibrate flags:
  --fpr RATE                  quarantine budget per identity-hour, e.g. 0.001 (required)
  --challenge-fpr RATE        share of identity-hours that may reach the challenge band (default 0.01)
  --floor N                   lowest risk threshold suggested (default 60)
  --min-confirm N, --max-confirm N
                              confirms considered (default 2 to 8)
  --from URL                  the service's dashboard, e.g. http://127.0.0.1:8080, instead of TRACE
  --bot-streams N             streams per simulated bot scenario for the delays (default 20)
  --format table|json         output (default table)
  --input-format FORMAT       auto (default), jsonl, envoy, nginx

`

// calibrateFlags are calibrate's own flags; every other flag is the
// service's.
var calibrateFlags = []string{"fpr", "challenge-fpr", "floor", "min-confirm", "max-confirm", "from", "bot-streams", "format", "input-format"}

// calibrateReport is calibrate's JSON output.
type calibrateReport struct {
	calibrate.Suggestion
	// Source says what the budget was judged on, DelaysFrom what the
	// detection delays were measured on.
	Source     string `json:"source"`
	DelaysFrom string `json:"delays_from"`
}

// calibrateCmd implements "flowlock-authz calibrate".
func calibrateCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	own, cfgArgs, paths, help, err := splitCommandArgs(args, calibrateFlags, calibrateErrorf)
	if err != nil {
		return err
	}
	if help {
		fmt.Fprint(stderr, calibrateUsage)
		config.Usage(stderr)
		return flag.ErrHelp
	}
	cfg, err := config.Load(cfgArgs, getenv)
	if err != nil {
		return err
	}
	var o calibrate.Options
	botStreams := 20
	format := "table"
	for _, f := range []struct {
		name string
		set  func(string) error
	}{
		{"fpr", rate(&o.FPR)},
		{"challenge-fpr", rate(&o.ChallengeFPR)},
		{"floor", whole(&o.Floor, 1, calibrate.MaxScore)},
		{"min-confirm", whole(&o.MinConfirm, 1, calibrate.MaxConfirm)},
		{"max-confirm", whole(&o.MaxConfirm, 1, calibrate.MaxConfirm)},
		{"bot-streams", whole(&botStreams, 1, 1000)},
		{"format", func(v string) error {
			if v != "table" && v != "json" {
				return errors.New("want table or json")
			}
			format = v
			return nil
		}},
	} {
		if v, ok := own[f.name]; ok {
			if err := f.set(v); err != nil {
				return calibrateErrorf("--%s %q: %v", f.name, v, err)
			}
		}
	}
	if _, ok := own["fpr"]; !ok {
		return calibrateErrorf("--fpr is required: the share of innocent identity-hours that may see a quarantine, e.g. 0.001")
	}
	if o.MinConfirm > 0 && o.MaxConfirm > 0 && o.MinConfirm > o.MaxConfirm {
		return calibrateErrorf("--min-confirm %d is above --max-confirm %d", o.MinConfirm, o.MaxConfirm)
	}
	from := own["from"]
	switch {
	case from != "" && len(paths) > 0:
		return calibrateErrorf("give either --from or TRACE, not both")
	case from == "" && len(paths) == 0:
		return calibrateErrorf("no input: give TRACE (a file, or - for stdin) or --from URL")
	}

	var (
		hist      *calibrate.Histogram
		bots      []*calibrate.Bot
		rep       calibrateReport
		inputFmt  replay.Format
		traceBots bool
	)
	if v, ok := own["input-format"]; ok {
		f, ok := replay.ParseFormat(v)
		if !ok {
			return calibrateErrorf("--input-format %q: want auto, jsonl, envoy or nginx", v)
		}
		inputFmt = f
	}
	if from != "" {
		snap, err := fetchCalibration(ctx, from, cfg.AdminToken.Reveal())
		if err != nil {
			return err
		}
		hist = &snap.Histogram
		hist.Add(&snap.Current)
		rep.Source = fmt.Sprintf("the service at %s: %d identity-hours recorded since %s (%d of them the current hour so far), every identity counted as innocent "+
			"but for %d caught identity-hours (refused as quarantined) left out",
			from, hist.Windows, snap.Since.UTC().Format(time.RFC3339), snap.Current.Windows, snap.Caught.Windows)
		if snap.Takeovers > snap.Histogram.Windows/10 {
			fmt.Fprintf(stderr, "calibrate: warning: %d of %d identity-hours were cut short for lack of recorder slots (%d); the peaks run low\n",
				snap.Takeovers, snap.Histogram.Windows, snap.Slots)
		}
	} else {
		var recs []replay.Record
		skipped := 0
		for _, path := range paths {
			if _, err := readTrace(ctx, path, inputFmt, &recs, func(le *replay.LineError) {
				if skipped++; skipped <= maxReportedLines {
					fmt.Fprintf(stderr, "calibrate: %v; line skipped\n", le)
				}
			}); err != nil {
				return err
			}
		}
		c, b, err := replay.Collect(ctx, recs, cfg)
		if err != nil {
			return err
		}
		hist, bots = &c.Humans, b
		traceBots = len(b) > 0
		who := "identities labelled human"
		if !c.Labelled {
			who = "every identity (the trace has no labels), counted as innocent"
		}
		rep.Source = fmt.Sprintf("%d records of %s: %d identity-hours of %s", len(recs), strings.Join(paths, ", "), hist.Windows, who)
		if c.Caught.Windows > 0 {
			rep.Source += fmt.Sprintf("; %d caught identity-hours (refused as quarantined in the replay) left out", c.Caught.Windows)
		}
		if c.Skipped > 0 {
			rep.Source += fmt.Sprintf("; %d out-of-scope identities left out", c.Skipped)
		}
	}
	if traceBots {
		rep.DelaysFrom = fmt.Sprintf("the trace's %d identities labelled bot", len(bots))
	} else {
		sim := simulatedBots(botStreams)
		recs, _ := sim.Records()
		_, b, err := replay.Collect(ctx, recs, cfg)
		if err != nil {
			return err
		}
		bots = b
		rep.DelaysFrom = fmt.Sprintf("%d simulated bots: %d streams of each bot scenario of flowlock-sim (%s), seed %d",
			len(bots), botStreams, scenarioIDs(sim.Scenarios), sim.Seed)
	}
	rep.Suggestion = calibrate.Suggest(hist, bots, o)

	switch format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	default:
		err = writeCalibrateTable(stdout, rep)
	}
	if err != nil {
		return fmt.Errorf("calibrate: write: %w", err)
	}
	if rep.RiskThreshold == 0 {
		return calibrateErrorf("no setting keeps the budget of %g per identity-hour on %d identity-hours (at least %d are needed even with no false positive); "+
			"record longer, or raise --fpr", rep.FPR, rep.Windows, rep.NeededWindows)
	}
	return nil
}

// calibrateErrorf reports a bad calibrate command line or input.
func calibrateErrorf(format string, args ...any) error {
	return fmt.Errorf("calibrate: "+format, args...)
}

// rate parses a share in (0, 1) into p.
func rate(p *float64) func(string) error {
	return func(s string) error {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || !(v > 0 && v < 1) {
			return errors.New("want a share between 0 and 1, e.g. 0.001")
		}
		*p = v
		return nil
	}
}

// whole parses an integer in [lo, hi] into p.
func whole(p *int, lo, hi int) func(string) error {
	return func(s string) error {
		v, err := strconv.Atoi(s)
		if err != nil || v < lo || v > hi {
			return fmt.Errorf("want a whole number from %d to %d", lo, hi)
		}
		*p = v
		return nil
	}
}

// simulatedBots is the simulator's bot scenarios (label bot), streams
// each, for detection delays when the input has no labelled bots.
func simulatedBots(streams int) replay.Simulation {
	var scs []traffic.Scenario
	for _, s := range traffic.Scenarios() {
		if s.Label == traffic.Bot {
			scs = append(scs, s)
		}
	}
	start, _ := time.Parse(time.RFC3339, "2026-01-05T09:00:00Z")
	return replay.Simulation{Scenarios: scs, Streams: streams, Seed: 1, Start: start}
}

// scenarioIDs lists the scenarios' ids, e.g. "B1-0.5s, B1-2s".
func scenarioIDs(scs []traffic.Scenario) string {
	ids := make([]string, len(scs))
	for i, s := range scs {
		ids[i] = s.ID
	}
	return strings.Join(ids, ", ")
}

// maxCalibrationBody bounds the answer read from --from.
const maxCalibrationBody = 4 << 20

// fetchCalibration reads GET base/api/v1/calibration with the admin token.
func fetchCalibration(ctx context.Context, base, token string) (calibrate.Snapshot, error) {
	var snap calibrate.Snapshot
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return snap, calibrateErrorf("--from %q: want the dashboard's URL, e.g. http://127.0.0.1:8080", base)
	}
	if token == "" {
		return snap, calibrateErrorf("--from needs the admin token: --admin-token-file FILE or FLOWLOCK_ADMIN_TOKEN")
	}
	u = u.JoinPath("/api/v1/calibration")
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return snap, calibrateErrorf("--from %q: %v", base, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return snap, calibrateErrorf("read %s: %v", u.Redacted(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCalibrationBody+1))
	switch {
	case err != nil:
		return snap, calibrateErrorf("read %s: %v", u.Redacted(), err)
	case resp.StatusCode != http.StatusOK:
		return snap, calibrateErrorf("read %s: %s: %s", u.Redacted(), resp.Status, strings.TrimSpace(string(body[:min(len(body), 200)])))
	case len(body) > maxCalibrationBody:
		return snap, calibrateErrorf("read %s: answer larger than %d bytes", u.Redacted(), maxCalibrationBody)
	}
	if err := json.Unmarshal(body, &snap); err != nil {
		return snap, calibrateErrorf("read %s: %v", u.Redacted(), err)
	}
	return snap, nil
}

// writeCalibrateTable writes the suggestion for people.
func writeCalibrateTable(w io.Writer, r calibrateReport) error {
	fmt.Fprintf(w, "Budget: %g of innocent identity-hours quarantined (95 %% bound), %g reaching the challenge band; floor %d.\n",
		r.FPR, r.ChallengeFPR, r.Floor)
	fmt.Fprintf(w, "Judged on: %s.\n", r.Source)
	fmt.Fprintf(w, "Delays measured on: %s.\n\n", r.DelaysFrom)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONFIRM\tTHRESHOLD\tFALSE_POS\tFPR\tFPR_95\tBOTS_CAUGHT\tMEDIAN_REQUESTS\tMEDIAN_S\tP90_S")
	for _, row := range r.Rows {
		if row.Threshold == 0 {
			fmt.Fprintf(tw, "%d\tnone\t-\t-\t-\t-\t-\t-\t-\n", row.Confirm)
			continue
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.5f\t%.5f\t%d/%d\t%.0f\t%.0f\t%.0f\n", row.Confirm, row.Threshold, row.FalsePositives,
			row.FPR, row.FPRUpper, row.Detected, row.Bots, row.MedianRequests, row.MedianSeconds, row.P90Seconds)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.RiskThreshold == 0 {
		_, err := fmt.Fprintf(w, "\nNo setting keeps the budget: %d identity-hours judged (those that could have seen a quarantine), at least %d needed.\n", r.Windows, r.NeededWindows)
		return err
	}
	_, err := fmt.Fprintf(w, "\nSuggested: --risk-threshold %d --challenge-threshold %d --confirm %d\n",
		r.RiskThreshold, r.ChallengeThreshold, r.Confirm)
	return err
}
