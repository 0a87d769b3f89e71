// Package load is Flow Lock's load harness: it starts ext_authz servers on
// loopback as real processes (Flow Lock in shadow and enforce mode, a no-op
// server and a transport floor from cmd/), drives them with Envoy-shaped
// CheckRequests over real gRPC, and reports throughput, latency, server CPU
// per Check and memory per tracked client, as ratios measured in one run.
//
// `make loadtest` runs cmd/loadtest; TestHarnessSmoke runs the same Run in a
// small configuration for a few seconds. The harness speaks to every server
// only as Envoy would: gRPC on the ext_authz API, flags on the command line,
// and /metrics for Flow Lock's counters. It imports none of the module's
// internal packages, so the servers can change inside without it noticing.
//
// Why here and not bench/: test/ already holds the black-box suites that
// start the built binary (DESIGN.md §2), and the harness is one of them. It
// is not a Go benchmark: Go benchmarks measure code in one process; this
// measures processes, which is what an operator runs.
package load
