package replicas

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/redisstore/redistest"
	"github.com/flowlock/flowlock/test/flowlocktest"
)

// runToExit runs flowlock-authz with args until it exits (at most 20 s)
// and returns its output, failing t if it kept running or exited 0.
func runToExit(t *testing.T, args ...string) string {
	t.Helper()
	args = append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--drain-delay", "0s"}, args...)
	out, err := flowlocktest.Run(20*time.Second, "", flowlocktest.Bin("flowlock-authz"), args...)
	if err == nil {
		t.Fatalf("flowlock-authz %q exited 0, want a startup error:\n%s", args, out)
	}
	return out
}

// TestBadRedisStopsStartupWithTheSetting: a wrong password, a port that
// is not Redis and keys of an unknown format version each stop startup with
// a message naming what to fix, and never print the password.
func TestBadRedisStopsStartupWithTheSetting(t *testing.T) {
	redis := redistest.Start(t, redistest.Args("--requirepass", "right-password-123"))
	dir := t.TempDir()
	wrong := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrong, []byte("wrong-password-456\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := runToExit(t, "--redis-addr", redis.Addr, "--redis-password-file", wrong)
	if !strings.Contains(out, "--redis-password-file") || strings.Contains(out, "wrong-password-456") {
		t.Errorf("wrong password: want a message naming --redis-password-file and not the password:\n%s", out)
	}

	// An HTTP server is not Redis.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
			c.Close()
		}
	}()
	out = runToExit(t, "--redis-addr", l.Addr().String())
	if !strings.Contains(out, "--redis-addr") || !strings.Contains(out, "Redis protocol") {
		t.Errorf("not Redis: want a message naming --redis-addr:\n%s", out)
	}

	// Keys written by a newer format are refused, not misread.
	plain := redistest.Start(t)
	if _, err := plain.CLI("SET", "flowlock:format", "99"); err != nil {
		t.Fatal(err)
	}
	out = runToExit(t, "--redis-addr", plain.Addr)
	if !strings.Contains(out, "format") || !strings.Contains(out, "flowlock:") {
		t.Errorf("unknown format: want a message naming the key and the prefix:\n%s", out)
	}
}

// TestUnreachableRedisStartsOnLocalState: nothing listening at
// --redis-addr is not a crash: the service starts, serves, says it falls
// back, and shares state once Redis appears.
func TestUnreachableRedisStartsOnLocalState(t *testing.T) {
	port := redistest.FreePort(t, false)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	r := startReplica(t, addr)
	if code, body := r.API(t, "GET", "/readyz", "", ""); code != 200 || !strings.Contains(body, "local fallback") {
		t.Errorf("/readyz = %d %q, want 200 saying local fallback", code, body)
	}
	if d, _, err := r.check(t, "203.0.113.40"); err != nil || d {
		t.Fatalf("Check with Redis unreachable: denied %v, err %v", d, err)
	}
	redistest.StartOn(t, port)
	waitFor(t, 10*time.Second, "the replica connects once Redis appears", func() bool {
		_, body := r.API(t, "GET", "/readyz", "", "")
		return strings.Contains(body, "redis connected")
	})
}
