package main

import (
	"context"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
)

func TestCallLimit(t *testing.T) {
	l := newCallLimit(2, 50*time.Millisecond)
	check := &tap.Info{FullMethodName: checkMethod}
	watch := &tap.Info{FullMethodName: "/grpc.health.v1.Health/Watch"}

	// Envoy's Check brings a deadline; it is kept.
	envoyCtx, endEnvoy := context.WithTimeout(context.Background(), time.Hour)
	got, err := l.admit(envoyCtx, check)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := got.Deadline(); time.Until(d) < time.Minute {
		t.Errorf("a Check's own deadline was shortened to %v", time.Until(d))
	}
	// A Watch without a deadline gets none: it is meant to last.
	watchCtx, endWatch := context.WithCancel(context.Background())
	got, err = l.admit(watchCtx, watch)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Deadline(); ok {
		t.Error("a health Watch was given a deadline")
	}
	// Both slots taken: the next call is refused, but health checks have
	// their own pool.
	if _, err := l.admit(context.Background(), check); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a third call with max 2: %v, want RESOURCE_EXHAUSTED", err)
	}
	probe, endProbe := context.WithCancel(context.Background())
	got, err = l.admit(probe, &tap.Info{FullMethodName: healthCheckMethod})
	if err != nil {
		t.Fatalf("a health check with the calls full: %v", err)
	}
	if d, ok := got.Deadline(); !ok || time.Until(d) > healthTimeout {
		t.Errorf("a health check without a deadline got none or a long one (%v)", time.Until(d))
	}
	endProbe()
	// Ending a call frees its slot.
	endEnvoy()
	endWatch()
	waitInflight(t, l, 0)
	if n := l.health.inflight.Load(); n != 0 {
		t.Errorf("%d health checks in flight after they ended", n)
	}

	// A Check without a deadline gets checkTimeout, and frees its slot
	// when it fires although gRPC never ends the call.
	got, err = l.admit(context.WithoutCancel(context.Background()), check)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Deadline(); !ok {
		t.Fatal("a Check without a deadline was given none")
	}
	waitInflight(t, l, 0)
}

func waitInflight(t *testing.T, l *callLimit, want int64) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if l.calls.inflight.Load() == want {
			return
		}
	}
	t.Fatalf("%d calls in flight, want %d", l.calls.inflight.Load(), want)
}

// BenchmarkCallLimit is what the limit adds to each Envoy Check: the call
// arrives with Envoy's deadline, is admitted, and ends. Compare with
// "without", gRPC's own per-call context alone.
func BenchmarkCallLimit(b *testing.B) {
	parent, cancelParent := context.WithTimeout(context.Background(), time.Hour)
	defer cancelParent()
	info := &tap.Info{FullMethodName: checkMethod}
	b.Run("without", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, cancel := context.WithCancel(parent)
			cancel()
		}
	})
	b.Run("with", func(b *testing.B) {
		l := newCallLimit(1<<20, 10*time.Second)
		b.ReportAllocs()
		for b.Loop() {
			ctx, cancel := context.WithCancel(parent)
			if _, err := l.admit(ctx, info); err != nil {
				b.Fatal(err)
			}
			cancel()
		}
	})
}

func TestFitConnCaps(t *testing.T) {
	// The caps of this process's configuration are either kept or lowered
	// to fit; never raised and never zero.
	cfg := config.Default()
	g, h, f := fitConnCaps(cfg, slog.New(slog.DiscardHandler))
	if g < 1 || h < 1 || g > cfg.GRPCMaxConns || h > cfg.HTTPMaxConns || f != 0 {
		t.Errorf("fitConnCaps = %d, %d, %d for caps %d, %d and no forward-auth", g, h, f, cfg.GRPCMaxConns, cfg.HTTPMaxConns)
	}
}

// TestStreamWorkers: enough workers for the Checks in flight on each CPU,
// never more than --grpc-max-inflight allows, never none, at most 1024.
func TestStreamWorkers(t *testing.T) {
	per := 64 * runtime.GOMAXPROCS(0)
	for _, tc := range []struct{ inflight, want int }{
		{1, 1}, {8, min(8, per)}, {1024, min(per, 1024)}, {1_000_000, min(per, 1024)},
	} {
		if got := authz.StreamWorkers(tc.inflight); int(got) != tc.want {
			t.Errorf("StreamWorkers(%d) = %d, want %d", tc.inflight, got, tc.want)
		}
	}
}
