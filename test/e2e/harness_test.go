// Package e2e holds black-box tests of the built flowlock-authz binary: it is
// started as a process on free loopback ports and spoken to only over real
// gRPC and HTTP, as Envoy and an operator would.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// binDir holds the binaries built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flowlock-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := func() int {
		defer os.RemoveAll(dir)
		for _, cmd := range []string{"flowlock-authz"} {
			build := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), "../../cmd/"+cmd)
			build.Stdout, build.Stderr = os.Stdout, os.Stderr
			if err := build.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n", cmd, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// service is one running flowlock-authz process.
type service struct {
	t        *testing.T
	cmd      *exec.Cmd
	GRPCAddr string
	HTTPAddr string
	done     chan struct{}

	mu   sync.Mutex // guards logs
	logs []string
}

// start runs flowlock-authz with args plus free loopback ports and JSON
// logs, and waits until it says where it listens. The process is stopped by
// PID when the test ends.
func start(t *testing.T, args ...string) *service {
	t.Helper()
	args = append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "json"}, args...)
	cmd := exec.Command(filepath.Join(binDir, "flowlock-authz"), args...)
	cmd.Env = append(os.Environ(), "FLOWLOCK_CONFIG=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &service{t: t, cmd: cmd, done: make(chan struct{})}
	listening := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.logs = append(s.logs, line)
			s.mu.Unlock()
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "listening" {
				listening <- rec
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.stop() })

	select {
	case rec := <-listening:
		s.GRPCAddr, _ = rec["grpc_addr"].(string)
		s.HTTPAddr, _ = rec["http_addr"].(string)
	case <-s.done:
		t.Fatalf("flowlock-authz exited before listening:\n%s", s.logText())
	case <-time.After(30 * time.Second):
		t.Fatalf("flowlock-authz did not listen within 30s:\n%s", s.logText())
	}
	return s
}

// stop sends SIGTERM and waits for a clean exit (SIGKILL after 20 s).
func (s *service) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
		s.t.Errorf("flowlock-authz ignored SIGTERM for 20s:\n%s", s.logText())
	}
}

func (s *service) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.logs, "\n")
}

// client dials the service's gRPC port.
func (s *service) client(t *testing.T) (authv3.AuthorizationClient, healthpb.HealthClient) {
	t.Helper()
	conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn), healthpb.NewHealthClient(conn)
}

// waitServing polls the health service until SERVING.
func waitServing(t *testing.T, h healthpb.HealthClient) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never SERVING: %v %v", resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// api sends an admin/API request to the HTTP side.
func (s *service) api(t *testing.T, method, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.HTTPAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// runBinary runs flowlock-authz to completion (bounded to 20 s) and returns
// its combined output.
func runBinary(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "flowlock-authz"), args...)
	cmd.Env = append(os.Environ(), "FLOWLOCK_CONFIG=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
