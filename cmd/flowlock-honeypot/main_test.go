package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// TestRun: the bait answers on --addr and the records of what it was
// asked are on --api-addr only; the healthcheck asks the API; a
// cancelled context stops both.
func TestRun(t *testing.T) {
	bait, api := flowlocktest.FreeAddr(t), flowlocktest.FreeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"--addr", bait, "--api-addr", api}, io.Discard, io.Discard) }()

	var resp *http.Response
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err = http.Get("http://" + bait + "/admin"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("bait: %s %v", resp.Status, resp.Header)
	}
	if err := run(t.Context(), []string{"healthcheck", "--url", "http://" + api + "/healthz"}, io.Discard, io.Discard); err != nil {
		t.Errorf("healthcheck: %v", err)
	}
	sum, err := http.Get("http://" + api + "/api/v1/summary")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		TopPaths []struct{ Path string } `json:"top_paths"`
	}
	json.NewDecoder(sum.Body).Decode(&s)
	sum.Body.Close()
	if len(s.TopPaths) != 1 || s.TopPaths[0].Path != "/admin" {
		t.Errorf("summary top paths = %+v", s.TopPaths)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run = %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}
}

// TestRunWarnsWithoutRoutes: without --routes the decoy starts, and says
// at startup that a probe can tell it; with them it does not.
func TestRunWarnsWithoutRoutes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		warn bool
	}{{nil, true}, {[]string{"--routes", "/data"}, false}} {
		args := append([]string{"--addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"}, tc.args...)
		log := startupLog(t, args)
		if warned := strings.Contains(log, "a probe of a path the API does not have can tell"); warned != tc.warn {
			t.Errorf("run(%v): warned %v, want %v:\n%s", args, warned, tc.warn, log)
		}
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--records", "0"}, "--records"},
		{[]string{"--records", "16385"}, "--records"}, // past decoy.MaxCapacity: its slots alone would pass MaxBytes
		{[]string{"--ipv6-prefix", "200"}, "--ipv6-prefix"},
		{[]string{"--identity-header", " "}, "--identity-header"},
		{[]string{"--mask-key-file", "/nonexistent/token"}, "--mask-key-file"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--addr", "256.0.0.1:bad"}, "--addr"},
		{[]string{"--routes", "data"}, `--routes: pattern "data": must start with /`},
		{[]string{"--routes", "/a/{id}"}, "--routes"},
		{[]string{"--not-found-file", "x.http"}, "--not-found-file: needs --routes"},
		{[]string{"--routes", "/data", "--not-found-file", "/nonexistent/x.http"}, "--not-found-file"},
		{[]string{"--routes", "/data", "--not-found-file", "main.go"}, "--not-found-file main.go: first line"},
	} {
		// Bounded: a bad flag that slipped through would serve until cancelled.
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := run(ctx, tc.args, io.Discard, io.Discard)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%v) = %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
}

// TestRunWarnsOfDroppedHeaders: a --not-found-file with headers made
// afresh for each answer starts, and names each one it dropped.
func TestRunWarnsOfDroppedHeaders(t *testing.T) {
	file := filepath.Join(t.TempDir(), "not-found.http")
	capture := "HTTP/2 404 \r\ncontent-type: application/json\r\nset-cookie: session=5f1c9e2a7b; Path=/\r\n" +
		"x-request-id: 1b9d6bcd\r\nx-content-type-options: nosniff\r\n\r\n{}\n"
	if err := os.WriteFile(file, []byte(capture), 0o600); err != nil {
		t.Fatal(err)
	}
	log := startupLog(t, []string{"--addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--routes", "/data", "--not-found-file", file})
	for _, h := range []string{`"header":"Set-Cookie"`, `"header":"X-Request-Id"`} {
		if !strings.Contains(log, h) {
			t.Errorf("no warning with %s:\n%s", h, log)
		}
	}
	if strings.Contains(log, "X-Content-Type-Options") {
		t.Errorf("warned of a header kept:\n%s", log)
	}
}

// startupLog runs the decoy with args until it logs that it listens (5 s
// at most), stops it (10 s at most) and returns what it logged.
func startupLog(t *testing.T, args []string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var log flowlocktest.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, io.Discard, &log) }()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(log.String(), "listening") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run(%v) = %v", args, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("run(%v) did not stop", args)
	}
	return log.String()
}
