// Command flowlock-sim generates, evaluates and sends the simulated traffic
// Flow Lock is measured on: the human, bot and NAT scenarios of DETECTION.md
// §6.2.
//
// Usage:
//
//	flowlock-sim scenarios [--format table|json]
//	flowlock-sim trace --scenario NAME --seed N [--duration D] [--clients K]
//	                   [--start RFC3339] [--ipv6 | --first-addr ADDR] [--raw] [--max-requests N]
//	flowlock-sim eval [--seed-set tune|holdout] [--seed N] [--streams K] [--scenarios a,b]
//	                  [--format table|json | --markdown] [--threshold-sweep] [--workers N] [--strict]
//	                  [--max-requests N] [--replicas N (--redis-addr HOST:PORT | --unshared)]
//	                  [--replicas-section FILE]
//	flowlock-sim grpc --target HOST:PORT --scenario NAME[,NAME] [live flags] [--virtual-time]
//	flowlock-sim http --target URL --scenario NAME[,NAME] [live flags] [--source-ip ADDR]
//
// scenarios lists every scenario with its id, name, label, horizon, number of
// clients per identity and generating parameters, one per line (a table, or
// JSON Lines with --format json).
//
// trace writes a labelled JSON Lines trace in the DESIGN.md §3 record format
// to stdout: one request per line, in timestamp order, with "ts" (RFC 3339,
// UTC, microseconds), "ip", "method", "path", "headers" (the user agent),
// "label" and "scenario" (the scenario's name). --clients K writes K
// independent streams of the scenario, each from its own address, merged in
// time order. Stream k (from 0) uses the address 10.0.0.0 + k + 1
// (10.0.0.1, 10.0.0.2, ...) or, with --ipv6, 2001:db8:H:L::1 where H:L is
// k + 1 as a 32-bit number, so that each stream is its own /64 and stays its
// own identity under Flow Lock's default IPv6 grouping; --first-addr A
// numbers them from A instead (IPv6: A, then A in the next /64s), so that
// traces of several scenarios can be concatenated. Stream 0 uses --seed
// itself; stream k > 0 a seed derived from --seed and k. The same flags give
// the same trace, byte for byte. flowlock-authz replay reads it back.
//
// eval runs every scenario through the service's own decision path in
// virtual time: per stream a fresh authz.Policy over a risk.Engine and a
// quarantine.List with the service's default configuration, the scenario's
// excluded paths, one address per stream, every request decided by
// Policy.Decide, the periodic sweep at the service's interval; the naive
// RPM + 1/variance baseline sees the same requests. It prints, per scenario,
// the quarantine rate with a Wilson 95 % interval, the rate per IP-hour,
// the challenge rate, requests and seconds to detection, the most frequent
// reason, the shared-label rate and the naive rate, then every DETECTION.md
// §9 target with PASS or FAIL. Seed set tune uses seeds 1, 2, ...; holdout
// (the default) 1,000,000, 1,000,001, ...; stream k of each scenario uses the
// set's first seed plus k. By default single-user humans get 1,000 IP-hours
// per scenario (9,000 for the eight with a target), H7 1,000 streams, H8 and
// H9 200, bots 100. Streams run on all cores; the output depends only on the
// flags. --markdown prints the whole docs/detection.md:
//
//	go run ./cmd/flowlock-sim eval --markdown --seed-set holdout --threshold-sweep > docs/detection.md
//
// --replicas N sends each request of a stream to one of N replicas drawn
// at random (issue 13): with --redis-addr the service's stacks sharing
// state through that Redis (each stream under its own key prefix, all
// deleted after the run), with --unshared N stacks that share nothing.
// --replicas N --redis-addr A --markdown prints instead the docs/detection.md
// section comparing one replica, N shared and N unshared on the same
// streams (make detection-replicas writes it to docs/detection-replicas.md,
// and --replicas-section appends that file to the document).
//
// grpc and http send a scenario's traffic live, in real time or compressed
// by --speed (10 = ten times faster), from --clients K clients per
// scenario, each with its own address, for --duration (default 60s) or
// --max-requests. grpc plays Envoy against an ext_authz server: the client
// is the CheckRequest's source address (and X-Forwarded-For) and
// request.time is the send time (--virtual-time: the scenario's time). http
// sends the requests to a proxy URL with X-Forwarded-For set to the client
// (the proxy or Flow Lock must trust one hop of it: --xff-trusted-hops 1, or
// --trusted-proxies with the sender's address), or, with --source-ip ADDR,
// connects from ADDR (the next clients from the addresses after it) and
// sends no X-Forwarded-For, so the proxy or the Go middleware sees each
// client at its real address, as `make attack` does with 127.0.0.2;
// 403 with Retry-After counts as denied, 429 with Retry-After as limited,
// any other status as the upstream's. Both print one line per request, or
// with --quiet a summary every --every, and stop with exit status 1 after
// --max-errors transport errors.
//
// Exit status: 0 on success, 2 on a usage error, 1 on any other error
// (eval --strict: also when a target fails).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "flowlock-sim: %v\n", err)
		if errors.As(err, new(usageError)) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError marks an error in the command line, as opposed to a failure
// while running the command.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// usagef returns a usageError with a formatted message.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands in the order the usage shows them.
var commands = []command{
	{"scenarios", "list the traffic scenarios", runScenarios},
	{"trace", "write a labelled JSON Lines trace of a scenario", runTrace},
	{"eval", "run every scenario through the engine and report detection rates", runEval},
	{"grpc", "send live traffic to an ext_authz gRPC server", runGRPC},
	{"http", "send live traffic through an HTTP proxy", runHTTP},
}

// run executes the command line args (without the program name), writing
// results to stdout and diagnostics to stderr. It stops early when ctx is
// done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return usagef("missing command")
	}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return nil
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		if err := c.run(ctx, args[1:], stdout, stderr); !errors.Is(err, errHelp) {
			return err
		}
		return nil
	}
	usage(stderr)
	return usagef("unknown command %q", name)
}

// usage prints the top-level help.
func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: flowlock-sim <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "run 'flowlock-sim <command> -h' for the flags of a command")
}
