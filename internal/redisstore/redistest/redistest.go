// Package redistest starts real redis-server processes for tests: one
// node, or a Redis Cluster of three masters, on free loopback ports, each
// with its own directory, no persistence, bounded memory and descriptors,
// and stopped by PID when the test ends.
//
// Without redis-server on PATH the test is skipped with the reason, unless
// CI is set: then it fails, so CI never passes by skipping.
package redistest

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// StartTimeout bounds how long a node, or a cluster, may take to be ready.
const StartTimeout = 20 * time.Second

// limits bound each redis-server: a regression that floods Redis fails
// the test instead of exhausting the shared machine.
var limits = flowlocktest.Limits{AddressSpace: 2 << 30, OpenFiles: 1024}

// Server is one running redis-server.
type Server struct {
	// Addr is its 127.0.0.1:PORT.
	Addr string
	// Port is its port.
	Port int
	// Dir is its working directory (cluster config, if any).
	Dir string

	t    testing.TB
	args []string
	proc *flowlocktest.Process
}

// Option adds redis-server arguments, e.g. Args("--requirepass", "s3cret").
type Option []string

// Args returns an Option of redis-server arguments.
func Args(a ...string) Option { return a }

// Binaries returns the paths of redis-server and redis-cli, skipping t
// (or failing it in CI) if they are missing.
func Binaries(t testing.TB) (server, cli string) {
	t.Helper()
	server, err1 := exec.LookPath("redis-server")
	cli, err2 := exec.LookPath("redis-cli")
	if err1 != nil || err2 != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server and redis-cli are required in CI (.ci/install-deps.sh installs them): %v %v", err1, err2)
		}
		t.Skipf("redis-server or redis-cli not on PATH (install Debian's redis-server and redis-tools): %v %v", err1, err2)
	}
	return server, cli
}

// Start starts one redis-server on a free loopback port.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	Binaries(t)
	return StartOn(t, FreePort(t, false), opts...)
}

// StartOn starts one redis-server on the given loopback port, for a test
// that needs the address before the server exists.
func StartOn(t testing.TB, port int, opts ...Option) *Server {
	t.Helper()
	Binaries(t)
	var extra []string
	for _, o := range opts {
		extra = append(extra, o...)
	}
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Port: port, Dir: t.TempDir(), t: t, args: extra}
	s.start()
	return s
}

// start runs the server with its arguments and waits until it answers.
func (s *Server) start() {
	s.t.Helper()
	server, _ := Binaries(s.t)
	args := append([]string{
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--maxmemory", "1gb", "--maxclients", "512", "--loglevel", "warning",
	}, s.args...)
	s.proc = flowlocktest.StartProcess(s.t, flowlocktest.LimitedCommand(limits, server, args...))
	proc := s.proc
	// Runs before the process is stopped (cleanups run last first): a
	// test may have left it stopped with SIGSTOP.
	s.t.Cleanup(func() { _ = proc.Signal(syscall.SIGCONT) })
	deadline := time.Now().Add(StartTimeout)
	for {
		if out, err := s.CLI("PING"); err == nil && strings.TrimSpace(out) == "PONG" || strings.Contains(out, "NOAUTH") {
			return
		}
		if s.proc.Exited() || time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s not ready within %v:\n%s", s.Addr, StartTimeout, s.proc.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// PID returns the server's process ID.
func (s *Server) PID() int { return s.proc.Cmd.Process.Pid }

// Stop stops the server (SIGTERM, by PID) and waits for it.
func (s *Server) Stop() { s.proc.Stop() }

// Kill kills the server with SIGKILL, by PID, and waits for it.
func (s *Server) Kill() {
	_ = s.proc.Signal(syscall.SIGKILL)
	<-s.proc.Done()
}

// Restart stops the server and starts it again on the same port and
// directory, with the same arguments: an empty Redis (no persistence).
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// CLI runs redis-cli against the server with args, bounded in time, and
// returns its output.
func (s *Server) CLI(args ...string) (string, error) {
	_, cli := Binaries(s.t)
	a := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.Port)}, s.cliAuth()...)
	return flowlocktest.Run(10*time.Second, "", cli, append(a, args...)...)
}

// cliAuth passes --requirepass to redis-cli, if the server has one.
func (s *Server) cliAuth() []string {
	for i, a := range s.args {
		if a == "--requirepass" && i+1 < len(s.args) {
			return []string{"--no-auth-warning", "-a", s.args[i+1]}
		}
	}
	return nil
}

// Info returns the fields of INFO section.
func (s *Server) Info(section string) map[string]string {
	s.t.Helper()
	out, err := s.CLI("INFO", section)
	if err != nil {
		s.t.Fatalf("INFO %s on %s: %v", section, s.Addr, err)
	}
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// Cluster is a Redis Cluster of running masters, no replicas.
type Cluster struct {
	// Nodes are the masters.
	Nodes []*Server
}

// Addrs returns every node's address, the seeds for a client.
func (c *Cluster) Addrs() []string {
	a := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		a[i] = n.Addr
	}
	return a
}

// StartCluster starts n (at least 3) cluster-enabled nodes, joins them
// with redis-cli --cluster create, and waits for cluster_state:ok on each.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	_, cli := Binaries(t)
	c := &Cluster{}
	for range n {
		port := FreePort(t, true)
		s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), Port: port, Dir: t.TempDir(), t: t,
			args: []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"}}
		s.start()
		c.Nodes = append(c.Nodes, s)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := flowlocktest.Run(StartTimeout, "", cli, args...); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(StartTimeout)
	for _, s := range c.Nodes {
		for s.Info("cluster")["cluster_enabled"] != "1" || !clusterOK(s) {
			if time.Now().After(deadline) {
				out, _ := s.CLI("CLUSTER", "INFO")
				t.Fatalf("cluster not ok on %s within %v:\n%s", s.Addr, StartTimeout, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

func clusterOK(s *Server) bool {
	out, err := s.CLI("CLUSTER", "INFO")
	return err == nil && strings.Contains(out, "cluster_state:ok")
}

// FreePort returns a loopback TCP port that was free just now. With
// bus, port+10000 (the cluster bus) was free too.
func FreePort(t testing.TB, bus bool) int {
	t.Helper()
	for range 200 {
		p := 20000 + rand.IntN(30000)
		if !free(p) || (bus && !free(p+10000)) {
			continue
		}
		return p
	}
	t.Fatal("no free loopback port found")
	return 0
}

func free(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// String names the server for messages.
func (s *Server) String() string {
	return fmt.Sprintf("redis-server %s (pid %d, dir %s)", s.Addr, s.PID(), filepath.Base(s.Dir))
}

// Signal sends sig to the server, by its PID (SIGSTOP hangs it, SIGCONT
// resumes it).
func (s *Server) Signal(sig os.Signal) error { return s.proc.Signal(sig) }
