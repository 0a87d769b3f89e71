package flowlocktest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StopTimeout is how long Stop waits after SIGTERM before it sends SIGKILL
// and fails the test.
const StopTimeout = 20 * time.Second

// tailBytes is how much of the end of each extra log file is shown when a
// test fails.
const tailBytes = 16 << 10

// Process is a program a test started. It is stopped by its PID when the
// test ends, and its output (stdout and stderr, in the order written) is
// logged if the test failed.
type Process struct {
	// Name is the program's file name, as messages show it.
	Name string
	// Cmd is the running command; Cmd.Process.Pid is its PID.
	Cmd *exec.Cmd

	t    testing.TB
	out  *lines
	done chan struct{}

	mu    sync.Mutex // guards files
	files []string
}

// StartProcess starts cmd, whose Stdout and Stderr must be unset: the
// process's output is kept for Logs. At the end of t the process is
// stopped (see Stop) and, if t failed, its output and the files named by
// ShowOnFailure are logged.
func StartProcess(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	return startProcess(t, cmd, nil)
}

// startProcess is StartProcess with a function called on each whole line
// of output, as it is written.
func startProcess(t testing.TB, cmd *exec.Cmd, onLine func(string)) *Process {
	t.Helper()
	name := filepath.Base(cmd.Path)
	if name == "prlimit" && len(cmd.Args) > 0 {
		// LimitedCommand: name the program, not the wrapper it runs under.
		for i, a := range cmd.Args {
			if a == "--" && i+1 < len(cmd.Args) {
				name = filepath.Base(cmd.Args[i+1])
				break
			}
		}
	}
	p := &Process{Name: name, Cmd: cmd, t: t, out: &lines{onLine: onLine}, done: make(chan struct{})}
	if cmd.Stdout != nil || cmd.Stderr != nil {
		t.Fatalf("flowlocktest.StartProcess(%s): Stdout and Stderr must be unset", p.Name)
	}
	// One writer for both: one pipe, and one Write at a time.
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// A child that inherits the output and outlives the process must not
	// keep Wait from returning.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.Name, err)
	}
	go func() {
		_ = cmd.Wait() // returns once the output is all read
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			p.dump()
		}
	})
	return p
}

// Done is closed once the process has exited and its output is read.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process, by its PID.
func (p *Process) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// Stop sends SIGTERM to the process, by its PID, and waits for it to
// exit. If it is still running after StopTimeout it is killed and the test
// fails. Stopping a process that has exited does nothing.
func (p *Process) Stop() {
	if p.Exited() {
		return
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(StopTimeout):
		_ = p.Cmd.Process.Kill()
		<-p.done
		p.t.Errorf("%s (pid %d) ignored SIGTERM for %v", p.Name, p.Cmd.Process.Pid, StopTimeout)
	}
}

// Logs returns what the process has written so far, stdout and stderr.
func (p *Process) Logs() string { return p.out.String() }

// ShowOnFailure names files the process writes (its own log files) whose
// end is logged too if the test fails.
func (p *Process) ShowOnFailure(files ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files = append(p.files, files...)
}

// dump logs the output and the files named by ShowOnFailure.
func (p *Process) dump() {
	if out := p.Logs(); out != "" {
		p.t.Logf("%s (pid %d) output:\n%s", p.Name, p.Cmd.Process.Pid, out)
	}
	p.mu.Lock()
	files := append([]string(nil), p.files...)
	p.mu.Unlock()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		if len(b) > tailBytes {
			b = b[len(b)-tailBytes:]
		}
		p.t.Logf("%s:\n%s", f, b)
	}
}

// lines is an io.Writer that keeps what is written, line by line.
type lines struct {
	onLine func(string) // called with each whole line, under mu

	mu      sync.Mutex // guards the fields below
	whole   []string
	partial []byte
}

func (l *lines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		l.whole = append(l.whole, line)
		if l.onLine != nil {
			l.onLine(line)
		}
	}
	return len(b), nil
}

// String returns the lines written so far, and any unfinished last line.
func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	all := l.whole
	if len(l.partial) > 0 {
		all = append(all[:len(all):len(all)], string(l.partial))
	}
	return strings.Join(all, "\n")
}
