package flowlocktest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// binDir is where Main built the commands; empty until it has.
var binDir string

// RepoRoot returns the module root (where go.mod and deploy/ are): the
// nearest directory at or above the working directory that holds a go.mod.
// A test's working directory is its package's directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("flowlocktest: no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// BuildTimeout bounds one go build of a test binary: a cold module cache
// and a busy machine take a few minutes, a hung toolchain must not take
// the suite's whole deadline.
const BuildTimeout = 10 * time.Minute

// Build compiles each of the module's commands cmd/<name> into dir/<name>,
// with go build's output on this process's stdout and stderr.
func Build(dir string, cmds ...string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	for _, name := range cmds {
		ctx, cancel := context.WithTimeout(context.Background(), BuildTimeout)
		defer cancel()
		build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
		build.Dir = root
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build %s: %w", name, err)
		}
	}
	return nil
}

// Main is the body of a suite's TestMain: it builds cmds into a temporary
// directory (see Bin), runs the tests, removes the directory and returns the
// exit code for os.Exit. A failed build is reported on stderr and gives 1.
func Main(m *testing.M, cmds ...string) int {
	dir, err := os.MkdirTemp("", "flowlocktest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := Build(dir, cmds...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binDir = dir
	return m.Run()
}

// Bin returns the path of the command name that Main built. It panics if
// Main has not built it: a harness mistake, not a test failure.
func Bin(name string) string {
	if binDir == "" {
		panic("flowlocktest.Bin(" + name + "): call flowlocktest.Main from TestMain first")
	}
	p := filepath.Join(binDir, name)
	if _, err := os.Stat(p); err != nil {
		panic("flowlocktest.Bin(" + name + "): not built by flowlocktest.Main: " + err.Error())
	}
	return p
}

// configEnv empties FLOWLOCK_CONFIG, so that no configuration file named by
// the environment the tests run in reaches a program they start.
const configEnv = "FLOWLOCK_CONFIG="

// Run runs bin with args to completion, killing it after timeout, under
// DefaultLimits, with stdin as its input and FLOWLOCK_CONFIG empty. It
// returns the combined output and the error from exec.Cmd.CombinedOutput
// (an *exec.ExitError when the program ran and failed).
func Run(timeout time.Duration, stdin, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	name, argv := limitedArgs(DefaultLimits, bin, args)
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), configEnv)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
