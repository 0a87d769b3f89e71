package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

func TestMain(m *testing.M) {
	streamInterval = 50 * time.Millisecond
	m.Run()
}

// countingBackend counts snapshots: the stream asks Tracked once per tick.
type countingBackend struct {
	*fakeBackend
	tracked atomic.Int64
}

func (c *countingBackend) Tracked() int {
	c.tracked.Add(1)
	return c.fakeBackend.Tracked()
}

// streamServer serves h on a real listener with a short ReadTimeout, as
// flowlock-authz's server has one, and returns its base URL.
func streamServer(t *testing.T, h http.Handler) (*http.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Second, ReadTimeout: 300 * time.Millisecond}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return srv, "http://" + ln.Addr().String()
}

// sseEvent is one parsed server-sent event.
type sseEvent struct {
	id, event, data string
	retry           string
	comment         bool
}

// sseReader reads events from a stream, field by field, as EventSource does.
type sseReader struct{ sc *bufio.Scanner }

func newSSEReader(r io.Reader) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	return &sseReader{sc}
}

func (r *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	fields := 0
	for r.sc.Scan() {
		line := r.sc.Text()
		if line == "" {
			if fields == 0 {
				continue
			}
			return ev, nil
		}
		fields++
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimPrefix(v, " ")
		switch k {
		case "":
			ev.comment = true
		case "id":
			ev.id = v
		case "event":
			ev.event = v
		case "retry":
			ev.retry = v
		case "data":
			if ev.data != "" {
				return ev, errors.New("more than one data line in an event")
			}
			ev.data = v
		default:
			return ev, errors.New("unknown field " + k)
		}
	}
	if err := r.sc.Err(); err != nil {
		return ev, err
	}
	return ev, io.EOF
}

func openStream(t *testing.T, ctx context.Context, base string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestStreamFraming(t *testing.T) {
	h, fb := newTest(t, func(o *Options) { o.Mode = "shadow" })
	fb.identities[0].Recent = []uint32{500, 501, 499}
	_, base := streamServer(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp := openStream(t, ctx, base)
	defer resp.Body.Close()

	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for k, want := range map[string]string{
		"Content-Type":            "text/event-stream; charset=utf-8",
		"Cache-Control":           "no-store",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": contentSecurityPolicy,
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	r := newSSEReader(resp.Body)
	first, err := r.next()
	if err != nil || first.retry != retryMillis || first.data != "" {
		t.Fatalf("first event = %+v (%v), want a bare retry: %s", first, err, retryMillis)
	}
	// Events keep coming past the server's ReadTimeout (300 ms), which
	// bounds reading the request, not the life of the stream.
	var last sseEvent
	var ids []string
	deadline := time.Now().Add(700 * time.Millisecond)
	for time.Now().Before(deadline) || len(ids) < 3 {
		ev, err := r.next()
		if err != nil {
			t.Fatalf("after %d events: %v", len(ids), err)
		}
		if ev.comment {
			continue
		}
		if ev.event != "snapshot" || ev.id == "" || ev.data == "" {
			t.Fatalf("event = %+v, want id, event: snapshot and data", ev)
		}
		ids = append(ids, ev.id)
		last = ev
	}
	if !slices.IsSorted(ids) && len(ids[0]) == len(ids[len(ids)-1]) {
		t.Errorf("event ids not increasing: %v", ids)
	}

	// The data is one line of JSON of the documented shape.
	if strings.Contains(last.data, "<") {
		t.Errorf("data carries a raw '<': %s", last.data)
	}
	var snap map[string]json.RawMessage
	if err := json.Unmarshal([]byte(last.data), &snap); err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"admin", "clients", "events", "identities", "lists", "mode", "quarantine", "quarantine_total", "stats", "time", "version", "warnings"}
	if got := slices.Sorted(mapKeys(snap)); !slices.Equal(got, wantKeys) {
		t.Errorf("snapshot keys = %v, want %v", got, wantKeys)
	}
	var decoded Snapshot
	if err := json.Unmarshal([]byte(last.data), &decoded); err != nil {
		t.Fatal(err)
	}
	if decoded.Mode != "shadow" || !decoded.Admin || decoded.Clients != 1 || decoded.Version != "v0.1.0-test" {
		t.Errorf("snapshot header = %+v", decoded)
	}
	if len(decoded.Identities) != 2 || decoded.Identities[1].Identity != hostile ||
		!slices.Equal(decoded.Identities[0].Recent, []uint32{500, 501, 499}) {
		t.Errorf("identities = %+v", decoded.Identities)
	}
	if len(decoded.Quarantine) != 2 || decoded.QuarantineTotal != 2 || decoded.Quarantine[0].Strikes != 2 {
		t.Errorf("quarantine = %+v total %d", decoded.Quarantine, decoded.QuarantineTotal)
	}
	if decoded.Stats.Tracked != 2 || decoded.Stats.Quarantined != 2 || len(decoded.Stats.ChecksSeries) != 60 {
		t.Errorf("stats = %+v", decoded.Stats)
	}
	if !slices.Equal(decoded.Lists.Allow, []string{"10.0.0.0/8"}) || !slices.Equal(decoded.Lists.Deny, []string{"192.0.2.0/24"}) {
		t.Errorf("lists = %+v", decoded.Lists)
	}
	var stats map[string]json.RawMessage
	json.Unmarshal(snap["stats"], &stats)
	wantStats := []string{"allowed_total", "checks_per_sec", "checks_series", "denied_total", "denies_per_sec", "denies_series",
		"failed_total", "latency_p50_ms", "latency_p99_ms", "quarantined", "tracked"}
	if got := slices.Sorted(mapKeys(stats)); !slices.Equal(got, wantStats) {
		t.Errorf("stats keys = %v, want %v", got, wantStats)
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// waitIdle waits until the hub has no subscriber and its ticker has
// stopped: nothing is left running.
func waitIdle(t *testing.T, h *hub) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		h.mu.Lock()
		idle := len(h.subs) == 0 && !h.running
		h.mu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("hub still has subscribers or a running ticker 3 s after the clients left")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hubOf(t *testing.T, fb Backend, edit func(*Options)) (http.Handler, *hub) {
	t.Helper()
	// Build the server directly to reach its hub.
	opts := Options{Backend: fb, AdminToken: testToken, Now: func() time.Time { return testNow }, Version: "v0.1.0-test"}
	if edit != nil {
		edit(&opts)
	}
	s := newServer(opts)
	return s.handler(), s.hub
}

func TestStreamEndsOnClientCancel(t *testing.T) {
	_, fb := newTest(t, nil)
	h, hb := hubOf(t, fb, nil)
	_, base := streamServer(t, h)
	for range 3 { // the ticker stops and starts again with its subscribers
		ctx, cancel := context.WithCancel(context.Background())
		resp := openStream(t, ctx, base)
		r := newSSEReader(resp.Body)
		for n := 0; n < 2; {
			ev, err := r.next()
			if err != nil {
				t.Fatal(err)
			}
			if ev.event == "snapshot" {
				n++
			}
		}
		cancel()
		resp.Body.Close()
		waitIdle(t, hb)
	}
}

func TestStreamEndsOnShutdown(t *testing.T) {
	_, fb := newTest(t, nil)
	h, hb := hubOf(t, fb, nil)
	srv, base := streamServer(t, h)
	resp := openStream(t, context.Background(), base)
	defer resp.Body.Close()
	r := newSSEReader(resp.Body)
	if _, err := r.next(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hb.close() // what main does (Handler.Close) before Shutdown
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v (an open stream must not hold it up)", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v with a stream open", d)
	}
	for {
		if _, err := r.next(); err != nil {
			if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "EOF") {
				t.Logf("stream ended with %v", err)
			}
			break
		}
	}
	waitIdle(t, hb)
	if _, err := hb.subscribe(false); !errors.Is(err, errHubClosed) {
		t.Errorf("subscribe after shutdown: %v, want errHubClosed", err)
	}
}

func TestStreamLimit(t *testing.T) {
	_, fb := newTest(t, nil)
	h, hb := hubOf(t, fb, func(o *Options) { o.MaxStreams = 2 })
	_, base := streamServer(t, h)
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	for _, ctx := range []context.Context{ctx1, ctx2} {
		resp := openStream(t, ctx, base)
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream within the limit: %d", resp.StatusCode)
		}
		newSSEReader(resp.Body).next() // retry: arrives once subscribed
	}
	resp := openStream(t, context.Background(), base)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "too many") {
		t.Errorf("stream over the limit = %d %q Retry-After %q, want 503", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	cancel1()
	deadline := time.Now().Add(3 * time.Second)
	for hb.clients() > 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	resp = openStream(t, ctx2, base)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("stream after one left = %d, want 200", resp.StatusCode)
	}
}

// TestStreamSharesSnapshots pins that a tick computes one snapshot for all
// streams, not one per stream.
func TestStreamSharesSnapshots(t *testing.T) {
	_, fb := newTest(t, nil)
	cb := &countingBackend{fakeBackend: fb}
	h, hb := hubOf(t, cb, nil)
	_, base := streamServer(t, h)
	const streams, events = 5, 6
	ctx, cancel := context.WithCancel(context.Background())
	readers := make([]*sseReader, streams)
	for i := range readers {
		resp := openStream(t, ctx, base)
		defer resp.Body.Close()
		readers[i] = newSSEReader(resp.Body)
	}
	for _, r := range readers {
		for n := 0; n < events; {
			ev, err := r.next()
			if err != nil {
				t.Fatal(err)
			}
			if ev.event == "snapshot" {
				n++
			}
		}
	}
	cancel()
	waitIdle(t, hb)
	// Each stream saw 6 events; one snapshot per tick means about 6-10
	// snapshots in all, never one per stream per event (30).
	if n := cb.tracked.Load(); n >= streams*events {
		t.Errorf("%d snapshots built for %d streams × %d events: not shared", n, streams, events)
	}
}

func TestStreamHeartbeat(t *testing.T) {
	defer func(d time.Duration) { heartbeatEvery = d }(heartbeatEvery)
	heartbeatEvery = 20 * time.Millisecond
	h, _ := newTest(t, nil)
	_, base := streamServer(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp := openStream(t, ctx, base)
	defer resp.Body.Close()
	r := newSSEReader(resp.Body)
	for {
		ev, err := r.next()
		if err != nil {
			t.Fatalf("no heartbeat before %v", err)
		}
		if ev.comment {
			return
		}
	}
}

func TestStreamHead(t *testing.T) {
	h, _ := newTest(t, nil)
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- do(t, h, "HEAD", "/api/v1/stream", "") }()
	select {
	case rec := <-done:
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/event-stream; charset=utf-8" {
			t.Errorf("HEAD /api/v1/stream = %d %q", rec.Code, rec.Header().Get("Content-Type"))
		}
	case <-time.After(2 * time.Second):
		t.Fatal("HEAD /api/v1/stream did not return")
	}
}

func TestExplain(t *testing.T) {
	h, fb := newTest(t, nil)
	rec := do(t, h, "GET", "/api/v1/identities/203.0.113.7", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("explain = %d %s", rec.Code, rec.Body)
	}
	var got map[string]json.RawMessage
	json.Unmarshal(rec.Body.Bytes(), &got)
	if keys := slices.Sorted(mapKeys(got)); !slices.Equal(keys, []string{"decisions", "explanation", "fingerprint", "identity", "quarantine", "tracked"}) {
		t.Errorf("keys = %v", keys)
	}
	var x explainResponse
	json.Unmarshal(rec.Body.Bytes(), &x)
	if !x.Tracked || x.Explanation == nil || x.Explanation.Score != 91 || len(x.Explanation.Features) != 2 ||
		x.Explanation.Threshold != 80 || x.Quarantine == nil || x.Quarantine.Strikes != 2 {
		t.Errorf("explain = %s", rec.Body)
	}
	var feature map[string]any
	var raw struct {
		Explanation struct{ Features []json.RawMessage }
	}
	json.Unmarshal(rec.Body.Bytes(), &raw)
	json.Unmarshal(raw.Explanation.Features[0], &feature)
	if keys := slices.Sorted(mapKeys(feature)); !slices.Equal(keys, []string{"gate", "name", "probability", "threshold", "value"}) {
		t.Errorf("feature keys = %v", keys)
	}

	// Decisions made through the API show up, newest first.
	doAdmin(t, h, "POST", "/api/v1/quarantine/203.0.113.7/extend", `{"by":"10m"}`)
	doAdmin(t, h, "DELETE", "/api/v1/quarantine/203.0.113.7", "")
	var after explainResponse
	json.Unmarshal(do(t, h, "GET", "/api/v1/identities/203.0.113.7", "").Body.Bytes(), &after)
	var actions []string
	for _, d := range after.Decisions {
		actions = append(actions, d.Action+" by "+d.By)
	}
	if want := []string{"released by operator", "extended by operator", "admitted by detector"}; !slices.Equal(actions, want) || after.Quarantine != nil {
		t.Errorf("decisions = %v, want %v; quarantine %+v", actions, want, after.Quarantine)
	}

	// The hostile identity comes back as escaped JSON text.
	rec = do(t, h, "GET", "/api/v1/identities/%3Cimg%20src=x%20onerror=alert(1)%3E", "")
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "<") || !strings.Contains(rec.Body.String(), `\u003cimg`) {
		t.Errorf("hostile explain = %d %s", rec.Code, rec.Body)
	}

	// Unknown: 404; not an identity: 400.
	fb.quarantine = nil
	errorBody(t, do(t, h, "GET", "/api/v1/identities/198.51.100.99", ""), http.StatusNotFound)
	errorBody(t, do(t, h, "GET", "/api/v1/identities/10.0.0.0%2F8", ""), http.StatusBadRequest)
}

func TestExtend(t *testing.T) {
	h, fb := newTest(t, nil)
	rec := doAdmin(t, h, "POST", "/api/v1/quarantine/203.0.113.7/extend", `{"by":"10m"}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("extend = %d %s", rec.Code, rec.Body)
	}
	var q Quarantine
	json.Unmarshal(rec.Body.Bytes(), &q)
	if !q.Until.Equal(testNow.Add(19*time.Minute)) || len(fb.extends) != 1 || fb.extends[0].by != 10*time.Minute {
		t.Errorf("extend answered %+v; backend got %+v", q, fb.extends)
	}
	errorBody(t, doAdmin(t, h, "POST", "/api/v1/quarantine/198.51.100.1/extend", `{"by":"10m"}`), http.StatusNotFound)

	for _, body := range []string{``, `{}`, `{"by":""}`, `{"by":"soon"}`, `{"by":"-1m"}`, `{"by":"0s"}`, `{"by":"721h"}`,
		`{"by":600}`, `{"by":"10m","extra":1}`, `{"by":"10m"} {}`} {
		errorBody(t, doAdmin(t, h, "POST", "/api/v1/quarantine/203.0.113.7/extend", body), http.StatusBadRequest)
	}
	errorBody(t, doAdmin(t, h, "POST", "/api/v1/quarantine/10.0.0.0%2F8/extend", `{"by":"1m"}`), http.StatusBadRequest)
	if len(fb.extends) != 2 {
		t.Errorf("backend got %d extends, want 2 (bad requests must not reach it)", len(fb.extends))
	}
	fb.extendErr = errors.New("disk full")
	errorBody(t, doAdmin(t, h, "POST", "/api/v1/quarantine/203.0.113.7/extend", `{"by":"1m"}`), http.StatusInternalServerError)
}

func TestAuthRoute(t *testing.T) {
	h, _ := newTest(t, nil)
	if rec := doAdmin(t, h, "POST", "/api/v1/auth", ""); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"admin":true`) {
		t.Errorf("POST /api/v1/auth with the token = %d %s", rec.Code, rec.Body)
	}
}

// Journal actions, as the backend names them.
const (
	actionAdmitted = "admitted"
	actionBanned   = "banned"
	actionExtended = "extended"
	actionReleased = "released"
	actionExpired  = "expired"
	actionEvicted  = "evicted"
)

// TestPageNeverRendersHostileIdentity pins that whatever the backend holds,
// the page's HTML carries none of it; the stream and the API carry it only
// as escaped JSON text.
func TestPageNeverRendersHostileIdentity(t *testing.T) {
	h, fb := newTest(t, nil)
	fb.identities[0].Reason = `"><svg onload=alert(3)>`
	for _, path := range []string{"/", "/status", "/api/v1/identities", "/api/v1/quarantine"} {
		body := do(t, h, "GET", path, "").Body.String()
		for _, bad := range []string{"<img", "<svg onload", "<script>", "onerror=alert(1)>"} {
			if strings.Contains(body, bad) {
				t.Errorf("GET %s contains %q", path, bad)
			}
		}
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp := openStream(t, ctx, srv.URL)
	defer resp.Body.Close()
	r := newSSEReader(resp.Body)
	for {
		ev, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.event == "snapshot" {
			if strings.ContainsAny(ev.data, "<>") {
				t.Errorf("snapshot data carries raw markup characters: %s", ev.data)
			}
			break
		}
	}
}

func TestIdentityText(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":       "203.0.113.7",
		"2001:db8:1:2::/64": "2001:db8:1:2::/64",
		"api key 7":         "api key 7",
		"name:203.0.113.7":  "name:203.0.113.7", // a header value that looks like an address
		hostile:             hostile,
	} {
		id, err := identity.Parse(in, 64)
		if err != nil {
			t.Fatal(err)
		}
		got := IdentityText(id)
		if got != want {
			t.Errorf("IdentityText(%q) = %q, want %q", in, got, want)
		}
		if back, err := identity.Parse(got, 64); err != nil || back != id {
			t.Errorf("Parse(IdentityText(%q)) = %v, %v; want the same identity", in, back, err)
		}
	}
}

// clients returns the number of subscribed streams.
func (h *hub) clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
