package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/risk"
)

// testPolicy returns a policy with the service's defaults.
func testPolicy() (*authz.Policy, *quarantine.List) {
	q := quarantine.New(quarantine.Options{})
	return authz.NewPolicy(authz.Options{Engine: risk.New(risk.Options{Shards: 4}), Quarantine: q}), q
}

// startAuthz serves the real ext_authz Check server on a loopback port and
// returns its address and quarantine list.
func startAuthz(t *testing.T, maxSkew time.Duration) (string, *quarantine.List) {
	t.Helper()
	policy, q := testPolicy()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := authz.NewServer(authz.ServerOptions{Policy: policy, MaxSkew: maxSkew}).NewGRPCServer() // as flowlock-authz serves
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), q
}

// quarantined reports whether the IPv4 address a is quarantined at now.
func quarantined(q *quarantine.List, a string, now time.Time) (quarantine.Entry, bool) {
	return q.Check(identity.FromAddr(netip.MustParseAddr(a), 64), now)
}

func TestGRPCLive(t *testing.T) {
	t.Parallel() // mostly waiting for the clock
	target, q := startAuthz(t, 0)
	// A 0.5 s bot at 20x: a request every 25 ms for 4 s, about 160 in all
	// (a busy machine jitters 25 ms ticks, so the bot gets room to be
	// caught; about 20 suffice on a quiet one).
	began := time.Now()
	out, errOut, err := runArgs(t, "grpc", "--target", target, "--scenario", "fixed-0.5s,calm-api", "--clients", "2",
		"--speed", "20", "--duration", "4s", "--first-addr", "192.0.2.10")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "--speed 20") {
		t.Errorf("no note about time compression: %q", errOut)
	}
	for _, bot := range []string{"192.0.2.10", "192.0.2.11"} {
		if _, ok := quarantined(q, bot, time.Now()); !ok {
			t.Errorf("bot %s not quarantined by the server", bot)
		}
		if !strings.Contains(out, bot+" ") || !regexpDenied(out, bot) {
			t.Errorf("no DENIED line for %s:\n%s", bot, out)
		}
	}
	for _, human := range []string{"192.0.2.12", "192.0.2.13"} {
		if _, ok := quarantined(q, human, time.Now()); ok {
			t.Errorf("calm human %s quarantined", human)
		}
	}
	if !strings.Contains(out, "reason=periodic") || !strings.Contains(out, "allowed score=") || !strings.Contains(out, "# total after") {
		t.Errorf("output:\n%s", out)
	}
	if d := time.Since(began); d > 15*time.Second {
		t.Errorf("a 4 s session took %v", d)
	}
}

// regexpDenied reports whether out has a DENIED line for addr.
func regexpDenied(out, addr string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, " "+addr+" ") && strings.Contains(line, "DENIED 403 retry-after=") {
			return true
		}
	}
	return false
}

func TestGRPCLiveVirtualTime(t *testing.T) {
	// With --virtual-time and a server that believes any request time, the
	// server sees the scenario's own rhythm: the bot is admitted about 17
	// requests × 2 s into the scenario, far ahead of the wall clock.
	target, q := startAuthz(t, time.Hour)
	began := time.Now()
	out, _, err := runArgs(t, "grpc", "--target", target, "--scenario", "fixed-2s", "--speed", "100",
		"--duration", "600ms", "--virtual-time", "--quiet", "--every", "200ms")
	if err != nil {
		t.Fatal(err)
	}
	e, ok := quarantined(q, "10.0.0.1", began.Add(time.Minute))
	if !ok {
		t.Fatalf("bot not quarantined:\n%s", out)
	}
	if ahead := e.Since.Sub(began); ahead < 20*time.Second {
		t.Errorf("admitted %v after the start, want the scenario's time (about 34 s)", ahead)
	}
	if strings.Contains(out, "DENIED") || !strings.Contains(out, "sent=") {
		t.Errorf("--quiet printed requests or no summary:\n%s", out)
	}
}

func TestGRPCLiveTransportErrors(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens here now
	out, _, err := runArgs(t, "grpc", "--target", addr, "--scenario", "fixed-0.5s", "--speed", "50",
		"--duration", "5s", "--max-errors", "3", "--timeout", "500ms")
	if err == nil || !strings.Contains(err.Error(), "transport errors (--max-errors 3)") {
		t.Fatalf("err = %v, want the error budget used up\n%s", err, out)
	}
	if !strings.Contains(out, "error: ") {
		t.Errorf("no error lines:\n%s", out)
	}
}

// forwardAuthServer is an API behind a proxy that asks Flow Lock's policy
// about every request, with the client from X-Forwarded-For (the test
// client is the trusted proxy): 403 with Retry-After for a deny, 404 for
// /api/orders, 200 otherwise.
func forwardAuthServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	policy, _ := testPolicy()
	rules := authz.ClientRules{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		ap, _ := netip.ParseAddrPort(r.RemoteAddr)
		client := rules.Resolve(ap.Addr(), r.Header.Get("X-Forwarded-For"), "")
		d := policy.Decide(authz.Request{Client: client, Path: r.URL.RequestURI(), Now: time.Now()})
		switch {
		case !d.Allow:
			w.Header().Set("Retry-After", "300")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(authz.DenyBody(d)))
		case strings.HasPrefix(r.URL.Path, "/api/orders"):
			http.NotFound(w, r)
		default:
			w.Write([]byte("ok"))
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &requests
}

func TestHTTPLive(t *testing.T) {
	t.Parallel() // mostly waiting for the clock
	srv, requests := forwardAuthServer(t)
	// As TestGRPCLive: 4 s, so that a busy machine's jitter leaves the
	// bot room to be caught.
	out, errOut, err := runArgs(t, "http", "--target", srv.URL+"/", "--scenario", "fixed-0.5s,human-spa",
		"--speed", "20", "--duration", "4s", "--first-addr", "198.51.100.1")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if !regexpDenied(out, "198.51.100.1") || !strings.Contains(out, "reason=periodic") {
		t.Errorf("bot never denied:\n%s", out)
	}
	if regexpDenied(out, "198.51.100.2") {
		t.Errorf("human denied:\n%s", out)
	}
	if !strings.Contains(out, "allowed 200") {
		t.Errorf("no allowed line:\n%s", out)
	}
	var total string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "# total") {
			total = line
		}
	}
	if !strings.Contains(total, "errors=0") || !strings.Contains(total, "denied=") || strings.Contains(total, "denied=0 ") {
		t.Errorf("total = %q", total)
	}
	if requests.Load() < 50 {
		t.Errorf("server saw %d requests", requests.Load())
	}
}

func TestHTTPOutcome(t *testing.T) {
	for _, tc := range []struct {
		status int
		retry  string
		body   string
		want   string
	}{
		{200, "", "", "allowed 200"},
		{403, "300", `{"error":"quarantined","reason":"periodic","retry_after":300}`, "DENIED 403 retry-after=300 reason=periodic"},
		{403, "", "forbidden", "upstream status 403"}, // not Flow Lock's: no Retry-After
		{429, "2", `{"error":"rate_limited","reason":"volume","retry_after":2}`, "LIMITED 429 retry-after=2 reason=volume"},
		{429, "", "", "upstream status 429"},
		{503, "", "", "upstream status 503"},
		{302, "", "", "upstream status 302"},
	} {
		resp := &http.Response{StatusCode: tc.status, Header: http.Header{}}
		if tc.retry != "" {
			resp.Header.Set("Retry-After", tc.retry)
		}
		if got := describeOutcome(httpOutcome(resp, []byte(tc.body))); got != tc.want {
			t.Errorf("%d %q: %q, want %q", tc.status, tc.retry, got, tc.want)
		}
	}
}

func TestHTTPLiveTransportErrors(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, _, err := runArgs(t, "http", "--target", url, "--scenario", "fixed-0.5s", "--speed", "50",
		"--duration", "5s", "--max-errors", "2")
	if err == nil || !strings.Contains(err.Error(), "transport errors") {
		t.Errorf("err = %v", err)
	}
}

func TestLiveCanceled(t *testing.T) {
	target, _ := startAuthz(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(300 * time.Millisecond); cancel() }()
	var out strings.Builder
	began := time.Now()
	err := run(ctx, []string{"grpc", "--target", target, "--scenario", "fixed-2s", "--duration", "1m"}, &out, &strings.Builder{})
	if err == nil || time.Since(began) > 10*time.Second {
		t.Errorf("err = %v after %v, want canceled promptly", err, time.Since(began))
	}
}

func TestLiveErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"grpc", "--scenario", "H1"}, "--target is required"},
		{[]string{"grpc", "--target", "x:1"}, "--scenario is required"},
		{[]string{"http", "--target", "x", "--scenario", "H1"}, "want an http:// or https:// URL"},
		{[]string{"grpc", "--target", "x:1", "--scenario", "H1,nope"}, `--scenario "nope"`},
		{[]string{"grpc", "--target", "x:1", "--scenario", "H1", "--speed", "0"}, "--speed"},
		{[]string{"grpc", "--target", "x:1", "--scenario", "H1", "--clients", "0"}, "--clients"},
		{[]string{"grpc", "--target", "x:1", "--scenario", "H1", "--duration", "0s"}, "--duration"},
		{[]string{"grpc", "--target", "x:1", "--scenario", "H1", "--first-addr", "nope"}, "--first-addr"},
		{[]string{"grpc", "--target", "x:1", "--scenario", "H1", "--first-addr", "255.255.255.255", "--clients", "2"}, "do not fit"},
		{[]string{"http", "--target", "http://x", "--scenario", "H1", "--virtual-time"}, "-virtual-time"},
	} {
		_, _, err := runArgs(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestHTTPLiveSourceIP: with --source-ip every client connects from its
// own address, the first given and the next ones after it, and names
// itself in no header: the server sees the real peers.
func TestHTTPLiveSourceIP(t *testing.T) {
	var mu sync.Mutex
	peers := map[string]int{}
	var forwarded []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, _ := netip.ParseAddrPort(r.RemoteAddr)
		mu.Lock()
		peers[ap.Addr().String()]++
		if v := r.Header.Values("X-Forwarded-For"); len(v) > 0 {
			forwarded = append(forwarded, v...)
		}
		mu.Unlock()
		w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	out, errOut, err := runArgs(t, "http", "--target", srv.URL, "--scenario", "fixed-0.5s", "--clients", "3",
		"--speed", "20", "--duration", "1s", "--source-ip", "127.0.0.40")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(peers) != 3 || peers["127.0.0.40"] == 0 || peers["127.0.0.41"] == 0 || peers["127.0.0.42"] == 0 {
		t.Errorf("peers %v, want 127.0.0.40-42\n%s", peers, out)
	}
	if len(forwarded) != 0 {
		t.Errorf("X-Forwarded-For sent with --source-ip: %v", forwarded)
	}
}

func TestHTTPLiveSourceIPErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--source-ip", "127.0.0.2", "--first-addr", "10.0.0.1"}, "give one"},
		{[]string{"--source-ip", "nope"}, "want a local IP address"},
		{[]string{"--source-ip", "::1", "--clients", "2"}, "serves one client"},
		{[]string{"--source-ip", "::1"}, "one is IPv4, the other IPv6"},
		// TEST-NET-1 is on no interface here: the hint names the fix.
		{[]string{"--source-ip", "192.0.2.1"}, "sudo ifconfig lo0 alias 192.0.2.1 up"},
	} {
		args := append([]string{"http", "--target", "http://127.0.0.1:1", "--scenario", "fixed-2s", "--duration", "1s"}, tc.args...)
		_, _, err := runArgs(t, args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
	if _, _, err := runArgs(t, "grpc", "--target", "127.0.0.1:1", "--scenario", "fixed-2s", "--source-ip", "127.0.0.2"); err == nil {
		t.Error("grpc accepted --source-ip; it is an http option")
	}
}
