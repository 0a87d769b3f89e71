// Package proxy holds black-box tests of Flow Lock behind real third-party
// software: nginx, Caddy and HAProxy started from the shipped configs in
// deploy/ in front of a test upstream, asking the built flowlock-authz over
// HTTP forward-auth; and grpcurl and grpc-health-probe speaking to its gRPC
// API. Everything runs as the current user on loopback addresses (all of
// 127/8 is local, so clients take distinct source addresses), and every
// process is stopped by PID.
//
// The programs come from .ci/install-deps.sh. A test whose program is
// missing is skipped, unless FLOWLOCK_REQUIRE_PROXIES is set (CI sets it),
// when it fails instead. With -short everything but the config checks is
// skipped.
package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	// binDir holds flowlock-authz, built once for the package.
	binDir string
	// repoRoot is the module root, where deploy/ is.
	repoRoot string
)

func TestMain(m *testing.M) {
	flag.Parse()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	repoRoot = root
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "flowlock-proxy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := func() int {
		defer os.RemoveAll(dir)
		build := exec.Command("go", "build", "-o", filepath.Join(dir, "flowlock-authz"), "./cmd/flowlock-authz")
		build.Dir = repoRoot
		build.Stdout, build.Stderr = os.Stdout, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build flowlock-authz: %v\n", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// requireProxies makes a missing program a failure rather than a skip.
const requireProxies = "FLOWLOCK_REQUIRE_PROXIES"

// endToEnd skips t under -short.
func endToEnd(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: runs flowlock-authz and real proxies (run without -short; CI does)")
	}
}

// tool finds a program on PATH, in the sbin directories a non-root PATH
// may lack (nginx and haproxy live in /usr/sbin), or where
// .ci/install-deps.sh puts Go tools. Missing, it skips t, or fails it
// when FLOWLOCK_REQUIRE_PROXIES is set.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	dirs := []string{"/usr/sbin", "/usr/local/sbin", "/sbin", os.Getenv("FLOWLOCK_TOOLS_BIN")}
	for _, v := range []string{"GOBIN", "GOPATH"} {
		out, err := exec.Command("go", "env", v).Output()
		if s := strings.TrimSpace(string(out)); err == nil && s != "" {
			if v == "GOPATH" {
				s = filepath.Join(filepath.SplitList(s)[0], "bin")
			}
			dirs = append(dirs, s)
		}
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := fmt.Sprintf("%s not found on PATH or in %v: run .ci/install-deps.sh", name, dirs)
	if os.Getenv(requireProxies) != "" {
		t.Fatalf("%s (%s is set, so this is a failure)", msg, requireProxies)
	}
	t.Skip(msg)
	return ""
}

// deployFile returns the absolute path of a shipped file under deploy/.
func deployFile(name string) string {
	return filepath.Join(repoRoot, "deploy", filepath.FromSlash(name))
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// process is a program the test started, stopped by PID at cleanup.
type process struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	done chan struct{}
	logs []string // files to show when the test fails
}

// startProcess runs bin with args and extra environment variables, output
// to files in dir, and stops it (SIGTERM, then SIGKILL after 10 s) when the
// test ends. On failure the output is logged.
func startProcess(t *testing.T, dir, bin string, env []string, args ...string) *process {
	t.Helper()
	name := filepath.Base(bin)
	stdout, err := os.Create(filepath.Join(dir, name+".stdout"))
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(filepath.Join(dir, name+".stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = withEnv(os.Environ(), env)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{t: t, name: name, cmd: cmd, done: make(chan struct{}), logs: []string{stdout.Name(), stderr.Name()}}
	go func() {
		_ = cmd.Wait()
		stdout.Close()
		stderr.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			p.dump()
		}
	})
	return p
}

// withEnv returns base with the variables in set replacing any of the same
// name.
func withEnv(base, set []string) []string {
	out := make([]string, 0, len(base)+len(set))
	for _, kv := range base {
		name, _, _ := strings.Cut(kv, "=")
		replaced := false
		for _, s := range set {
			if n, _, _ := strings.Cut(s, "="); n == name {
				replaced = true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return append(out, set...)
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process's PID and waits, killing it after 10 s.
func (p *process) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("%s (pid %d) ignored SIGTERM for 10s", p.name, p.cmd.Process.Pid)
	}
}

func (p *process) dump() {
	for _, f := range p.logs {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		if len(b) > 16<<10 {
			b = b[len(b)-16<<10:]
		}
		p.t.Logf("%s:\n%s", f, b)
	}
}

// waitListening polls addr until it accepts a connection, the process
// exits, or 15 s pass.
func (p *process) waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if p.exited() {
			p.dump()
			t.Fatalf("%s exited before listening on %s", p.name, addr)
		}
		if time.Now().After(deadline) {
			p.dump()
			t.Fatalf("%s not listening on %s after 15s: %v", p.name, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// flowlock is one running flowlock-authz.
type flowlock struct {
	*process
	GRPCAddr, HTTPAddr, ForwardAuthAddr string
}

// startFlowlock runs flowlock-authz with free loopback ports, JSON logs and
// args, and waits for its "listening" line.
func startFlowlock(t *testing.T, args ...string) *flowlock {
	t.Helper()
	dir := t.TempDir()
	args = append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "json"}, args...)
	p := startProcess(t, dir, filepath.Join(binDir, "flowlock-authz"), []string{"FLOWLOCK_CONFIG="}, args...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if rec, ok := listening(filepath.Join(dir, "flowlock-authz.stderr")); ok {
			return &flowlock{process: p, GRPCAddr: rec["grpc_addr"], HTTPAddr: rec["http_addr"], ForwardAuthAddr: rec["forward_auth_addr"]}
		}
		if p.exited() {
			p.dump()
			t.Fatal("flowlock-authz exited before listening")
		}
		if time.Now().After(deadline) {
			p.dump()
			t.Fatal("flowlock-authz did not listen within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listening reads the addresses from the JSON "listening" log line.
func listening(logFile string) (map[string]string, bool) {
	f, err := os.Open(logFile)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec["msg"] != "listening" {
			continue
		}
		out := map[string]string{}
		for k, v := range rec {
			if s, ok := v.(string); ok {
				out[k] = s
			}
		}
		return out, true
	}
	return nil, false
}

// api GETs a path from flowlock-authz's HTTP side.
func (s *flowlock) api(t *testing.T, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + s.HTTPAddr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

// upstream is the API behind the proxy. It answers 200 with a marker body
// and records, per X-Test-Client, the X-Flowlock-* headers each request
// arrived with.
type upstream struct {
	srv *httptest.Server

	mu   sync.Mutex // guards seen
	seen map[string][]http.Header
}

// upstreamBody is what the upstream answers; a 200 with another body came
// from somewhere else.
const upstreamBody = `{"upstream":"ok"}`

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{seen: map[string][]http.Header{}}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := http.Header{}
		for k, v := range r.Header {
			if strings.HasPrefix(k, "X-Flowlock-") {
				h[k] = v
			}
		}
		u.mu.Lock()
		u.seen[r.Header.Get("X-Test-Client")] = append(u.seen[r.Header.Get("X-Test-Client")], h)
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, upstreamBody)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) addr() string { return u.srv.Listener.Addr().String() }

// requests returns the X-Flowlock-* headers of each request client made.
func (u *upstream) requests(client string) []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.seen[client]...)
}

// from returns an HTTP client whose connections leave from the loopback
// address src, so that the proxy sees src as the client.
func from(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	return &http.Client{
		Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 1, DisableCompression: true},
		Timeout:   10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// response is what a client got back.
type response struct {
	status int
	header http.Header
	body   string
}

func get(ctx context.Context, c *http.Client, url string, headers map[string]string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return response{}, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}, err
}

// runTool runs a program to completion (bounded to 30 s) with stdin and
// returns its combined output and exit code (-1 if it did not run).
func runTool(t *testing.T, stdin string, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = withEnv(os.Environ(), []string{"FLOWLOCK_CONFIG="})
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("%s %v: %v\n%s", filepath.Base(bin), args, err, out)
	}
	return string(out), 0
}
