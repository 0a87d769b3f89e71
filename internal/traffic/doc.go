// Package traffic generates labelled, seeded request streams for Flow Lock:
// the human, bot and shared-address scenarios of DETECTION.md §6.2, each a
// time-ordered sequence of requests from one client identity (one IP address
// or one NAT address carrying several clients).
//
// The package is the evaluation ground truth for the risk engine and the
// traffic source of flowlock-sim and the --demo mode. It knows nothing about
// gRPC, HTTP or the other Flow Lock packages.
//
// # Scenarios
//
// [Scenarios] lists every scenario in a stable order and [Lookup] finds one by
// name ("fixed-2s") or id ("B1-2s"), ignoring case. A [Scenario] is a plain
// value: callers may change its Horizon or Clients before asking for a
// stream. Every scenario carries a [Label]: [Human] streams must not be
// quarantined, [Bot] streams should be, and [OutOfScope] streams are bots that
// request timing alone cannot honestly tell from humans (DETECTION.md §4 and
// §6.3); their detection rate is reported but has no target.
//
// # Streams
//
// [Scenario.Stream] returns a [Stream] whose Next method yields requests in
// time order until the scenario's horizon. A stream is deterministic for a
// given seed and start time. Scenarios with several clients on one identity
// (office NAT, CGNAT, parallel scraper) merge one sub-stream per client in
// time order.
//
// By default the timestamps pass through the observation model of
// DETECTION.md §6.1: Gaussian noise with a 5 ms standard deviation, then
// quantisation to whole milliseconds after the start time, without ever
// reordering requests. [Raw] turns the model off so tests can see the
// generating process itself. The model does not batch gaps below 5 ms: that
// is the scorer's job, as it is on real traffic.
//
// # Baseline
//
// [Naive] is the product brief's RPM + 1/variance formula (DETECTION.md
// §6.4). It is kept only as the baseline every claim about the real scorer is
// measured against; it is not a detector to ship.
package traffic
