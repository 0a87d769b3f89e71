package dashboard

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

var update = flag.Bool("update", false, "update golden files")

const (
	testToken = "s3cret-admin-token-0123456789"
	hostile   = `<img src=x onerror=alert(1)>`
)

var testNow = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// fakeBackend is a hand-written Backend that records what it is asked.
type fakeBackend struct {
	mu         sync.Mutex // guards the following fields
	identities []Identity
	quarantine []Quarantine
	banErr     error
	releaseErr error
	limits     []int         // limit of each Identities call
	bans       []banCall     // each Ban call
	releases   []identity.ID // each Release call
	extends    []extendCall  // each Extend call
	extendErr  error
	nows       []time.Time // now of every call
	qlimits    []int       // limit of each Quarantined call
	events     []Decision  // transitions, numbered from 1 by position
}

type extendCall struct {
	id identity.ID
	by time.Duration
}

type banCall struct {
	id     identity.ID
	ttl    time.Duration
	reason string
}

func (f *fakeBackend) Identities(limit int, now time.Time) []Identity {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limits = append(f.limits, limit)
	f.nows = append(f.nows, now)
	return slices.Clone(f.identities)
}

func (f *fakeBackend) Quarantined(limit int, now time.Time) ([]Quarantine, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nows = append(f.nows, now)
	f.qlimits = append(f.qlimits, limit)
	return slices.Clone(f.quarantine[:min(limit, len(f.quarantine))]), len(f.quarantine)
}

func (f *fakeBackend) QuarantineOf(id identity.ID, now time.Time) (Quarantine, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nows = append(f.nows, now)
	for _, q := range f.quarantine {
		if q.Identity == id.String() {
			return q, true
		}
	}
	return Quarantine{}, false
}

func (f *fakeBackend) Decisions(limit int, of identity.ID) []Decision {
	f.mu.Lock()
	defer f.mu.Unlock()
	return latestOf(f.events, limit, of)
}

// latestOf is Backend.Decisions over ds, oldest first.
func latestOf(ds []Decision, limit int, of identity.ID) []Decision {
	var out []Decision
	name := ""
	if !of.IsZero() {
		name = IdentityText(of)
	}
	for i := len(ds) - 1; i >= 0 && len(out) < limit; i-- {
		if name == "" || ds[i].Identity == name {
			out = append(out, ds[i])
		}
	}
	return out
}

func (f *fakeBackend) Ban(id identity.ID, ttl time.Duration, reason string, now time.Time) (Quarantine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nows = append(f.nows, now)
	f.bans = append(f.bans, banCall{id, ttl, reason})
	if f.banErr != nil {
		return Quarantine{}, f.banErr
	}
	if ttl == 0 {
		ttl = 10 * time.Minute
	}
	q := Quarantine{
		Identity: id.String(), Reason: reason, Strikes: 1, Manual: true,
		Since: now, Until: now.Add(ttl), RetryAfter: int(ttl / time.Second),
	}
	f.quarantine = append(f.quarantine, q)
	f.events = append(f.events, Decision{Time: now, Identity: q.Identity, Action: actionBanned, Reason: reason,
		Strikes: q.Strikes, Until: q.Until, By: "operator"})
	return q, nil
}

func (f *fakeBackend) Release(id identity.ID, now time.Time) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nows = append(f.nows, now)
	f.releases = append(f.releases, id)
	if f.releaseErr != nil {
		return false, f.releaseErr
	}
	n := len(f.quarantine)
	f.quarantine = slices.DeleteFunc(f.quarantine, func(q Quarantine) bool { return q.Identity == id.String() })
	if len(f.quarantine) == n {
		return false, nil
	}
	f.events = append(f.events, Decision{Time: now, Identity: id.String(), Action: actionReleased, By: "operator"})
	return true, nil
}

func (f *fakeBackend) Extend(id identity.ID, by time.Duration, now time.Time) (Quarantine, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nows = append(f.nows, now)
	f.extends = append(f.extends, extendCall{id, by})
	if f.extendErr != nil {
		return Quarantine{}, false, f.extendErr
	}
	for i := range f.quarantine {
		if f.quarantine[i].Identity == id.String() {
			f.quarantine[i].Until = f.quarantine[i].Until.Add(by)
			f.quarantine[i].RetryAfter = int(f.quarantine[i].Until.Sub(now) / time.Second)
			q := f.quarantine[i]
			f.events = append(f.events, Decision{Time: now, Identity: q.Identity, Action: actionExtended, Reason: q.Reason,
				Strikes: q.Strikes, Until: q.Until, By: "operator"})
			return q, true, nil
		}
	}
	return Quarantine{}, false, nil
}

func (f *fakeBackend) Explain(id identity.ID, now time.Time) (Explanation, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nows = append(f.nows, now)
	for _, x := range f.identities {
		if x.Identity == id.String() {
			return Explanation{
				Identity: x,
				Features: []Feature{
					{Name: "periodic", Value: 0.02, Probability: 0.97, Gate: 1, Threshold: "MAD/median < 0.30"},
					{Name: "shared", Value: 0.1, Probability: 0, Gate: 1, Threshold: "rate >= 0.5 req/s"},
				},
				Intervals: 31, Threshold: 80, ChallengeThreshold: 60, Confirm: 3, Consecutive: 3, Confirmed: true,
			}, true
		}
	}
	return Explanation{}, false
}

func (f *fakeBackend) Tracked() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.identities)
}

func (f *fakeBackend) Lists() Lists {
	return Lists{Allow: []string{"10.0.0.0/8"}, Deny: []string{"192.0.2.0/24"}}
}

var _ Backend = (*fakeBackend)(nil)

// newTest returns a handler with an admin token, a fixed clock, and a fake
// backend holding one hostile and one ordinary quarantine entry.
func newTest(t *testing.T, edit func(*Options)) (http.Handler, *fakeBackend) {
	t.Helper()
	fb := &fakeBackend{
		identities: []Identity{
			{Identity: "203.0.113.7", Score: 91, Reason: "periodic", Requests: 420, FirstSeen: testNow.Add(-time.Hour), LastSeen: testNow, Quarantined: true},
			{Identity: hostile, Score: 12, Requests: 3, FirstSeen: testNow.Add(-time.Minute), LastSeen: testNow, Shared: true},
		},
		quarantine: []Quarantine{
			{Identity: "203.0.113.7", Reason: "periodic", Score: 91, Strikes: 2, Since: testNow.Add(-time.Minute), Until: testNow.Add(9 * time.Minute), RetryAfter: 540, Hits: 12},
			{Identity: hostile, Reason: `"><script>alert(2)</script>`, Score: 88, Strikes: 1, Since: testNow, Until: testNow.Add(time.Minute), RetryAfter: 60},
		},
	}
	for _, q := range fb.quarantine {
		fb.events = append(fb.events, Decision{Time: q.Since, Identity: q.Identity, Action: actionAdmitted, Reason: q.Reason,
			Score: q.Score, Strikes: q.Strikes, Until: q.Until, By: "detector"})
	}
	opts := Options{
		Backend:    fb,
		AdminToken: testToken,
		Now:        func() time.Time { return testNow },
		Version:    "v0.1.0-test",
		// The tests of hostile identities need to see them as they are;
		// TestMaskedIdentities covers the default.
		ShowIdentities: true,
	}
	if edit != nil {
		edit(&opts)
	}
	return New(opts), fb
}

func do(t testing.TB, h http.Handler, method, target, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	req.Host = "localhost:8080" // httptest's example.com is not an allowed host
	for i := 0; i+1 < len(hdr); i += 2 {
		if http.CanonicalHeaderKey(hdr[i]) == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func doAdmin(t *testing.T, h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	return do(t, h, method, target, body, "Authorization", "Bearer "+testToken)
}

// errorBody checks that rec is a JSON {"error": "..."} with status want and
// returns the message.
func errorBody(t *testing.T, rec *httptest.ResponseRecorder, want int) string {
	t.Helper()
	if rec.Code != want {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, want, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body map[string]any
	dec := json.NewDecoder(rec.Body)
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("error body is not JSON: %v", err)
	}
	msg, ok := body["error"].(string)
	if !ok || msg == "" || len(body) != 1 {
		t.Fatalf(`body = %v, want exactly {"error": "<message>"}`, body)
	}
	return msg
}

func TestHealthz(t *testing.T) {
	h, _ := newTest(t, func(o *Options) { o.Ready = func() error { return errors.New("state not loaded") } })
	rec := do(t, h, "GET", "/healthz", "")
	if rec.Code != http.StatusOK || rec.Body.String() != "ok\n" {
		t.Errorf("GET /healthz = %d %q, want 200 \"ok\\n\" even while not ready", rec.Code, rec.Body)
	}
	if rec := do(t, h, "HEAD", "/healthz", ""); rec.Code != http.StatusOK {
		t.Errorf("HEAD /healthz = %d, want 200", rec.Code)
	}
}

func TestReadyzFlips(t *testing.T) {
	var notReady atomic.Pointer[error]
	h, _ := newTest(t, func(o *Options) {
		o.Ready = func() error {
			if p := notReady.Load(); p != nil {
				return *p
			}
			return nil
		}
	})
	err := errors.New("state file not loaded")
	notReady.Store(&err)
	rec := do(t, h, "GET", "/readyz", "")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "state file not loaded") {
		t.Errorf("not ready: GET /readyz = %d %q, want 503 with the reason", rec.Code, rec.Body)
	}
	notReady.Store(nil)
	rec = do(t, h, "GET", "/readyz", "")
	if rec.Code != http.StatusOK || rec.Body.String() != "ok\n" {
		t.Errorf("ready: GET /readyz = %d %q, want 200 ok", rec.Code, rec.Body)
	}

	h, _ = newTest(t, nil) // nil Ready means ready
	if rec := do(t, h, "GET", "/readyz", ""); rec.Code != http.StatusOK {
		t.Errorf("nil Ready: GET /readyz = %d, want 200", rec.Code)
	}
}

func TestMetrics(t *testing.T) {
	h, _ := newTest(t, func(o *Options) {
		o.Metrics = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "flowlock_up 1\n")
		})
	})
	if rec := do(t, h, "GET", "/metrics", ""); rec.Code != http.StatusOK || rec.Body.String() != "flowlock_up 1\n" {
		t.Errorf("GET /metrics = %d %q, want Options.Metrics' answer", rec.Code, rec.Body)
	}
	h, _ = newTest(t, nil)
	if rec := do(t, h, "GET", "/metrics", ""); rec.Code != http.StatusNotFound {
		t.Errorf("nil Metrics: GET /metrics = %d, want 404", rec.Code)
	}
}

func TestStatusPage(t *testing.T) {
	h, _ := newTest(t, func(o *Options) { o.Mode = "shadow" })
	for _, path := range []string{"/", "/status"} {
		rec := do(t, h, "GET", path, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s = %d, want 200", path, rec.Code)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("GET %s: Content-Type = %q", path, ct)
		}
		body := rec.Body.String()
		for _, want := range []string{"v0.1.0-test", `data-mode="shadow"`, `<script type="module" src="/assets/app.js"></script>`,
			`href="/assets/app.css"`, `data-testid="stat-checks"`, `data-testid="stat-denied"`, `data-testid="stat-quarantined"`,
			`data-testid="connection-status"`, `data-testid="admin-token-input"`} {
			if !strings.Contains(body, want) {
				t.Errorf("GET %s: page lacks %q", path, want)
			}
		}
		// The shell carries no live data: identities only ever arrive as
		// JSON and become text in the browser.
		if strings.Contains(body, "203.0.113.7") {
			t.Errorf("GET %s: page renders backend data; it must come from the stream", path)
		}
	}

	golden := filepath.Join("testdata", "status.golden.html")
	got := do(t, h, "GET", "/status", "").Body.Bytes()
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("status page differs from %s (run go test -update if intended):\n%s", golden, got)
	}
}

// TestPageObeysCSP reads every embedded page and script and fails on what
// the Content-Security-Policy would block or what could turn wire data into
// markup: inline scripts, inline event handlers, style attributes, HTML
// sinks, eval, and anything from another origin.
func TestPageObeysCSP(t *testing.T) {
	files, err := fs.Glob(staticFS, "static/*")
	if err != nil || len(files) < 5 {
		t.Fatalf("embedded files = %v (%v)", files, err)
	}
	inlineScript := regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`)
	handlerAttr := regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	styleAttr := regexp.MustCompile(`(?i)\sstyle\s*=`)
	sinks := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|setAttribute\(\s*['"]style`)
	remote := regexp.MustCompile(`(?i)(?:src|href)\s*=\s*["']?(?:https?:)?//|@import|url\(\s*["']?(?:https?:)?//`)
	for _, name := range files {
		b, err := staticFS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		if strings.HasSuffix(name, ".html") || strings.HasSuffix(name, ".svg") {
			if m := inlineScript.FindString(src); m != "" {
				t.Errorf("%s: inline script %q", name, m)
			}
			if m := handlerAttr.FindString(src); m != "" {
				t.Errorf("%s: inline event handler %q", name, m)
			}
			if m := styleAttr.FindString(src); m != "" {
				t.Errorf("%s: style attribute %q", name, m)
			}
		}
		if strings.HasSuffix(name, ".js") {
			if m := sinks.FindString(src); m != "" {
				t.Errorf("%s: uses %q; insert text with textContent or el()", name, m)
			}
		}
		if m := remote.FindString(src); m != "" {
			t.Errorf("%s: loads from another origin: %q", name, m)
		}
	}
}

func TestAssets(t *testing.T) {
	h, _ := newTest(t, nil)
	for path, ct := range map[string]string{
		"/assets/app.js":      "text/javascript; charset=utf-8",
		"/assets/dom.js":      "text/javascript; charset=utf-8",
		"/assets/app.css":     "text/css; charset=utf-8",
		"/assets/favicon.svg": "image/svg+xml",
	} {
		rec := do(t, h, "GET", path, "")
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != ct {
			t.Errorf("GET %s = %d %q, want 200 %q", path, rec.Code, rec.Header().Get("Content-Type"), ct)
		}
	}
	for _, path := range []string{"/assets/", "/assets/nope.js", "/assets/index.html", "/assets/../dashboard.go"} {
		if rec := do(t, h, "GET", path, ""); rec.Code == http.StatusOK || strings.Contains(rec.Body.String(), "package dashboard") {
			t.Errorf("GET %s = %d, want no file", path, rec.Code)
		}
	}
	if rec := do(t, h, "GET", "/assets/", ""); strings.Contains(rec.Body.String(), "app.js") {
		t.Error("GET /assets/ lists the directory")
	}
}

func TestIdentities(t *testing.T) {
	h, fb := newTest(t, nil)
	rec := do(t, h, "GET", "/api/v1/identities", "")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/v1/identities = %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	// The exact wire shape, key by key.
	var raw map[string][]map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	list, ok := raw["identities"]
	if !ok || len(raw) != 1 || len(list) != 2 {
		t.Fatalf("body = %s, want {\"identities\":[2 items]}", rec.Body)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range list[0] {
			if !yield(k) {
				return
			}
		}
	})
	wantKeys := []string{"first_seen", "identity", "last_seen", "quarantined", "reason", "recent_ms", "requests", "score", "shared"}
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("identity keys = %v, want %v", keys, wantKeys)
	}
	if list[0]["first_seen"] != "2026-11-26T09:00:00Z" || list[0]["score"] != 91.0 {
		t.Errorf("first identity = %v", list[0])
	}
	if strings.Contains(rec.Body.String(), "<img") {
		t.Error("JSON carries a raw <img tag; encoding/json should escape it")
	}
	var decoded struct{ Identities []Identity }
	json.Unmarshal(rec.Body.Bytes(), &decoded)
	if decoded.Identities[1].Identity != hostile {
		t.Errorf("hostile identity round-tripped as %q", decoded.Identities[1].Identity)
	}

	do(t, h, "GET", "/api/v1/identities?limit=1000", "")
	do(t, h, "GET", "/api/v1/identities?limit=1", "")
	if want := []int{50, 1000, 1}; !slices.Equal(fb.limits, want) {
		t.Errorf("backend limits = %v, want %v", fb.limits, want)
	}
	// A backend that returns too many is cut to the limit.
	rec = do(t, h, "GET", "/api/v1/identities?limit=1", "")
	if n := strings.Count(rec.Body.String(), `"identity"`); n != 1 {
		t.Errorf("limit=1 returned %d identities", n)
	}

	fb.identities = nil
	if rec := do(t, h, "GET", "/api/v1/identities", ""); rec.Body.String() != "{\"identities\":[]}\n" {
		t.Errorf("empty list = %q, want {\"identities\":[]}", rec.Body)
	}
}

func TestIdentitiesBadLimit(t *testing.T) {
	h, fb := newTest(t, nil)
	for _, limit := range []string{"0", "-1", "1001", "abc", "10.5", "1e3", "%205", "99999999999999999999"} {
		t.Run(limit, func(t *testing.T) {
			errorBody(t, do(t, h, "GET", "/api/v1/identities?limit="+limit, ""), http.StatusBadRequest)
		})
	}
	if len(fb.limits) != 0 {
		t.Errorf("backend asked with limits %v after bad requests", fb.limits)
	}
}

func TestQuarantineList(t *testing.T) {
	h, fb := newTest(t, nil)
	rec := do(t, h, "GET", "/api/v1/quarantine", "")
	var raw struct {
		Quarantine []map[string]any `json:"quarantine"`
		Total      *int             `json:"total"`
	}
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET /api/v1/quarantine = %d %s (%v)", rec.Code, rec.Body, err)
	}
	list := raw.Quarantine
	if len(list) != 2 || raw.Total == nil || *raw.Total != 2 {
		t.Fatalf("body = %s, want {\"quarantine\":[2 items],\"total\":2}", rec.Body)
	}
	want := map[string]any{
		"identity": "203.0.113.7", "reason": "periodic", "score": 91.0, "strikes": 2.0, "manual": false,
		"since": "2026-11-26T09:59:00Z", "until": "2026-11-26T10:09:00Z", "retry_after": 540.0, "hits": 12.0,
	}
	if fmt.Sprint(list[0]) != fmt.Sprint(want) {
		t.Errorf("entry = %v, want %v", list[0], want)
	}

	// ?limit bounds the list, not the total.
	if rec := do(t, h, "GET", "/api/v1/quarantine?limit=1", ""); rec.Code != http.StatusOK ||
		!strings.HasPrefix(rec.Body.String(), `{"quarantine":[{"identity":"203.0.113.7",`) || !strings.HasSuffix(rec.Body.String(), "}],\"total\":2}\n") {
		t.Errorf("limit=1: %d %s", rec.Code, rec.Body)
	}
	do(t, h, "GET", "/api/v1/quarantine?limit=10000", "")
	if want := []int{defaultQuarantineLimit, 1, maxQuarantineLimit}; !slices.Equal(fb.qlimits, want) {
		t.Errorf("backend asked with limits %v, want %v", fb.qlimits, want)
	}
	for _, limit := range []string{"0", "-1", "10001", "abc", "10.5", "1e3", "%205", "99999999999999999999"} {
		errorBody(t, do(t, h, "GET", "/api/v1/quarantine?limit="+limit, ""), http.StatusBadRequest)
	}
	if len(fb.qlimits) != 3 {
		t.Errorf("backend asked with limits %v after bad requests", fb.qlimits)
	}

	fb.quarantine = nil
	if rec := do(t, h, "GET", "/api/v1/quarantine", ""); rec.Body.String() != "{\"quarantine\":[],\"total\":0}\n" {
		t.Errorf("empty list = %q", rec.Body)
	}
}

func TestConfig(t *testing.T) {
	h, _ := newTest(t, func(o *Options) {
		o.Config = func() any {
			return map[string]any{"grpc_addr": ":9191", "admin_token": "<redacted>"}
		}
	})
	rec := do(t, h, "GET", "/api/v1/config", "")
	if rec.Code != http.StatusOK || rec.Body.String() != `{"admin_token":"\u003credacted\u003e","grpc_addr":":9191"}`+"\n" {
		t.Errorf("GET /api/v1/config = %d %s", rec.Code, rec.Body)
	}
	h, _ = newTest(t, nil)
	if rec := do(t, h, "GET", "/api/v1/config", ""); rec.Body.String() != "{}\n" {
		t.Errorf("nil Config: body = %q, want {}", rec.Body)
	}
}

func TestBan(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		want   banCall
		wantID string
	}{
		{"defaults", `{"identity":"203.0.113.9"}`, banCall{ttl: 0, reason: "manual"}, "203.0.113.9"},
		{"ttl and reason", `{"identity":"203.0.113.9","ttl":"90m","reason":"scraper seen in logs"}`,
			banCall{ttl: 90 * time.Minute, reason: "scraper seen in logs"}, "203.0.113.9"},
		{"30 days", `{"identity":"203.0.113.9","ttl":"720h"}`, banCall{ttl: DefaultMaxBanTTL, reason: "manual"}, "203.0.113.9"},
		{"ipv6 grouped by IPv6Prefix", `{"identity":"2001:db8:1:2:3:4:5:6"}`, banCall{reason: "manual"}, "2001:db8:1::/56"},
		{"name identity", `{"identity":"name:10.0.0.1"}`, banCall{reason: "manual"}, "10.0.0.1"},
		{"name of hex digits", `{"identity":"deadbeef"}`, banCall{reason: "manual"}, "deadbeef"},
		{"name with colon", `{"identity":"key:7"}`, banCall{reason: "manual"}, "key:7"},
		{"empty ttl is default", `{"identity":"203.0.113.9","ttl":""}`, banCall{reason: "manual"}, "203.0.113.9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, fb := newTest(t, func(o *Options) { o.IPv6Prefix, o.NameIdentities = 56, true })
			rec := doAdmin(t, h, "POST", "/api/v1/quarantine", tc.body)
			if rec.Code != http.StatusOK {
				t.Fatalf("POST = %d %s, want 200", rec.Code, rec.Body)
			}
			if len(fb.bans) != 1 {
				t.Fatalf("backend got %d bans, want 1", len(fb.bans))
			}
			got := fb.bans[0]
			if got.id.String() != tc.wantID || got.ttl != tc.want.ttl || got.reason != tc.want.reason {
				t.Errorf("Ban(%q, %v, %q), want Ban(%q, %v, %q)", got.id, got.ttl, got.reason, tc.wantID, tc.want.ttl, tc.want.reason)
			}
			var q Quarantine
			if err := json.Unmarshal(rec.Body.Bytes(), &q); err != nil || q.Identity != tc.wantID || !q.Manual || !q.Since.Equal(testNow) {
				t.Errorf("response = %s (%v), want the backend's entry", rec.Body, err)
			}
		})
	}
}

func TestBanBadRequest(t *testing.T) {
	tests := []struct{ name, body string }{
		{"empty body", ``},
		{"bad json", `{"identity":`},
		{"not an object", `["203.0.113.7"]`},
		{"unknown field", `{"identity":"203.0.113.7","ttl_seconds":60}`},
		{"trailing data", `{"identity":"203.0.113.7"} {"identity":"203.0.113.8"}`},
		{"null", `null`},
		{"missing identity", `{"ttl":"10m"}`},
		{"identity not a string", `{"identity":203}`},
		{"ipv4 prefix", `{"identity":"10.0.0.0/8"}`},
		{"control character", `{"identity":"bad\nvalue"}`},
		{"identity too long", `{"identity":"` + strings.Repeat("k", identity.MaxNameLen+1) + `"}`},
		{"ttl not a duration", `{"identity":"203.0.113.7","ttl":"ten minutes"}`},
		{"ttl in days", `{"identity":"203.0.113.7","ttl":"1d"}`},
		{"ttl as number", `{"identity":"203.0.113.7","ttl":600}`},
		{"negative ttl", `{"identity":"203.0.113.7","ttl":"-5m"}`},
		{"zero ttl", `{"identity":"203.0.113.7","ttl":"0s"}`},
		{"ttl over 30 days", `{"identity":"203.0.113.7","ttl":"720h1s"}`},
		{"reason over 200 bytes", `{"identity":"203.0.113.7","reason":"` + strings.Repeat("r", 201) + `"}`},
		{"reason with newline", `{"identity":"203.0.113.7","reason":"a\nFAKE LOG LINE"}`},
		// Mistyped addresses would become names that match no client.
		{"ipv4 octet out of range", `{"identity":"203.0.113.999"}`},
		{"ipv4 three octets", `{"identity":"1.2.3"}`},
		{"ipv6 bad group", `{"identity":"2001:db8::12345"}`},
		{"leading space", `{"identity":" 203.0.113.7"}`},
		{"trailing space", `{"identity":"api-key "}`},
	}
	// Names are allowed here, as with --identity-header: these are refused
	// all the same.
	h, fb := newTest(t, func(o *Options) { o.NameIdentities = true })
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := errorBody(t, doAdmin(t, h, "POST", "/api/v1/quarantine", tc.body), http.StatusBadRequest)
			t.Logf("error: %s", msg)
		})
	}
	if len(fb.bans) != 0 {
		t.Errorf("backend got bans %v from bad requests", fb.bans)
	}
	// Exactly 200 bytes is fine.
	rec := doAdmin(t, h, "POST", "/api/v1/quarantine", `{"identity":"203.0.113.7","reason":"`+strings.Repeat("r", 200)+`"}`)
	if rec.Code != http.StatusOK {
		t.Errorf("200-byte reason: status %d, want 200", rec.Code)
	}
}

// TestBanNameWithoutIdentityHeader: without --identity-header only
// addresses identify clients, so a ban on a name would match nobody.
func TestBanNameWithoutIdentityHeader(t *testing.T) {
	h, fb := newTest(t, nil)
	for _, body := range []string{`{"identity":"not-an-ip"}`, `{"identity":"name:api-key-7"}`} {
		msg := errorBody(t, doAdmin(t, h, "POST", "/api/v1/quarantine", body), http.StatusBadRequest)
		if !strings.Contains(msg, "--identity-header") {
			t.Errorf("%s: error %q does not point to --identity-header", body, msg)
		}
	}
	if len(fb.bans) != 0 {
		t.Errorf("backend got bans %v", fb.bans)
	}
}

func TestBanBodyLimit(t *testing.T) {
	h, fb := newTest(t, nil)
	body := `{"identity":"203.0.113.7","reason":"` + strings.Repeat(" ", maxBodyBytes) + `"}`
	errorBody(t, doAdmin(t, h, "POST", "/api/v1/quarantine", body), http.StatusRequestEntityTooLarge)
	if len(fb.bans) != 0 {
		t.Error("backend called for an oversized body")
	}
}

func TestBanBackendErrors(t *testing.T) {
	var logs bytes.Buffer
	h, fb := newTest(t, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })

	fb.banErr = fmt.Errorf("203.0.113.7 is on the allow list: %w", ErrInvalid)
	msg := errorBody(t, doAdmin(t, h, "POST", "/api/v1/quarantine", `{"identity":"203.0.113.7"}`), http.StatusBadRequest)
	if !strings.Contains(msg, "allow list") {
		t.Errorf("ErrInvalid message = %q, want the backend's words", msg)
	}

	fb.banErr = errors.New("redis: connection refused at 10.1.2.3:6379")
	msg = errorBody(t, doAdmin(t, h, "POST", "/api/v1/quarantine", `{"identity":"203.0.113.7"}`), http.StatusInternalServerError)
	if strings.Contains(msg, "redis") {
		t.Errorf("500 message %q leaks the internal error", msg)
	}
	if !strings.Contains(logs.String(), "connection refused") {
		t.Error("internal error not logged")
	}

	fb.releaseErr = errors.New("disk on fire")
	errorBody(t, doAdmin(t, h, "DELETE", "/api/v1/quarantine/203.0.113.7", ""), http.StatusInternalServerError)
}

func TestRelease(t *testing.T) {
	tests := []struct {
		name, path, wantID string
	}{
		{"ipv4", "/api/v1/quarantine/203.0.113.7", "203.0.113.7"},
		{"ipv4 percent-encoded", "/api/v1/quarantine/203%2E0.113.7", "203.0.113.7"},
		{"ipv6 prefix encoded slash", "/api/v1/quarantine/2001%3Adb8%3A1%3A2%3A%3A%2F64", "2001:db8:1:2::/64"},
		{"ipv6 address grouped", "/api/v1/quarantine/2001:db8:1:2::99", "2001:db8:1:2::/64"},
		// An entry kept as a range after --ipv6-prefix grew (quarantine.List.Regroup).
		{"ipv6 range listed under an old prefix", "/api/v1/quarantine/2001%3Adb8%3A1%3A%3A%2F48", "2001:db8:1::/48"},
		{"name with space", "/api/v1/quarantine/api%20key%207", "api key 7"},
		{"hostile name", "/api/v1/quarantine/%3Cimg%20src=x%20onerror=alert(1)%3E", hostile},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, fb := newTest(t, nil)
			fb.quarantine = append(fb.quarantine, Quarantine{Identity: tc.wantID})
			rec := doAdmin(t, h, "DELETE", tc.path, "")
			if rec.Code != http.StatusOK {
				t.Fatalf("DELETE %s = %d %s, want 200", tc.path, rec.Code, rec.Body)
			}
			if len(fb.releases) != 1 || fb.releases[0].String() != tc.wantID {
				t.Errorf("backend released %v, want %q", fb.releases, tc.wantID)
			}
			var got struct {
				Identity string
				Released bool
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Identity != tc.wantID || !got.Released {
				t.Errorf("body = %s, want identity %q released", rec.Body, tc.wantID)
			}
		})
	}
}

func TestReleaseNotQuarantined(t *testing.T) {
	h, fb := newTest(t, nil)
	errorBody(t, doAdmin(t, h, "DELETE", "/api/v1/quarantine/198.51.100.1", ""), http.StatusNotFound)
	if len(fb.releases) != 1 {
		t.Errorf("backend asked %d times, want 1", len(fb.releases))
	}
	// Releasing twice: the second one finds nothing.
	doAdmin(t, h, "DELETE", "/api/v1/quarantine/203.0.113.7", "")
	errorBody(t, doAdmin(t, h, "DELETE", "/api/v1/quarantine/203.0.113.7", ""), http.StatusNotFound)
}

// TestUnlistedRangeRefused: an IPv6 range that is not the current grouping
// and not a listed entry gets Parse's explanation, not a bare 404, for
// release and extend alike.
func TestUnlistedRangeRefused(t *testing.T) {
	h, fb := newTest(t, nil)
	const path = "/api/v1/quarantine/2001%3Adb8%3A1%3A%3A%2F48"
	for _, rec := range []*httptest.ResponseRecorder{
		doAdmin(t, h, "DELETE", path, ""),
		doAdmin(t, h, "POST", path+"/extend", `{"by":"10m"}`),
	} {
		if msg := errorBody(t, rec, http.StatusBadRequest); !strings.Contains(msg, "grouped by /64") {
			t.Errorf("error = %q, want the grouping explained", msg)
		}
	}
	if len(fb.releases) != 1 || len(fb.extends) != 1 {
		t.Errorf("backend asked for %d releases and %d extends, want 1 each", len(fb.releases), len(fb.extends))
	}
}

func TestReleaseBadIdentity(t *testing.T) {
	h, fb := newTest(t, nil)
	for _, path := range []string{"/api/v1/quarantine/10.0.0.0%2F8", "/api/v1/quarantine/a%0Ab", "/api/v1/quarantine/%FF"} {
		errorBody(t, doAdmin(t, h, "DELETE", path, ""), http.StatusBadRequest)
	}
	if len(fb.releases) != 0 {
		t.Errorf("backend got releases %v", fb.releases)
	}
}

func TestAdminAuth(t *testing.T) {
	mutations := []struct{ method, path, body string }{
		{"POST", "/api/v1/quarantine", `{"identity":"203.0.113.7"}`},
		{"DELETE", "/api/v1/quarantine/203.0.113.7", ""},
		{"POST", "/api/v1/quarantine/203.0.113.7/extend", `{"by":"10m"}`},
		{"POST", "/api/v1/auth", ""},
	}
	lastByte := testToken[:len(testToken)-1] + string(testToken[len(testToken)-1]+1)
	tests := []struct {
		name      string
		token     string // configured admin token
		auth      string // Authorization header; "" sends none
		want      int
		challenge bool
	}{
		{"admin disabled, no header", "", "", http.StatusForbidden, false},
		{"admin disabled, any bearer", "", "Bearer " + testToken, http.StatusForbidden, false},
		{"admin disabled, empty bearer", "", "Bearer ", http.StatusForbidden, false},
		{"missing header", testToken, "", http.StatusUnauthorized, true},
		{"empty bearer", testToken, "Bearer ", http.StatusUnauthorized, true},
		{"wrong scheme", testToken, "Basic " + testToken, http.StatusUnauthorized, true},
		{"no scheme", testToken, testToken, http.StatusUnauthorized, true},
		{"differs in last byte", testToken, "Bearer " + lastByte, http.StatusUnauthorized, true},
		{"prefix of token", testToken, "Bearer " + testToken[:len(testToken)-1], http.StatusUnauthorized, true},
		{"token plus suffix", testToken, "Bearer " + testToken + "x", http.StatusUnauthorized, true},
		{"right token", testToken, "Bearer " + testToken, http.StatusOK, false},
		{"scheme is case-insensitive", testToken, "bearer " + testToken, http.StatusOK, false},
	}
	for _, tc := range tests {
		for _, m := range mutations {
			t.Run(tc.name+"/"+m.method, func(t *testing.T) {
				h, fb := newTest(t, func(o *Options) { o.AdminToken = tc.token })
				var hdr []string
				if tc.auth != "" {
					hdr = []string{"Authorization", tc.auth}
				}
				rec := do(t, h, m.method, m.path, m.body, hdr...)
				if tc.want == http.StatusOK {
					if rec.Code != http.StatusOK {
						t.Fatalf("status = %d %s, want 200", rec.Code, rec.Body)
					}
					return
				}
				msg := errorBody(t, rec, tc.want)
				if tc.want == http.StatusForbidden && msg != errAdminDisabled {
					t.Errorf("403 message = %q, want %q", msg, errAdminDisabled)
				}
				if got := rec.Header().Get("WWW-Authenticate"); tc.challenge != strings.HasPrefix(got, "Bearer") {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge: %v", got, tc.challenge)
				}
				if len(fb.bans)+len(fb.releases)+len(fb.extends) != 0 {
					t.Error("backend mutated without a valid token")
				}
			})
		}
	}
}

// TestReadsNeedNoToken pins that only mutations are guarded.
func TestReadsNeedNoToken(t *testing.T) {
	h, _ := newTest(t, nil)
	for _, path := range []string{"/", "/status", "/healthz", "/readyz", "/api/v1/identities", "/api/v1/quarantine", "/api/v1/config"} {
		if rec := do(t, h, "GET", path, ""); rec.Code != http.StatusOK {
			t.Errorf("GET %s without a token = %d, want 200", path, rec.Code)
		}
	}
}

func TestMutationsLogged(t *testing.T) {
	var logs bytes.Buffer
	h, _ := newTest(t, func(o *Options) { o.Logger = slog.New(slog.NewJSONHandler(&logs, nil)) })
	doAdmin(t, h, "POST", "/api/v1/quarantine", `{"identity":"198.51.100.4","ttl":"5m"}`)
	doAdmin(t, h, "DELETE", "/api/v1/quarantine/198.51.100.4", "")
	do(t, h, "POST", "/api/v1/quarantine", `{"identity":"198.51.100.4"}`, "Authorization", "Bearer wrong-token")

	var lines []map[string]any
	dec := json.NewDecoder(&logs)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("got %d log lines, want 3: %v", len(lines), lines)
	}
	for i, want := range []struct{ level, action string }{{"INFO", "ban"}, {"INFO", "release"}, {"WARN", ""}} {
		l := lines[i]
		if l["level"] != want.level || (want.action != "" && (l["action"] != want.action || l["identity"] != "198.51.100.4")) {
			t.Errorf("log line %d = %v, want level %s action %q on 198.51.100.4", i, l, want.level, want.action)
		}
		if l["remote_addr"] != "192.0.2.1:1234" { // httptest's fixed RemoteAddr
			t.Errorf("log line %d lacks remote_addr: %v", i, l)
		}
		if l["component"] != "dashboard" {
			t.Errorf("log line %d lacks component: %v", i, l)
		}
	}
	if strings.Contains(logs.String(), testToken) || strings.Contains(logs.String(), "wrong-token") {
		t.Error("a token reached the log")
	}
}

func TestSecurityHeaders(t *testing.T) {
	h, _ := newTest(t, func(o *Options) { o.Metrics = http.NotFoundHandler() })
	requests := []struct{ method, path string }{
		{"GET", "/"}, {"GET", "/status"}, {"GET", "/healthz"}, {"GET", "/readyz"}, {"GET", "/metrics"},
		{"GET", "/api/v1/identities"}, {"GET", "/api/v1/identities?limit=x"}, {"GET", "/api/v1/quarantine"},
		{"GET", "/api/v1/config"}, {"POST", "/api/v1/quarantine"}, {"DELETE", "/api/v1/quarantine/1.2.3.4"},
		{"GET", "/nope"}, {"PUT", "/api/v1/quarantine"}, {"GET", "/assets/app.js"}, {"GET", "/assets/"},
		{"GET", "/api/v1/identities/203.0.113.7"}, {"POST", "/api/v1/quarantine/203.0.113.7/extend"},
		{"POST", "/api/v1/auth"},
	}
	want := map[string]string{
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": contentSecurityPolicy,
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
	}
	for _, r := range requests {
		rec := do(t, h, r.method, r.path, "")
		for k, v := range want {
			if got := rec.Header().Get(k); got != v {
				t.Errorf("%s %s (%d): %s = %q, want %q", r.method, r.path, rec.Code, k, got, v)
			}
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	h, _ := newTest(t, nil)
	tests := []struct{ method, path, allow string }{
		{"PUT", "/api/v1/quarantine", "GET, HEAD, POST"},
		{"DELETE", "/api/v1/quarantine", "GET, HEAD, POST"},
		{"GET", "/api/v1/quarantine/203.0.113.7", "DELETE"},
		{"POST", "/api/v1/identities", "GET, HEAD"},
		{"POST", "/healthz", "GET, HEAD"},
		{"DELETE", "/", "GET, HEAD"},
	}
	for _, tc := range tests {
		rec := do(t, h, tc.method, tc.path, "")
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != tc.allow {
			t.Errorf("%s %s = %d, Allow %q; want 405, Allow %q", tc.method, tc.path, rec.Code, rec.Header().Get("Allow"), tc.allow)
		}
		// The API answers its errors in JSON; pages keep the mux's text.
		if strings.HasPrefix(tc.path, "/api/") {
			if msg := errorBody(t, rec, http.StatusMethodNotAllowed); !strings.Contains(msg, tc.allow) {
				t.Errorf("%s %s: error %q does not say what is allowed", tc.method, tc.path, msg)
			}
		}
	}
	for _, path := range []string{"/api/v1/nope", "/api/v1/quarantine/", "/api/"} {
		errorBody(t, do(t, h, "DELETE", path, ""), http.StatusNotFound)
	}
	// Routes still get their path values through the wrapper.
	if rec := do(t, h, "GET", "/api/v1/identities/203.0.113.7", ""); rec.Code != http.StatusOK {
		t.Errorf("explain through the JSON-errors wrapper = %d %s", rec.Code, rec.Body)
	}
	// A raw slash makes two segments: no such route.
	if rec := doAdmin(t, h, "DELETE", "/api/v1/quarantine/2001:db8::/64", ""); rec.Code != http.StatusNotFound {
		t.Errorf("DELETE with a raw slash = %d, want 404", rec.Code)
	}
}

func TestNewWithoutBackendPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("New without a Backend did not panic")
		}
	}()
	New(Options{})
}

// TestTokenComparedInConstantTime inspects authorized in auth.go: the token
// must go through subtle.ConstantTimeCompare, and nothing there may compare
// it with ==, != or a library equality function, which return at the first
// differing byte. (A timing test would be too flaky to pin this.)
func TestTokenComparedInConstantTime(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "auth.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var fn *ast.FuncDecl
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == "authorized" {
			fn = fd
		}
	}
	if fn == nil {
		t.Fatal("auth.go has no func authorized")
	}
	var constantTime bool
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			if sel, ok := n.Fun.(*ast.SelectorExpr); ok {
				pkg, _ := sel.X.(*ast.Ident)
				name := sel.Sel.Name
				switch {
				case pkg != nil && pkg.Name == "subtle" && name == "ConstantTimeCompare":
					constantTime = true
				case name == "Equal" || name == "Compare" || (name == "EqualFold" && !isSchemeArg(n)):
					t.Errorf("%s: authorized compares with %s.%s", fset.Position(n.Pos()), pkg, name)
				}
			}
		case *ast.BinaryExpr:
			if (n.Op == token.EQL || n.Op == token.NEQ) && !isConstantOne(n) {
				t.Errorf("%s: authorized uses %s", fset.Position(n.Pos()), n.Op)
			}
		}
		return true
	})
	if !constantTime {
		t.Error("authorized does not call subtle.ConstantTimeCompare")
	}

	// And the function itself behaves.
	s := &server{tokenSum: sha256.Sum256([]byte(testToken))}
	for auth, want := range map[string]bool{
		"Bearer " + testToken: true, "Bearer " + testToken[:5]: false, "": false, "Bearer": false,
	} {
		r := httptest.NewRequest("POST", "/", nil)
		r.Header.Set("Authorization", auth)
		if got := s.authorized(r); got != want {
			t.Errorf("authorized(%q) = %v, want %v", auth, got, want)
		}
	}
}

// isSchemeArg reports whether an EqualFold call compares the scheme literal.
func isSchemeArg(c *ast.CallExpr) bool {
	for _, a := range c.Args {
		if l, ok := a.(*ast.BasicLit); ok && l.Value == `"Bearer"` {
			return true
		}
	}
	return false
}

// isConstantOne reports whether e is "x == 1", ConstantTimeCompare's result check.
func isConstantOne(e *ast.BinaryExpr) bool {
	l, ok := e.Y.(*ast.BasicLit)
	return ok && l.Value == "1"
}

// TestReadyzSaysHowStateIsShared: a replica on local state is ready (200)
// and says why; one sharing through Redis says so; without Redis nothing
// is added.
func TestReadyzSaysHowStateIsShared(t *testing.T) {
	for _, tc := range []struct {
		sharing func() Sharing
		want    string
	}{
		{nil, "ok\n"},
		{func() Sharing { return Sharing{State: "shared"} }, "ok\nshared state: redis connected\n"},
		{func() Sharing { return Sharing{State: "fallback", Detail: "breaker open: dial tcp: refused"} },
			"ok\nshared state: local fallback (breaker open: dial tcp: refused)\n"},
	} {
		h, _ := newTest(t, func(o *Options) { o.Sharing = tc.sharing })
		rec := do(t, h, "GET", "/readyz", "")
		if rec.Code != http.StatusOK || rec.Body.String() != tc.want {
			t.Errorf("/readyz = %d %q, want 200 %q", rec.Code, rec.Body, tc.want)
		}
	}
}
