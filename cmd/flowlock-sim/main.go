// Command flowlock-sim generates and replays the simulated traffic Flow Lock
// is evaluated on: the human, bot and NAT scenarios of DETECTION.md §6.2.
//
// Usage:
//
//	flowlock-sim scenarios [--format table|json]
//	flowlock-sim trace --scenario NAME --seed N [--duration D] [--clients K]
//	                   [--start RFC3339] [--ipv6 | --first-addr ADDR] [--raw] [--max-requests N]
//	flowlock-sim eval | grpc | http   (not implemented yet)
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
// own identity under Flow Lock's default IPv6 grouping. Stream 0 uses --seed
// itself; stream k > 0 a seed derived from --seed and k. The same flags give
// the same trace, byte for byte.
//
// Exit status: 0 on success, 2 on a usage error, 1 on any other error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
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
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error // nil: not implemented yet
}

// commands lists the subcommands in the order the usage shows them.
var commands = []command{
	{"scenarios", "list the traffic scenarios", runScenarios},
	{"trace", "write a labelled JSON Lines trace of a scenario", runTrace},
	{"eval", "run every scenario through the engine and report detection rates", runEval},
	{"grpc", "send live traffic to an ext_authz gRPC server", nil},
	{"http", "send live traffic through an HTTP proxy", nil},
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
		if c.run == nil {
			return fmt.Errorf("%s: not implemented yet (it needs the risk engine); available now: %s",
				name, strings.Join(implemented(), ", "))
		}
		if err := c.run(ctx, args[1:], stdout, stderr); !errors.Is(err, errHelp) {
			return err
		}
		return nil
	}
	usage(stderr)
	return usagef("unknown command %q", name)
}

// implemented returns the names of the commands that exist.
func implemented() []string {
	var names []string
	for _, c := range commands {
		if c.run != nil {
			names = append(names, c.name)
		}
	}
	return names
}

// usage prints the top-level help.
func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: flowlock-sim <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands {
		note := ""
		if c.run == nil {
			note = " (not implemented yet)"
		}
		fmt.Fprintf(w, "  %-10s %s%s\n", c.name, c.summary, note)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "run 'flowlock-sim <command> -h' for the flags of a command")
}
