package authz

import (
	"context"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/risk"
	"google.golang.org/grpc"
)

// TestTarpitLeavesCalmClientsAStream: a proxy with one connection (the Go
// middleware's ClientConn) to a server of 4 streams per connection, and
// the tarpit at the most config.Validate allows then (--tarpit-max-held
// at most half of --grpc-max-streams: 2). Quarantined clients fill the
// tarpit; a calm client's Check still finds a stream and is answered
// within its 250 ms. With the tarpit as large as the streams (4, which
// Validate accepted before) every stream is held and the calm client's
// Check misses its deadline: the proxy fails open, or closed, for all.
func TestTarpitLeavesCalmClientsAStream(t *testing.T) {
	const streams = 4
	engine := risk.New(risk.Options{MaxClients: 1000})
	q := quarantine.New(quarantine.Options{})
	policy := NewPolicy(Options{Engine: engine, Quarantine: q, Action: ActionTarpit})
	srv := NewServer(ServerOptions{Policy: policy, Tarpit: NewTarpit(2*time.Second, streams/2)})
	client := authv3.NewAuthorizationClient(bufconnServe(t, srv.NewGRPCServer(grpc.MaxConcurrentStreams(streams))))

	now := time.Now()
	var wg sync.WaitGroup
	for i := range streams {
		ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i)})
		q.Admit(identity.FromAddr(ip, 64), now, "timing", 95)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, _ = client.Check(ctx, request(ip.String(), nil))
		})
	}
	time.Sleep(300 * time.Millisecond) // the tarpit is full
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	start := time.Now()
	resp, err := client.Check(ctx, request("198.51.100.7", nil))
	if err != nil {
		t.Errorf("calm client's Check: %v after %v; the held bots took every stream", err, time.Since(start).Round(time.Millisecond))
	} else if resp.GetStatus().GetCode() != 0 {
		t.Errorf("calm client denied: %v", resp.GetStatus())
	}
	wg.Wait()
}

// TestForwardAuthHoldEndsBeforeProxyTimeout: a forward-auth check carries
// no deadline, so without one of its own a hold lasts the whole delay and
// outlasts nginx's proxy_read_timeout and HAProxy's Lua timeout (1 s in
// deploy/), which then fail open for exactly the tarpitted clients. The
// hold ends a margin before ForwardAuthHoldLimit, and the 403 is sent.
func TestForwardAuthHoldEndsBeforeProxyTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFAFixture(t, setup{action: ActionTarpit, tarpit: NewTarpit(time.Hour, 4)})
		f.q.Admit(identity.FromAddr(netip.MustParseAddr("203.0.113.7"), 64), f.now, "timing", 95)
		start := time.Now()
		w := f.serve(faRequest("GET", "/check", "203.0.113.7:4711", nil))
		took := time.Since(start)
		if w.Code != http.StatusForbidden {
			t.Errorf("status = %d, want the 403", w.Code)
		}
		if took != 800*time.Millisecond {
			t.Errorf("forward-auth hold took %v, want 800ms (the 1s the proxies wait, less the margin)", took)
		}
		if held, _ := f.h.tarpit.Stats(); held != 1 {
			t.Errorf("held %d answers, want 1", held)
		}
	})
}
