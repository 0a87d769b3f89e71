package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlock/flowlock/dashboard"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/wire"
)

// TestAdminChangeNotPersisted: when the state file cannot be written, a
// ban, an extend and a release still take effect, so they answer 200 with
// "persisted": false and the operating system's reason, not a 500; the
// failed writes are counted. Once the file can be written again, the
// answers say nothing about persistence, as before.
func TestAdminChangeNotPersisted(t *testing.T) {
	// A real failure: the state file's directory is gone (a volume
	// unmounted under the process). test/chaos does the same on a full disk.
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	stack := wire.Build(config.Default(), wire.Extra{})
	q := stack.Quarantine
	state := &persister{path: filepath.Join(dir, "q.json"), list: q, every: time.Second, m: m, log: slog.New(slog.DiscardHandler)}
	b := &backend{stack: stack, state: state, m: m}
	const token = "test-admin-token-0123456789abcdef"
	srv := httptest.NewServer(dashboard.New(dashboard.Options{Backend: b, AdminToken: token, IPv6Prefix: 64, Now: time.Now}))
	defer srv.Close()
	admin := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
		}
		return resp.StatusCode, out
	}
	notSaved := func(what string, code int, body map[string]any) {
		t.Helper()
		if code != http.StatusOK || body["persisted"] != false {
			t.Errorf("%s with the state file unwritable = %d %v, want 200 with persisted false", what, code, body)
		}
		reason, _ := body["persist_error"].(string)
		if !strings.Contains(reason, "no such file or directory") || strings.Contains(reason, dir) {
			t.Errorf("%s persist_error = %q, want the OS reason without the path", what, reason)
		}
	}
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	victim := identity.FromAddr(netip.MustParseAddr("203.0.113.7"), 64)

	code, body := admin("POST", "/api/v1/quarantine", `{"identity":"203.0.113.7","ttl":"1h"}`)
	notSaved("ban", code, body)
	if _, ok := q.Check(victim, time.Now()); !ok {
		t.Fatal("ban not in force")
	}
	code, body = admin("POST", "/api/v1/quarantine/203.0.113.7/extend", `{"by":"1h"}`)
	notSaved("extend", code, body)
	code, body = admin("DELETE", "/api/v1/quarantine/203.0.113.7", "")
	notSaved("release", code, body)
	if _, ok := q.Check(victim, time.Now()); ok {
		t.Fatal("release not in force")
	}
	if got := failedWrites(t, reg); got != 3 {
		t.Errorf("failed state writes counted = %v, want 3", got)
	}

	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	code, body = admin("POST", "/api/v1/quarantine", `{"identity":"203.0.113.7","ttl":"1h"}`)
	if _, said := body["persisted"]; code != http.StatusOK || said {
		t.Errorf("ban with the state file writable = %d %v, want 200 without persisted", code, body)
	}
	if _, err := os.Stat(state.path); err != nil {
		t.Errorf("state file not written once writable: %v", err)
	}
}

// failedWrites returns flowlock's failed state-write counter.
func failedWrites(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "flowlock_state_write") {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == "error" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatal("no flowlock_state_write* counter with an error label")
	return 0
}
