// Command flowlock-honeypot is the decoy upstream that quarantined clients
// are routed to under flowlock-authz --quarantine-action honeypot. It
// answers a read of the API's routes with plausible, made-up JSON, so a
// caught bot is not told it was caught, a write there with a 503 that
// claims nothing was done (a person quarantined by mistake must not
// believe it was), and any other path as the API does (see --routes). It
// records what each client asked for (path, method, headers, the body
// size it declares, timing; bounded and masked, at most 8 MiB) for Flow Lock's dashboard
// (flowlock-authz --honeypot-url) to show.
//
//	flowlock-honeypot [--addr :8090] [--api-addr 127.0.0.1:8091]
//	                  [--identity-header x-forwarded-for] [--ipv6-prefix 64]
//	                  [--records 4096] [--mask-key-file FILE]
//	                  [--routes /api/items,/api/items/*] [--not-found-file FILE]
//	                                             serve until SIGINT or SIGTERM
//	flowlock-honeypot healthcheck [--url URL]    exit 0 when the API's /healthz answers 200
//
// Two listeners: --addr is the bait, the upstream the proxy routes
// quarantined clients to; --api-addr serves the records (internal/decoy.API)
// and must not be reachable by them, so it defaults to loopback.
//
// --routes names the real API's paths: the decoy makes up documents on
// those only and answers every other path as the real API answers a path
// it does not have (--not-found-file, a 404 with a JSON error by default),
// so a probe of a made-up path cannot tell it from the API. Without
// --routes every path gets a document, and it warns at startup that a
// probe can tell.
//
// It is its own program, not a mode of sample-api, so that the decoy
// cannot serve anything real by mistake: it has no route, file or backend
// of the real API, and a wrong flag cannot turn it into the real API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/flowlock/flowlock/internal/decoy"
	"github.com/flowlock/flowlock/internal/httpcmd"
	"github.com/flowlock/flowlock/internal/identity"
)

func main() { httpcmd.Main("flowlock-honeypot", run) }

// run is the whole program minus the process, so tests can call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "healthcheck" {
		return httpcmd.Healthcheck(ctx, args[1:], stdout, "http://127.0.0.1:8091/healthz")
	}
	fs := flag.NewFlagSet("flowlock-honeypot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", ":8090", "listen `address` of the bait, where the proxy sends quarantined clients")
	apiAddr := fs.String("api-addr", "127.0.0.1:8091", "listen `address` of the records API; keep it out of the bots' reach")
	idHeader := fs.String("identity-header", "x-forwarded-for", "request `header` naming the client: x-forwarded-for (its rightmost entry) or Flow Lock's --identity-header")
	prefix := fs.Int("ipv6-prefix", 64, "prefix `length` IPv6 clients are grouped by, as Flow Lock's --ipv6-prefix")
	records := fs.Int("records", decoy.DefaultCapacity, fmt.Sprintf("requests kept, the oldest dropped first; fewer when they are large, as the records take %d MiB at most (1-%d)", decoy.MaxBytes>>20, decoy.MaxCapacity))
	maskKeyFile := fs.String("mask-key-file", "", "`file` with Flow Lock's admin token, so that masked names match its dashboard's")
	routesFlag := fs.String("routes", "", fmt.Sprintf("the real API's `paths`, comma-separated (/data,/api/items/*: * is one segment, a trailing / a subtree as in Go's ServeMux; at most %d, %d bytes each): made-up documents on these only, --not-found-file's answer elsewhere; empty: documents on every path, which a probe can tell", decoy.MaxRoutes, decoy.MaxRouteLen))
	notFoundFile := fs.String("not-found-file", "", "with --routes: `file` with the real API's answer to a path it does not have, as curl -si prints it ({method} and {path} in the body are filled in); default 404 {\"error\":\"not found\"}")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case *records < 1 || *records > decoy.MaxCapacity:
		return fmt.Errorf("--records: must be 1-%d, got %d", decoy.MaxCapacity, *records)
	case *prefix < 1 || *prefix > 128:
		return fmt.Errorf("--ipv6-prefix: must be 1-128, got %d", *prefix)
	case strings.TrimSpace(*idHeader) == "":
		return errors.New("--identity-header: must not be empty")
	}
	if *maskKeyFile != "" {
		b, err := os.ReadFile(*maskKeyFile)
		if err != nil {
			return fmt.Errorf("--mask-key-file: %w", err)
		}
		identity.SetMaskKey(strings.TrimSpace(string(b)))
	}
	routes, notFound, err := answers(*routesFlag, *notFoundFile)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	if routes == nil {
		log.Warn("no --routes: every path gets a made-up document, so a probe of a path the API does not have can tell this is a decoy; set --routes to the API's paths")
	}
	if notFound != nil {
		for _, h := range notFound.Dropped {
			log.Warn("--not-found-file: header dropped: the API or a proxy sets it afresh for each answer, and one captured value replayed to every bot would tell the decoy; if the API itself sends it, its absence can tell too", "header", h)
		}
	}

	ring := decoy.NewRing(*records)
	bait := decoy.NewBait(decoy.BaitOptions{Ring: ring, IdentityHeader: *idHeader, IPv6Prefix: *prefix, Routes: routes, NotFound: notFound})
	baitLn, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	apiLn, err := net.Listen("tcp", *apiAddr)
	if err != nil {
		baitLn.Close()
		return fmt.Errorf("--api-addr: %w", err)
	}
	log.Info("listening", "addr", baitLn.Addr().String(), "api_addr", apiLn.Addr().String(), "records", *records)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return httpcmd.Serve(gctx, baitLn, bait) })
	g.Go(func() error { return httpcmd.Serve(gctx, apiLn, decoy.API(ring)) })
	err = g.Wait()
	log.Info("stopped", "err", err)
	return err
}

// answers reads --routes and --not-found-file; nil routes means every path.
func answers(routesFlag, notFoundFile string) (*decoy.Routes, *decoy.NotFound, error) {
	if strings.TrimSpace(routesFlag) == "" {
		if notFoundFile != "" {
			return nil, nil, errors.New("--not-found-file: needs --routes, the paths it is not the answer for")
		}
		return nil, nil, nil
	}
	routes, err := decoy.ParseRoutes(routesFlag)
	if err != nil {
		return nil, nil, fmt.Errorf("--routes: %w", err)
	}
	if notFoundFile == "" {
		return routes, nil, nil
	}
	f, err := os.Open(notFoundFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--not-found-file: %w", err)
	}
	defer f.Close()
	nf, err := decoy.ReadNotFound(f)
	if err != nil {
		return nil, nil, fmt.Errorf("--not-found-file %s: %w", notFoundFile, err)
	}
	return routes, nf, nil
}
