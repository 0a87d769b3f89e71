package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/traffic"
)

// onDeny is what a demo bot does when Flow Lock denies it.
type onDeny uint8

const (
	// persist keeps the bot's rhythm: every request is denied until the
	// quarantine heals, and the next confirmation re-admits it with a
	// longer one (the strike count grows).
	persist onDeny = iota
	// backOff honours Retry-After, then starts over with a fresh rhythm:
	// released by the TTL, caught again a little later.
	backOff
	// rotate moves to the next address of its pool after rotateAfter
	// denied requests and a pause, as a bot on a small proxy pool would: a
	// fresh catch every half minute or so, and strikes that grow as it
	// comes back to addresses it used before.
	rotate
)

const (
	rotateAfter  = 20               // denied requests before a rotating bot moves on
	rotatePause  = 15 * time.Second // pause before it comes back from a new address
	maxBackOff   = 10 * time.Minute // longest Retry-After a backing-off bot waits
	demoMinGap   = 20 * time.Millisecond
	demoTimeout  = 2 * time.Second // per Check
	demoErrPause = time.Second     // after a failed Check
)

// demoActor is one simulated client: a traffic scenario sent from one
// source address (or, for a rotating bot, from a pool of them).
type demoActor struct {
	scenario string       // traffic.Lookup name
	addrs    []netip.Addr // source addresses; only rotate uses more than the first
	deny     onDeny       // what it does when denied (humans are never denied)
}

// demoCast is the demo's traffic: humans from 198.51.100.0/24, an office
// NAT from 192.0.2.0/24, bots from 203.0.113.0/24 (all documentation
// ranges). About 6 requests per second in all. The first catches come
// within 10-35 s (the 0.5 s bot, then the 2 s bots), slower ones within
// three minutes; the same scenarios are scored in virtual time by
// TestDemoCast. (The sequential scraper is left out: it is caught only if
// it is confirmed before its volume earns it the shared-address label,
// which is a matter of a few requests.)
var demoCast = []demoActor{
	{scenario: "human-spa", addrs: addrs("198.51.100.23")},
	{scenario: "human-spa", addrs: addrs("198.51.100.42")},
	{scenario: "power-user", addrs: addrs("198.51.100.77")},
	{scenario: "heavy-spa", addrs: addrs("198.51.100.108")},
	{scenario: "mobile-flaky", addrs: addrs("198.51.100.150")},
	{scenario: "nat-10", addrs: addrs("192.0.2.10")},
	{scenario: "fixed-0.5s", addrs: addrPool("203.0.113.100", 6), deny: rotate},
	{scenario: "gauss-5pct-2s", addrs: addrs("203.0.113.55"), deny: backOff},
	{scenario: "fixed-2s", addrs: addrs("203.0.113.2"), deny: persist},
	{scenario: "uniform-5pct-2s", addrs: addrs("203.0.113.21"), deny: backOff},
	{scenario: "gauss-20pct-2s", addrs: addrs("203.0.113.33"), deny: persist},
	{scenario: "burst-mimic-10pct", addrs: addrs("203.0.113.10"), deny: persist},
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// addrPool returns n consecutive addresses from first.
func addrPool(first string, n int) []netip.Addr {
	a := netip.MustParseAddr(first)
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = a
		a = a.Next()
	}
	return out
}

// runDemo drives the service's own Check endpoint over real gRPC with the
// simulated humans and bots of demoCast, in real time, until ctx ends. A
// failing Check is retried after a pause: the demo never takes the service
// down.
func runDemo(ctx context.Context, grpcAddr string, log *slog.Logger) error {
	log = log.With("component", "demo")
	target := dialable(grpcAddr)
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("demo: dial %s: %w", target, err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)

	log.Info("demo traffic started", "actors", len(demoCast), "grpc_addr", target)
	var wg sync.WaitGroup
	for i, a := range demoCast {
		sc, ok := traffic.Lookup(a.scenario)
		if !ok {
			return fmt.Errorf("demo: no traffic scenario %q", a.scenario)
		}
		wg.Go(func() { a.run(ctx, client, sc, uint64(i+1), log) })
	}
	wg.Wait()
	log.Info("demo traffic stopped")
	return nil
}

// run sends the actor's requests until ctx ends, starting a fresh stream
// (new seed, start now) whenever one ends or the actor starts over.
func (a demoActor) run(ctx context.Context, client authv3.AuthorizationClient, sc traffic.Scenario, seed uint64, log *slog.Logger) {
	sc.Horizon = time.Hour
	addrIdx := 0
	for round := uint64(0); ctx.Err() == nil; round++ {
		addr := a.addrs[addrIdx%len(a.addrs)]
		st := sc.Stream(seed<<32|round, time.Now())
		denied := 0
	stream:
		for {
			req, ok := st.Next()
			if !ok {
				break
			}
			if !sleep(ctx, max(time.Until(req.TS), demoMinGap)) {
				return
			}
			allowed, retryAfter, err := demoCheck(ctx, client, addr, req)
			switch {
			case err != nil:
				if ctx.Err() != nil {
					return
				}
				log.Debug("demo check failed", "err", err)
				if !sleep(ctx, demoErrPause) {
					return
				}
				continue
			case allowed:
				continue
			}
			denied++
			switch a.deny {
			case backOff:
				if !sleep(ctx, min(retryAfter, maxBackOff)) {
					return
				}
				break stream
			case rotate:
				if denied >= rotateAfter {
					addrIdx++
					if !sleep(ctx, rotatePause) {
						return
					}
					break stream
				}
			}
		}
	}
}

// demoCheck sends one request to Check as Envoy would describe it, and
// reports whether it was allowed and, if not, the Retry-After.
func demoCheck(ctx context.Context, client authv3.AuthorizationClient, addr netip.Addr, req traffic.Request) (allowed bool, retryAfter time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{
				Address:       addr.String(),
				PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000 + uint32(req.Member)},
			},
		}}},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(req.TS),
			Http: &authv3.AttributeContext_HttpRequest{
				Method: req.Method,
				Path:   req.Path,
				Host:   "api.demo.flowlock.test",
				Scheme: "https",
				Headers: map[string]string{
					":method": req.Method, ":path": req.Path, ":authority": "api.demo.flowlock.test",
					"user-agent": req.UserAgent,
				},
			},
		},
	}})
	if err != nil {
		return false, 0, err
	}
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		return true, 0, nil
	}
	retryAfter = time.Minute
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == "retry-after" {
			if n, err := strconv.Atoi(h.GetHeader().GetValue()); err == nil && n > 0 {
				retryAfter = time.Duration(n) * time.Second
			}
		}
	}
	return false, retryAfter, nil
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// dialable turns a listening address such as "[::]:9191" into one to dial:
// an unspecified host becomes the loopback address.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// adminToken returns the dashboard's admin token: the configured one, or,
// with --demo and none configured, a random one generated for this run and
// printed once to w (stderr) beside the dashboard's address, as a message
// for the operator rather than a log record: a newcomer who runs the demo
// can use the buttons, and the token reaches neither the structured logs
// nor /api/v1/config. Without --demo, no token stays no token: mutations
// are refused.
func adminToken(cfg config.Config, httpAddr net.Addr, w io.Writer) string {
	tok := cfg.AdminToken.Reveal()
	if !cfg.Demo {
		return tok
	}
	url := "http://" + dialable(httpAddr.String()) + "/"
	if tok != "" {
		fmt.Fprintf(w, "flowlock-authz demo: dashboard at %s (admin token as configured)\n", url)
		return tok
	}
	tok = rand.Text()
	fmt.Fprintf(w, "flowlock-authz demo: dashboard at %s\nflowlock-authz demo: demo admin token: %s (generated for this run; --admin-token sets your own)\n", url, tok)
	return tok
}

// demoTokenNote is what /api/v1/config shows for the admin token that
// --demo generated: "(unset)" would send a newcomer looking for a token
// that exists, printed at startup.
const demoTokenNote = "(generated for this demo run; printed at startup)"

// configView returns the effective configuration with secrets redacted,
// for /api/v1/config: the admin token a demo generated is named as such.
func configView(cfg config.Config) func() any {
	generated := cfg.Demo && cfg.AdminToken.Reveal() == ""
	return func() any {
		m := cfg.Redacted()
		if generated {
			m["admin-token"] = demoTokenNote
		}
		return m
	}
}
