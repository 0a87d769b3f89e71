package config

import (
	"fmt"
	"net/url"
	"time"
)

// Bounds of the tarpit settings.
const (
	minTarpitDelay = 10 * time.Millisecond
	maxTarpitDelay = 10 * time.Second
	// maxForwardAuthTarpitDelay is the longest hold a forward-auth check
	// gets (authz.ForwardAuthHoldLimit less its margin): deploy/nginx
	// (proxy_read_timeout 1s) and deploy/haproxy (timeout 1000 ms) give up
	// on the check after 1 s and fail open.
	maxForwardAuthTarpitDelay = 800 * time.Millisecond
)

// checkQuarantineAction checks --quarantine-action, the tarpit's bounds and
// --honeypot-url.
func checkQuarantineAction(c Config, bad func(flag, format string, args ...any)) {
	switch c.QuarantineAction {
	case "deny", "honeypot", "tarpit":
	default:
		bad("quarantine-action", "must be deny, honeypot or tarpit, got %q", c.QuarantineAction)
	}
	// The tarpit's bounds against the other settings apply only when it
	// is on: a service that never holds an answer must not fail to start
	// because its --grpc-max-streams or --grpc-check-timeout is small.
	tarpit := c.QuarantineAction == "tarpit"
	// A hold past the proxy's timeout fails open: the bot gets through.
	// Flow Lock cannot see the proxy's timeout, but it can refuse a delay
	// that outlasts its own deadline for a Check.
	switch {
	case c.TarpitDelay < minTarpitDelay || c.TarpitDelay > maxTarpitDelay:
		bad("tarpit-delay", "must be %s-%s and below the proxy's check timeout, got %s",
			formatDuration(minTarpitDelay), formatDuration(maxTarpitDelay), formatDuration(c.TarpitDelay))
	case tarpit && c.TarpitDelay >= c.GRPCCheckTimeout:
		bad("tarpit-delay", "must be below --grpc-check-timeout (%s) and the proxy's check timeout, got %s",
			formatDuration(c.GRPCCheckTimeout), formatDuration(c.TarpitDelay))
	case tarpit && c.ForwardAuthAddr != "" && c.TarpitDelay > maxForwardAuthTarpitDelay:
		bad("tarpit-delay", "must be at most %s with --forward-auth-addr: the forward-auth proxies in deploy/ (nginx, HAProxy) give up on a check after 1s and fail open, got %s",
			formatDuration(maxForwardAuthTarpitDelay), formatDuration(c.TarpitDelay))
	}
	// Held Checks are calls in flight: half the budget stays for everyone else.
	if c.TarpitMaxHeld < 1 {
		bad("tarpit-max-held", "must be at least 1, got %d", c.TarpitMaxHeld)
	} else if most := max(c.GRPCMaxInflight/2, 1); tarpit && c.TarpitMaxHeld > most {
		bad("tarpit-max-held", "must be 1-%d (half of --grpc-max-inflight), got %d", most, c.TarpitMaxHeld)
	} else if most := max(c.GRPCMaxStreams/2, 1); tarpit && c.TarpitMaxHeld > most {
		// A proxy may send every Check over one connection (the Go
		// middleware does; so does an Envoy worker): held Checks past half
		// its streams leave calm clients waiting for a stream until the
		// proxy's timeout.
		bad("tarpit-max-held", "must be at most half of --grpc-max-streams (%d streams per connection, so at most %d), got %d",
			c.GRPCMaxStreams, most, c.TarpitMaxHeld)
	}
	if c.HoneypotURL != "" {
		u, err := url.Parse(c.HoneypotURL)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			bad("honeypot-url", `must be an http or https URL such as "http://127.0.0.1:8091", got %q`, c.HoneypotURL)
		case u.User != nil:
			bad("honeypot-url", "must not carry a user or password")
		}
	}
}

// actionWarnings says what --quarantine-action needs beyond Flow Lock.
func actionWarnings(c Config) []string {
	switch {
	case c.QuarantineAction == "deny":
		return nil
	case c.Mode == ModeShadow:
		return []string{fmt.Sprintf("--quarantine-action %s has no effect in shadow mode, which allows every request", c.QuarantineAction)}
	case c.QuarantineAction == "honeypot":
		return []string{"--quarantine-action honeypot allows quarantined clients with x-flowlock-route: honeypot: the proxy must route that header " +
			"to a decoy, or they reach the API. Supported: Envoy as deploy/envoy.yaml (clear_route_cache and the honeypot route), " +
			"nginx and HAProxy as deploy/nginx and deploy/haproxy (the decoy upstream), the Go middleware with Options.Honeypot. " +
			"Unsupported, use deny or tarpit there: Istio (ext_authz in the inbound sidecar, no decoy route), " +
			"Caddy and Traefik forward-auth (a 200 is an allow)"}
	}
	return nil
}
