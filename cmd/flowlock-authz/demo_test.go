package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/risk"
	"github.com/flowlock/flowlock/internal/traffic"
)

// TestDemoCast runs each demo actor's scenario through the real policy in
// virtual time: humans must never be quarantined, and enough bots must be
// caught within the first minute for a newcomer to see it happen.
func TestDemoCast(t *testing.T) {
	start := time.Unix(1_790_000_000, 0)
	caughtInMinute := 0
	for i, a := range demoCast {
		sc, ok := traffic.Lookup(a.scenario)
		if !ok {
			t.Fatalf("actor %d: no scenario %q", i, a.scenario)
		}
		engine := risk.New(risk.Options{})
		q := quarantine.New(quarantine.Options{})
		p := authz.NewPolicy(authz.Options{Engine: engine, Quarantine: q})
		sc.Horizon = 10 * time.Minute
		st := sc.Stream(uint64(i+1)<<32, start)
		addr := a.addrs[0]
		client := authz.Client{ID: identity.FromAddr(addr, 64), Addr: addr}
		first := time.Duration(-1)
		for {
			req, ok := st.Next()
			if !ok {
				break
			}
			d := p.Decide(authz.Request{Client: client, Path: req.Path, Now: req.TS})
			if d.Outcome == authz.Admitted && first < 0 {
				first = req.TS.Sub(start)
			}
		}
		switch {
		case sc.Label == traffic.Human && first >= 0:
			t.Errorf("human %s (%s) quarantined after %v", a.scenario, addr, first)
		case sc.Label == traffic.Bot && first < 0:
			t.Errorf("bot %s (%s) never caught in 10 minutes", a.scenario, addr)
		case sc.Label == traffic.Bot && first <= time.Minute:
			caughtInMinute++
		}
		t.Logf("%-18s %-15s %-6s first quarantine %v", a.scenario, addr, sc.Label, first)
	}
	if caughtInMinute < 3 {
		t.Errorf("%d bots caught within a minute, want at least 3", caughtInMinute)
	}
}

// fakeAuthz records the Checks the demo sends.
type fakeAuthz struct {
	authv3.UnimplementedAuthorizationServer
	mu      sync.Mutex // guards reqs
	reqs    []*authv3.CheckRequest
	denyAll bool
}

func (f *fakeAuthz) Check(ctx context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	f.mu.Unlock()
	if f.denyAll {
		return &authv3.CheckResponse{Status: status.New(codes.PermissionDenied, "").Proto()}, nil
	}
	return &authv3.CheckResponse{Status: status.New(codes.OK, "").Proto()}, nil
}

// TestRunDemo runs the demo against a fake Check server for a moment: it
// sends well-formed requests from the cast's documentation addresses, with
// request times, at a bounded rate, and returns promptly when ctx ends.
func TestRunDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo in real time for 2 s")
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fake := &fakeAuthz{}
	authv3.RegisterAuthorizationServer(srv, fake)
	go srv.Serve(lis)
	defer srv.Stop()

	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- runDemo(ctx, lis.Addr().String(), slog.New(slog.NewTextHandler(&logs, nil))) }()
	time.Sleep(2 * time.Second)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("runDemo = %v, want nil after ctx ends", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("runDemo did not return within 3 s of ctx ending")
	}
	elapsed := time.Since(began)

	fake.mu.Lock()
	defer fake.mu.Unlock()
	// About 6 requests per second in all. Far more would mean the pacing
	// is broken.
	if n := len(fake.reqs); n < 5 || float64(n) > 60*elapsed.Seconds() {
		t.Errorf("%d Checks in %v, want a handful per second", n, elapsed)
	}
	sources := map[string]bool{}
	for _, r := range fake.reqs {
		a := r.GetAttributes()
		ip, err := netip.ParseAddr(a.GetSource().GetAddress().GetSocketAddress().GetAddress())
		if err != nil || !docRange(ip) {
			t.Errorf("source %v is not in a documentation range", ip)
		}
		sources[ip.String()] = true
		if ts := a.GetRequest().GetTime(); ts == nil || time.Since(ts.AsTime()) > 10*time.Second || time.Until(ts.AsTime()) > time.Second {
			t.Errorf("request time %v is not now", ts)
		}
		if h := a.GetRequest().GetHttp(); h.GetPath() == "" || h.GetMethod() == "" || h.GetHeaders()["user-agent"] == "" {
			t.Errorf("request without path, method or user agent: %v", h)
		}
	}
	if len(sources) < 3 {
		t.Errorf("Checks came from %d addresses, want several actors", len(sources))
	}
	if !strings.Contains(logs.String(), "demo traffic started") || !strings.Contains(logs.String(), "demo traffic stopped") {
		t.Errorf("logs lack start and stop lines:\n%s", logs.String())
	}
}

func docRange(ip netip.Addr) bool {
	for _, p := range []string{"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"} {
		if netip.MustParsePrefix(p).Contains(ip) {
			return true
		}
	}
	return false
}

func TestDialable(t *testing.T) {
	for in, want := range map[string]string{
		"[::]:9191":      "127.0.0.1:9191",
		"0.0.0.0:9191":   "127.0.0.1:9191",
		":9191":          "127.0.0.1:9191",
		"127.0.0.1:9191": "127.0.0.1:9191",
		"[::1]:8080":     "[::1]:8080",
		"10.1.2.3:80":    "10.1.2.3:80",
		"no-port":        "no-port",
	} {
		if got := dialable(in); got != want {
			t.Errorf("dialable(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAdminToken(t *testing.T) {
	addr := &net.TCPAddr{IP: net.IPv6unspecified, Port: 8080}
	var out bytes.Buffer

	cfg := config.Default()
	if tok := adminToken(cfg, addr, &out); tok != "" || out.Len() != 0 {
		t.Errorf("no demo, no token: got %q and output %q, want neither", tok, out.String())
	}

	cfg.AdminToken = config.NewSecret("configured-token-0123456789")
	cfg.Demo = true
	out.Reset()
	if tok := adminToken(cfg, addr, &out); tok != "configured-token-0123456789" || strings.Contains(out.String(), "configured-token") ||
		!strings.Contains(out.String(), "http://127.0.0.1:8080/") {
		t.Errorf("demo with a token: got %q, output %q; want the token kept and not printed", tok, out.String())
	}

	cfg.AdminToken = config.Secret{}
	out.Reset()
	tok := adminToken(cfg, addr, &out)
	if len(tok) < 20 || strings.Count(out.String(), tok) != 1 || !strings.Contains(out.String(), "demo admin token: "+tok) {
		t.Errorf("demo without a token: got %q, output %q; want a random token printed once", tok, out.String())
	}
	if again := adminToken(cfg, addr, &bytes.Buffer{}); again == tok {
		t.Error("two runs generated the same token")
	}
}
