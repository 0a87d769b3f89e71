package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/flowlock/flowlock/internal/traffic"
)

// Percentages and numbers, formatted the same way in every output.
func pct0(p float64) string { return strconv.FormatFloat(100*p, 'f', 0, 64) + "%" }
func pct1(p float64) string { return strconv.FormatFloat(100*p, 'f', 1, 64) + "%" }
func pct2(p float64) string { return strconv.FormatFloat(100*p, 'f', 2, 64) + "%" }
func pct3(p float64) string { return strconv.FormatFloat(100*p, 'f', 3, 64) + "%" }

// num formats a count or a ratio: whole numbers with thousands separators,
// others with one decimal.
func num(f float64) string {
	if f >= 1e9 {
		return "inf"
	}
	if f != math.Trunc(f) {
		if f >= 100 {
			f = math.Round(f)
		} else {
			return strconv.FormatFloat(f, 'f', 1, 64)
		}
	}
	s := strconv.FormatInt(int64(f), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// secs formats seconds compactly: "7s", "31s", "16m", "1.2h".
func secs(s float64) string {
	switch {
	case s < 100:
		return strconv.FormatFloat(s, 'f', 0, 64) + "s"
	case s < 6000:
		return strconv.FormatFloat(s/60, 'f', 0, 64) + "m"
	}
	return strconv.FormatFloat(s/3600, 'f', 1, 64) + "h"
}

// row is one scenario as printed, shared by the table and markdown outputs.
type row struct {
	id, name, label, streams, ipHours, quar, perIPH, chal, rtd, std, reason, shared, sharedWithin, naive, target string
}

// header names the columns of row, in order.
var header = row{"ID", "NAME", "LABEL", "STREAMS", "IP-H", "QUARANTINED [WILSON 95%]", "/IP-H", "CHAL",
	"RTD 50/90", "STD 50/90", "REASON", "SHARED", "SHARED<=2M", "NAIVE", "TARGET"}

func (r row) cells() []string {
	return []string{r.id, r.name, r.label, r.streams, r.ipHours, r.quar, r.perIPH, r.chal, r.rtd, r.std,
		r.reason, r.shared, r.sharedWithin, r.naive, r.target}
}

// rowOf formats one scenario's statistics.
func rowOf(s *scenarioStats) row {
	p, lo, hi := s.quarantineRate()
	r := row{
		id: s.id, name: s.sc.Name, label: string(s.sc.Label),
		streams: num(float64(s.streams)), ipHours: num(s.ipHours),
		quar:   fmt.Sprintf("%s [%s, %s]", pct1(p), pct1(lo), pct1(hi)),
		perIPH: "-", chal: pct1(s.rate(s.challenged)),
		rtd: "-", std: "-", reason: "-",
		shared: pct1(s.rate(s.shared)), sharedWithin: "-",
		naive: pct1(s.rate(s.naive)), target: scenarioTarget(s.id),
	}
	if s.sc.Label == traffic.Human {
		r.perIPH = pct3(s.perIPHour())
	}
	if len(s.rtd) > 0 {
		r.rtd = fmt.Sprintf("%d/%d", s.medianRTD(), percentile(s.rtd, 0.9))
		r.std = secs(percentile(s.std, 0.5)) + "/" + secs(percentile(s.std, 0.9))
	}
	if s.reason != "" {
		r.reason = s.reason
		if s.challengeReason {
			r.reason = "(" + s.reason + ")"
		}
	}
	if s.sc.Clients > 1 {
		r.sharedWithin = pct1(s.rate(s.sharedWithin))
	}
	if s.sc.Label == traffic.OutOfScope && r.target == "no target" {
		r.target = "no target (out of scope)"
	}
	return r
}

// naiveRow is one scenario's naive-baseline figures as printed, next to
// Flow Lock's quarantine rate on the same streams. The baseline has no
// challenge band and gives no reason, so those columns have no counterpart.
type naiveRow struct {
	id, name, label, streams, quar, perIPH, rtd, std, flowLock string
}

// naiveHeader names the columns of naiveRow, in order.
var naiveHeader = naiveRow{"ID", "NAME", "LABEL", "STREAMS", "NAIVE QUARANTINED [WILSON 95%]", "NAIVE /IP-H",
	"NAIVE RTD 50/90", "NAIVE STD 50/90", "FLOW LOCK QUARANTINED"}

func (r naiveRow) cells() []string {
	return []string{r.id, r.name, r.label, r.streams, r.quar, r.perIPH, r.rtd, r.std, r.flowLock}
}

// naiveRowOf formats one scenario's naive-baseline statistics.
func naiveRowOf(s *scenarioStats) naiveRow {
	p, lo, hi := s.naiveRate()
	r := naiveRow{
		id: s.id, name: s.sc.Name, label: string(s.sc.Label), streams: num(float64(s.streams)),
		quar:   fmt.Sprintf("%s [%s, %s]", pct1(p), pct1(lo), pct1(hi)),
		perIPH: "-", rtd: "-", std: "-",
		flowLock: pct1(s.rate(s.quarantined)),
	}
	if s.sc.Label == traffic.Human {
		r.perIPH = pct3(s.naivePerIPHour())
	}
	if len(s.naiveRTD) > 0 {
		r.rtd = fmt.Sprintf("%d/%d", percentile(s.naiveRTD, 0.5), percentile(s.naiveRTD, 0.9))
		r.std = secs(percentile(s.naiveSTD, 0.5)) + "/" + secs(percentile(s.naiveSTD, 0.9))
	}
	return r
}

// naiveCaption says what the naive table is, for the table output.
const naiveCaption = "naive baseline (the brief's RPM + 1/variance formula, DETECTION.md §6.4) on the same streams; " +
	"it has no challenge band and gives no reason"

// describe writes the lines that say what was run.
func describe(w io.Writer, r *evalReport, prefix string) {
	cfg := r.setup.cfg
	fmt.Fprintf(w, "%sseed set %s: stream k of every scenario uses seed %d+k\n", prefix, r.opts.seedSet, r.opts.seed)
	fmt.Fprintf(w, "%spolicy: authz.Policy over risk.Engine and quarantine.List with the service defaults "+
		"(risk threshold %d, challenge %d, confirm %d, quarantine TTL %s, sweep every %s), virtual time, one address per stream\n",
		prefix, cfg.RiskThreshold, cfg.ChallengeThreshold, cfg.Confirm, shortDuration(cfg.QuarantineTTL), shortDuration(cfg.SweepInterval))
	switch {
	case r.opts.replicas > 1 && r.opts.unshared:
		fmt.Fprintf(w, "%sreplicas: each request to one of %d replicas at random; they share nothing\n", prefix, r.opts.replicas)
	case r.opts.replicas > 1:
		fmt.Fprintf(w, "%sreplicas: each request to one of %d replicas at random; they share state through Redis at %s\n",
			prefix, r.opts.replicas, r.opts.redisAddr)
	}
	if r.opts.maxRequests > 0 {
		fmt.Fprintf(w, "%sstreams stop after %d requests\n", prefix, r.opts.maxRequests)
	}
	n, h := r.singleHumanTotals()
	fmt.Fprintf(w, "%ssingle-user humans with a target (%s): %s streams, %s IP-hours\n",
		prefix, strings.Join(singleHumans, ", "), num(float64(n)), num(h))
}

// writeTable prints the report for people.
func writeTable(w io.Writer, r *evalReport) error {
	fmt.Fprintln(w, "Flow Lock detection evaluation")
	describe(w, r, "")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header.cells(), "\t"))
	for i := range r.stats {
		fmt.Fprintln(tw, strings.Join(rowOf(&r.stats[i]).cells(), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, naiveCaption)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(naiveHeader.cells(), "\t"))
	for i := range r.stats {
		fmt.Fprintln(tw, strings.Join(naiveRowOf(&r.stats[i]).cells(), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "targets (DETECTION.md §9): %d of %d PASS\n", len(r.targets)-r.failed(), len(r.targets))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tSCENARIO\tTARGET\tMEASURED")
	for _, t := range r.targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", passFail(t.Pass), t.Scenario, t.Target, t.Measured)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.sweepCols != nil {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "threshold sweep: share of streams quarantined (confirmed) at each risk threshold")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprint(tw, "ID\tLABEL")
		for _, t := range r.sweepCols {
			fmt.Fprintf(tw, "\t>=%d", t)
		}
		fmt.Fprintln(tw)
		for i := range r.stats {
			s := &r.stats[i]
			fmt.Fprintf(tw, "%s\t%s", s.id, s.sc.Label)
			for _, t := range r.sweepCols {
				fmt.Fprintf(tw, "\t%s", pct1(s.rate(s.sweep[t])))
			}
			fmt.Fprintln(tw)
		}
		return tw.Flush()
	}
	return nil
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// jsonScenario is one scenario in the JSON output.
type jsonScenario struct {
	ID              string   `json:"id"`
	Name            string   `json:"name"`
	Label           string   `json:"label"`
	Streams         int      `json:"streams"`
	Requests        int64    `json:"requests"`
	IPHours         float64  `json:"ip_hours"`
	Quarantined     int      `json:"quarantined"`
	QuarantineRate  float64  `json:"quarantine_rate"`
	WilsonLow       float64  `json:"wilson_low"`
	WilsonHigh      float64  `json:"wilson_high"`
	PerIPHour       float64  `json:"quarantined_per_ip_hour"`
	ChallengeRate   float64  `json:"challenge_rate"`
	RTDMedian       int      `json:"rtd_median"`
	RTDP90          int      `json:"rtd_p90"`
	STDMedian       float64  `json:"std_median_seconds"`
	STDP90          float64  `json:"std_p90_seconds"`
	Reason          string   `json:"reason"`
	ChallengeReason bool     `json:"reason_from_challenges,omitempty"`
	SharedRate      float64  `json:"shared_rate"`
	SharedWithin    *float64 `json:"shared_within_2m_rate,omitempty"`
	// The naive baseline on the same streams. It has no challenge band
	// and gives no reason, so there are no naive counterparts to those.
	NaiveQuarantined int     `json:"naive_quarantined"`
	NaiveRate        float64 `json:"naive_rate"`
	NaiveWilsonLow   float64 `json:"naive_wilson_low"`
	NaiveWilsonHigh  float64 `json:"naive_wilson_high"`
	NaivePerIPHour   float64 `json:"naive_quarantined_per_ip_hour"`
	NaiveRTDMedian   int     `json:"naive_rtd_median"`
	NaiveRTDP90      int     `json:"naive_rtd_p90"`
	NaiveSTDMedian   float64 `json:"naive_std_median_seconds"`
	NaiveSTDP90      float64 `json:"naive_std_p90_seconds"`

	Target string             `json:"target"`
	Sweep  map[string]float64 `json:"threshold_sweep,omitempty"`
}

// jsonReport is the JSON output.
type jsonReport struct {
	SeedSet   string         `json:"seed_set"`
	FirstSeed uint64         `json:"first_seed"`
	Scenarios []jsonScenario `json:"scenarios"`
	Targets   []targetResult `json:"targets"`
	Failed    int            `json:"targets_failed"`
}

// writeJSON prints the report as one JSON document.
func writeJSON(w io.Writer, r *evalReport) error {
	out := jsonReport{SeedSet: r.opts.seedSet, FirstSeed: r.opts.seed, Targets: r.targets, Failed: r.failed()}
	for i := range r.stats {
		s := &r.stats[i]
		p, lo, hi := s.quarantineRate()
		np, nlo, nhi := s.naiveRate()
		js := jsonScenario{
			ID: s.id, Name: s.sc.Name, Label: string(s.sc.Label), Streams: s.streams, Requests: s.requests,
			IPHours: s.ipHours, Quarantined: s.quarantined, QuarantineRate: p, WilsonLow: lo, WilsonHigh: hi,
			PerIPHour: s.perIPHour(), ChallengeRate: s.rate(s.challenged),
			RTDMedian: s.medianRTD(), RTDP90: percentile(s.rtd, 0.9),
			STDMedian: percentile(s.std, 0.5), STDP90: percentile(s.std, 0.9),
			Reason: s.reason, ChallengeReason: s.challengeReason,
			SharedRate: s.rate(s.shared), Target: scenarioTarget(s.id),
			NaiveQuarantined: s.naive, NaiveRate: np, NaiveWilsonLow: nlo, NaiveWilsonHigh: nhi,
			NaivePerIPHour: s.naivePerIPHour(),
			NaiveRTDMedian: percentile(s.naiveRTD, 0.5), NaiveRTDP90: percentile(s.naiveRTD, 0.9),
			NaiveSTDMedian: percentile(s.naiveSTD, 0.5), NaiveSTDP90: percentile(s.naiveSTD, 0.9),
		}
		if s.sc.Clients > 1 {
			v := s.rate(s.sharedWithin)
			js.SharedWithin = &v
		}
		if s.sweep != nil {
			js.Sweep = map[string]float64{}
			for t, n := range s.sweep {
				js.Sweep[strconv.Itoa(int(t))] = s.rate(n)
			}
		}
		out.Scenarios = append(out.Scenarios, js)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
