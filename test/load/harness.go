package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// The servers, in the order each round measures them.
const (
	Shadow  = "flowlock shadow (allow path)"
	Enforce = "flowlock enforce (deny path, bot flood)"
	Noop    = "no-op ext_authz"
	Floor   = "transport floor"
)

// Binaries are the programs the harness starts.
type Binaries struct {
	FlowLock, Noop, Floor string
}

// Config is one harness run. Zero fields take the defaults of
// DefaultConfig where it says so.
type Config struct {
	Bin Binaries
	// Duration is the length of each measured stretch; Warmup the unmeasured
	// stretch each server gets first.
	Duration, Warmup time.Duration
	// Rounds is how many times the servers are measured in turn (A B C D
	// A B C D ...), so that a slow moment of the machine spreads over all of
	// them.
	Rounds int
	// Concurrency is the Checks in flight in the closed loop, and the most
	// in flight in the open loop; Conns the HTTP/2 connections they share.
	Concurrency, Conns int
	// Clients is the number of client addresses of the allow-path traffic.
	Clients int
	// Bots flood the enforce server at a fixed period each, until they are
	// quarantined; the deny path is then measured on them.
	Bots      int
	BotPeriod time.Duration
	// Rate is the open loop's rate in Checks per second, the same for every
	// server. 0 takes half the lowest closed-loop throughput of the run; a
	// negative rate skips the open loop.
	Rate float64
	// GC lists the garbage-collector settings to run the comparison under:
	// "default" (GOGC=100, no memory limit) and "off" (GOGC=off
	// GOMEMLIMIT=MemLimit): a collection only when the heap reaches the
	// limit, so that no server's larger live heap buys it rarer
	// collections. MemLimit is small (128 MiB) so that the warm-up reaches
	// it: a heap still growing into fresh pages pays page faults the
	// steady state does not.
	GC       []string
	MemLimit string
	// Curve lists the tracked-client counts of the cost curve, ascending;
	// empty skips it. A fresh Flow Lock in shadow mode at default GC
	// settings is filled with that many clients, one Check each, and then
	// measured on them.
	Curve []int
	// ServerCPUs and ClientCPUs pin the servers and this process (the load
	// generator) to separate CPUs with taskset(1); empty leaves them free.
	ServerCPUs, ClientCPUs string
	// LogDir holds the servers' output.
	LogDir string
	// Progress receives one line per step; nil discards.
	Progress io.Writer
}

// DefaultConfig is `make loadtest` without flags.
func DefaultConfig() Config {
	return Config{
		Duration:    2 * time.Second,
		Warmup:      3 * time.Second,
		Rounds:      8,
		Concurrency: 64,
		Conns:       2,
		Clients:     10_000,
		Bots:        1_000,
		BotPeriod:   200 * time.Millisecond,
		GC:          []string{"off", "default"},
		MemLimit:    "128MiB",
		Curve:       []int{1_000, 100_000, 1_000_000},
	}
}

// botRequests is how many requests each bot sends in the flood: a fixed
// rhythm is confirmed by about the 17th (docs/detection.md, B1).
const botRequests = 30

// serverLimits bound each server: room for 1 M tracked clients, not for a
// runaway.
var serverLimits = flowlocktest.Limits{AddressSpace: 8 << 30, OpenFiles: 4096}

// Run runs the comparison under each GC setting and then the cost curve.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.LogDir == "" {
		dir, err := os.MkdirTemp("", "flowlock-load-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cfg.LogDir = dir
	}
	rep := &Report{Settings: settingsOf(cfg)}
	clients := Addresses(max(cfg.Clients, cfg.Bots))
	for _, gc := range cfg.GC {
		set, err := compare(ctx, cfg, gc, clients)
		if err != nil {
			return rep, fmt.Errorf("GC %s: %w", gc, err)
		}
		rep.Comparisons = append(rep.Comparisons, set)
	}
	if len(cfg.Curve) > 0 {
		curve, err := costCurve(ctx, cfg)
		rep.Curve = curve
		if err != nil {
			return rep, fmt.Errorf("cost curve: %w", err)
		}
	}
	return rep, nil
}

// gcEnv returns the environment of a GC setting.
func gcEnv(gc, memLimit string) ([]string, error) {
	switch gc {
	case "default":
		return []string{"GOGC=100", "GOMEMLIMIT=off"}, nil
	case "off":
		return []string{"GOGC=off", "GOMEMLIMIT=" + memLimit}, nil
	}
	return nil, fmt.Errorf(`GC setting %q: want "default" or "off"`, gc)
}

// flowLockArgs are the flags every Flow Lock the harness starts gets:
// loopback on free ports, JSON logs (the harness reads the "listening"
// line), and no drain delay (nothing routes by health here).
func flowLockArgs(extra ...string) []string {
	return append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--log-format", "json", "--drain-delay", "0s"}, extra...)
}

// target is one server under measurement and the traffic it gets.
type target struct {
	srv    *Server
	client *Client
	load   Load // Duration, Concurrency and Rate are set per stretch
}

// compare starts the four servers under one GC setting, floods the enforce
// server with bots until they are quarantined, and measures the servers in
// turn, closed loop and then open loop.
func compare(ctx context.Context, cfg Config, gc string, clients []string) (Comparison, error) {
	set := Comparison{GC: gc}
	env, err := gcEnv(gc, cfg.MemLimit)
	if err != nil {
		return set, err
	}
	launches := []Launch{
		{Name: Shadow, Bin: cfg.Bin.FlowLock, Args: flowLockArgs("--mode", "shadow")},
		// The bots stay quarantined for the whole run.
		{Name: Enforce, Bin: cfg.Bin.FlowLock, Args: flowLockArgs("--mode", "enforce", "--quarantine-ttl", "1h", "--quarantine-max-ttl", "1h")},
		{Name: Noop, Bin: cfg.Bin.Noop, Args: []string{"-grpc-addr", "127.0.0.1:0"}},
		{Name: Floor, Bin: cfg.Bin.Floor, Args: []string{"-grpc-addr", "127.0.0.1:0"}},
	}
	var targets []*target
	defer func() {
		for _, t := range targets {
			t.client.Close()
			t.srv.Stop()
		}
	}()
	for _, l := range launches {
		l.Env, l.CPUs, l.Limits = env, cfg.ServerCPUs, serverLimits
		l.LogDir = cfg.LogDir
		l.Name += " gc-" + gc
		srv, err := Start(l)
		if err != nil {
			return set, err
		}
		srv.Name = strings.TrimSuffix(srv.Name, " gc-"+gc)
		c, err := Dial(srv.GRPCAddr, cfg.Conns)
		if err != nil {
			srv.Stop()
			return set, err
		}
		allow := Load{Clients: clients[:cfg.Clients], Order: Random, XFF: true}
		targets = append(targets, &target{srv: srv, client: c, load: allow})
	}
	progress(cfg, "GC %s: started %d servers", gc, len(targets))

	// The deny path: bots with a fixed rhythm, each request stamped with
	// when it was due, until the enforce server has quarantined them all;
	// then every Check from them is denied.
	enforce := targets[1]
	bots := clients[:cfg.Bots]
	flood := enforce.client.Run(ctx, Load{
		Clients: bots, Order: InOrder, XFF: true, StampDue: true,
		Concurrency: max(cfg.Concurrency, 64), Rate: float64(cfg.Bots) / cfg.BotPeriod.Seconds(),
		Duration: botRequests*cfg.BotPeriod + 30*time.Second, Requests: botRequests * cfg.Bots,
	})
	if flood.Errors > 0 {
		return set, fmt.Errorf("bot flood: %d of %d Checks failed: %v", flood.Errors, flood.Sent, flood.FirstError)
	}
	quarantined, err := waitMetric(ctx, enforce.srv, "flowlock_quarantine_active", float64(cfg.Bots), 10*time.Second)
	if err != nil {
		return set, fmt.Errorf("bot flood: %w", err)
	}
	set.Quarantined = int(quarantined)
	progress(cfg, "GC %s: %d of %d bots quarantined after %d Checks", gc, set.Quarantined, cfg.Bots, flood.Sent)
	enforce.load = Load{Clients: bots, Order: Random, XFF: true}

	for _, t := range targets {
		l := t.load
		l.Duration, l.Concurrency = cfg.Warmup, cfg.Concurrency
		t.client.Run(ctx, l)
	}
	closed, err := rounds(ctx, cfg, targets, 0)
	if err != nil {
		return set, err
	}
	set.Closed = closed
	if cfg.Rate >= 0 {
		rate := cfg.Rate
		if rate == 0 {
			rate = closed[0].Throughput
			for _, r := range closed {
				rate = min(rate, r.Throughput)
			}
			rate = float64(int(rate / 2))
		}
		set.Rate = rate
		open, err := rounds(ctx, cfg, targets, rate)
		if err != nil {
			return set, err
		}
		set.Open = open
	}
	return set, nil
}

// rounds measures every target cfg.Rounds times in turn, closed loop when
// rate is 0 and open loop at rate otherwise, and returns one row per
// target: its counts and latencies pooled over the rounds, its ratios the
// median of each round's (see fillRatios).
func rounds(ctx context.Context, cfg Config, targets []*target, rate float64) ([]Row, error) {
	acc := make([]measured, len(targets))
	perRound := make([][]Row, cfg.Rounds)
	for r := range cfg.Rounds {
		for i, t := range targets {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			l := t.load
			l.Duration, l.Concurrency, l.Rate = cfg.Duration, cfg.Concurrency, rate
			m, err := measure(ctx, t.srv, t.client, l)
			if err != nil {
				return nil, err
			}
			progress(cfg, "round %d/%d %-40s %8.0f Check/s  p99 %8v  CPU/Check %v", r+1, cfg.Rounds, t.srv.Name,
				m.res.Throughput(), m.res.Quantile(0.99).Round(time.Microsecond), m.cpuPerCheck().Round(100*time.Nanosecond))
			perRound[r] = append(perRound[r], m.row(t.srv.Name))
			acc[i].add(m)
			// Let the server just measured finish what it was doing (a
			// collection) before the next one starts on the same CPU.
			time.Sleep(300 * time.Millisecond)
		}
	}
	rows := make([]Row, len(targets))
	for i, t := range targets {
		rows[i] = acc[i].row(t.srv.Name)
	}
	fillRatios(rows, perRound)
	return rows, nil
}

// measured is one or more stretches against one server.
type measured struct {
	res       Result
	serverCPU time.Duration
	genCPU    time.Duration
}

// measure runs l against srv and takes the server's and this process's CPU
// time around it.
func measure(ctx context.Context, srv *Server, c *Client, l Load) (measured, error) {
	cpu0, err0 := CPUTime(srv.PID())
	gen0, err1 := CPUTime(os.Getpid())
	res := c.Run(ctx, l)
	cpu1, err2 := CPUTime(srv.PID())
	gen1, err3 := CPUTime(os.Getpid())
	if err := errors.Join(err0, err1, err2, err3); err != nil {
		return measured{}, fmt.Errorf("%s: CPU time: %w", srv.Name, err)
	}
	if res.Errors > 0 {
		return measured{}, fmt.Errorf("%s: %d of %d Checks failed: %v", srv.Name, res.Errors, res.Sent, res.FirstError)
	}
	if srv.Exited() {
		return measured{}, fmt.Errorf("%s exited: %s", srv.Name, srv.Tail())
	}
	return measured{res: res, serverCPU: cpu1 - cpu0, genCPU: gen1 - gen0}, nil
}

// cpuPerCheck is the server's CPU time per answered Check.
func (m *measured) cpuPerCheck() time.Duration {
	if n := m.res.Sent - m.res.Errors; n > 0 {
		return m.serverCPU / time.Duration(n)
	}
	return 0
}

func (m *measured) add(o measured) {
	m.res.merge(&o.res)
	m.res.Elapsed += o.res.Elapsed
	m.serverCPU += o.serverCPU
	m.genCPU += o.genCPU
}

// row summarizes m.
func (m *measured) row(name string) Row {
	slices.Sort(m.res.Latencies)
	answered := m.res.Sent - m.res.Errors
	r := Row{
		Server:     name,
		Checks:     answered,
		Throughput: m.res.Throughput(),
		P50:        m.res.Quantile(0.50),
		P99:        m.res.Quantile(0.99),
		Allowed:    m.res.Allowed,
		Denied:     m.res.Denied,
		Other:      m.res.Other,
	}
	if answered > 0 {
		r.ServerCPUPerCheck = m.cpuPerCheck()
		r.GeneratorCPUPerCheck = m.genCPU / time.Duration(answered)
	}
	if m.res.Elapsed > 0 {
		r.GeneratorBusy = m.genCPU.Seconds() / m.res.Elapsed.Seconds() / float64(runtime.GOMAXPROCS(0))
	}
	return r
}

// waitMetric polls a Flow Lock metric until it reaches want or timeout
// passes, and returns its last value; short of want is an error.
func waitMetric(ctx context.Context, srv *Server, name string, want float64, timeout time.Duration) (float64, error) {
	deadline := time.Now().Add(timeout)
	for {
		v, err := srv.Metric(name)
		if err != nil {
			return 0, err
		}
		if v >= want {
			return v, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return v, fmt.Errorf("%s: %s is %v, want %v", srv.Name, name, v, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// costCurve starts a fresh Flow Lock in shadow mode at default GC settings,
// fills it with each count of cfg.Curve clients in turn (one Check each,
// new addresses only), and measures RSS, throughput and latency at each.
func costCurve(ctx context.Context, cfg Config) ([]CurvePoint, error) {
	most := slices.Max(cfg.Curve)
	// The cap is per shard: room above the largest count, so that no shard
	// evicts while the curve is drawn.
	maxClients := max(1_000_000, most+most/4)
	srv, err := Start(Launch{
		Name: "flowlock curve", Bin: cfg.Bin.FlowLock,
		Args: flowLockArgs("--mode", "shadow", "--max-clients", strconv.Itoa(maxClients)),
		Env:  []string{"GOGC=100", "GOMEMLIMIT=off"}, CPUs: cfg.ServerCPUs, Limits: serverLimits, LogDir: cfg.LogDir,
	})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	c, err := Dial(srv.GRPCAddr, cfg.Conns)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rss0, err := RSS(srv.PID())
	if err != nil {
		return nil, err
	}
	addrs := Addresses(most)
	var points []CurvePoint
	filled := 0
	for _, n := range cfg.Curve {
		if n <= filled {
			continue
		}
		fill := c.Run(ctx, Load{Clients: addrs[filled:n], Order: InOrder, XFF: true,
			Concurrency: cfg.Concurrency, Duration: 30 * time.Minute, Requests: n - filled})
		if fill.Errors > 0 {
			return points, fmt.Errorf("fill to %d clients: %d Checks failed: %v", n, fill.Errors, fill.FirstError)
		}
		filled = n
		tracked, err := srv.Metric("flowlock_risk_tracked_identities")
		if err != nil {
			return points, err
		}
		progress(cfg, "curve: %d clients sent, %.0f tracked", n, tracked)
		m, err := measure(ctx, srv, c, Load{Clients: addrs[:n], Order: Random, XFF: true,
			Concurrency: cfg.Concurrency, Duration: cfg.Duration})
		if err != nil {
			return points, err
		}
		rss, err := RSS(srv.PID())
		if err != nil {
			return points, err
		}
		row := m.row("flowlock shadow")
		p := CurvePoint{
			Clients: n, Tracked: int(tracked), RSS: rss, BaseRSS: rss0,
			Throughput: row.Throughput, P50: row.P50, P99: row.P99, ServerCPUPerCheck: row.ServerCPUPerCheck,
		}
		if tracked > 0 {
			p.RSSPerClient = float64(rss-rss0) / tracked
		}
		if len(points) > 0 {
			last := points[len(points)-1]
			if added := tracked - float64(last.Tracked); added > 0 {
				p.RSSPerAddedClient = float64(rss-last.RSS) / added
			}
		}
		points = append(points, p)
		progress(cfg, "curve: %d clients: RSS %d MB, %.0f B per client, %.0f Check/s, p99 %v", n, rss>>20, p.RSSPerClient, p.Throughput, p.P99)
	}
	return points, nil
}

func progress(cfg Config, format string, args ...any) {
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, format+"\n", args...)
	}
}
