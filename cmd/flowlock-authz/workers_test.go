package main

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/authz"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestBusyWorkersDoNotStall (from the w3 review): with every stream
// worker held (a tarpit's held answer or a Watch stream holds one as
// long as it lasts), new calls still run (gRPC falls back to a goroutine
// when no worker is idle), through the same tap as in production, and
// Stop ends the held calls. Passes: kept as evidence.
func TestBusyWorkersDoNotStall(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	calls := newCallLimit(4, time.Second)
	srv := grpc.NewServer(grpc.NumStreamWorkers(authz.StreamWorkers(1)), grpc.InTapHandle(calls.admit))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop) // a failure before the Stop below must not leave the server running
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 { // more held streams than workers
		w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Check(cctx, &healthpb.HealthCheckRequest{})
		ccancel()
		if err != nil {
			t.Fatalf("health check with every worker held: %v", err)
		}
	}
	stopped := make(chan struct{})
	go func() { srv.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not return with held streams")
	}
}
