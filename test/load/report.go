package load

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Report is what one harness run measured.
type Report struct {
	Settings    Settings     `json:"settings"`
	Comparisons []Comparison `json:"comparisons"`
	Curve       []CurvePoint `json:"cost_curve,omitempty"`
}

// Settings records how the run was made, for the reader of the numbers.
type Settings struct {
	CPUs          int     `json:"cpus"`
	GoVersion     string  `json:"go_version"`
	DurationS     float64 `json:"duration_s"`
	Rounds        int     `json:"rounds"`
	Concurrency   int     `json:"concurrency"`
	Conns         int     `json:"conns"`
	Clients       int     `json:"clients"`
	Bots          int     `json:"bots"`
	BotPeriodMS   float64 `json:"bot_period_ms"`
	MemLimitGCOff string  `json:"gomemlimit_gc_off"`
	ServerCPUs    string  `json:"server_cpus"`
	ClientCPUs    string  `json:"client_cpus"`
}

func settingsOf(cfg Config) Settings {
	return Settings{
		CPUs: runtime.NumCPU(), GoVersion: runtime.Version(),
		DurationS: cfg.Duration.Seconds(), Rounds: cfg.Rounds, Concurrency: cfg.Concurrency, Conns: cfg.Conns,
		Clients: cfg.Clients, Bots: cfg.Bots, BotPeriodMS: float64(cfg.BotPeriod) / 1e6,
		MemLimitGCOff: cfg.MemLimit, ServerCPUs: cfg.ServerCPUs, ClientCPUs: cfg.ClientCPUs,
	}
}

// Comparison is the four servers measured in turn under one GC setting.
type Comparison struct {
	GC string `json:"gc"`
	// Quarantined is how many bots the enforce server held in quarantine
	// after the flood.
	Quarantined int   `json:"bots_quarantined"`
	Closed      []Row `json:"closed_loop"`
	// Rate is the open loop's Checks per second; Open its rows.
	Rate float64 `json:"open_loop_rate,omitempty"`
	Open []Row   `json:"open_loop,omitempty"`
}

// Row is one server's numbers, pooled over the rounds.
type Row struct {
	Server     string        `json:"server"`
	Checks     int           `json:"checks"`
	Throughput float64       `json:"checks_per_s"`
	P50        time.Duration `json:"p50_ns"`
	P99        time.Duration `json:"p99_ns"`
	// ServerCPUPerCheck is the server's user and system CPU time over the
	// stretch (from /proc/PID/stat) divided by the Checks answered.
	ServerCPUPerCheck time.Duration `json:"server_cpu_per_check_ns"`
	// GeneratorCPUPerCheck and GeneratorBusy show whether the load
	// generator, not the server, was the limit: busy near 1 means it was.
	GeneratorCPUPerCheck time.Duration `json:"generator_cpu_per_check_ns"`
	GeneratorBusy        float64       `json:"generator_busy"`
	Allowed              int           `json:"allowed"`
	Denied               int           `json:"denied_403"`
	Other                int           `json:"other"`
	// The ratios, each the median over the rounds of the ratio within a
	// round: throughput against the no-op server's and the transport
	// floor's (above 1 is faster), CPU per Check and p99 latency against
	// the no-op's (below 1 is cheaper, faster), and for the deny path,
	// throughput against the allow path's. VsNoopRounds lists every
	// round's throughput ratio, to show the spread.
	VsNoopRounds []float64 `json:"throughput_vs_noop_rounds"`
	VsNoop       float64   `json:"throughput_vs_noop"`
	VsFloor      float64   `json:"throughput_vs_floor"`
	CPUVsNoop    float64   `json:"cpu_per_check_vs_noop"`
	P99VsNoop    float64   `json:"p99_vs_noop"`
	VsAllowPath  float64   `json:"throughput_vs_allow_path,omitempty"`
}

// CurvePoint is Flow Lock at one count of tracked clients.
type CurvePoint struct {
	Clients int `json:"clients"`
	// Tracked is what Flow Lock reports tracking
	// (flowlock_risk_tracked_identities).
	Tracked int `json:"tracked"`
	// RSS is VmRSS after the measurement; BaseRSS before any traffic.
	// RSSPerClient is (RSS-BaseRSS)/Tracked; RSSPerAddedClient is the
	// growth of RSS since the previous point over the clients added, the
	// slope of the curve, which the runtime's own start-up does not blur.
	RSS               int64         `json:"rss_bytes"`
	BaseRSS           int64         `json:"base_rss_bytes"`
	RSSPerClient      float64       `json:"rss_per_client_bytes"`
	RSSPerAddedClient float64       `json:"rss_per_added_client_bytes,omitempty"`
	Throughput        float64       `json:"checks_per_s"`
	P50               time.Duration `json:"p50_ns"`
	P99               time.Duration `json:"p99_ns"`
	ServerCPUPerCheck time.Duration `json:"server_cpu_per_check_ns"`
}

// fillRatios sets each row's ratios from the rounds: in each round, the
// server against the no-op server and the transport floor measured in the
// same round, and the deny path against the allow path; the row gets the
// median over the rounds, and the throughput ratio's every round. On a
// shared machine the load of the neighbours drifts over seconds: a ratio
// within one round, a few seconds apart, cancels most of it, where a ratio
// of pooled totals would not.
func fillRatios(rows []Row, rounds [][]Row) {
	for i := range rows {
		r := &rows[i]
		var vsNoop, vsFloor, cpuVsNoop, p99VsNoop, vsAllow []float64
		for _, round := range rounds {
			me, noop, floor, allow := find(round, r.Server), find(round, Noop), find(round, Floor), find(round, Shadow)
			if me == nil {
				continue
			}
			vsNoop = appendRatio(vsNoop, me.Throughput, noop, func(x *Row) float64 { return x.Throughput })
			vsFloor = appendRatio(vsFloor, me.Throughput, floor, func(x *Row) float64 { return x.Throughput })
			cpuVsNoop = appendRatio(cpuVsNoop, float64(me.ServerCPUPerCheck), noop, func(x *Row) float64 { return float64(x.ServerCPUPerCheck) })
			p99VsNoop = appendRatio(p99VsNoop, float64(me.P99), noop, func(x *Row) float64 { return float64(x.P99) })
			if r.Server == Enforce {
				vsAllow = appendRatio(vsAllow, me.Throughput, allow, func(x *Row) float64 { return x.Throughput })
			}
		}
		r.VsNoopRounds = vsNoop
		r.VsNoop, r.VsFloor, r.CPUVsNoop, r.VsAllowPath = median(vsNoop), median(vsFloor), median(cpuVsNoop), median(vsAllow)
		r.P99VsNoop = median(p99VsNoop)
	}
}

func find(rows []Row, server string) *Row {
	for i := range rows {
		if rows[i].Server == server {
			return &rows[i]
		}
	}
	return nil
}

// appendRatio appends mine / of(base) unless base is missing or zero.
func appendRatio(list []float64, mine float64, base *Row, of func(*Row) float64) []float64 {
	if base == nil || of(base) <= 0 {
		return list
	}
	return append(list, mine/of(base))
}

// median returns the median of xs, or 0 without any.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes r for people: markdown tables (for the README) when
// markdown is set, aligned text otherwise.
func (r *Report) WriteTable(w io.Writer, markdown bool) {
	s := r.Settings
	fmt.Fprintf(w, "%d CPUs, %s; servers on CPUs %q, load generator on %q; %d rounds of %gs per server; "+
		"closed loop %d in flight over %d connections; %d client addresses (allow path), %d bots (deny path, one request per %gms until quarantined)\n\n",
		s.CPUs, s.GoVersion, s.ServerCPUs, s.ClientCPUs, s.Rounds, s.DurationS, s.Concurrency, s.Conns, s.Clients, s.Bots, s.BotPeriodMS)
	for _, c := range r.Comparisons {
		gc := "default GC settings (GOGC=100, no GOMEMLIMIT)"
		if c.GC == "off" {
			gc = "GOGC=off GOMEMLIMIT=" + s.MemLimitGCOff
		}
		fmt.Fprintf(w, "Closed loop, %s; %d of %d bots quarantined:\n\n", gc, c.Quarantined, s.Bots)
		writeRows(w, c.Closed, markdown)
		if len(c.Open) > 0 {
			fmt.Fprintf(w, "\nOpen loop at %.0f Check/s (latency from each request's due time), %s:\n\n", c.Rate, gc)
			writeRows(w, c.Open, markdown)
		}
		fmt.Fprintln(w)
	}
	if len(r.Curve) > 0 {
		fmt.Fprintf(w, "Cost curve: Flow Lock in shadow mode, default GC settings, closed loop over the tracked clients:\n\n")
		t := newTable("tracked clients", "Check/s", "p50", "p99", "CPU/Check", "RSS", "RSS per client", "RSS per added client")
		for _, p := range r.Curve {
			added := "-"
			if p.RSSPerAddedClient > 0 {
				added = fmt.Sprintf("%.0f B", p.RSSPerAddedClient)
			}
			t.add(fmt.Sprintf("%d", p.Tracked), fmt.Sprintf("%.0f", p.Throughput), ms(p.P50), ms(p.P99), us(p.ServerCPUPerCheck),
				fmt.Sprintf("%.0f MB", float64(p.RSS)/1e6), fmt.Sprintf("%.0f B", p.RSSPerClient), added)
		}
		t.write(w, markdown)
	}
}

func writeRows(w io.Writer, rows []Row, markdown bool) {
	t := newTable("server", "Check/s", "vs no-op (rounds)", "vs floor", "p50", "p99", "p99 vs no-op", "CPU/Check", "CPU vs no-op", "answers", "generator busy")
	for _, r := range rows {
		vs := fmt.Sprintf("%.2f×", r.VsNoop)
		if len(r.VsNoopRounds) > 1 && r.Server != Noop {
			vs += fmt.Sprintf(" (%.2f–%.2f)", slices.Min(r.VsNoopRounds), slices.Max(r.VsNoopRounds))
		}
		if r.VsAllowPath > 0 {
			vs += fmt.Sprintf(" (%.2f× allow)", r.VsAllowPath)
		}
		t.add(r.Server, fmt.Sprintf("%.0f", r.Throughput), vs, fmt.Sprintf("%.2f×", r.VsFloor),
			ms(r.P50), ms(r.P99), fmt.Sprintf("%.2f×", r.P99VsNoop), us(r.ServerCPUPerCheck), fmt.Sprintf("%.2f×", r.CPUVsNoop),
			answers(r), fmt.Sprintf("%.0f%%", 100*r.GeneratorBusy))
	}
	t.write(w, markdown)
}

// answers says what the server answered, in shares.
func answers(r Row) string {
	n := float64(r.Allowed + r.Denied + r.Other)
	if n == 0 {
		return "-"
	}
	var parts []string
	for _, p := range []struct {
		name string
		n    int
	}{{"allow", r.Allowed}, {"403", r.Denied}, {"other", r.Other}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%.0f%% %s", 100*float64(p.n)/n, p.name))
		}
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }

// table is a small text or markdown table.
type table struct {
	head []string
	rows [][]string
}

func newTable(head ...string) *table { return &table{head: head} }

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer, markdown bool) {
	if markdown {
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(t.head, " | "), strings.Repeat("---|", len(t.head)))
		for _, r := range t.rows {
			fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
		}
		return
	}
	width := make([]int, len(t.head))
	for _, r := range append([][]string{t.head}, t.rows...) {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for _, r := range append([][]string{t.head}, t.rows...) {
		for i, c := range r {
			fmt.Fprintf(w, "%s%s  ", c, strings.Repeat(" ", width[i]-len([]rune(c))))
		}
		fmt.Fprintln(w)
	}
}
