// Command flowlock-authz is Flow Lock's service: the Envoy ext_authz gRPC
// server that scores each client's request rhythm and quarantines bots, with
// an HTTP side for the dashboard, the admin API, metrics and health.
//
//	flowlock-authz [serve] [flags]    run the service (the default)
//	flowlock-authz replay TRACE...    backtest access logs through the same engine
//	flowlock-authz calibrate ...      suggest thresholds for a false-positive budget
//	flowlock-authz healthcheck        exit 0 when the local service is SERVING
//	flowlock-authz version            print the version
//
// Every flag has an environment twin FLOWLOCK_<NAME> and a key in the YAML
// file given by --config; flags beat the environment, which beats the file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/flowlock/flowlock/internal/config"
)

// version is set at build time with -ldflags "-X main.version=..."; when it
// is not, the module version or VCS revision from the build info is used.
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "flowlock-authz: %v\n", err)
		os.Exit(1)
	}
}

// run is the whole program, minus the process: tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, getenv, stderr)
	case "healthcheck":
		return healthcheck(ctx, args, getenv, stdout)
	case "replay":
		return replayCmd(ctx, args, getenv, stdout, stderr)
	case "calibrate":
		return calibrateCmd(ctx, args, getenv, stdout, stderr)
	case "version":
		_, err := fmt.Fprintln(stdout, "flowlock-authz", buildVersion())
		return err
	case "help":
		usage(stdout)
		return nil
	default:
		return fmt.Errorf("unknown command %q (want serve, replay, calibrate, healthcheck or version)", cmd)
	}
}

// usage writes the subcommands and serve's flags: what --help, -h and
// help show.
func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: flowlock-authz [command] [flags]

Commands:
  serve        run the service (the default when no command is given)
  replay       backtest access logs through the same engine: flowlock-authz replay [flags] TRACE...
  calibrate    suggest thresholds for a false-positive budget: flowlock-authz calibrate --fpr RATE TRACE... | --from URL
  healthcheck  exit 0 when the local service is SERVING (for container health checks)
  version      print the version
  help         show this help

"flowlock-authz COMMAND -h" shows a command's own flags. serve's flags:

`)
	config.Usage(w)
}

// buildVersion returns the version stamped at build time or read from the
// build info.
func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}
