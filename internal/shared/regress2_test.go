package shared_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/risk"
	"github.com/flowlock/flowlock/internal/wire"

	"github.com/flowlock/flowlock/internal/redisstore/redistest"
)

// A second quarantine of the same identity: b's refusals must reach a, as
// in the first. hitsBase is keyed by identity and survives the release.
func TestHitsOfASecondQuarantineAreShared(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	now := time.Now()
	rs := following(t, srv.Addr, "rh:", 2, now)
	a, b := rs[0], rs[1]
	id := addrID("198.51.100.9")
	round := func(at time.Time, refusals int) {
		t.Helper()
		if _, err := a.Policy.Ban(id, time.Hour, "test", at); err != nil {
			t.Fatal(err)
		}
		a.Replica.Tick(ctx, at)
		time.Sleep(200 * time.Millisecond)
		b.Replica.Tick(ctx, at)
		for i := 0; i < refusals; i++ {
			if !decide(b, id, at.Add(time.Duration(i)*time.Millisecond)).Outcome.Denies() {
				t.Fatal("b does not deny")
			}
		}
		for i := 0; i < 3; i++ {
			b.Replica.Tick(ctx, at.Add(time.Duration(i+1)*time.Second))
			a.Replica.Tick(ctx, at.Add(time.Duration(i+1)*time.Second))
			time.Sleep(100 * time.Millisecond)
		}
	}
	round(now, 10)
	ea, _ := a.Quarantine.Check(id, now.Add(4*time.Second))
	eb, _ := b.Quarantine.Check(id, now.Add(4*time.Second))
	t.Logf("first quarantine: a=%d b=%d", ea.Hits, eb.Hits)

	later := now.Add(10 * time.Second)
	a.Policy.Release(id, later)
	a.Replica.Tick(ctx, later)
	time.Sleep(200 * time.Millisecond)
	b.Replica.Tick(ctx, later)
	if _, ok := b.Quarantine.Check(id, later); ok {
		t.Fatal("release did not reach b")
	}
	round(later.Add(time.Second), 5)
	at := later.Add(5 * time.Second)
	ea, _ = a.Quarantine.Check(id, at)
	eb, _ = b.Quarantine.Check(id, at)
	t.Logf("second quarantine: a=%d b=%d", ea.Hits, eb.Hits)
	if ea.Hits != eb.Hits {
		t.Errorf("second quarantine's refusals not shared: a=%d b=%d", ea.Hits, eb.Hits)
	}
}

// Redis down: a bot is quarantined on local state, but the admission is not
// counted (flowlock_quarantine_admissions_total) until Redis returns, and
// never if the quarantine ends before that.
func TestAdmissionCountedWhileRedisIsAway(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var admits atomic.Int64
	c := config.Default()
	c.RedisAddr, c.RedisKeyPrefix = addr, "ad:"
	s := wire.Build(c, wire.Extra{OnSharedAdmit: func(risk.Reason) { admits.Add(1) }})
	ctx := context.Background()
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := s.Replica.Start(sctx, start); err != nil {
		t.Fatal(err)
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
	for i := 0; i < 5; i++ {
		s.Replica.Tick(ctx, start.Add(time.Duration(61+i)*time.Second))
	}
	t.Logf("denied at request %d; admissions counted: %d", denied, admits.Load())
	if denied == 0 || admits.Load() != 1 {
		t.Errorf("quarantined on local state but %d admissions counted, want 1", admits.Load())
	}
}

// Shutdown: the refusals b counted since its last hits round (up to 1 s of
// them) are never added to the shared count.
func TestFinalWritesTheLastRefusals(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	now := time.Now()
	a := following(t, srv.Addr, "fh:", 1, now)[0]
	b := started(t, srv.Addr, "fh:", now) // its Run follows
	id := addrID("198.51.100.10")
	if _, err := a.Policy.Ban(id, time.Hour, "test", now); err != nil {
		t.Fatal(err)
	}
	a.Replica.Tick(ctx, now)
	bctx, bstop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { b.Replica.Run(bctx); close(done) }()
	time.Sleep(300 * time.Millisecond) // b follows and applies the ban, first hits round done
	for i := 0; i < 7; i++ {
		if !decide(b, id, time.Now()).Outcome.Denies() {
			t.Fatal("b does not deny")
		}
	}
	time.Sleep(50 * time.Millisecond) // a few Ticks, well within hitsEvery
	bstop()
	<-done
	time.Sleep(300 * time.Millisecond)
	ea, _ := a.Quarantine.Check(id, time.Now())
	eb, _ := b.Quarantine.Check(id, time.Now())
	t.Logf("after b's shutdown: a=%d b=%d", ea.Hits, eb.Hits)
	if ea.Hits != eb.Hits {
		t.Errorf("b's last refusals lost at shutdown: a=%d b=%d", ea.Hits, eb.Hits)
	}
}
