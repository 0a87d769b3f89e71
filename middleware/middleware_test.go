package middleware_test

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/flowlock/flowlock/middleware"
	"github.com/flowlock/flowlock/test/flowlocktest"
)

// TestMain builds flowlock-authz, unless -short: the tests that need it
// are end-to-end and start the real binary on loopback.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	os.Exit(flowlocktest.Main(m, "flowlock-authz"))
}

func endToEnd(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: starts the built flowlock-authz (run without -short; CI does)")
	}
}

// api is the protected service: it records the X-Flowlock-* headers and
// the fail-open marker each request arrived with, per X-Test-Client.
type api struct {
	mu   sync.Mutex // guards seen
	seen map[string][]http.Header
}

const apiBody = `{"api":"ok"}`

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := http.Header{}
	for k, v := range r.Header {
		if strings.HasPrefix(k, "X-Flowlock-") || k == middleware.UncheckedHeader {
			h[k] = v
		}
	}
	a.mu.Lock()
	if a.seen == nil {
		a.seen = map[string][]http.Header{}
	}
	a.seen[r.Header.Get("X-Test-Client")] = append(a.seen[r.Header.Get("X-Test-Client")], h)
	a.mu.Unlock()
	io.WriteString(w, apiBody)
}

func (a *api) requests(client string) []http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]http.Header(nil), a.seen[client]...)
}

// serve runs the middleware in front of a fresh api on a loopback
// listener that accepts on every 127/8 address, so clients can connect
// from addresses of their own.
func serve(t *testing.T, target string, opt middleware.Options) (*api, string) {
	t.Helper()
	m, err := middleware.New(target, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	a := &api{}
	srv := httptest.NewServer(m.Handler(a))
	t.Cleanup(srv.Close)
	return a, srv.URL
}

// from returns a client whose connections leave from the loopback address
// src, so that the middleware sees src as the peer.
func from(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 10 * time.Second}
}

type response struct {
	status int
	header http.Header
	body   string
}

func get(t *testing.T, c *http.Client, url string, headers map[string]string) response {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// botUntilDenied sends a request every 60 ms until one is not the api's
// 200, and returns it with the number of requests sent (41: never denied).
func botUntilDenied(t *testing.T, c *http.Client, url string, headers map[string]string) (response, int) {
	t.Helper()
	tick := time.NewTicker(60 * time.Millisecond)
	defer tick.Stop()
	for n := 1; n <= botLimit; n++ {
		<-tick.C
		r := get(t, c, url, headers)
		if r.status != http.StatusOK || r.body != apiBody {
			return r, n
		}
	}
	return response{}, botLimit + 1
}

// botLimit is how many requests a 60 ms metronome may take to be denied.
// A quiet machine takes about 15; a loaded one jitters the bot's own
// ticks (a busy machine saw runs past 40), so the bound is generous: the tests are
// about who gets denied, and a bot never denied still fails them.
const botLimit = 120

// checkDeny checks a deny as the client sees it: Flow Lock's 403 with
// Retry-After and its JSON body.
func checkDeny(t *testing.T, r response) {
	t.Helper()
	if r.status != http.StatusForbidden {
		t.Fatalf("deny status %d, want 403: %v %s", r.status, r.header, r.body)
	}
	if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < 1 {
		t.Errorf("Retry-After %q, want whole seconds >= 1", r.header.Get("Retry-After"))
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var body struct {
		Error      string `json:"error"`
		Reason     string `json:"reason"`
		RetryAfter int    `json:"retry_after"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || body.Error != "quarantined" || body.Reason == "" || body.RetryAfter < 1 {
		t.Errorf("deny body %q (%v), want Flow Lock's JSON", r.body, err)
	}
	if strconv.Itoa(body.RetryAfter) != r.header.Get("Retry-After") {
		t.Errorf("body retry_after %d, header Retry-After %q: want the same", body.RetryAfter, r.header.Get("Retry-After"))
	}
}

// TestBotDeniedHumanAllowed runs a fixed-interval bot and a human-like
// client, each from its own loopback address, through the middleware in
// front of the real flowlock-authz: the bot gets Flow Lock's deny, the
// human the api's answer with Flow Lock's score and none of the
// X-Flowlock-* headers it forged.
func TestBotDeniedHumanAllowed(t *testing.T) {
	endToEnd(t)
	fl := flowlocktest.Start(t, flowlocktest.Bin("flowlock-authz"))
	a, url := serve(t, fl.GRPCAddr, middleware.Options{Timeout: 2 * time.Second})

	human := from("127.0.0.31")
	gaps := []time.Duration{300, 40, 900, 120, 60, 1500, 250, 80}
	for i, g := range gaps {
		time.Sleep(g * time.Millisecond)
		r := get(t, human, url+"/data", map[string]string{
			"X-Test-Client": "human", "X-Flowlock-Risk": "spoofed", "x-flowlock-admin": "1",
			middleware.UncheckedHeader: "true",
		})
		if r.status != http.StatusOK || r.body != apiBody {
			t.Fatalf("human request %d: %d %q, want the api's 200", i+1, r.status, r.body)
		}
	}
	for i, h := range a.requests("human") {
		risk := h.Get("X-Flowlock-Risk")
		if n, err := strconv.Atoi(risk); err != nil || n < 0 || n > 100 {
			t.Errorf("human request %d reached the api with X-Flowlock-Risk %q, want Flow Lock's score", i+1, risk)
		}
		if len(h) != 1 {
			t.Errorf("human request %d reached the api with %v, want X-Flowlock-Risk only", i+1, h)
		}
	}

	denied, n := botUntilDenied(t, from("127.0.0.30"), url+"/data", map[string]string{"X-Test-Client": "bot"})
	if n > botLimit {
		t.Fatalf("fixed-interval bot not denied within %d requests", botLimit)
	}
	t.Logf("bot denied at request %d: %d %v %s", n, denied.status, denied.header, denied.body)
	checkDeny(t, denied)
	if got := len(a.requests("bot")); got != n-1 {
		t.Errorf("api saw %d bot requests, want the %d before the deny", got, n-1)
	}

	code, q := fl.API(t, "GET", "/api/v1/quarantine", "", "")
	if code != 200 || !strings.Contains(q, `"127.0.0.30"`) || strings.Contains(q, `"127.0.0.31"`) {
		t.Errorf("quarantine = %d %s; want the bot's address only", code, q)
	}
}

// TestIdentityHeader: two clients from one address, told apart by the
// identity header the middleware passes on.
func TestIdentityHeader(t *testing.T) {
	endToEnd(t)
	fl := flowlocktest.Start(t, flowlocktest.Bin("flowlock-authz"), "--identity-header", "x-api-key")
	a, url := serve(t, fl.GRPCAddr, middleware.Options{Timeout: 2 * time.Second, IdentityHeader: "X-Api-Key"})

	c := from("127.0.0.32")
	denied, n := botUntilDenied(t, c, url+"/data", map[string]string{"X-Test-Client": "bot", "X-Api-Key": "bot-key-1"})
	if n > botLimit {
		t.Fatalf("bot with its own key not denied within %d requests", botLimit)
	}
	checkDeny(t, denied)
	if r := get(t, c, url+"/data", map[string]string{"X-Test-Client": "other", "X-Api-Key": "someone-else"}); r.status != http.StatusOK {
		t.Errorf("another key from the bot's address: %d %s, want 200 (a separate identity)", r.status, r.body)
	}
	if len(a.requests("other")) != 1 {
		t.Error("the other key's request did not reach the api")
	}
}

// TestForwardedFor: behind the service's own load balancer, the
// middleware appends the peer to X-Forwarded-For as Envoy does, and Flow
// Lock with --xff-trusted-hops 1 finds the client to its left.
func TestForwardedFor(t *testing.T) {
	endToEnd(t)
	fl := flowlocktest.Start(t, flowlocktest.Bin("flowlock-authz"), "--xff-trusted-hops", "1")
	_, url := serve(t, fl.GRPCAddr, middleware.Options{Timeout: 2 * time.Second, ForwardedFor: true})
	if r := get(t, from("127.0.0.33"), url+"/data", map[string]string{"X-Forwarded-For": "198.51.100.7"}); r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if code, ids := fl.API(t, "GET", "/api/v1/identities", "", ""); code != 200 || !strings.Contains(ids, `"198.51.100.7"`) {
		t.Errorf("identities = %d %s; want the forwarded client 198.51.100.7", code, ids)
	}
}

// TestFailOpenAndClosed stops Flow Lock: by default the request reaches
// the api marked unchecked and without a forged score; with FailClosed
// it gets StatusOnError and never reaches the api.
func TestFailOpenAndClosed(t *testing.T) {
	endToEnd(t)
	fl := flowlocktest.Start(t, flowlocktest.Bin("flowlock-authz"))
	open, openURL := serve(t, fl.GRPCAddr, middleware.Options{Timeout: time.Second})
	closed, closedURL := serve(t, fl.GRPCAddr, middleware.Options{Timeout: time.Second, FailClosed: true, StatusOnError: http.StatusServiceUnavailable})
	c := from("127.0.0.34")
	if r := get(t, c, openURL+"/data", map[string]string{"X-Test-Client": "up"}); r.status != 200 {
		t.Fatalf("with Flow Lock up: %d %s", r.status, r.body)
	}
	if h := open.requests("up"); len(h) != 1 || h[0].Get(middleware.UncheckedHeader) != "" {
		t.Errorf("checked request reached the api with %v, want no fail-open marker", h)
	}
	fl.Stop()

	r := get(t, c, openURL+"/data", map[string]string{"X-Test-Client": "down", "X-Flowlock-Risk": "spoofed"})
	h := open.requests("down")
	if r.status != 200 || len(h) != 1 {
		t.Fatalf("fail open: %d %q, api saw %d; want the api's 200", r.status, r.body, len(h))
	}
	if h[0].Get(middleware.UncheckedHeader) != "true" || h[0].Get("X-Flowlock-Risk") != "" {
		t.Errorf("unchecked request reached the api with %v; want the fail-open marker and no score", h[0])
	}

	r = get(t, c, closedURL+"/data", map[string]string{"X-Test-Client": "down"})
	if r.status != http.StatusServiceUnavailable || len(closed.requests("down")) != 0 {
		t.Errorf("fail closed: %d, api saw %d; want 503 and nothing at the api", r.status, len(closed.requests("down")))
	}
}

// TestDeadline: a Flow Lock that accepts connections but never answers
// costs a request the timeout, not more.
func TestDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, silent
		}
	}()
	const timeout = 80 * time.Millisecond
	a, url := serve(t, ln.Addr().String(), middleware.Options{Timeout: timeout})
	for range 3 {
		start := time.Now()
		r := get(t, http.DefaultClient, url, map[string]string{"X-Test-Client": "x"})
		if d := time.Since(start); d > timeout+time.Second || r.status != 200 {
			t.Errorf("silent Flow Lock: %d after %v; want the api's 200 after about %v", r.status, d, timeout)
		}
	}
	if n := len(a.requests("x")); n != 3 {
		t.Errorf("api saw %d requests, want 3", n)
	}
}

// recorder is a real ext_authz gRPC server that records each CheckRequest
// and answers with resp.
type recorder struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse

	mu  sync.Mutex // guards got
	got []*authv3.CheckRequest
}

func (rc *recorder) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	rc.mu.Lock()
	rc.got = append(rc.got, req)
	rc.mu.Unlock()
	return rc.resp, nil
}

func startRecorder(tb testing.TB, resp *authv3.CheckResponse) (*recorder, string) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	rc := &recorder{resp: resp}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, rc)
	go s.Serve(ln)
	tb.Cleanup(s.Stop)
	return rc, ln.Addr().String()
}

var allow = &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.OK)}}

// TestCheckRequestAsEnvoy checks what the middleware tells Flow Lock: the
// peer as the source address, the arrival time, method, path with query,
// and of the headers only the identity header, lowercased as Envoy sends
// headers.
func TestCheckRequestAsEnvoy(t *testing.T) {
	rc, addr := startRecorder(t, allow)
	_, url := serve(t, addr, middleware.Options{Timeout: 2 * time.Second, IdentityHeader: "x-api-key"})
	before := time.Now()
	req, _ := http.NewRequest("POST", url+"/login?next=%2Fhome", strings.NewReader("secret body"))
	req.Header.Set("X-Api-Key", "k1")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("Cookie", "session=private")
	resp, err := from("127.0.0.35").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	after := time.Now()

	if len(rc.got) != 1 {
		t.Fatalf("Flow Lock got %d checks, want 1", len(rc.got))
	}
	attrs := rc.got[0].GetAttributes()
	if got := attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(); got != "127.0.0.35" {
		t.Errorf("source address %q, want the peer 127.0.0.35", got)
	}
	ts := attrs.GetRequest().GetTime().AsTime()
	if ts.Before(before) || ts.After(after) {
		t.Errorf("request.time %v, want the arrival time in [%v, %v]", ts, before, after)
	}
	h := attrs.GetRequest().GetHttp()
	if h.GetMethod() != "POST" || h.GetPath() != "/login?next=%2Fhome" {
		t.Errorf("method %q path %q, want POST /login?next=%%2Fhome", h.GetMethod(), h.GetPath())
	}
	if h.GetHeaders()["x-api-key"] != "k1" {
		t.Errorf("headers %v: want x-api-key: k1", h.GetHeaders())
	}
	for _, k := range []string{"x-forwarded-for", "cookie"} {
		if _, ok := h.GetHeaders()[k]; ok {
			t.Errorf("headers %v: %s sent without being asked for", h.GetHeaders(), k)
		}
	}
	if h.GetBody() != "" {
		t.Error("the request body was sent to Flow Lock")
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target string
		opt    middleware.Options
		want   string
	}{
		{"no port", "127.0.0.1", middleware.Options{}, "flowlock address"},
		{"negative timeout", "127.0.0.1:9191", middleware.Options{Timeout: -time.Second}, "timeout"},
		{"bad status", "127.0.0.1:9191", middleware.Options{StatusOnError: 42}, "status on error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := middleware.New(tc.target, tc.opt)
			if err == nil {
				m.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to name %q", err, tc.want)
			}
		})
	}
}
