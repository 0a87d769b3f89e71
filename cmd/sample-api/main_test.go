package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

var fixedNow = time.Date(2026, 11, 26, 10, 0, 0, 123456000, time.UTC)

func clock() time.Time { return fixedNow }

func get(t *testing.T, url string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestData(t *testing.T) {
	srv := httptest.NewServer(newHandler(clock, nil))
	defer srv.Close()

	resp, body := get(t, srv.URL+"/data", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var got dataResponse
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if len(got.Items) != len(items) || got.Items[0] != items[0] {
		t.Errorf("items = %+v, want %+v", got.Items, items)
	}
	if want := "2026-11-26T10:00:00.123456Z"; got.ServedAt != want {
		t.Errorf("served_at = %q, want %q", got.ServedAt, want)
	}
	// Without Flow Lock headers the optional fields are left out entirely.
	for _, key := range []string{"flowlock_risk", "unchecked"} {
		if bytes.Contains(body, []byte(key)) {
			t.Errorf("body %s has %q without the header that sets it", body, key)
		}
	}
}

func TestDataShowsFlowLockHeaders(t *testing.T) {
	srv := httptest.NewServer(newHandler(clock, nil))
	defer srv.Close()

	_, body := get(t, srv.URL+"/data", http.Header{
		"X-Flowlock-Risk":                   {"42"},
		"X-Envoy-Auth-Failure-Mode-Allowed": {"true"},
	})
	var got dataResponse
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.FlowlockRisk != "42" || !got.Unchecked {
		t.Errorf("got flowlock_risk %q unchecked %v, want \"42\" true; body %s", got.FlowlockRisk, got.Unchecked, body)
	}
}

func TestRoutes(t *testing.T) {
	srv := httptest.NewServer(newHandler(clock, nil))
	defer srv.Close()

	for _, tc := range []struct {
		method, path string
		want         int
		wantBody     string
	}{
		{http.MethodGet, "/healthz", http.StatusOK, `{"status":"ok"}`},
		{http.MethodHead, "/healthz", http.StatusOK, ""},
		{http.MethodGet, "/data", http.StatusOK, `"items"`},
		// Every other method and path answers like a generic endpoint, for
		// flowlock-sim's scenario routes.
		{http.MethodPost, "/data", http.StatusOK, `{"method":"POST","path":"/data"}`},
		{http.MethodPost, "/login", http.StatusOK, `{"method":"POST","path":"/login"}`},
		{http.MethodGet, "/api/feed", http.StatusOK, `"path":"/api/feed"`},
		{http.MethodGet, "/", http.StatusOK, `"path":"/"`},
		{http.MethodDelete, "/healthz", http.StatusOK, `"method":"DELETE"`},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.want)
			}
			if !strings.Contains(string(body), tc.wantBody) {
				t.Errorf("body = %q, want it to contain %q", body, tc.wantBody)
			}
		})
	}
}

func TestHealthcheck(t *testing.T) {
	ok := httptest.NewServer(newHandler(clock, nil))
	defer ok.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	for _, tc := range []struct {
		name    string
		url     string
		wantErr string
	}{
		{"healthy", ok.URL + "/healthz", ""},
		{"unhealthy", failing.URL + "/healthz", "503"},
		{"not listening", closedURL + "/healthz", "connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), []string{"healthcheck", "--url", tc.url, "--timeout", "2s"}, &out, io.Discard)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("healthcheck = %v, want nil", err)
			case tc.wantErr == "" && out.String() != "ok\n":
				t.Errorf("stdout = %q, want \"ok\\n\"", out.String())
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("healthcheck = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestRunArgs(t *testing.T) {
	if err := run(t.Context(), []string{"-h"}, io.Discard, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("run -h = %v, want flag.ErrHelp", err)
	}
	if err := run(t.Context(), []string{"--addr", "127.0.0.1:0", "extra"}, io.Discard, io.Discard); err == nil {
		t.Error("run with a stray argument succeeded")
	}
	if err := run(t.Context(), []string{"--addr", "256.0.0.1:bad"}, io.Discard, io.Discard); err == nil {
		t.Error("run with a bad address succeeded")
	}
}

// TestRunStopsOnCancel runs the real program on a free port and stops it
// the way SIGTERM does.
func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var logs flowlocktest.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--addr", "127.0.0.1:0"}, io.Discard, &logs) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), `"msg":"listening"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no listening log line; logs: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v, want nil after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not stop after cancel")
	}
}
