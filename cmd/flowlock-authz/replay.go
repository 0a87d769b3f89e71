package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/replay"
)

// replayStdin is what the trace "-" reads; tests replace it.
var replayStdin io.Reader = os.Stdin

// maxReportedLines bounds the malformed lines replay names on stderr; the
// rest are only counted.
const maxReportedLines = 100

// replayUsage is the first part of "replay -h"; the service flags follow.
const replayUsage = `usage: flowlock-authz replay [--config FILE] [service flags] [--format jsonl|jsonl-full|table]
                            [--input-format auto|jsonl|envoy|nginx] TRACE...

Runs access-log records through the same engine, quarantine and policy as the
service, in virtual time, and reports per identity what Flow Lock would have
done. TRACE is a file, or - for stdin; records from several files are merged
and sorted by time. Input formats: JSON Lines (DESIGN.md §3, as written by
flowlock-sim trace), Envoy's default access log (and Istio's), nginx combined.

Replay flags:
  --format jsonl|jsonl-full|table
                              output: one JSON object per identity with the fields of
                              DESIGN.md §3 (default); with denied and volume-limited
                              counts, the shared label, first and last request times and
                              a trace's label and scenario too (jsonl-full); or a table
  --input-format FORMAT       auto (default, from each file's first line), jsonl, envoy, nginx

Service flags (identity rules, thresholds, exclude paths, quarantine TTL, lists,
volume limit, mode) are read as by serve, with the same environment variables and --config
file; listener and state settings are ignored.

`

// replayOptions are replay's own flags.
type replayOptions struct {
	format      string // jsonl or table
	inputFormat replay.Format
	paths       []string
	help        bool
}

// splitReplayArgs separates replay's own flags and the trace paths from the
// service flags, which go to config.Load. Flags and paths may be mixed; "--"
// ends the flags.
func splitReplayArgs(args []string) (replayOptions, []string, error) {
	o := replayOptions{format: "jsonl"}
	own, cfgArgs, paths, help, err := splitCommandArgs(args, []string{"format", "input-format"}, usageErrorf)
	if err != nil {
		return o, nil, err
	}
	o.paths, o.help = paths, help
	if val, ok := own["format"]; ok {
		if val != "jsonl" && val != "jsonl-full" && val != "table" {
			return o, nil, usageErrorf("--format %q: want jsonl, jsonl-full or table", val)
		}
		o.format = val
	}
	if val, ok := own["input-format"]; ok {
		f, ok := replay.ParseFormat(val)
		if !ok {
			return o, nil, usageErrorf("--input-format %q: want auto, jsonl, envoy or nginx", val)
		}
		o.inputFormat = f
	}
	return o, cfgArgs, nil
}

// splitCommandArgs separates a subcommand's own flags (each taking a
// value), its operands and -h from the service flags, which go to
// config.Load. Flags and operands may be mixed; "--" ends the flags. A
// repeated own flag keeps its last value.
func splitCommandArgs(args, own []string, usagef func(string, ...any) error) (vals map[string]string, cfgArgs, operands []string, help bool, err error) {
	bools := map[string]bool{}
	for _, s := range config.Reference() {
		if s.Default == "false" || s.Default == "true" {
			bools[s.Flag] = true
		}
	}
	vals = map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			operands = append(operands, args[i+1:]...)
			break
		}
		if a == "-" || !strings.HasPrefix(a, "-") {
			operands = append(operands, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "h" || name == "help" {
			help = true
			continue
		}
		if slices.Contains(own, name) {
			if !hasVal {
				if i+1 >= len(args) {
					return nil, nil, nil, false, usagef("--%s needs a value", name)
				}
				i++
				val = args[i]
			}
			vals[name] = val
			continue
		}
		cfgArgs = append(cfgArgs, a)
		if !hasVal && !bools[name] && i+1 < len(args) {
			i++
			cfgArgs = append(cfgArgs, args[i])
		}
	}
	return vals, cfgArgs, operands, help, nil
}

// usageErrorf reports a bad replay command line.
func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("replay: "+format, args...)
}

// replayCmd implements "flowlock-authz replay": a backtest of access logs
// through the service's decision policy in virtual time.
func replayCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, cfgArgs, err := splitReplayArgs(args)
	if err != nil {
		return err
	}
	if o.help {
		fmt.Fprint(stderr, replayUsage)
		config.Usage(stderr)
		return flag.ErrHelp
	}
	cfg, err := config.Load(cfgArgs, getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, replayUsage)
			config.Usage(stderr)
		}
		return err
	}
	if len(o.paths) == 0 {
		return usageErrorf("no TRACE given (a file, or - for stdin)")
	}

	var recs []replay.Record
	skipped, coarseWarned := 0, false
	for _, path := range o.paths {
		n, err := readTrace(ctx, path, o.inputFormat, &recs, func(le *replay.LineError) {
			skipped++
			switch {
			case skipped <= maxReportedLines:
				fmt.Fprintf(stderr, "replay: %v; line skipped\n", le)
			case skipped == maxReportedLines+1:
				fmt.Fprintf(stderr, "replay: more malformed lines follow; only their number is reported\n")
			}
		})
		if err != nil {
			return err
		}
		if n.Resolution() >= time.Second && !coarseWarned {
			coarseWarned = true
			fmt.Fprintln(stderr, "replay: warning: nginx $time_local has whole-second timestamps, which cannot show "+
				"the rhythm Flow Lock scores: sub-second gaps become 0 or 1 s and periods blur; expect missed bots "+
				"and unreliable scores (log $msec, or use JSON Lines, for a real backtest)")
		}
	}

	results, sum, err := replay.Run(ctx, recs, cfg)
	if err != nil {
		return err
	}
	if sum.OutOfOrder > 0 {
		fmt.Fprintf(stderr, "replay: input not in time order (%d records earlier than the one before); sorted by ts\n", sum.OutOfOrder)
	}

	switch o.format {
	case "table":
		err = writeReplayTable(stdout, results)
	case "jsonl-full":
		err = writeReplayJSONL(stdout, results)
	default:
		err = writeReplayJSONL(stdout, designResults(results))
	}
	if err != nil {
		return fmt.Errorf("replay: write results: %w", err)
	}
	fmt.Fprintf(stderr, "replay: %d records, %d identities (%d quarantined), %d malformed lines skipped, %d records without identity\n",
		sum.Records, sum.Identities, sum.Quarantined, skipped, sum.NoIdentity)
	if byLabel := labelSummary(results); byLabel != "" {
		fmt.Fprintf(stderr, "replay: by label: %s\n", byLabel)
	}
	return nil
}

// readTrace appends the records of the trace at path ("-": stdin) to recs,
// passing each malformed line to bad, and returns the trace's format.
func readTrace(ctx context.Context, path string, f replay.Format, recs *[]replay.Record, bad func(*replay.LineError)) (replay.Format, error) {
	var in io.Reader = replayStdin
	name := "-"
	if path != "-" {
		file, err := os.Open(path)
		if err != nil {
			return f, fmt.Errorf("replay: %w", err)
		}
		defer file.Close()
		in, name = file, path
	}
	r := replay.NewReader(in, name, f)
	for n := 0; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return f, ctx.Err()
		}
		rec, err := r.Next()
		var le *replay.LineError
		switch {
		case err == nil:
			*recs = append(*recs, rec)
		case errors.Is(err, io.EOF):
			return r.Format(), nil
		case errors.As(err, &le):
			bad(le)
		default:
			return f, fmt.Errorf("replay: read %s: %w", name, err)
		}
	}
}

// designResult is one line of --format jsonl: exactly the fields DESIGN.md
// §3 lists, so that tools built on that contract see nothing else.
// --format jsonl-full writes the whole replay.Result.
type designResult struct {
	Identity               string     `json:"identity"`
	Requests               int        `json:"requests"`
	Quarantined            bool       `json:"quarantined"`
	FirstQuarantineRequest int        `json:"first_quarantine_request"`
	FirstQuarantineTS      *time.Time `json:"first_quarantine_ts"`
	MaxRisk                int        `json:"max_risk"`
	Reason                 string     `json:"reason"`
}

func designResults(results []replay.Result) []designResult {
	out := make([]designResult, len(results))
	for i, r := range results {
		out[i] = designResult{r.Identity, r.Requests, r.Quarantined, r.FirstQuarantineRequest, r.FirstQuarantineTS, r.MaxRisk, r.Reason}
	}
	return out
}

// writeReplayJSONL writes one JSON object per identity.
func writeReplayJSONL[T any](w io.Writer, results []T) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for i := range results {
		if err := enc.Encode(&results[i]); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// writeReplayTable writes one aligned line per identity.
func writeReplayTable(w io.Writer, results []replay.Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IDENTITY\tREQUESTS\tQUARANTINED\tFIRST_DENIED\tFIRST_DENIED_AT\tDENIED\tLIMITED\tMAX_RISK\tREASON\tSHARED\tLABEL\tSCENARIO")
	for _, r := range results {
		first, at := "-", "-"
		if r.Quarantined {
			first = fmt.Sprint(r.FirstQuarantineRequest)
			at = r.FirstQuarantineTS.UTC().Format(time.RFC3339Nano)
		}
		fmt.Fprintf(tw, "%s\t%d\t%v\t%s\t%s\t%d\t%d\t%d\t%s\t%v\t%s\t%s\n", r.Identity, r.Requests, r.Quarantined, first, at,
			r.Denied, r.Limited, r.MaxRisk, r.Reason, r.Shared, dash(r.Label), dash(r.Scenario))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// labelSummary counts quarantined identities per ground-truth label of a
// simulated trace, e.g. "bot 3 of 3 quarantined; human 0 of 12"; "" when
// the trace had no labels.
func labelSummary(results []replay.Result) string {
	total, quarantined := map[string]int{}, map[string]int{}
	for _, r := range results {
		if r.Label == "" {
			continue
		}
		total[r.Label]++
		if r.Quarantined {
			quarantined[r.Label]++
		}
	}
	labels := make([]string, 0, len(total))
	for l := range total {
		labels = append(labels, l)
	}
	slices.Sort(labels)
	parts := make([]string, len(labels))
	for i, l := range labels {
		parts[i] = fmt.Sprintf("%s %d of %d quarantined", l, quarantined[l], total[l])
	}
	return strings.Join(parts, "; ")
}
