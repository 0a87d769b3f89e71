package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlock/flowlock/dashboard"
	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/wire"
)

// bigBackend returns the real backend over a quarantine holding n active
// entries (distinct IPv4 clients, many sharing an end time), as an attacker
// with many addresses could make it, and the time to ask it at.
func bigBackend(tb testing.TB, n int) (*backend, time.Time) {
	tb.Helper()
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	stack := wire.Build(config.Default(), wire.Extra{})
	q := stack.Quarantine
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		// Admissions 1 ms apart in blocks of 100: ties on Until are common.
		q.Admit(identity.FromAddr(a, 64), now.Add(-time.Duration(i/100)*time.Millisecond), "periodic", 90)
	}
	return &backend{stack: stack, m: newMetrics(prometheus.NewRegistry())}, now
}

// cost runs f runs times and returns the mean time and bytes allocated.
func cost(runs int, f func()) (time.Duration, uint64) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	for range runs {
		f()
	}
	d := time.Since(start)
	runtime.ReadMemStats(&after)
	return d / time.Duration(runs), (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

// TestLargeQuarantineCost pins that with 200k quarantined clients, what
// anyone may ask the dashboard (explain, the quarantine listing, the
// stream) costs memory for what it shows, not for the whole quarantine.
// Before SnapshotN, each allocated 240-470 MB and took 0.5-1.2 s.
func TestLargeQuarantineCost(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a 200k quarantine")
	}
	const n = 200_000
	b, now := bigBackend(t, n)
	h := dashboard.New(dashboard.Options{Backend: b, Now: func() time.Time { return now }})
	srv := httptest.NewServer(h)
	defer srv.Close()

	get := func(path string) (code, size int) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, len(body)
	}
	for _, c := range []struct {
		path     string
		maxBytes uint64
	}{
		{"/api/v1/identities/10.0.0.7", 256 << 10},
		{"/api/v1/quarantine", 8 << 20}, // 1000 entries by default
		{"/api/v1/quarantine?limit=10", 256 << 10},
	} {
		get(c.path) // warm up
		var code, size int
		d, bytes := cost(10, func() { code, size = get(c.path) })
		t.Logf("GET %s: %d, %d-byte body, %v, %d KB allocated", c.path, code, size, d, bytes>>10)
		if code != http.StatusOK || bytes > c.maxBytes {
			t.Errorf("GET %s with %d quarantined: %d, %d bytes allocated; want 200 and at most %d", c.path, n, code, bytes, c.maxBytes)
		}
	}
	if code, size := get("/api/v1/quarantine?limit=10"); code != http.StatusOK || size > 4<<10 {
		t.Errorf("GET /api/v1/quarantine?limit=10 = %d, %d bytes", code, size)
	}

	// The stream: time and bytes of one snapshot event as a client gets it.
	// Each run has a server of its own, whose hub has no snapshot to reuse.
	d, bytes := cost(5, func() {
		srv := httptest.NewServer(dashboard.New(dashboard.Options{Backend: b, Now: func() time.Time { return now }}))
		defer srv.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/stream", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 8<<20)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data:") {
				if !strings.Contains(sc.Text(), fmt.Sprintf(`"quarantine_total":%d`, n)) {
					t.Errorf("snapshot does not count %d quarantined", n)
				}
				return
			}
		}
	})
	t.Logf("stream snapshot: %v, %d KB allocated", d, bytes>>10)
	if bytes > 8<<20 {
		t.Errorf("one stream snapshot with %d quarantined allocated %d bytes; want at most 8 MB", n, bytes)
	}
}

// TestBackendDecisions pins who the activity feed says acted, for every
// transition the quarantine records, read through the dashboard as an
// operator would see it.
func TestBackendDecisions(t *testing.T) {
	b, now := bigBackend(t, 0)
	b.stack.Quarantine = quarantine.New(quarantine.Options{MaxEntries: 2, BaseTTL: 5 * time.Minute})
	b.stack.Policy = authz.NewPolicy(authz.Options{Engine: b.stack.Engine, Quarantine: b.stack.Quarantine})
	at := func(d time.Duration) time.Time { return now.Add(d) }
	bot, key, third := netip.MustParseAddr("192.0.2.1"), "key-1", netip.MustParseAddr("192.0.2.3")
	botID := identity.FromAddr(bot, 64)
	keyID, _ := identity.FromName(key)

	b.stack.Quarantine.Admit(botID, now, "periodic", 91)
	if _, err := b.Ban(keyID, time.Hour, "manual", at(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.Extend(keyID, 10*time.Minute, at(2*time.Second)); !ok || err != nil {
		t.Fatalf("Extend = %v, %v", ok, err)
	}
	if ok, err := b.Release(keyID, at(3*time.Second)); !ok || err != nil {
		t.Fatalf("Release = %v, %v", ok, err)
	}
	b.stack.Quarantine.Sweep(at(6 * time.Minute)) // the bot's quarantine ran out at +5m
	b.stack.Quarantine.Admit(botID, at(7*time.Minute), "periodic", 92)
	b.stack.Quarantine.Admit(keyID, at(7*time.Minute), "burst", 80)
	b.stack.Quarantine.Admit(identity.FromAddr(third, 64), at(8*time.Minute), "periodic", 90) // full: evicts the sooner one

	evs, next := b.Events(0)
	var got []string
	for _, d := range evs {
		got = append(got, fmt.Sprintf("%s %s by %s @%v", d.Identity, d.Action, d.By, d.Time.Sub(now)))
	}
	want := []string{
		"192.0.2.1 admitted by detector @0s",
		"key-1 banned by operator @1s",
		"key-1 extended by operator @2s",
		"key-1 released by operator @3s",
		"192.0.2.1 expired by ttl @5m0s",
		"192.0.2.1 admitted by detector @7m0s",
		"key-1 admitted by detector @7m0s",
		"key-1 evicted by capacity @8m0s", // its quarantine ends first (no strike before: 5m)
		"192.0.2.3 admitted by detector @8m0s",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("decisions =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if next != uint64(len(want)) || evs[0].Score != 91 || evs[0].Until.IsZero() || !evs[3].Until.IsZero() {
		t.Errorf("next %d; first %+v; release %+v", next, evs[0], evs[3])
	}

	// The explain view shows an identity's decisions, newest first, and its
	// quarantine from QuarantineOf.
	h := dashboard.New(dashboard.Options{Backend: b, Now: func() time.Time { return at(9 * time.Minute) }, AllowedHosts: []string{"example.com"}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/identities/192.0.2.1", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, `"quarantine":{"identity":"192.0.2.1"`) ||
		strings.Index(body, `"action":"admitted"`) > strings.Index(body, `"action":"expired"`) {
		t.Errorf("explain = %d %s", rec.Code, body)
	}
}

// TestBanAllowListedRefused: through the real admin API and policy, a ban
// on an allow-listed client is a 400 that says why, and nothing is
// quarantined.
func TestBanAllowListedRefused(t *testing.T) {
	b, now := bigBackend(t, 0)
	lists := quarantine.NewLists([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, nil)
	b.stack.Policy = authz.NewPolicy(authz.Options{Engine: b.stack.Engine, Quarantine: b.stack.Quarantine, Lists: lists})
	const token = "0123456789abcdef0123456789abcdef"
	h := dashboard.New(dashboard.Options{Backend: b, AdminToken: token, Now: func() time.Time { return now }, AllowedHosts: []string{"example.com"}})
	req := httptest.NewRequest("POST", "/api/v1/quarantine", strings.NewReader(`{"identity":"192.0.2.9","ttl":"10m"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "allow list") {
		t.Errorf("ban of an allow-listed client = %d %s, want 400 naming the allow list", rec.Code, rec.Body)
	}
	if b.stack.Quarantine.Len() != 0 {
		t.Errorf("%d entries quarantined, want 0", b.stack.Quarantine.Len())
	}
}
