package main

import (
	"container/heap"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/flowlock/flowlock/internal/traffic"
)

// Defaults and bounds of the live commands.
const (
	defaultLiveDuration = 60 * time.Second
	defaultLiveMaxReqs  = 100_000
	defaultMaxErrors    = 10
	defaultConcurrency  = 64
	defaultSummaryEvery = 5 * time.Second
	maxLiveClients      = 10_000
	maxSpeed            = 1000
)

// liveOptions are the flags shared by "flowlock-sim grpc" and "http".
type liveOptions struct {
	target      string
	scenarios   []traffic.Scenario
	clients     int // per scenario
	duration    time.Duration
	maxRequests int
	speed       float64
	seed        uint64
	quiet       bool
	every       time.Duration
	maxErrors   int
	concurrency int
	timeout     time.Duration
	firstAddr   netip.Addr // invalid: 10.0.0.1, 10.0.0.2, ...
	bindSource  bool       // http: connect from each client's address, send no X-Forwarded-For
	virtualTime bool       // gRPC: stamp request.time with scenario time
}

// parseLive parses the flags of a live command; grpc adds --virtual-time.
func parseLive(name string, args []string, stderr io.Writer) (liveOptions, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	targetHelp := "gRPC `address` of the ext_authz server (host:port); required"
	if name == "http" {
		targetHelp = "base `URL` of the proxy in front of the API, e.g. http://localhost:10000; required"
	}
	target := fs.String("target", "", targetHelp)
	names := fs.String("scenario", "", "comma-separated scenario `names` or ids; required")
	clients := fs.Int("clients", 1, "clients per scenario, each from its own address")
	duration := fs.Duration("duration", defaultLiveDuration, "how long to send, in wall-clock time")
	maxReqs := fs.Int("max-requests", defaultLiveMaxReqs, "stop after `N` requests")
	speed := fs.Float64("speed", 1, "time compression: 10 sends ten times faster than the scenario's rhythm")
	seed := fs.Uint64("seed", 1, "random `seed`; client k of a scenario uses the same stream as trace --clients")
	quiet := fs.Bool("quiet", false, "print a summary every --every instead of one line per request")
	every := fs.Duration("every", defaultSummaryEvery, "summary `interval` with --quiet")
	maxErrors := fs.Int("max-errors", defaultMaxErrors, "give up, with exit status 1, after `N` transport errors")
	concurrency := fs.Int("concurrency", defaultConcurrency, "most requests in flight")
	timeout := fs.Duration("timeout", 5*time.Second, "per-request timeout")
	first := fs.String("first-addr", "", "`address` of the first client (default 10.0.0.1); the others follow")
	var virtual *bool
	var source *string
	if name == "http" {
		source = fs.String("source-ip", "", "connect from this local `address` (the next clients from the ones after it) and send no "+
			"X-Forwarded-For: the proxy or service sees each client at its real address, e.g. 127.0.0.2 on Linux")
	}
	if name == "grpc" {
		virtual = fs.Bool("virtual-time", false, "stamp request.time with the scenario's own time instead of the send time "+
			"(with --speed > 1 it runs ahead of the clock: the server believes it only within its --clock-skew)")
	}
	if err := parse(fs, args); err != nil {
		return liveOptions{}, err
	}
	o := liveOptions{target: *target, clients: *clients, duration: *duration, maxRequests: *maxReqs, speed: *speed,
		seed: *seed, quiet: *quiet, every: *every, maxErrors: *maxErrors, concurrency: *concurrency, timeout: *timeout}
	if virtual != nil {
		o.virtualTime = *virtual
	}
	if o.target == "" {
		return o, usagef("--target is required")
	}
	if *names == "" {
		return o, usagef("--scenario is required; one of: %s", scenarioNames())
	}
	for _, n := range strings.Split(*names, ",") {
		s, ok := traffic.Lookup(strings.TrimSpace(n))
		if !ok {
			return o, usagef("--scenario %q: unknown scenario; one of: %s", n, scenarioNames())
		}
		o.scenarios = append(o.scenarios, s)
	}
	switch {
	case o.clients < 1 || o.clients*len(o.scenarios) > maxLiveClients:
		return o, usagef("--clients %d: want 1 to %d clients in all", o.clients, maxLiveClients)
	case o.duration <= 0:
		return o, usagef("--duration %v: must be positive", o.duration)
	case o.maxRequests < 1:
		return o, usagef("--max-requests %d: must be at least 1", o.maxRequests)
	case !(o.speed > 0 && o.speed <= maxSpeed):
		return o, usagef("--speed %v: want more than 0, at most %d", o.speed, maxSpeed)
	case o.every <= 0:
		return o, usagef("--every %v: must be positive", o.every)
	case o.maxErrors < 1:
		return o, usagef("--max-errors %d: must be at least 1", o.maxErrors)
	case o.concurrency < 1:
		return o, usagef("--concurrency %d: must be at least 1", o.concurrency)
	case o.timeout <= 0:
		return o, usagef("--timeout %v: must be positive", o.timeout)
	}
	if source != nil && *source != "" {
		if *first != "" {
			return o, usagef("--source-ip and --first-addr: give one; with --source-ip the clients' addresses are the source addresses")
		}
		a, err := parseSourceIP(*source, o.clients*len(o.scenarios))
		if err != nil {
			return o, err
		}
		o.firstAddr, o.bindSource = a, true
	}
	if *first != "" {
		a, err := parseFirstAddr(*first, o.clients*len(o.scenarios))
		if err != nil {
			return o, err
		}
		o.firstAddr = a
	}
	return o, nil
}

// addr returns the address of client k of scenario i.
func (o *liveOptions) addr(i, k int) netip.Addr {
	g := i*o.clients + k
	if o.firstAddr.IsValid() {
		return addrPlus(o.firstAddr, g)
	}
	return streamAddr(g, false)
}

// liveRequest is one request to send.
type liveRequest struct {
	addr      netip.Addr
	scenario  string
	method    string
	path      string
	userAgent string
	virtual   time.Time // the request's time in the scenario
	sent      time.Time // wall-clock send time
}

// outcomeKind classifies what happened to a request.
type outcomeKind uint8

const (
	outAllowed  outcomeKind = iota // let through (gRPC OK; HTTP: any status but a deny)
	outDenied                      // 403 with Retry-After: quarantined or deny-listed
	outLimited                     // 429 with Retry-After: over the volume limit
	outUpstream                    // HTTP only: a status from the upstream (or the proxy)
	outFailed                      // transport error
)

// outcome is the answer to one request.
type outcome struct {
	kind       outcomeKind
	status     int    // HTTP status; 0 unknown
	score      int    // x-flowlock-risk on a gRPC allow; -1 unknown
	reason     string // deny reason, when the answer gives one
	retryAfter string
	err        error
}

// sender sends requests to one kind of target.
type sender interface {
	send(ctx context.Context, r *liveRequest) outcome
	io.Closer
}

// liveCounts are the running totals of a live run.
type liveCounts struct {
	sent, allowed, denied, limited, upstream, failed int
}

func (c liveCounts) String() string {
	return fmt.Sprintf("sent=%d allowed=%d denied=%d limited=%d upstream=%d errors=%d",
		c.sent, c.allowed, c.denied, c.limited, c.upstream, c.failed)
}

// liveRun drives one live session.
type liveRun struct {
	o     liveOptions
	s     sender
	out   io.Writer
	start time.Time // wall-clock start, also the scenarios' virtual start

	mu      sync.Mutex // guards the following fields
	counts  liveCounts
	lastErr error
}

// runGRPC implements "flowlock-sim grpc".
func runGRPC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runLive(ctx, "grpc", args, stdout, stderr)
}

// runHTTP implements "flowlock-sim http".
func runHTTP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runLive(ctx, "http", args, stdout, stderr)
}

// runLive implements "flowlock-sim grpc" and "flowlock-sim http".
func runLive(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	o, err := parseLive(name, args, stderr)
	if err != nil {
		return err
	}
	var s sender
	if name == "grpc" {
		s, err = newGRPCSender(o)
	} else {
		s, err = newHTTPSender(o)
	}
	if err != nil {
		return err
	}
	defer s.Close()
	if o.speed > 1 && !o.virtualTime {
		fmt.Fprintf(stderr, "flowlock-sim %s: --speed %g: the server sees a rhythm %g times faster than the scenario's; "+
			"scores are scale-free, but humans lose their multi-second pauses and may look machine-like\n", name, o.speed, o.speed)
	}
	r := &liveRun{o: o, s: s, out: stdout}
	return r.run(ctx)
}

// run sends the merged streams in real time (compressed by --speed) until
// --duration, --max-requests, ctx or --max-errors ends it, then prints the
// totals.
func (r *liveRun) run(ctx context.Context) error {
	o := r.o
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r.start = time.Now().Truncate(time.Millisecond)
	deadline := r.start.Add(o.duration)

	m := make(merger, 0, len(o.scenarios)*o.clients)
	var addrs []string
	for i, sc := range o.scenarios {
		horizon := time.Duration(float64(o.duration) * o.speed)
		sc.Horizon = max(sc.Horizon, horizon) // scenarios run as long as the session
		for k := range o.clients {
			st := sc.Stream(streamSeed(o.seed, k), r.start)
			addr := o.addr(i, k)
			if req, ok := st.Next(); ok {
				m = append(m, pending{req: req, k: i*o.clients + k, st: st, ip: addr.String()})
			}
			addrs = append(addrs, addr.String())
		}
	}
	heap.Init(&m)
	names := make([]string, len(o.scenarios))
	for i, s := range o.scenarios {
		names[i] = s.Name
	}
	r.printf("# %s: %d client(s) per scenario (%s), speed %gx, for %v or %d requests; addresses %s..%s\n",
		strings.Join(names, ", "), o.clients, o.target, o.speed, o.duration, o.maxRequests, addrs[0], addrs[len(addrs)-1])

	var stopSummary func()
	if o.quiet {
		stopSummary = r.summaries(ctx)
	}
	sem := make(chan struct{}, o.concurrency)
	var wg sync.WaitGroup
	timer := time.NewTimer(0)
	<-timer.C
	n := 0
loop:
	for len(m) > 0 && n < o.maxRequests {
		p := &m[0]
		due := r.start.Add(time.Duration(float64(p.req.TS.Sub(r.start)) / o.speed))
		if due.After(deadline) {
			break
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				break loop
			case <-timer.C:
			}
		}
		select {
		case <-ctx.Done():
			break loop
		case sem <- struct{}{}:
		}
		addr, _ := netip.ParseAddr(p.ip)
		req := &liveRequest{addr: addr, scenario: o.scenarios[p.k/o.clients].Name, method: p.req.Method,
			path: p.req.Path, userAgent: p.req.UserAgent, virtual: p.req.TS, sent: time.Now()}
		n++
		wg.Go(func() {
			defer func() { <-sem }()
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), o.timeout)
			out := r.s.send(rctx, req)
			rcancel()
			if r.record(req, out) {
				cancel(errTooManyErrors)
			}
		})
		if next, ok := p.st.Next(); ok {
			p.req = next
			heap.Fix(&m, 0)
		} else {
			heap.Pop(&m)
		}
	}
	wg.Wait()
	if stopSummary != nil {
		stopSummary()
	}
	r.mu.Lock()
	c, lastErr := r.counts, r.lastErr
	r.mu.Unlock()
	r.printf("# total after %.1fs: %s\n", time.Since(r.start).Seconds(), c)
	if errors.Is(context.Cause(ctx), errTooManyErrors) {
		return fmt.Errorf("%d transport errors (--max-errors %d); last: %w", c.failed, o.maxErrors, lastErr)
	}
	return ctx.Err()
}

// errTooManyErrors ends a run that reached --max-errors.
var errTooManyErrors = errors.New("too many transport errors")

// record counts one outcome and prints it unless --quiet. It reports
// whether the error budget is used up.
func (r *liveRun) record(req *liveRequest, out outcome) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts.sent++
	switch out.kind {
	case outAllowed:
		r.counts.allowed++
	case outDenied:
		r.counts.denied++
	case outLimited:
		r.counts.limited++
	case outUpstream:
		r.counts.upstream++
	case outFailed:
		r.counts.failed++
		r.lastErr = out.err
	}
	if !r.o.quiet {
		fmt.Fprintf(r.out, "%8.3fs %-15s %-18s %-4s %-28s %s\n", req.sent.Sub(r.start).Seconds(), req.addr, req.scenario,
			req.method, clip(req.path, 28), describeOutcome(out))
	}
	return out.kind == outFailed && r.counts.failed >= r.o.maxErrors
}

// describeOutcome is the end of a request's line.
func describeOutcome(o outcome) string {
	var b strings.Builder
	switch o.kind {
	case outAllowed:
		b.WriteString("allowed")
		if o.status != 0 {
			fmt.Fprintf(&b, " %d", o.status)
		}
		if o.score >= 0 {
			fmt.Fprintf(&b, " score=%d", o.score)
		}
		return b.String()
	case outDenied, outLimited:
		if o.kind == outDenied {
			b.WriteString("DENIED")
		} else {
			b.WriteString("LIMITED")
		}
		if o.status != 0 {
			fmt.Fprintf(&b, " %d", o.status)
		}
		fmt.Fprintf(&b, " retry-after=%s", o.retryAfter)
		if o.reason != "" {
			fmt.Fprintf(&b, " reason=%s", o.reason)
		}
		if o.score >= 0 {
			fmt.Fprintf(&b, " score=%d", o.score)
		}
		return b.String()
	case outUpstream:
		return fmt.Sprintf("upstream status %d", o.status)
	}
	return "error: " + o.err.Error()
}

// summaries prints the totals every --every until the returned function is
// called.
func (r *liveRun) summaries(ctx context.Context) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(r.o.every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case now := <-t.C:
				r.mu.Lock()
				c := r.counts
				r.mu.Unlock()
				r.printf("%8.3fs %s\n", now.Sub(r.start).Seconds(), c)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// printf writes a line to the output under the lock.
func (r *liveRun) printf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.out, format, args...)
}

// clip shortens s to n bytes for aligned output.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
