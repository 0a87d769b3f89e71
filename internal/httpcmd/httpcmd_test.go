package httpcmd

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestServeLimitsSet(t *testing.T) {
	// Serve builds its own http.Server; this pins the limits it uses, so a
	// refactor cannot drop the Slowloris guard unnoticed.
	if readHeaderTimeout <= 0 || readHeaderTimeout > readTimeout {
		t.Errorf("readHeaderTimeout = %v, want in (0, readTimeout=%v]", readHeaderTimeout, readTimeout)
	}
	if maxHeaderBytes <= 0 || maxHeaderBytes > 1<<20 {
		t.Errorf("maxHeaderBytes = %d, want a bound below net/http's 1 MiB default", maxHeaderBytes)
	}
}

// TestServeGracefulShutdown cancels Serve's context while a request is in
// flight: the request must complete, Serve must return nil afterwards, and
// new connections must be refused.
func TestServeGracefulShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	entered := make(chan struct{})
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		_, _ = io.WriteString(w, "done")
	})

	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, mux) }()

	type result struct {
		body string
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/slow")
		if err != nil {
			inflight <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		inflight <- result{string(b), err}
	}()
	select {
	case <-entered:
	case r := <-inflight:
		t.Fatalf("the request ended before the handler ran: %v", r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the handler")
	}
	cancel() // as SIGTERM does through signal.NotifyContext

	select {
	case err := <-served:
		t.Fatalf("serve returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	var r result
	select {
	case r = <-inflight:
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight request did not finish")
	}
	if r.err != nil || r.body != "done" {
		t.Fatalf("in-flight request: body %q, err %v; want it to finish", r.body, r.err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve = %v, want nil after a graceful shutdown", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return after the last request finished")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("listener still accepts connections after shutdown")
	}
}
