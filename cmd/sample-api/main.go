// Command sample-api is the upstream API of the Flow Lock demo: the service
// Envoy or a proxy protects, or, with --flowlock-addr, that protects itself
// with the Go middleware (package middleware), as `make demo` runs it. It
// serves a small JSON document and a health endpoint, and shows which Flow
// Lock headers reached it.
//
//	sample-api [--addr :8081[,ADDR...]] [--flowlock-addr HOST:PORT]
//	           [--flowlock-timeout D] [--flowlock-identity-header NAME]
//	                                                serve until SIGINT or SIGTERM
//	sample-api healthcheck [--url URL] [--timeout]  exit 0 when /healthz answers 200
//
// With --flowlock-addr every route but /healthz asks Flow Lock's gRPC
// ext_authz API first, and a quarantined client gets Flow Lock's 403 with
// Retry-After and JSON body; without it the API is unprotected (behind
// Envoy or a proxy that asks Flow Lock itself). --addr may list several
// addresses, comma-separated, such as 127.0.0.1:8000,[::1]:8000.
//
// Endpoints:
//
//	GET /data     {"items":[...],"served_at":"<RFC 3339>"}, plus
//	              "flowlock_risk" when Flow Lock sent x-flowlock-risk and
//	              "unchecked": true when Envoy or the middleware failed open
//	GET /healthz  {"status":"ok"}
//	anything else {"method":"POST","path":"/login", ...}: any other method
//	              and path answers 200 like a generic API endpoint, so that
//	              flowlock-sim's scenarios (GET /api/feed, POST /login, ...)
//	              reach an upstream that says yes
//
// The healthcheck subcommand exists because the demo image is distroless:
// there is no shell or curl for a container health check.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/flowlock/flowlock/internal/httpcmd"
	"github.com/flowlock/flowlock/middleware"
)

func main() { httpcmd.Main("sample-api", run) }

// run is the whole program minus the process, so tests can call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "healthcheck" {
		return httpcmd.Healthcheck(ctx, args[1:], stdout, "http://127.0.0.1:8081/healthz")
	}
	fs := flag.NewFlagSet("sample-api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("addr", ":8081", "listen `address`es, comma-separated")
	flowlockAddr := fs.String("flowlock-addr", "", "protect every route but /healthz with the Flow Lock gRPC ext_authz service at `host:port`; empty: unprotected")
	timeout := fs.Duration("flowlock-timeout", middleware.DefaultTimeout, "with --flowlock-addr: the longest a request waits for Flow Lock before it goes on unchecked")
	identityHeader := fs.String("flowlock-identity-header", "", "with --flowlock-addr: the request header Flow Lock's --identity-header names, passed on to it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	var protect func(http.Handler) http.Handler
	if *flowlockAddr != "" {
		m, err := middleware.New(*flowlockAddr, middleware.Options{Timeout: *timeout, IdentityHeader: *identityHeader, Logger: log})
		if err != nil {
			return fmt.Errorf("--flowlock-addr: %w", err)
		}
		defer func() { _ = m.Close() }() // nothing left to tell at exit
		protect = m.Handler
		log.Info("protected by flow lock", "flowlock_addr", *flowlockAddr, "timeout", timeout.String())
	}
	var lns []net.Listener
	for _, a := range strings.Split(*addrs, ",") {
		ln, err := net.Listen("tcp", strings.TrimSpace(a))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("--addr: %w", err)
		}
		lns = append(lns, ln)
		log.Info("listening", "addr", ln.Addr().String())
	}
	h := newHandler(time.Now, protect)
	g, gctx := errgroup.WithContext(ctx)
	for _, ln := range lns {
		g.Go(func() error { return httpcmd.Serve(gctx, ln, h) })
	}
	err := g.Wait()
	log.Info("stopped", "err", err)
	return err
}

// item is one entry of the /data document.
type item struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// items is the demo data: fixed, so responses are easy to compare.
var items = []item{
	{ID: 1, Name: "anchor"},
	{ID: 2, Name: "beacon"},
	{ID: 3, Name: "compass"},
}

// dataResponse is the /data document.
type dataResponse struct {
	Items        []item `json:"items"`
	ServedAt     string `json:"served_at"`
	FlowlockRisk string `json:"flowlock_risk,omitempty"`
	Unchecked    bool   `json:"unchecked,omitempty"`
}

// anyResponse answers every route but /data and /healthz.
type anyResponse struct {
	Method       string `json:"method"`
	Path         string `json:"path"`
	FlowlockRisk string `json:"flowlock_risk,omitempty"`
	Unchecked    bool   `json:"unchecked,omitempty"`
}

// newHandler returns the API's routes. now is the clock for served_at;
// protect, unless nil, wraps every route but /healthz (a health poller's
// rhythm is a machine's, and says nothing about a client).
func newHandler(now func() time.Time, protect func(http.Handler) http.Handler) http.Handler {
	api := http.NewServeMux()
	api.HandleFunc("GET /data", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, dataResponse{
			Items:        items,
			ServedAt:     now().UTC().Format(time.RFC3339Nano),
			FlowlockRisk: r.Header.Get("X-Flowlock-Risk"),
			Unchecked:    r.Header.Get("X-Envoy-Auth-Failure-Mode-Allowed") == "true",
		})
	})
	api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, anyResponse{
			Method:       r.Method,
			Path:         r.URL.Path,
			FlowlockRisk: r.Header.Get("X-Flowlock-Risk"),
			Unchecked:    r.Header.Get("X-Envoy-Auth-Failure-Mode-Allowed") == "true",
		})
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]string{"status": "ok"})
	})
	if protect != nil {
		mux.Handle("/", protect(api))
	} else {
		mux.Handle("/", api)
	}
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	// The values are built above and always encode; a write error means the
	// client went away, and there is nobody left to tell.
	_ = json.NewEncoder(w).Encode(v)
}
