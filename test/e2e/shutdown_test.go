package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// TestShutdownDrains: after SIGTERM the service says NOT_SERVING at once but
// keeps answering Checks for --drain-delay, so proxies can move traffic away
// before the listener closes; then it exits cleanly and saves its state.
func TestShutdownDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the binary (run without -short; CI does)")
	}
	state := filepath.Join(t.TempDir(), "q.json")
	svc := flowlocktest.Start(t, authz(), "--drain-delay", "3s", "--shutdown-timeout", "10s",
		"--state-file", state, "--admin-token", adminToken)
	authc, health := clients(t, svc)
	waitServing(t, health)
	if code, body := svc.API(t, "POST", "/api/v1/quarantine", adminToken, `{"identity":"127.0.0.40","ttl":"1h"}`); code != 200 {
		t.Fatalf("ban = %d %s", code, body)
	}

	start := time.Now()
	if err := svc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// NOT_SERVING shows up promptly...
	deadline := time.Now().Add(2 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health not NOT_SERVING 2s after SIGTERM: %v %v", resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// ...while Checks are still decided, quarantine included.
	if v := check(t, authc, "127.0.0.41"); !v.allowed {
		t.Errorf("a new client during the drain: %+v, want allowed", v)
	}
	if v := check(t, authc, "127.0.0.40"); v.allowed || v.status != 403 {
		t.Errorf("a banned client during the drain: %+v, want 403", v)
	}
	if time.Since(start) > 2500*time.Millisecond {
		t.Fatalf("checks took too long to observe the drain (%v); the test proves nothing", time.Since(start))
	}

	select {
	case <-svc.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("service did not exit within its shutdown timeout")
	}
	if took := time.Since(start); took < 3*time.Second {
		t.Errorf("exited %v after SIGTERM, before the 3s drain", took)
	}
	if !strings.Contains(svc.Logs(), `"msg":"stopped"`) {
		t.Errorf("no clean stop in the logs:\n%s", svc.Logs())
	}
	if b, err := os.ReadFile(state); err != nil || !strings.Contains(string(b), "127.0.0.40") {
		t.Errorf("state file after shutdown: %v\n%s", err, b)
	}
}
