package load

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// Build compiles Flow Lock and the two comparison servers into dir, with
// go build's output on this process's stderr.
func Build(dir string) (Binaries, error) {
	root, err := flowlocktest.RepoRoot()
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{
		FlowLock: filepath.Join(dir, "flowlock-authz"),
		Noop:     filepath.Join(dir, "noop-authz"),
		Floor:    filepath.Join(dir, "floor-authz"),
	}
	for bin, pkg := range map[string]string{
		b.FlowLock: "./cmd/flowlock-authz",
		b.Noop:     "./test/load/cmd/noop-authz",
		b.Floor:    "./test/load/cmd/floor-authz",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), flowlocktest.BuildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return Binaries{}, fmt.Errorf("build %s: %w", pkg, err)
		}
	}
	return b, nil
}

// SplitCPUs returns the CPUs for the servers and for the load generator:
// the first half and the second half of this machine's, as taskset(1)
// lists ("0" and "1" on two cores). With one CPU both are empty: nothing
// to separate.
func SplitCPUs() (servers, generator string) {
	n := runtime.NumCPU()
	if n < 2 {
		return "", ""
	}
	span := func(lo, hi int) string {
		if lo == hi {
			return strconv.Itoa(lo)
		}
		return fmt.Sprintf("%d-%d", lo, hi)
	}
	return span(0, n/2-1), span(n/2, n-1)
}

// PinSelf moves every thread of this process to cpus (a taskset(1) list)
// and sets GOMAXPROCS to their number, so that the load generator stays off
// the servers' CPUs.
func PinSelf(cpus string) error {
	out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(os.Getpid())).CombinedOutput()
	if err != nil {
		return fmt.Errorf("taskset %s: %v: %s", cpus, err, strings.TrimSpace(string(out)))
	}
	n := 0
	for part := range strings.SplitSeq(cpus, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || b < a {
			return fmt.Errorf("CPU list %q: want numbers and ranges such as 0-3,6", cpus)
		}
		n += b - a + 1
	}
	runtime.GOMAXPROCS(n)
	return nil
}
