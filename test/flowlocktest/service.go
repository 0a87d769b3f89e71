package flowlocktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// ListenTimeout is how long Start waits for the "listening" log line.
const ListenTimeout = 30 * time.Second

// Service is one running flowlock-authz serve.
type Service struct {
	*Process
	// The addresses from the "listening" log line; ForwardAuthAddr is
	// empty unless --forward-auth-addr was given.
	GRPCAddr, HTTPAddr, ForwardAuthAddr string
}

// Start runs bin (a built flowlock-authz) as
//
//	bin serve --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --log-format json --drain-delay 0s args...
//
// with FLOWLOCK_CONFIG empty (a later flag in args wins), and waits up to
// ListenTimeout for its JSON "listening" log line, which gives the
// addresses. It fails t if the process exits first or does not say it
// listens in time. The process is stopped by PID when t ends (see
// Process.Stop), and its log is shown if t failed.
func Start(t *testing.T, bin string, args ...string) *Service {
	t.Helper()
	return StartLimited(t, DefaultLimits, bin, args...)
}

// DefaultLimits bound every process Start and Run start: room for what the
// tests need (the Go runtime reserves address space generously), not for a
// runaway.
var DefaultLimits = Limits{AddressSpace: 4 << 30, OpenFiles: 4096}

// Limits bound a started process, so that a regression under attack-sized
// input fails the test instead of exhausting the machine. Zero fields leave
// the limit as inherited.
type Limits struct {
	// AddressSpace caps the process's virtual memory in bytes (RLIMIT_AS).
	// Go reserves address space generously: leave a few hundred MB above
	// the resident size expected.
	AddressSpace uint64
	// OpenFiles caps its open file descriptors (RLIMIT_NOFILE).
	OpenFiles uint64
}

// StartLimited is Start under lim, applied with prlimit(1) (util-linux),
// which execs bin: the process keeps one PID.
func StartLimited(t testing.TB, lim Limits, bin string, args ...string) *Service {
	t.Helper()
	// No drain delay: nothing routes by health here, and every stop would
	// wait it out. A test that wants one passes --drain-delay itself.
	args = append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "json", "--drain-delay", "0s"}, args...)
	cmd := LimitedCommand(lim, bin, args...)
	cmd.Env = append(os.Environ(), configEnv)

	listening := make(chan map[string]string, 1)
	found := false // lines come one at a time
	p := startProcess(t, cmd, func(line string) {
		if found {
			return
		}
		if rec, ok := listeningRecord(line); ok {
			found = true
			listening <- rec
		}
	})
	select {
	case rec := <-listening:
		return &Service{Process: p, GRPCAddr: rec["grpc_addr"], HTTPAddr: rec["http_addr"], ForwardAuthAddr: rec["forward_auth_addr"]}
	case <-p.Done():
		t.Fatalf("%s exited before listening", p.Name)
	case <-time.After(ListenTimeout):
		t.Fatalf("%s did not listen within %v", p.Name, ListenTimeout)
	}
	return nil
}

// LimitedCommand returns the command that runs bin with args under lim.
// The limits are inherited by bin's children, so a script run this way
// bounds what it starts too.
func LimitedCommand(lim Limits, bin string, args ...string) *exec.Cmd {
	name, argv := limitedArgs(lim, bin, args)
	return exec.Command(name, argv...)
}

// limitedArgs returns the program and arguments that run bin with args
// under lim: prlimit(1) in front, unless lim sets nothing.
func limitedArgs(lim Limits, bin string, args []string) (string, []string) {
	var pre []string
	if lim.AddressSpace > 0 {
		pre = append(pre, fmt.Sprintf("--as=%d", lim.AddressSpace))
	}
	if lim.OpenFiles > 0 {
		pre = append(pre, fmt.Sprintf("--nofile=%d", lim.OpenFiles))
	}
	if len(pre) == 0 {
		return bin, args
	}
	return "prlimit", append(append(pre, "--", bin), args...)
}

// SyncBuffer is a bytes.Buffer that a process's writers and the test may
// use at once.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ListeningRecord returns the string fields of line if it is the JSON
// "listening" log record (grpc_addr, http_addr, ...), for a harness that
// starts the service without a testing.T.
func ListeningRecord(line string) (map[string]string, bool) { return listeningRecord(line) }

// listeningRecord returns the string fields of line if it is the JSON
// "listening" log record.
func listeningRecord(line string) (map[string]string, bool) {
	var rec map[string]any
	if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "listening" {
		return nil, false
	}
	out := map[string]string{}
	for k, v := range rec {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out, true
}

// Dial returns a plaintext gRPC connection to the service, closed when t
// ends.
func (s *Service) Dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// RequestTimeout bounds one HTTP request a test sends to a process it
// started: a server that hangs fails that test, not the suite's deadline.
const RequestTimeout = 30 * time.Second

// HTTPClient is the client for requests to a process a test started:
// http.DefaultClient's behaviour with RequestTimeout. Not for streams
// (server-sent events), which the timeout would cut.
var HTTPClient = &http.Client{Timeout: RequestTimeout}

// API sends a request to the service's HTTP side, with the admin token
// as a bearer token unless token is empty, and a JSON body unless body is
// empty. It returns the status code and the response body; a request that
// gets no response fails t.
func (s *Service) API(t *testing.T, method, path, token, body string) (int, string) {
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
	resp, err := HTTPClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
