// Package e2e holds black-box tests of the built flowlock-authz binary: it is
// started as a process on free loopback ports and spoken to only over real
// gRPC and HTTP, as Envoy and an operator would.
package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

func TestMain(m *testing.M) { os.Exit(flowlocktest.Main(m, "flowlock-authz")) }

// authz is the flowlock-authz binary built by TestMain.
func authz() string { return flowlocktest.Bin("flowlock-authz") }

// clients dials the service's gRPC port.
func clients(t *testing.T, s *flowlocktest.Service) (authv3.AuthorizationClient, healthpb.HealthClient) {
	t.Helper()
	conn := s.Dial(t)
	return authv3.NewAuthorizationClient(conn), healthpb.NewHealthClient(conn)
}

// waitServing polls the health service until SERVING.
func waitServing(t *testing.T, h healthpb.HealthClient) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never SERVING: %v %v", resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runBinary runs flowlock-authz to completion (bounded to 20 s) and returns
// its combined output.
func runBinary(args ...string) (string, error) {
	return flowlocktest.Run(20*time.Second, "", authz(), args...)
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
