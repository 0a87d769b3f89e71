package config

import (
	"strings"
	"testing"
	"time"
)

// TestTarpitMaxHeldWithinHalfTheStreams: --tarpit-max-held is bounded by
// half of --grpc-max-streams (256 per connection) as well as of
// --grpc-max-inflight (1024). Without it a proxy on one connection (the Go
// middleware's single ClientConn; an Envoy worker's connection) has all its
// streams held by quarantined clients and every calm client's Check waits
// for a stream until the proxy's timeout: fail open for all, or an outage
// fail-closed (authz.TestTarpitLeavesCalmClientsAStream shows it).
func TestTarpitMaxHeldWithinHalfTheStreams(t *testing.T) {
	c := Default()
	c.QuarantineAction = "tarpit"
	c.TarpitMaxHeld = 400
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "tarpit-max-held") {
		t.Errorf("--tarpit-max-held 400 with --grpc-max-streams %d: Validate() = %v; want an error naming tarpit-max-held", c.GRPCMaxStreams, err)
	}
}

// TestTarpitDelayWithinForwardAuthTimeout: deploy/nginx
// (proxy_read_timeout 1s) and deploy/haproxy (httpclient timeout 1000 ms)
// give up on a forward-auth check after 1 s and fail open, so a longer
// --tarpit-delay would let exactly the quarantined clients through. A
// forward-auth hold ends by 800 ms whatever the delay; Validate refuses a
// delay it would cut short.
func TestTarpitDelayWithinForwardAuthTimeout(t *testing.T) {
	c := Default()
	c.QuarantineAction = "tarpit"
	c.ForwardAuthAddr = "127.0.0.1:9192"
	c.TarpitDelay = 1500 * time.Millisecond
	if err := c.Validate(); err == nil {
		t.Errorf("--forward-auth-addr with --tarpit-delay %v: accepted; the shipped nginx and HAProxy configs fail open after 1s", c.TarpitDelay)
	}
}

// TestTarpitBoundsOnlyWithTarpit: a service that never holds an answer
// starts with small stream, in-flight and timeout limits; the same limits
// refuse the tarpit's defaults once it is on.
func TestTarpitBoundsOnlyWithTarpit(t *testing.T) {
	c := Default()
	c.GRPCMaxStreams, c.GRPCMaxInflight, c.GRPCCheckTimeout = 8, 8, 100*time.Millisecond
	if err := c.Validate(); err != nil {
		t.Fatalf("deny mode with small limits: %v", err)
	}
	c.QuarantineAction = "tarpit"
	if err := c.Validate(); err == nil {
		t.Fatal("tarpit with a 200ms hold, 64 held, 8 streams and a 100ms check timeout was accepted")
	}
}
