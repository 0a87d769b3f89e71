package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthcheck asks the local service's gRPC health endpoint whether it is
// SERVING and fails otherwise: a container HEALTHCHECK for images with no
// shell or grpc-health-probe.
func healthcheck(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stdout)
	addr := fs.String("grpc-addr", envOr(getenv, "FLOWLOCK_GRPC_ADDR", ":9191"), "address of the gRPC listener to ask")
	service := fs.String("service", "", "health service name to ask about (\"\" is the whole server)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	target := *addr
	if host, port, err := net.SplitHostPort(target); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		target = net.JoinHostPort("127.0.0.1", port)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", target, err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: *service})
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", target, err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("healthcheck %s: status %s", target, resp.GetStatus())
	}
	_, err = fmt.Fprintln(stdout, "SERVING")
	return err
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}
