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
	"context"
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
	"testing"
	"time"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// repoRoot is the module root, where deploy/ is.
var repoRoot string

func TestMain(m *testing.M) {
	flag.Parse()
	root, err := flowlocktest.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	repoRoot = root
	if testing.Short() {
		os.Exit(m.Run())
	}
	os.Exit(flowlocktest.Main(m, "flowlock-authz", "flowlock-sim", "sample-api", "flowlock-honeypot"))
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
		out, err := flowlocktest.Run(30*time.Second, "", "go", "env", v)
		if s := strings.TrimSpace(out); err == nil && s != "" {
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

// startProcess runs bin with args and extra environment variables (which
// replace any of the same name) in dir, and stops it by PID when the test
// ends (see flowlocktest.Process), under flowlocktest.DefaultLimits.
func startProcess(t *testing.T, dir, bin string, env []string, args ...string) *flowlocktest.Process {
	t.Helper()
	cmd := flowlocktest.LimitedCommand(flowlocktest.DefaultLimits, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...) // the last of a name wins
	return flowlocktest.StartProcess(t, cmd)
}

// waitListening polls addr until it accepts a connection, p exits, or
// 15 s pass.
func waitListening(t *testing.T, p *flowlocktest.Process, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if p.Exited() {
			t.Fatalf("%s exited before listening on %s", p.Name, addr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s after 15s: %v", p.Name, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startFlowlock runs the flowlock-authz built by TestMain on free loopback
// ports (see flowlocktest.Start).
func startFlowlock(t *testing.T, args ...string) *flowlocktest.Service {
	t.Helper()
	return flowlocktest.Start(t, flowlocktest.Bin("flowlock-authz"), args...)
}

// api GETs a path from flowlock-authz's HTTP side, which must answer 200.
func api(t *testing.T, s *flowlocktest.Service, path string) string {
	t.Helper()
	code, body := s.API(t, "GET", path, "", "")
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	return body
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
// returns its combined output and exit code; one that does not run fails t.
func runTool(t *testing.T, stdin string, bin string, args ...string) (string, int) {
	t.Helper()
	out, err := flowlocktest.Run(30*time.Second, stdin, bin, args...)
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return out, ee.ExitCode()
		}
		t.Fatalf("%s %v: %v\n%s", filepath.Base(bin), args, err, out)
	}
	return out, 0
}

// simBin is the flowlock-sim built by TestMain.
func simBin() string { return flowlocktest.Bin("flowlock-sim") }
