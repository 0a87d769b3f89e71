package redisstore

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/redisstore/redistest"
)

// open opens a store on addrs with test-friendly options, closed at the end.
func open(t testing.TB, o Options) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, o)
	if err != nil {
		t.Fatalf("Open(%v): %v", o, err)
	}
	t.Cleanup(s.Close)
	return s
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestOpenErrorsNameTheSetting(t *testing.T) {
	srv := redistest.Start(t, redistest.Args("--requirepass", "right-secret"))

	// A port that accepts and answers something other than Redis.
	foreign, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = foreign.Close() }()
	go func() {
		for {
			c, err := foreign.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
			_ = c.Close()
		}
	}()
	closed := "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t, false))

	tests := []struct {
		name    string
		o       Options
		want    error
		setting string
	}{
		{"wrong password", Options{Addrs: []string{srv.Addr}, Password: "wrong-secret"}, ErrAuth, "--redis-password-file"},
		{"no password", Options{Addrs: []string{srv.Addr}}, ErrAuth, "--redis-password-file"},
		{"not redis", Options{Addrs: []string{foreign.Addr().String()}}, ErrNotRedis, "--redis-addr"},
		{"unreachable", Options{Addrs: []string{closed}, DialTimeout: 500 * time.Millisecond}, ErrUnreachable, "--redis-addr"},
		{"prefix with brace", Options{Addrs: []string{srv.Addr}, KeyPrefix: "a{b"}, nil, "--redis-key-prefix"},
		{"no port", Options{Addrs: []string{"localhost"}}, nil, "--redis-addr"},
		{"ca without tls", Options{Addrs: []string{srv.Addr}, CAFile: "/nonexistent"}, nil, "--redis-ca-file"},
		{"missing ca file", Options{Addrs: []string{srv.Addr}, TLS: true, CAFile: "/nonexistent/ca.pem"}, nil, "--redis-ca-file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			start := time.Now()
			s, err := Open(ctx, tc.o)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded, want an error")
			}
			t.Log(err)
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Open: %v, want errors.Is %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.setting) {
				t.Errorf("Open: %q does not name %s", err, tc.setting)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("Open: %q leaks the password", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Open took %v", d)
			}
		})
	}

	t.Run("right password", func(t *testing.T) {
		s := open(t, Options{Addrs: []string{srv.Addr}, Password: "right-secret"})
		if err := s.Ping(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestOptionsStringRedactsPassword(t *testing.T) {
	got := Options{Addrs: []string{"a:1"}, Password: "hunter2"}.String()
	if strings.Contains(got, "hunter2") || !strings.Contains(got, "[redacted]") {
		t.Errorf("String() = %q", got)
	}
}

func TestOpenRefusesAnotherFormat(t *testing.T) {
	srv := redistest.Start(t)
	// The first Open writes the version; a second one reads it.
	open(t, Options{Addrs: []string{srv.Addr}})
	if out, err := srv.CLI("GET", "flowlock:format"); err != nil || strings.TrimSpace(out) != "1" {
		t.Fatalf("format key = %q, %v; want 1", out, err)
	}
	open(t, Options{Addrs: []string{srv.Addr}})

	if _, err := srv.CLI("SET", "flowlock:format", "2"); err != nil {
		t.Fatal(err)
	}
	_, err := Open(ctxT(t), Options{Addrs: []string{srv.Addr}})
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), `"2"`) || !strings.Contains(err.Error(), "--redis-key-prefix") {
		t.Fatalf("Open over format 2: %v, want ErrFormat naming the version and --redis-key-prefix", err)
	}
	// Another prefix is another store.
	open(t, Options{Addrs: []string{srv.Addr}, KeyPrefix: "other:"})
}

// us returns Unix microseconds for second s and microsecond u of a fixed day.
func us(s, u int64) int64 { return 1_796_000_000_000_000 + s*1_000_000 + u }

func TestMergeTwoReplicasSeeOneStreamInRequestOrder(t *testing.T) {
	srv := redistest.Start(t)
	a := open(t, Options{Addrs: []string{srv.Addr}})
	b := open(t, Options{Addrs: []string{srv.Addr}})
	ctx := ctxT(t)
	const id = "203.0.113.7"

	// Each replica keeps its own After, as the caller would.
	var afterA, afterB int64
	var fedA, fedB []int64
	feed := func(s *Store, after *int64, fed *[]int64, times ...int64) {
		t.Helper()
		got, err := s.Merge(ctx, []Observation{{ID: id, After: *after, Times: times}})
		if err != nil {
			t.Fatal(err)
		}
		for _, ts := range got[0].Times {
			if ts <= *after {
				t.Fatalf("Merge returned %d, not after %d", ts, *after)
			}
			*after = ts
			*fed = append(*fed, ts)
		}
	}
	feed(a, &afterA, &fedA, us(0, 0), us(2, 0))
	feed(b, &afterB, &fedB, us(1, 0), us(3, 0)) // b sees a's too, interleaved
	feed(a, &afterA, &fedA, us(4, 0))           // a gets b's 3, and its 4
	feed(b, &afterB, &fedB, us(2, 0))           // the same microsecond from b: both count
	feed(a, &afterA, &fedA)                     // nothing new: a polls
	feed(b, &afterB, &fedB, us(5, 0))
	feed(a, &afterA, &fedA, us(3, 500)) // late: older than a's After; stored, not returned to a

	wantB := []int64{us(0, 0), us(1, 0), us(2, 0), us(3, 0), us(4, 0), us(5, 0)}
	if !slices.Equal(fedB, wantB) {
		t.Errorf("replica b fed %v\nwant %v", fedB, wantB)
	}
	// a never gets b's 1: it reached Redis after a had fed 2, so it is a
	// late time for a (stored, counted by b, not replayed to a).
	wantA := []int64{us(0, 0), us(2, 0), us(3, 0), us(4, 0), us(5, 0)}
	if !slices.Equal(fedA, wantA) {
		t.Errorf("replica a fed %v\nwant %v", fedA, wantA)
	}
	// Redis holds all eight, the same microsecond twice.
	got, err := a.Merge(ctx, []Observation{{ID: id}})
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{us(0, 0), us(1, 0), us(2, 0), us(2, 0), us(3, 0), us(3, 500), us(4, 0), us(5, 0)}
	if !slices.Equal(got[0].Times, want) {
		t.Errorf("stored %v\nwant %v", got[0].Times, want)
	}
}

func TestMergeBatchKeepsOrderAndIdentitiesApart(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, Options{Addrs: []string{srv.Addr}})
	// Identities of arbitrary bytes, one a prefix of another, braces.
	ids := []string{"a", "ab", "{a}", "key{with}braces", "\x00\xff", strings.Repeat("x", 300)}
	batch := make([]Observation, len(ids))
	for i, id := range ids {
		batch[i] = Observation{ID: id, Times: []int64{us(int64(i), 2), us(int64(i), 1)}}
	}
	got, err := s.Merge(ctxT(t), batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range got {
		want := []int64{us(int64(i), 1), us(int64(i), 2)}
		if m.ID != ids[i] || !slices.Equal(m.Times, want) {
			t.Errorf("got[%d] = %q %v, want %q %v", i, m.ID, m.Times, ids[i], want)
		}
	}
}

func TestMergeCapsTheRingAndRefreshesTTL(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, Options{Addrs: []string{srv.Addr}, RingSize: 8, IdleTTL: 5 * time.Second})
	ctx := ctxT(t)
	var times []int64
	for i := range 20 {
		times = append(times, us(int64(i), 0))
	}
	if _, err := s.Merge(ctx, []Observation{{ID: "c", Times: times[:12]}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Merge(ctx, []Observation{{ID: "c", Times: times[12:]}})
	if err != nil {
		t.Fatal(err)
	}
	if want := times[12:]; !slices.Equal(got[0].Times, want) {
		t.Errorf("ring = %v\nwant the newest 8 %v", got[0].Times, want)
	}
	key := s.keys.timingKey("c")
	if out, _ := srv.CLI("ZCARD", key); strings.TrimSpace(out) != "8" {
		t.Errorf("ZCARD = %q, want 8", out)
	}
	if out, _ := srv.CLI("OBJECT", "ENCODING", key); strings.TrimSpace(out) != "listpack" {
		t.Errorf("encoding = %q, want listpack", out)
	}
	if _, err := srv.CLI("PEXPIRE", key, "100"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Merge(ctx, []Observation{{ID: "c"}}); err != nil {
		t.Fatal(err)
	}
	ttl, _ := srv.CLI("PTTL", key)
	if n, _ := strconv.Atoi(strings.TrimSpace(ttl)); n < 4000 || n > 5000 {
		t.Errorf("PTTL after Merge = %q, want the idle TTL of 5s refreshed", ttl)
	}
}

func TestMergeRejectsTimesOutOfRange(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, Options{Addrs: []string{srv.Addr}})
	for _, ts := range []int64{0, -1, MaxTime + 1} {
		if _, err := s.Merge(ctxT(t), []Observation{{ID: "x", Times: []int64{ts}}}); err == nil {
			t.Errorf("Merge(%d) succeeded", ts)
		}
	}
}

func TestMergeReloadsScriptAfterRestart(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, Options{Addrs: []string{srv.Addr}})
	if _, err := s.Merge(ctxT(t), []Observation{{ID: "x", Times: []int64{us(0, 0)}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.CLI("SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Merge(ctxT(t), []Observation{{ID: "x", Times: []int64{us(1, 0)}}, {ID: "y", Times: []int64{us(2, 0)}}})
	if err != nil {
		t.Fatalf("Merge after SCRIPT FLUSH: %v", err)
	}
	if len(got[0].Times) != 2 || len(got[1].Times) != 1 {
		t.Errorf("got %v", got)
	}
}

func TestMergeHoldsBackTimesNotYetSettled(t *testing.T) {
	srv := redistest.Start(t)
	a := open(t, Options{Addrs: []string{srv.Addr}})
	b := open(t, Options{Addrs: []string{srv.Addr}})
	ctx := ctxT(t)
	const id = "flood"
	// a ships 0, 2, 4 at clock 5 with a settle window of 2: it may pass
	// only what is older than 3, and must wait for the rest.
	got, err := a.Merge(ctx, []Observation{{ID: id, Before: us(3, 0), Times: []int64{us(0, 0), us(2, 0), us(4, 0)}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{us(0, 0), us(2, 0)}; !slices.Equal(got[0].Times, want) || got[0].Pending != 1 {
		t.Fatalf("a got %v pending %d, want %v pending 1", got[0].Times, got[0].Pending, want)
	}
	// b ships 3, which it saw before a's 4 but shipped later.
	if _, err := b.Merge(ctx, []Observation{{ID: id, Before: us(3, 0), Times: []int64{us(3, 0)}}}); err != nil {
		t.Fatal(err)
	}
	// a polls at clock 7: it gets 3 and 4 in order, nothing skipped.
	got, err = a.Merge(ctx, []Observation{{ID: id, After: us(2, 0), Before: us(5, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{us(3, 0), us(4, 0)}; !slices.Equal(got[0].Times, want) || got[0].Pending != 0 {
		t.Fatalf("a got %v pending %d, want %v pending 0", got[0].Times, got[0].Pending, want)
	}
}

// TestEpoch: every store on one Redis reads the same epoch, and a Redis
// that lost its data answers a new one.
func TestEpoch(t *testing.T) {
	srv := redistest.Start(t)
	a := open(t, Options{Addrs: []string{srv.Addr}})
	b := open(t, Options{Addrs: []string{srv.Addr}})
	ctx := context.Background()
	ea, err := a.Epoch(ctx)
	if err != nil || ea == "" {
		t.Fatalf("Epoch = %q, %v", ea, err)
	}
	if eb, err := b.Epoch(ctx); err != nil || eb != ea {
		t.Fatalf("second store's epoch = %q, %v; want %q", eb, err, ea)
	}
	if _, err := srv.CLI("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	if again, err := a.Epoch(ctx); err != nil || again == ea {
		t.Fatalf("epoch after FLUSHALL = %q, %v; want a new one", again, err)
	}
}
