package shared_test

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/redisstore/redistest"
	"github.com/flowlock/flowlock/internal/wire"
)

// stack builds a decision stack sharing state through redisAddr, with its
// own key prefix per test.
func stack(t testing.TB, redisAddr, prefix string) *wire.Stack {
	t.Helper()
	c := config.Default()
	c.RedisAddr, c.RedisKeyPrefix = redisAddr, prefix
	return wire.Build(c, wire.Extra{})
}

// started builds a stack sharing state through redisAddr under prefix and
// starts its replica at now.
func started(t testing.TB, redisAddr, prefix string, now time.Time) *wire.Stack {
	t.Helper()
	s := stack(t, redisAddr, prefix)
	if err := s.Replica.Start(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	return s
}

// following starts n replicas at now, each following the others'
// quarantine changes (pub/sub) until t ends.
func following(t testing.TB, redisAddr, prefix string, n int, now time.Time) []*wire.Stack {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	rs := make([]*wire.Stack, n)
	for i := range rs {
		rs[i] = started(t, redisAddr, prefix, now)
		go rs[i].Replica.Follow(ctx)
	}
	return rs
}

func addrID(s string) identity.ID { return identity.FromAddr(netip.MustParseAddr(s), 64) }

// decide sends one request of id at now to s.
func decide(s *wire.Stack, id identity.ID, now time.Time) authz.Decision {
	return s.Policy.Decide(authz.Request{Client: authz.Client{ID: id}, Path: "/data", Now: now})
}

// TestVirtualReplicasMergeInOrder drives three replicas in virtual time,
// each request of a 2 s metronome going to the next replica in turn: each
// replica alone would see a 6 s rhythm with a third of the requests; the
// merged stream catches it at the request a single replica would, and all
// three hold the same quarantine.
func TestVirtualReplicasMergeInOrder(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	// Virtual time from now on: pub/sub applies what is standing by the
	// clock, and these quarantines stand for minutes.
	start := time.Now()
	rs := []*wire.Stack{stack(t, srv.Addr, "v1:"), stack(t, srv.Addr, "v1:"), stack(t, srv.Addr, "v1:")}
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	for _, s := range rs {
		if err := s.Replica.Start(ctx, start); err != nil {
			t.Fatal(err)
		}
		go s.Replica.Follow(fctx)
	}
	alone := wire.Build(config.Default(), wire.Extra{})
	bot := addrID("203.0.113.5")

	firstAlone, firstShared := 0, 0
	for i := 1; i <= 100 && (firstAlone == 0 || firstShared == 0); i++ {
		now := start.Add(time.Duration(i) * 2 * time.Second)
		for _, s := range rs {
			s.Replica.Tick(ctx, now)
		}
		time.Sleep(2 * time.Millisecond) // pub/sub: a replica's admission reaches the others
		if d := decide(alone, bot, now); firstAlone == 0 && d.Outcome.Denies() {
			firstAlone = i
		}
		if d := decide(rs[i%3], bot, now); firstShared == 0 && d.Outcome.Denies() {
			firstShared = i
		}
	}
	t.Logf("2 s metronome: denied at request %d alone, %d over three replicas in turn", firstAlone, firstShared)
	// A decision lags its evidence by a batch: one request here.
	if firstAlone == 0 || firstShared == 0 || firstShared > firstAlone+1 {
		t.Fatalf("denied at %d over three replicas, %d alone", firstShared, firstAlone)
	}
	now := start.Add(101 * 2 * time.Second)
	for i, s := range rs {
		if _, ok := s.Quarantine.Check(bot, now); !ok {
			t.Errorf("replica %d does not hold the quarantine", i+1)
		}
	}
	if got := rs[0].Replica.Stats().Batches.Load(); got == 0 {
		t.Error("no batch reached Redis")
	}
}

// TestUnreachableRedisFallsBackLocally: with nothing listening, Start
// succeeds on local state, and the replica decides on its own requests.
func TestUnreachableRedisFallsBackLocally(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing answers there now
	s := stack(t, addr, "u:")
	ctx := context.Background()
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := s.Replica.Start(sctx, start); err != nil {
		t.Fatalf("Start with Redis unreachable = %v, want nil (local fallback)", err)
	}
	if st := s.Replica.Status(); st.Connected || st.Err == "" {
		t.Errorf("status = %+v, want disconnected with the reason", st)
	}
	bot := addrID("203.0.113.6")
	denied := 0
	for i := 1; i <= 60 && denied == 0; i++ {
		now := start.Add(time.Duration(i) * time.Second)
		s.Replica.Tick(ctx, now)
		if decide(s, bot, now).Outcome.Denies() {
			denied = i
		}
	}
	if denied == 0 || denied > 20 {
		t.Fatalf("a 1 s metronome on local fallback denied at %d, want by 20", denied)
	}
	if s.Replica.Stats().Fallbacks.Load() == 0 {
		t.Error("no batch counted as fallback")
	}
}

// TestStartWritesWhatTheReplicaHeld: a quarantine restored before Start
// (from --state-file) is written to Redis, so a replica started next holds
// it too, and a quarantine released elsewhere while a replica was away is
// withdrawn at its resync.
func TestStartWritesWhatTheReplicaHeld(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	now := time.Now()
	a := stack(t, srv.Addr, "s:")
	kept, gone := addrID("192.0.2.1"), addrID("192.0.2.2")
	a.Quarantine.Ban(kept, now, time.Hour, "restored")
	a.Quarantine.Ban(gone, now, time.Hour, "restored")
	if err := a.Replica.Start(ctx, now); err != nil {
		t.Fatal(err)
	}
	b := started(t, srv.Addr, "s:", now)
	// On a loaded machine a's Start may not finish writing within its
	// budget: it keeps the entries to write and its next Tick writes them.
	// Nothing may be lost either way; wait for it, boundedly.
	deadline := time.Now().Add(10 * time.Second)
	for _, id := range []identity.ID{kept, gone} {
		for {
			if _, ok := b.Quarantine.Check(id, now); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica b lacks %v after Start", id)
			}
			time.Sleep(10 * time.Millisecond)
			a.Replica.Tick(ctx, now)
			b.Replica.Sync(ctx, now)
		}
	}
	// b releases one; a, which missed the event, withdraws it at a resync.
	b.Policy.Release(gone, now)
	b.Replica.Tick(ctx, now)
	a.Replica.Sync(ctx, now)
	if _, ok := a.Quarantine.Check(gone, now); ok {
		t.Error("a still holds the quarantine released through b")
	}
	if _, ok := a.Quarantine.Check(kept, now); !ok {
		t.Error("a lost the quarantine nobody released")
	}
}

// BenchmarkDecide puts the Check path's decision with state shared through
// Redis beside the local-only stack, in the same run, over 10,000 clients,
// and reports Redis commands per Check (INFO commandstats, with the
// replica shipping in the background as the service does).
func BenchmarkDecide(b *testing.B) {
	ids := make([]identity.ID, 10_000)
	for i := range ids {
		ids[i] = identity.FromAddr(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 64)
	}
	run := func(b *testing.B, s *wire.Stack) {
		var n atomic.Uint64
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				decide(s, ids[i%uint64(len(ids))], time.Now())
			}
		})
	}
	b.Run("local", func(b *testing.B) { run(b, wire.Build(config.Default(), wire.Extra{})) })
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		s := stack(b, srv.Addr, "b:")
		ctx, cancel := context.WithCancel(context.Background())
		if err := s.Replica.Start(ctx, time.Now()); err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = s.Replica.Run(ctx); close(done) }()
		before := commands(b, srv)
		run(b, s)
		time.Sleep(50 * time.Millisecond) // the last batches
		b.StopTimer()
		b.ReportMetric(float64(commands(b, srv)-before)/float64(b.N), "redis-cmds/check")
		cancel()
		<-done
	})
}

// commands counts the commands clients sent srv (not those its scripts
// ran, nor INFO).
func commands(b *testing.B, srv *redistest.Server) int64 {
	b.Helper()
	var n int64
	for k, v := range srv.Info("commandstats") {
		if !strings.HasPrefix(k, "cmdstat_") || k == "cmdstat_info" {
			continue
		}
		switch k {
		case "cmdstat_evalsha", "cmdstat_eval", "cmdstat_ping", "cmdstat_hello", "cmdstat_publish",
			"cmdstat_subscribe", "cmdstat_get", "cmdstat_set", "cmdstat_client|setinfo", "cmdstat_client|setname":
			calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
			c, _ := strconv.ParseInt(calls, 10, 64)
			n += c
		}
	}
	return n
}

// TestRedisThatLostItsDataGetsItBack: a Redis restarted empty (or
// flushed) is not taken as "every quarantine was released": the replicas
// write back what they hold.
func TestRedisThatLostItsDataGetsItBack(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	now := time.Now()
	a, b := started(t, srv.Addr, "e:", now), started(t, srv.Addr, "e:", now)
	bot := addrID("192.0.2.9")
	a.Policy.Ban(bot, time.Hour, "test", now)
	a.Replica.Tick(ctx, now)
	b.Replica.Sync(ctx, now)
	if _, ok := b.Quarantine.Check(bot, now); !ok {
		t.Fatal("b did not get a's ban")
	}
	if _, err := srv.CLI("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	b.Replica.Sync(ctx, now) // sees a new epoch: writes back
	a.Replica.Sync(ctx, now)
	for name, s := range map[string]*wire.Stack{"a": a, "b": b} {
		if _, ok := s.Quarantine.Check(bot, now); !ok {
			t.Errorf("replica %s dropped the ban after Redis lost its data", name)
		}
	}
	c := started(t, srv.Addr, "e:", now)
	if _, ok := c.Quarantine.Check(bot, now); !ok {
		t.Error("a replica started after the loss does not get the ban written back")
	}
}
