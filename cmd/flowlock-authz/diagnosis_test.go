package main

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flowlock/flowlock/dashboard"
	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/wire"
	"github.com/flowlock/flowlock/test/flowlocktest"
)

// TestMisconfigurationIsReported sends, for each way a proxy setup can
// keep Flow Lock from reading the client, a burst of real requests over
// gRPC Check (or HTTP forward-auth), and checks that the operator is told
// where they look: one WARN line naming the cause, the proxy address and
// the setting to change, and a warning in the dashboard's snapshot (the
// page's banner) with the count and the fix.
func TestMisconfigurationIsReported(t *testing.T) {
	const n = 30 // more than identity.WatchMinChecks
	tooLong := strings.Repeat("k", 200)
	cases := []struct {
		name    string
		flags   []string
		forward bool              // through HTTP forward-auth instead of gRPC Check
		source  string            // the peer's address ("" for none)
		headers map[string]string // request headers
		cause   string
		log     []string // in the WARN line
	}{
		{
			name: "trusted proxy sends no X-Forwarded-For", flags: []string{"--trusted-proxies", "127.0.0.1/32"},
			source: "127.0.0.1", cause: "no_forwarded_for",
			log: []string{"requests from 127.0.0.1 carry no X-Forwarded-For, but --trusted-proxies says 127.0.0.1/32 is a proxy", "peer=127.0.0.1", "take it out of --trusted-proxies"},
		},
		{
			name: "forward-auth proxy sends no X-Forwarded-For", flags: []string{"--trusted-proxies", "127.0.0.1/32"},
			forward: true, source: "127.0.0.1", cause: "no_forwarded_for",
			log: []string{"requests from 127.0.0.1 carry no X-Forwarded-For, but --trusted-proxies says 127.0.0.1/32 is a proxy", "peer=127.0.0.1"},
		},
		{
			name: "hops larger than the header", flags: []string{"--xff-trusted-hops", "2"},
			source: "10.1.2.3", headers: map[string]string{"x-forwarded-for": "203.0.113.7, 10.0.0.5"}, cause: "short_forwarded_for",
			log: []string{"requests from 10.1.2.3 carry fewer X-Forwarded-For entries than --xff-trusted-hops=2 skips", "peer=10.1.2.3", "set --xff-trusted-hops to the number of proxies"},
		},
		{
			name: "proxy without X-Forwarded-For and hops set", flags: []string{"--xff-trusted-hops", "1"},
			source: "10.1.2.3", cause: "no_forwarded_for",
			log: []string{"requests from 10.1.2.3 carry no X-Forwarded-For, but --xff-trusted-hops=1 expects a proxy to append one", "peer=10.1.2.3"},
		},
		{
			name: "client at a trusted address", flags: []string{"--trusted-proxies", "127.0.0.0/8"},
			source: "127.0.0.1", headers: map[string]string{"x-forwarded-for": "127.0.0.2"}, cause: "forwarded_for_all_trusted",
			log: []string{"every X-Forwarded-For entry of requests from 127.0.0.1 is a trusted proxy (--trusted-proxies 127.0.0.0/8)", "narrow --trusted-proxies"},
		},
		{
			name: "X-Forwarded-For is not an address", flags: []string{"--trusted-proxies", "10.0.0.0/8"},
			source: "10.0.0.9", headers: map[string]string{"x-forwarded-for": "unknown"}, cause: "bad_forwarded_for",
			log: []string{"requests from 10.0.0.9 carry an X-Forwarded-For entry that is not an IP address", "peer=10.0.0.9"},
		},
		{
			name: "no source address", source: "", cause: "no_source_address",
			log: []string{"requests arrive with no source address", "peer=unknown"},
		},
		{
			name: "identity header invalid", flags: []string{"--identity-header", "x-api-key"},
			source: "192.0.2.10", headers: map[string]string{"x-api-key": tooLong}, cause: "bad_identity_header",
			log: []string{"requests from 192.0.2.10 carry a x-api-key header (--identity-header) that is empty, longer than 128 bytes", "peer=192.0.2.10"},
		},
		{
			name: "identity header never sent", flags: []string{"--identity-header", "x-api-key"},
			source: "192.0.2.10", cause: "no_identity_header",
			log: []string{"no request from 192.0.2.10 carries the x-api-key header that --identity-header names", "drop --identity-header"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load(tc.flags, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			stack := wire.Build(cfg, wire.Extra{})
			var logs flowlocktest.SyncBuffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			m := newMetrics(prometheus.NewRegistry())
			rec := recorder{m, dashboard.NewTracker(), newWatch(log, stack.Rules, time.Minute)}

			if tc.forward {
				fa := authz.NewForwardAuth(authz.ForwardAuthOptions{Policy: stack.Policy, Rules: stack.Rules, Recorder: rec})
				srv := httptest.NewServer(fa) // on 127.0.0.1: the peer is the test
				defer srv.Close()
				for range n {
					req, _ := http.NewRequest("GET", srv.URL+"/check", nil)
					req.Header.Set("X-Forwarded-Uri", "/data")
					for k, v := range tc.headers {
						req.Header.Set(k, v)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
				}
			} else {
				sendChecks(t, authz.NewServer(authz.ServerOptions{Policy: stack.Policy, Rules: stack.Rules, Recorder: rec}), n, tc.source, tc.headers)
			}

			got := logs.String()
			if c := strings.Count(got, "level=WARN"); c != 1 {
				t.Errorf("%d WARN lines for %d such requests, want 1 (rate-limited):\n%s", c, n, got)
			}
			for _, want := range append(tc.log, "cause="+tc.cause) {
				if !strings.Contains(got, want) {
					t.Errorf("the log does not say %q:\n%s", want, got)
				}
			}

			// The banner: the same finding in the dashboard's snapshot.
			h := dashboard.New(dashboard.Options{Backend: &backend{stack: stack, m: m}, Warnings: warnings(rec.watch)})
			defer h.Close()
			web := httptest.NewServer(h)
			defer web.Close()
			snap := firstSnapshot(t, web.URL)
			if len(snap.Warnings) != 1 {
				t.Fatalf("snapshot warnings = %+v, want one", snap.Warnings)
			}
			w := snap.Warnings[0]
			peer := tc.source
			if peer == "" {
				peer = "unknown"
			}
			if w.Cause != tc.cause || w.Count != n || w.Peer != peer || w.Problem == "" || w.Fix == "" || !strings.Contains(got, w.Fix[:min(30, len(w.Fix))]) {
				t.Errorf("banner = %+v, want cause %s, %d requests from %s, and the fix from the log", w, tc.cause, n, peer)
			}
		})
	}
}

// sendChecks sends n Checks over a real gRPC connection to srv.
func sendChecks(t *testing.T, srv authv3.AuthorizationServer, n int, source string, headers map[string]string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	authv3.RegisterAuthorizationServer(g, srv)
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	h := map[string]string{":method": "GET", ":path": "/data"}
	for k, v := range headers {
		h[k] = v
	}
	attrs := &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/data", Headers: h}}}
	if source != "" {
		attrs.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: source, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range n {
		if _, err := client.Check(ctx, &authv3.CheckRequest{Attributes: attrs}); err != nil {
			t.Fatal(err)
		}
	}
}

// firstSnapshot reads the first snapshot of the dashboard's event stream.
func firstSnapshot(t *testing.T, base string) dashboard.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var s dashboard.Snapshot
			if err := json.Unmarshal([]byte(data), &s); err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	t.Fatalf("no snapshot in the stream: %v", sc.Err())
	return dashboard.Snapshot{}
}
