package authz

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/risk"
)

// faFixture is a ForwardAuth handler over a real engine and quarantine, on
// a clock the test moves.
type faFixture struct {
	engine *risk.Engine
	q      *quarantine.List
	policy *Policy
	h      *ForwardAuth
	now    time.Time
	recs   *records
}

func newFAFixture(t testing.TB, s setup) *faFixture {
	t.Helper()
	f := &faFixture{
		engine: risk.New(risk.Options{MaxClients: 10000}),
		q:      quarantine.New(quarantine.Options{}),
		now:    time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC),
		recs:   &records{},
	}
	f.policy = NewPolicy(Options{Engine: f.engine, Quarantine: f.q, Lists: s.lists, Mode: s.mode, ExcludePaths: s.exclude, Action: s.action})
	f.h = NewForwardAuth(ForwardAuthOptions{Policy: f.policy, Rules: s.rules, Now: func() time.Time { return f.now }, Recorder: f.recs, Tarpit: s.tarpit})
	return f
}

// faRequest is a check as a proxy on peer sends it.
func faRequest(method, target, peer string, headers map[string]string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.RemoteAddr = peer
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

func (f *faFixture) serve(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

// tracked lists the identities the engine times.
func (f *faFixture) tracked() []string {
	var ids []string
	for _, s := range f.engine.Top(100, f.now) {
		ids = append(ids, s.ID.String())
	}
	return ids
}

func (f *faFixture) last(t testing.TB) Record {
	t.Helper()
	if len(f.recs.got) == 0 {
		t.Fatal("nothing recorded")
	}
	return f.recs.got[len(f.recs.got)-1]
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

func TestForwardAuthPaths(t *testing.T) {
	tests := []struct {
		method, target string
		want           int
	}{
		{"GET", "/check", 200},
		{"GET", "/check/", 200},
		{"POST", "/check/data?page=2", 200},
		{"HEAD", "/check", 200},
		{"DELETE", "/check/v1/items/7", 200},
		{"GET", "/check?x=1", 200},
		{"GET", "/checkout", 404},
		{"GET", "/", 404},
		{"GET", "/api/check", 404},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			f := newFAFixture(t, setup{})
			w := f.serve(faRequest(tc.method, tc.target, "198.51.100.1:4000", nil))
			if w.Code != tc.want {
				t.Fatalf("status = %d, want %d", w.Code, tc.want)
			}
			if tc.want == 200 {
				if got := w.Header().Get(hdrRisk); got == "" {
					t.Errorf("allow lacks %s", hdrRisk)
				}
				if w.Body.Len() != 0 {
					t.Errorf("allow has a body: %q", w.Body)
				}
			} else if len(f.recs.got) != 0 {
				t.Errorf("a request outside /check was decided: %+v", f.recs.got)
			}
		})
	}
}

// TestForwardAuthOriginalPath checks which path the policy sees, through
// --exclude-path: an excluded path is decided but not timed.
func TestForwardAuthOriginalPath(t *testing.T) {
	tests := []struct {
		name    string
		target  string
		headers map[string]string
		timed   bool
	}{
		{"nginx X-Original-URI", "/check", map[string]string{"X-Original-URI": "/api/poll?since=3"}, false},
		{"caddy X-Forwarded-Uri", "/check", map[string]string{"X-Forwarded-Uri": "/api/poll/7"}, false},
		{"envoy path suffix", "/check/api/poll?since=3", nil, false},
		{"envoy path suffix, other path", "/check/data", nil, true},
		{"X-Original-URI wins over X-Forwarded-Uri", "/check", map[string]string{"X-Original-URI": "/data", "X-Forwarded-Uri": "/api/poll"}, true},
		{"headers win over the suffix", "/check/api/poll", map[string]string{"X-Forwarded-Uri": "/data"}, true},
		{"no path at all", "/check", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFAFixture(t, setup{exclude: []string{"/api/poll"}})
			if w := f.serve(faRequest("GET", tc.target, "198.51.100.1:4000", tc.headers)); w.Code != 200 {
				t.Fatalf("status = %d", w.Code)
			}
			v, _ := f.engine.Peek(identity.FromAddr(netip.MustParseAddr("198.51.100.1"), 64), f.now)
			if timed := v.Requests > 0; timed != tc.timed {
				t.Errorf("timed = %v (verdict %+v), want %v", timed, v, tc.timed)
			}
		})
	}
}

func TestForwardAuthClient(t *testing.T) {
	trusted := ClientRules{TrustedProxies: loopback}
	tests := []struct {
		name     string
		rules    ClientRules
		peer     string
		xff      []string
		headers  map[string]string
		identity string
		fallback Fallback
	}{
		{"no trusted proxies: the peer, headers ignored", ClientRules{}, "127.0.0.1:5000", []string{"203.0.113.7"},
			map[string]string{"X-Real-IP": "203.0.113.8"}, "127.0.0.1", FallbackNone},
		{"untrusted peer: the peer, headers ignored", trusted, "198.51.100.9:5000", []string{"203.0.113.7"},
			map[string]string{"X-Real-IP": "203.0.113.8"}, "198.51.100.9", FallbackNone},
		{"untrusted peer with hops: still the peer", ClientRules{TrustedProxies: loopback, XFFTrustedHops: 1}, "198.51.100.9:5000",
			[]string{"203.0.113.7, 10.0.0.1"}, nil, "198.51.100.9", FallbackNone},
		{"trusted peer: X-Forwarded-For", trusted, "127.0.0.1:5000", []string{"203.0.113.7"}, nil, "203.0.113.7", FallbackNone},
		{"trusted peer: rightmost untrusted entry beats a spoofed one", trusted, "127.0.0.1:5000",
			[]string{"1.1.1.1, 203.0.113.7"}, nil, "203.0.113.7", FallbackNone},
		{"repeated X-Forwarded-For lines are one list", trusted, "127.0.0.1:5000",
			[]string{"1.1.1.1", "203.0.113.7, 127.0.0.1"}, nil, "203.0.113.7", FallbackNone},
		{"hops skip the proxies in front", ClientRules{TrustedProxies: loopback, XFFTrustedHops: 1}, "127.0.0.1:5000",
			[]string{"1.1.1.1, 203.0.113.7, 10.0.0.1"}, nil, "203.0.113.7", FallbackNone},
		{"X-Real-IP when X-Forwarded-For is absent", trusted, "127.0.0.1:5000", nil,
			map[string]string{"X-Real-IP": "203.0.113.8"}, "203.0.113.8", FallbackNone},
		{"X-Real-IP with a port and IPv6 grouping", ClientRules{TrustedProxies: loopback, IPv6Prefix: 64}, "127.0.0.1:5000", nil,
			map[string]string{"X-Real-IP": "[2001:db8:1:2::7]:443"}, "2001:db8:1:2::/64", FallbackNone},
		{"X-Forwarded-For beats X-Real-IP", trusted, "127.0.0.1:5000", []string{"203.0.113.7"},
			map[string]string{"X-Real-IP": "203.0.113.8"}, "203.0.113.7", FallbackNone},
		// A trusted proxy whose headers name no client is misconfigured:
		// scoring the proxy itself would merge everyone behind it.
		{"malformed X-Real-IP: no identity, counted", trusted, "127.0.0.1:5000", nil,
			map[string]string{"X-Real-IP": "<script>"}, "", FallbackBadForwardedFor},
		{"malformed X-Forwarded-For: no identity, counted", trusted, "127.0.0.1:5000", []string{"unknown"}, nil,
			"", FallbackBadForwardedFor},
		{"trusted peer sent nothing: no identity, counted", trusted, "127.0.0.1:5000", nil, nil, "", FallbackBadForwardedFor},
		{"IPv4-mapped peer is trusted as IPv4", trusted, "[::ffff:127.0.0.1]:5000", []string{"203.0.113.7"}, nil,
			"203.0.113.7", FallbackNone},
		{"identity header wins", ClientRules{TrustedProxies: loopback, IdentityHeader: "x-api-key"}, "127.0.0.1:5000",
			[]string{"203.0.113.7"}, map[string]string{"X-Api-Key": "key-42"}, "key-42", FallbackNone},
		{"identity header from an untrusted peer, as configured", ClientRules{IdentityHeader: "x-api-key"}, "198.51.100.9:5000",
			nil, map[string]string{"X-Api-Key": "key-42"}, "key-42", FallbackNone},
		{"bad identity header: the address, counted", ClientRules{TrustedProxies: loopback, IdentityHeader: "x-api-key"}, "127.0.0.1:5000",
			[]string{"203.0.113.7"}, map[string]string{"X-Api-Key": strings.Repeat("k", identity.MaxNameLen+1)}, "203.0.113.7", FallbackBadIdentityHeader},
		{"no peer address: no identity", ClientRules{}, "@", nil, nil, "", FallbackNoIdentity},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFAFixture(t, setup{rules: tc.rules})
			r := faRequest("GET", "/check", tc.peer, tc.headers)
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if w := f.serve(r); w.Code != 200 {
				t.Fatalf("status = %d", w.Code)
			}
			got := f.tracked()
			if tc.identity == "" {
				if len(got) != 0 {
					t.Errorf("tracked %v, want nothing", got)
				}
			} else if len(got) != 1 || got[0] != tc.identity {
				t.Errorf("tracked %v, want [%s]", got, tc.identity)
			}
			if rec := f.last(t); rec.Fallback != tc.fallback {
				t.Errorf("fallback = %v, want %v", rec.Fallback, tc.fallback)
			}
		})
	}
}

func TestForwardAuthDenyShape(t *testing.T) {
	tests := []struct {
		name, reason string
	}{
		{"markup", `manual <b>"x"</b>`},
		{"non-ASCII", "handverlesen ☃ 𝄞"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFAFixture(t, setup{})
			id := identity.FromAddr(netip.MustParseAddr("203.0.113.7"), 64)
			f.policy.Ban(id, 90*time.Second+300*time.Millisecond, tc.reason, f.now)

			w := f.serve(faRequest("GET", "/check", "203.0.113.7:4711", nil))
			if w.Code != http.StatusForbidden {
				t.Fatalf("status = %d, want 403", w.Code)
			}
			h := w.Header()
			if got := h.Get("Retry-After"); got != "91" {
				t.Errorf("Retry-After = %q, want 91 (90.3 s rounded up)", got)
			}
			if got := h.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q", got)
			}
			if got := h.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
			if got := h.Get(hdrRisk); got != "" {
				t.Errorf("a deny carries %s: %q", hdrRisk, got)
			}
			body := w.Body.String()
			if want := DenyBody(Decision{Outcome: Quarantined, Reason: tc.reason, RetryAfter: 91}); body != want {
				t.Errorf("body = %s, want %s", body, want)
			}
			if strings.Contains(body, "<b>") {
				t.Errorf("markup not escaped in body %q", body)
			}
			// The header copy (for nginx) is ASCII and decodes to the same.
			inHeader := h.Get(hdrDenyBody)
			for i := range len(inHeader) {
				if c := inHeader[i]; c < 0x20 || c >= 0x7f {
					t.Fatalf("%s has byte %#x: %q", hdrDenyBody, c, inHeader)
				}
			}
			var a, b map[string]any
			if err := json.Unmarshal([]byte(body), &a); err != nil {
				t.Fatalf("body: %v", err)
			}
			if err := json.Unmarshal([]byte(inHeader), &b); err != nil {
				t.Fatalf("%s: %v", hdrDenyBody, err)
			}
			if a["reason"] != tc.reason || b["reason"] != tc.reason || a["retry_after"] != b["retry_after"] {
				t.Errorf("body %v, header %v; want reason %q in both", a, b, tc.reason)
			}
			if rec := f.last(t); rec.Outcome != Quarantined || rec.Mode != Enforce {
				t.Errorf("record = %+v", rec)
			}
		})
	}
}

// TestForwardAuthBotQuarantined drives a fixed-interval client through the
// handler until it is denied; in shadow mode it is quarantined but allowed.
func TestForwardAuthBotQuarantined(t *testing.T) {
	for _, mode := range []Mode{Enforce, Shadow} {
		t.Run(mode.String(), func(t *testing.T) {
			f := newFAFixture(t, setup{mode: mode, rules: ClientRules{TrustedProxies: loopback}})
			start := f.now
			var denyAt int
			for i := 1; i <= 40 && denyAt == 0; i++ {
				f.now = start.Add(time.Duration(i) * 500 * time.Millisecond)
				w := f.serve(faRequest("GET", "/check", "127.0.0.1:5000",
					map[string]string{"X-Forwarded-For": "198.51.100.20", "X-Original-URI": "/data"}))
				if f.last(t).Outcome != Admitted {
					if w.Code != 200 {
						t.Fatalf("request %d: status %d before admission", i, w.Code)
					}
					continue
				}
				denyAt = i
				if want := map[Mode]int{Enforce: 403, Shadow: 200}[mode]; w.Code != want {
					t.Errorf("admitted: status %d, want %d", w.Code, want)
				}
			}
			if denyAt == 0 {
				t.Fatal("fixed 500 ms bot never admitted within 40 requests")
			}
			if _, ok := f.q.Check(identity.FromAddr(netip.MustParseAddr("198.51.100.20"), 64), f.now); !ok {
				t.Error("admitted bot is not in the quarantine list")
			}
		})
	}
}

func TestForwardAuthDenyListed(t *testing.T) {
	lists := quarantine.NewLists(nil, []netip.Prefix{netip.MustParsePrefix("198.51.100.66/32")})
	f := newFAFixture(t, setup{lists: lists})
	w := f.serve(faRequest("GET", "/check", "198.51.100.66:1", nil))
	if w.Code != 403 || !strings.Contains(w.Body.String(), `"error":"denied"`) || w.Header().Get("Retry-After") != "3600" {
		t.Errorf("deny-listed client: %d %v %s", w.Code, w.Header(), w.Body)
	}
}

// TestForwardAuthPanicFailsOpen: a Flow Lock bug allows the request, marks
// it for the proxy's log and counts it as a failed check.
func TestForwardAuthPanicFailsOpen(t *testing.T) {
	f := newFAFixture(t, setup{})
	f.policy.observer = (*risk.Engine)(nil) // a bug: Observe on a nil engine panics
	w := f.serve(faRequest("GET", "/check", "203.0.113.7:1", nil))
	if w.Code != 200 || w.Header().Get(hdrError) != "1" || w.Header().Get(hdrRisk) != "" {
		t.Errorf("got %d %v; want 200 with %s: 1 and no %s", w.Code, w.Header(), hdrError, hdrRisk)
	}
	if rec := f.last(t); !rec.Failed {
		t.Errorf("failure not recorded: %+v", rec)
	}
}

// TestForwardAuthHostileHeaders runs the handler behind a real net/http
// server configured like serve.go: huge or hostile headers are decided
// cheaply, and nothing a client sent is reflected.
func TestForwardAuthHostileHeaders(t *testing.T) {
	f := newFAFixture(t, setup{rules: ClientRules{TrustedProxies: loopback, IdentityHeader: "x-api-key"}})
	srv := httptest.NewUnstartedServer(f.h)
	srv.Config.MaxHeaderBytes = 64 << 10
	srv.Start()
	t.Cleanup(srv.Close)

	do := func(headers map[string]string) *http.Response {
		t.Helper()
		req, err := http.NewRequest("GET", srv.URL+"/check", nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	reflected := func(resp *http.Response, secret string) bool {
		b, _ := io.ReadAll(resp.Body)
		for _, vs := range resp.Header {
			for _, v := range vs {
				if strings.Contains(v, secret) {
					return true
				}
			}
		}
		return strings.Contains(string(b), secret)
	}

	// 60 KiB of trusted hops: walked to the end, then the peer (counted).
	start := time.Now()
	resp := do(map[string]string{"X-Forwarded-For": strings.Repeat("127.0.0.1, ", 60<<10/11)})
	if resp.StatusCode != 200 || f.last(t).Fallback != FallbackBadForwardedFor {
		t.Errorf("60 KiB of trusted hops: %d, %+v", resp.StatusCode, f.last(t))
	}
	// 60 KiB of junk with the client at the right end: found at once.
	resp = do(map[string]string{"X-Forwarded-For": strings.Repeat("x", 60<<10) + ", 203.0.113.9"})
	if resp.StatusCode != 200 || f.last(t).Fallback != FallbackNone || !strings.Contains(strings.Join(f.tracked(), " "), "203.0.113.9") {
		t.Errorf("junk then client: %d, %+v, tracked %v", resp.StatusCode, f.last(t), f.tracked())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("two checks with 60 KiB headers took %v", d)
	}
	// Over MaxHeaderBytes: net/http refuses it before the handler runs.
	n := len(f.recs.got)
	resp = do(map[string]string{"X-Forwarded-For": strings.Repeat("1", 128<<10)})
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || len(f.recs.got) != n {
		t.Errorf("128 KiB header: status %d, decided %d times; want 431 from net/http, not decided", resp.StatusCode, len(f.recs.got)-n)
	}

	// Markup in the identity header: an identity, never echoed, allowed or
	// denied.
	const markup = `<img src=x onerror=alert(1)>`
	if resp := do(map[string]string{"X-Api-Key": markup}); resp.StatusCode != 200 || reflected(resp, "onerror") {
		t.Errorf("identity header with markup: %d, reflected %v", resp.StatusCode, reflected(resp, "onerror"))
	}
	id, err := identity.FromName(markup)
	if err != nil {
		t.Fatal(err)
	}
	f.policy.Ban(id, time.Hour, "manual", f.now)
	if resp := do(map[string]string{"X-Api-Key": markup}); resp.StatusCode != 403 || reflected(resp, "onerror") {
		t.Errorf("banned identity with markup: %d, reflected %v", resp.StatusCode, reflected(resp, "onerror"))
	}
}

func TestAsciiJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `"quoted" \ <b>`, "é", "☃", "𝄞", "mixed é and 𝄞 and ascii", "\xff", "del \x7f"} {
		body := DenyBody(Decision{Reason: s})
		got := asciiJSON(body)
		for i := range len(got) {
			if got[i] >= 0x7f {
				t.Fatalf("asciiJSON(%q) = %q: not ASCII", body, got)
			}
		}
		var a, b any
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(got), &b); err != nil {
			t.Fatalf("asciiJSON(%q) = %q: %v", body, got, err)
		}
		if ja, jb := mustJSON(t, a), mustJSON(t, b); ja != jb {
			t.Errorf("asciiJSON(%q) decodes to %s, want %s", body, jb, ja)
		}
	}
	if s := `{"a":1}`; asciiJSON(s) != s {
		t.Errorf("ASCII input changed")
	}
}

// FuzzAsciiJSON: for any reason, the header copy of the deny body is ASCII
// and decodes to the same value as the body.
func FuzzAsciiJSON(f *testing.F) {
	for _, s := range []string{"", "periodic", "☃𝄞", "\xff\xfe", `<"\>`, "\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reason string) {
		body := DenyBody(Decision{Reason: reason, RetryAfter: 5})
		got := asciiJSON(body)
		for i := range len(got) {
			if got[i] < 0x20 || got[i] >= 0x7f {
				t.Fatalf("byte %#x in %q", got[i], got)
			}
		}
		var a, b any
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		if err := json.Unmarshal([]byte(got), &b); err != nil {
			t.Fatalf("header %q: %v", got, err)
		}
		if ja, jb := mustJSON(t, a), mustJSON(t, b); ja != jb {
			t.Fatalf("header decodes to %s, body to %s", jb, ja)
		}
	})
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// discardWriter is a ResponseWriter that keeps one header map, so that the
// handler's own allocations can be counted.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// TestForwardAuthAllowDoesNotAllocate pins the allow path of the handler
// (routing, headers, client resolution, timing, scoring, quarantine lookup,
// response headers) at 0 allocations for a known client behind a trusted
// proxy; net/http's own parsing and writing come on top.
func TestForwardAuthAllowDoesNotAllocate(t *testing.T) {
	lists := quarantine.NewLists([]netip.Prefix{netip.MustParsePrefix("10.44.0.0/16")}, nil)
	f := newFAFixture(t, setup{lists: lists, rules: ClientRules{TrustedProxies: loopback}})
	f.h.rec = nopRecorder{} // the test recorder appends; metrics are pinned in internal/metrics
	r := faRequest("GET", "/check", "127.0.0.1:5000",
		map[string]string{"X-Forwarded-For": "10.44.0.22", "X-Original-URI": "/data", "X-Forwarded-Method": "GET"})
	w := &discardWriter{h: http.Header{}}
	f.h.ServeHTTP(w, r)
	allocs := testing.AllocsPerRun(1000, func() {
		f.now = f.now.Add(time.Second)
		f.h.ServeHTTP(w, r)
		if w.code != 200 {
			t.Fatalf("status %d", w.code)
		}
	})
	if allocs != 0 {
		t.Errorf("allowed forward-auth check allocated %v times, want 0", allocs)
	}
}

// TestForwardAuthRepeatDenyDoesNotAllocate: a quarantined client hammering
// away gets its 403 from the cache while the answer stays the same, and the
// answer is still complete.
func TestForwardAuthRepeatDenyDoesNotAllocate(t *testing.T) {
	f := newFAFixture(t, setup{rules: ClientRules{TrustedProxies: loopback}})
	f.h.rec = nopRecorder{}
	if _, err := f.policy.Ban(identity.FromAddr(netip.MustParseAddr("10.44.0.22"), 64), time.Hour, "manual", f.now); err != nil {
		t.Fatal(err)
	}
	r := faRequest("GET", "/check", "127.0.0.1:5000",
		map[string]string{"X-Forwarded-For": "10.44.0.22", "X-Original-URI": "/data", "X-Forwarded-Method": "GET"})
	w := &discardWriter{h: http.Header{}}
	f.h.ServeHTTP(w, r)
	allocs := testing.AllocsPerRun(1000, func() {
		clear(w.h)
		f.h.ServeHTTP(w, r)
		if w.code != 403 {
			t.Fatalf("status %d", w.code)
		}
	})
	if allocs != 0 {
		t.Errorf("repeated denied forward-auth check allocated %v times, want 0", allocs)
	}
	if w.h.Get("Retry-After") != "3600" || w.h.Get(hdrDenyBody) == "" || w.h.Get("Content-Type") != "application/json" {
		t.Errorf("cached deny headers = %v", w.h)
	}
}

// TestHTTPDenyCache: the cached forward-auth answer is what a fresh build
// says, and the score (not part of it) does not split the cache.
func TestHTTPDenyCache(t *testing.T) {
	d := Decision{Outcome: Quarantined, Score: 91, Reason: `manual <b>"x"</b>`, RetryAfter: 42}
	got := cachedHTTPDeny(d)
	if string(got.body) != DenyBody(d) || got.bodyHeader[0] != asciiJSON(DenyBody(d)) || got.retryAfter[0] != "42" {
		t.Errorf("cached deny = %q %q %q", got.body, got.bodyHeader, got.retryAfter)
	}
	d.Score = 95
	if again := cachedHTTPDeny(d); again != got {
		t.Error("a different score rebuilt the same forward-auth answer")
	}
	d.RetryAfter = 41
	if next := cachedHTTPDeny(d); next == got || next.retryAfter[0] != "41" || string(next.body) != DenyBody(d) {
		t.Errorf("a second less: %q %q", next.retryAfter, next.body)
	}
}

// BenchmarkForwardAuth measures one check through the handler for a known
// client behind a trusted proxy, without the network: "allow" is an
// allow-listed client (timed, scored, never quarantined: the common path),
// "deny" a quarantined one (a bot hammering away).
func BenchmarkForwardAuth(b *testing.B) {
	for _, name := range []string{"allow", "deny"} {
		b.Run(name, func(b *testing.B) {
			// The allow list keeps the hammering client from being
			// quarantined; the deny case has none, since it would
			// overrule the ban.
			var lists *quarantine.Lists
			if name == "allow" {
				lists = quarantine.NewLists([]netip.Prefix{netip.MustParsePrefix("10.44.0.0/16")}, nil)
			}
			f := newFAFixture(b, setup{lists: lists, rules: ClientRules{TrustedProxies: loopback}})
			f.h.now, f.h.rec = time.Now, nopRecorder{}
			if name == "deny" {
				if _, err := f.policy.Ban(identity.FromAddr(netip.MustParseAddr("10.44.0.22"), 64), time.Hour, "manual", time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			r := faRequest("GET", "/check", "127.0.0.1:5000",
				map[string]string{"X-Forwarded-For": "203.0.113.1, 10.44.0.22", "X-Original-URI": "/data?page=2"})
			w := &discardWriter{h: http.Header{}}
			want := map[string]int{"allow": 200, "deny": 403}[name]
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				f.h.ServeHTTP(w, r)
				if w.code != want {
					b.Fatalf("status %d, want %d", w.code, want)
				}
			}
		})
	}
}

// BenchmarkForwardAuthHTTP adds a real loopback HTTP/1.1 round trip with
// keep-alive: the cost nginx or Caddy sees per check.
func BenchmarkForwardAuthHTTP(b *testing.B) {
	lists := quarantine.NewLists([]netip.Prefix{netip.MustParsePrefix("10.44.0.0/16")}, nil)
	f := newFAFixture(b, setup{lists: lists, rules: ClientRules{TrustedProxies: loopback}})
	f.h.now, f.h.rec = time.Now, nopRecorder{}
	srv := httptest.NewServer(f.h)
	b.Cleanup(srv.Close)
	client := srv.Client()
	req, err := http.NewRequest("GET", srv.URL+"/check", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("X-Forwarded-For", "10.44.0.22")
	req.Header.Set("X-Original-URI", "/data")
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// TestForwardAuthOverHTTP is one check per outcome over a real connection,
// to pin what the proxies actually receive on the wire.
func TestForwardAuthOverHTTP(t *testing.T) {
	f := newFAFixture(t, setup{rules: ClientRules{TrustedProxies: loopback}})
	f.policy.Ban(identity.FromAddr(netip.MustParseAddr("203.0.113.66"), 64), time.Minute, "manual", f.now)
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		client string
		want   int
	}{{"203.0.113.5", 200}, {"203.0.113.66", 403}} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.WriteString(conn, "GET /check HTTP/1.1\r\nHost: flowlock\r\nX-Forwarded-For: "+tc.client+"\r\nConnection: close\r\n\r\n")
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(conn)
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		head, body, _ := strings.Cut(string(raw), "\r\n\r\n")
		if !strings.HasPrefix(head, "HTTP/1.1 "+strconv.Itoa(tc.want)+" ") {
			t.Errorf("%s: %q", tc.client, head)
		}
		switch tc.want {
		case 200:
			if !strings.Contains(head, "\r\nX-Flowlock-Risk: ") || !strings.Contains(head, "\r\nContent-Length: 0") || body != "" {
				t.Errorf("allow on the wire:\n%s\n\n%s", head, body)
			}
		case 403:
			if !strings.Contains(head, "\r\nRetry-After: 60") || !strings.Contains(head, "\r\nContent-Type: application/json") ||
				!strings.HasPrefix(body, `{"error":"quarantined"`) {
				t.Errorf("deny on the wire:\n%s\n\n%s", head, body)
			}
		}
	}
}
