package redisstore

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/redisstore/redistest"
)

// deadline is the background deadline the caller uses; slack is how late
// a call may return on a busy machine. (Five engineers' tests share two
// cores: 400 ms of scheduling delay has been seen. The stalls this test
// catches are a second, rueidis closing a connection to a hung peer, or
// the 2 s dial timeout.)
const (
	deadline = 5 * time.Millisecond
	slack    = 500 * time.Millisecond
)

// TestCallsEndAtTheDeadline shows that a hung or dead Redis costs a call
// its deadline, never more: the property the caller's fallback rests on.
func TestCallsEndAtTheDeadline(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, Options{Addrs: []string{srv.Addr}, DialTimeout: 500 * time.Millisecond})
	calls := map[string]func(ctx context.Context) error{
		"merge": func(ctx context.Context) error {
			_, err := s.Merge(ctx, []Observation{{ID: "x", Times: []int64{us(0, 0)}}})
			return err
		},
		"put": func(ctx context.Context) error {
			_, err := s.Put(ctx, entryAt("x", time.Now(), time.Minute, 1))
			return err
		},
		"all":  func(ctx context.Context) error { _, err := s.All(ctx, time.Now()); return err },
		"ping": s.Ping,
	}
	check := func(state string) {
		t.Helper()
		for name, call := range calls {
			ctx, cancel := context.WithTimeout(t.Context(), deadline)
			start := time.Now()
			err := call(ctx)
			took := time.Since(start)
			cancel()
			if err == nil {
				t.Errorf("%s with Redis %s: no error", name, state)
			}
			if took > deadline+slack {
				t.Errorf("%s with Redis %s took %v, want at most %v + %v", name, state, took, deadline, slack)
			}
		}
	}

	// Hung: the process is stopped, the socket stays open.
	if err := srv.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Long enough for the connection's keep-alive to give up on the hung
	// peer (ConnWriteTimeout, here the 500 ms DialTimeout): the calls
	// after that dial a new connection, whose handshake never completes.
	for start := time.Now(); time.Since(start) < 1500*time.Millisecond; {
		check("hung")
		time.Sleep(20 * time.Millisecond)
	}
	if err := srv.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	retry(t, func() error {
		_, err := s.Merge(t.Context(), []Observation{{ID: "x"}})
		return err
	})

	// Reconnecting to a hung Redis: the connections are cut, then Redis
	// hangs. The kernel still accepts the new connection; the handshake
	// is never answered.
	if _, err := srv.CLI("CLIENT", "KILL", "TYPE", "normal"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		check("hung, reconnecting")
	}
	if err := srv.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	// Dead: killed, the port refuses.
	srv.Kill()
	check("dead")
}
