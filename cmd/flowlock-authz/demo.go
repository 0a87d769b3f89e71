package main

import (
	"context"
	"log/slog"
)

// runDemo drives the service's own Check endpoint with simulated humans and
// bots until ctx ends. PLACEHOLDER: replaced by the demo driver (issue 4).
func runDemo(ctx context.Context, grpcAddr string, log *slog.Logger) error {
	log.Warn("demo traffic is not built yet", "grpc_addr", grpcAddr)
	<-ctx.Done()
	return nil
}
