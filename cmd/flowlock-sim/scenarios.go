package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/flowlock/flowlock/internal/traffic"
)

// runScenarios implements "flowlock-sim scenarios".
func runScenarios(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scenarios", flag.ContinueOnError)
	fs.SetOutput(stderr)
	format := fs.String("format", "table", "output `format`: table or json (JSON Lines, one scenario a line)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch *format {
	case "table":
		return scenarioTable(stdout)
	case "json":
		return scenarioJSON(stdout)
	}
	return usagef("--format %q: want table or json", *format)
}

// parse parses args into fs, refusing positional arguments. -h gives
// errHelp, which run turns into success.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return errHelp
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// scenarioTable writes one aligned line per scenario.
func scenarioTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tLABEL\tHORIZON\tCLIENTS\tPARAMS")
	for _, s := range traffic.Scenarios() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", s.ID, s.Name, s.Label, shortDuration(s.Horizon), s.Clients, s.Params)
	}
	return tw.Flush()
}

// scenarioRecord is one line of "scenarios --format json".
type scenarioRecord struct {
	ID             string   `json:"id"`
	Name           string   `json:"name"`
	Family         string   `json:"family"`
	Label          string   `json:"label"`
	Horizon        string   `json:"horizon"`
	HorizonSeconds float64  `json:"horizon_seconds"`
	Clients        int      `json:"clients"`
	Params         string   `json:"params"`
	Description    string   `json:"description"`
	ExcludedPaths  []string `json:"excluded_paths,omitempty"`
}

// scenarioJSON writes one JSON object per scenario and line.
func scenarioJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	for _, s := range traffic.Scenarios() {
		err := enc.Encode(scenarioRecord{
			ID:             s.ID,
			Name:           s.Name,
			Family:         s.Family,
			Label:          string(s.Label),
			Horizon:        shortDuration(s.Horizon),
			HorizonSeconds: s.Horizon.Seconds(),
			Clients:        s.Clients,
			Params:         s.Params,
			Description:    s.Description,
			ExcludedPaths:  s.ExcludedPaths,
		})
		if err != nil {
			return fmt.Errorf("write scenarios: %w", err)
		}
	}
	return nil
}

// shortDuration formats whole hours as "2h" and whole minutes as "30m";
// anything else as time.Duration does.
func shortDuration(d time.Duration) string {
	switch {
	case d > 0 && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d > 0 && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.String()
}
