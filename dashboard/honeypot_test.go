package dashboard

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/decoy"
)

// TestHoneypot: the dashboard shows what the real decoy recorded, through
// its records API over real HTTP, reading it at most once per
// honeypotFresh however many viewers ask.
func TestHoneypot(t *testing.T) {
	ring := decoy.NewRing(0)
	bait := decoy.NewBait(decoy.BaitOptions{Ring: ring})
	for _, p := range []string{"/admin", "/.env", "/admin"} {
		req := httptest.NewRequest("GET", p, nil)
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		bait.ServeHTTP(httptest.NewRecorder(), req)
	}
	var reads atomic.Int32
	api := decoy.API(ring)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reads.Add(1)
		api.ServeHTTP(w, r)
	}))
	defer srv.Close()

	now := testNow
	h, _ := newTest(t, func(o *Options) {
		o.HoneypotURL = srv.URL + "/"
		o.Now = func() time.Time { return now }
	})
	for range 5 {
		rec := do(t, h, "GET", "/api/v1/honeypot", "")
		if rec.Code != 200 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		var v honeypotView
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		if len(v.TopPaths) != 2 || v.TopPaths[0].Path != "/admin" || v.TopPaths[0].Count != 2 ||
			len(v.Identities) != 1 || v.Identities[0].Identity != "203.0.113.7" || v.Identities[0].Requests != 3 {
			t.Fatalf("view = %s", rec.Body)
		}
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("the decoy was read %d times for 5 views within %v, want 1", n, honeypotFresh)
	}
	now = now.Add(honeypotFresh)
	do(t, h, "GET", "/api/v1/honeypot", "")
	if n := reads.Load(); n != 2 {
		t.Errorf("a stale summary was not read again (%d reads)", n)
	}
}

// TestHoneypotUnconfiguredOrBroken: without --honeypot-url the endpoint is
// 404; a decoy that is away or answers something else is a 502 with a
// short reason, never its body.
func TestHoneypotUnconfiguredOrBroken(t *testing.T) {
	h, _ := newTest(t, nil)
	if msg := errorBody(t, do(t, h, "GET", "/api/v1/honeypot", ""), 404); !strings.Contains(msg, "--honeypot-url") {
		t.Errorf("404 message %q does not name the flag", msg)
	}

	junk := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("<html>" + strings.Repeat("x", 2<<20)))
	}))
	defer junk.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	for _, url := range []string{junk.URL, gone.URL} {
		h, _ := newTest(t, func(o *Options) { o.HoneypotURL = url })
		if msg := errorBody(t, do(t, h, "GET", "/api/v1/honeypot", ""), 502); strings.Contains(msg, "html") {
			t.Errorf("502 message relays the decoy's body: %q", msg)
		}
	}
}
