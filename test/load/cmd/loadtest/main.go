// Command loadtest is `make loadtest`: it builds Flow Lock and the two
// comparison servers, starts them on loopback, measures them in turn with
// Envoy-shaped CheckRequests and prints the table (and, with -json, the
// numbers). See package load and the README's Performance section.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/flowlock/flowlock/test/load"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := load.DefaultConfig()
	serverCPUs, clientCPUs := load.SplitCPUs()
	var (
		jsonFile = flag.String("json", "", "also write the numbers as JSON to this file")
		markdown = flag.Bool("markdown", false, "print markdown tables (for the README)")
		gc       = flag.String("gc", strings.Join(cfg.GC, ","), `GC settings to compare under, comma-separated: "off" (GOGC=off GOMEMLIMIT=-memlimit) and "default"`)
		curve    = flag.String("curve", joinInts(cfg.Curve), `tracked-client counts of the cost curve, comma-separated ascending; "" skips it`)
		pin      = flag.Bool("pin", true, "pin servers and the load generator to separate CPUs (taskset)")

		generatorLimit = flag.Int64("generator-memlimit", 256, "the load generator's own GOMEMLIMIT in MiB, with GOGC=off (0: the Go defaults)")
	)
	flag.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of each measured stretch")
	flag.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "unmeasured stretch each server gets first")
	flag.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "times each server is measured, in turn")
	flag.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "Checks in flight (closed loop; the most in flight in the open loop)")
	flag.IntVar(&cfg.Conns, "conns", cfg.Conns, "HTTP/2 connections to each server")
	flag.IntVar(&cfg.Clients, "clients", cfg.Clients, "client addresses of the allow-path traffic")
	flag.IntVar(&cfg.Bots, "bots", cfg.Bots, "bots flooding the enforce server (the deny path)")
	flag.DurationVar(&cfg.BotPeriod, "bot-period", cfg.BotPeriod, "each bot's fixed time between requests while it gets quarantined")
	flag.Float64Var(&cfg.Rate, "rate", cfg.Rate, "open-loop Checks per second (0: half the slowest closed-loop throughput; -1: no open loop)")
	flag.StringVar(&cfg.MemLimit, "memlimit", cfg.MemLimit, "GOMEMLIMIT of the servers under -gc off")
	flag.StringVar(&serverCPUs, "server-cpus", serverCPUs, "CPUs of the servers (taskset list)")
	flag.StringVar(&clientCPUs, "client-cpus", clientCPUs, "CPUs of the load generator (taskset list)")
	flag.StringVar(&cfg.Bin.FlowLock, "flowlock", "", "flowlock-authz binary (default: build it)")
	flag.Parse()

	cfg.GC = splitList(*gc)
	if *generatorLimit > 0 {
		// The generator stands in for Envoy, which has no collector: its
		// own collections would set the pace of the closed loop, and more
		// so for the servers whose answers are longer (a deny's 286 bytes
		// against an allow's 31). It collects only near the limit.
		debug.SetGCPercent(-1)
		debug.SetMemoryLimit(*generatorLimit << 20)
	}
	var err error
	if cfg.Curve, err = parseInts(*curve); err != nil {
		return fmt.Errorf("-curve: %w", err)
	}
	if *pin && serverCPUs != "" && clientCPUs != "" {
		if err := load.PinSelf(clientCPUs); err != nil {
			return err
		}
		cfg.ServerCPUs, cfg.ClientCPUs = serverCPUs, clientCPUs
	}
	dir, err := os.MkdirTemp("", "flowlock-loadtest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	flowLock := cfg.Bin.FlowLock
	fmt.Fprintln(os.Stderr, "building the servers...")
	if cfg.Bin, err = load.Build(dir); err != nil {
		return err
	}
	if flowLock != "" {
		cfg.Bin.FlowLock = flowLock
	}
	cfg.LogDir, cfg.Progress = dir, os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := load.Run(ctx, cfg)
	if rep != nil {
		rep.WriteTable(os.Stdout, *markdown)
		if *jsonFile != "" {
			f, ferr := os.Create(*jsonFile)
			if ferr != nil {
				return ferr
			}
			if werr := rep.WriteJSON(f); werr != nil {
				f.Close()
				return werr
			}
			if cerr := f.Close(); cerr != nil {
				return cerr
			}
		}
	}
	return err
}

func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, part := range splitList(s) {
		n, err := strconv.Atoi(strings.ReplaceAll(part, "_", ""))
		if err != nil || n < 1 || n > 1<<24-1 {
			return nil, fmt.Errorf("%q: want a count from 1 to 16777215", part)
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("%q: counts must ascend", part)
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
