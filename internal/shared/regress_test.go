package shared_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/risk"
	"github.com/flowlock/flowlock/internal/wire"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/redisstore"
	"github.com/flowlock/flowlock/internal/redisstore/redistest"
)

// Issue 13: "hit counts are shared": refusals on one replica reach the
// others.
func TestHitsAreShared(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	now := time.Now()
	rs := following(t, srv.Addr, "h:", 2, now)
	a, b := rs[0], rs[1]
	id := addrID("198.51.100.9")
	if _, err := a.Policy.Ban(id, time.Hour, "test", now); err != nil {
		t.Fatal(err)
	}
	a.Replica.Tick(ctx, now)
	time.Sleep(200 * time.Millisecond)
	b.Replica.Tick(ctx, now) // as Run would: picks up the ban (pub/sub or resync)
	for i := 0; i < 10; i++ {
		if !decide(b, id, now.Add(time.Duration(i)*time.Millisecond)).Outcome.Denies() {
			t.Fatal("b does not deny")
		}
	}
	for i := 0; i < 5; i++ {
		b.Replica.Tick(ctx, now.Add(time.Second))
		a.Replica.Tick(ctx, now.Add(time.Second))
		time.Sleep(100 * time.Millisecond)
	}
	ea, _ := a.Quarantine.Check(id, now.Add(time.Second))
	eb, _ := b.Quarantine.Check(id, now.Add(time.Second))
	t.Logf("hits: replica a=%d replica b=%d", ea.Hits, eb.Hits)
	if ea.Hits != eb.Hits {
		t.Errorf("hit counts are not shared: a=%d b=%d", ea.Hits, eb.Hits)
	}
}

// Issue 13: "a replica restarted enforces every standing ban from Redis
// within a second of SERVING", with a shared list an attacker can grow:
// Start reads 60,000 bans before the replica serves (All pages with ZSCAN,
// not by offset).
func TestStartReadsALargeList(t *testing.T) {
	for _, n := range []int{60000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			srv := redistest.Start(t)
			ctx := context.Background()
			now := time.Now()
			prefix := fmt.Sprintf("L%d:", n)
			st, err := redisstore.Open(ctx, redisstore.Options{Addrs: []string{srv.Addr}, KeyPrefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for w := 0; w < 16; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := w; i < n; i += 16 {
						id := identity.FromAddr(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 64)
						k, _ := id.MarshalText()
						if _, err := st.Put(ctx, redisstore.Entry{ID: string(k), Since: now, Until: now.Add(time.Hour), Strikes: 1, Reason: "metronome", Score: 90}); err != nil {
							t.Error(err)
							return
						}
					}
				}(w)
			}
			wg.Wait()
			st.Close()
			r := stack(t, srv.Addr, prefix)
			sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			t0 := time.Now()
			err = r.Replica.Start(sctx, now)
			cancel()
			t.Logf("n=%d Start took %v err=%v; local list holds %d; status %+v", n, time.Since(t0), err, r.Quarantine.Len(), r.Replica.Status())
			if r.Quarantine.Len() != n || !r.Replica.Status().Connected {
				t.Errorf("after Start (before serving) the replica holds %d of %d bans, status %+v", r.Quarantine.Len(), n, r.Replica.Status())
			}
			// Keep ticking for 2 s as Run would.
			deadline := time.Now().Add(2 * time.Second)
			for time.Now().Before(deadline) {
				r.Replica.Tick(ctx, time.Now())
				time.Sleep(5 * time.Millisecond)
			}
			cs := srv.Info("commandstats")
			t.Logf("after 2 s of ticks: local list holds %d; status %+v; resyncs=%d; redis zrange: %s; hgetall: %s", r.Quarantine.Len(), r.Replica.Status(), r.Replica.Stats().Resyncs.Load(), cs["cmdstat_zrange"], cs["cmdstat_hgetall"])
			if r.Quarantine.Len() != n {
				t.Errorf("restarted replica enforces %d of %d standing bans", r.Quarantine.Len(), n)
			}
		})
	}
}

// A ban made just before the replica stops (the service's drain still
// serves the admin API) is written to Redis on the way out.
func TestBanAtShutdownIsWritten(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a := started(t, srv.Addr, "d:", time.Now())
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.Replica.Run(rctx); close(done) }()
	time.Sleep(100 * time.Millisecond)
	id := addrID("198.51.100.77")
	a.Policy.Ban(id, time.Hour, "operator", time.Now())
	cancel()
	<-done
	b := started(t, srv.Addr, "d:", time.Now())
	if _, ok := b.Quarantine.Check(id, time.Now()); !ok {
		t.Error("ban acknowledged on replica a just before shutdown never reached Redis")
	}
}

// Issue 13: "The riskiest identities and the explain view come from the
// merged state": a replica that had no Check for the identity lately reads
// its merged times when asked about it (Refresh, as the explain view does).
func TestRefreshFeedsAnIdentityAnotherReplicaSaw(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	start := time.Now()
	rs := following(t, srv.Addr, "e:", 2, start)
	a, b := rs[0], rs[1]
	bot := addrID("203.0.113.99")
	var now time.Time
	for i := 1; i <= 40; i++ {
		now = start.Add(time.Duration(i) * time.Second)
		a.Replica.Tick(ctx, now)
		b.Replica.Tick(ctx, now)
		decide(a, bot, now)
	}
	time.Sleep(100 * time.Millisecond)
	b.Replica.Refresh(ctx, bot, now) // what the explain view does
	_, qa := a.Quarantine.Check(bot, now)
	_, qb := b.Quarantine.Check(bot, now)
	va, oka := a.Engine.Peek(bot, now)
	vb, okb := b.Engine.Peek(bot, now)
	t.Logf("quarantined a=%v b=%v; engine state a=%v (score %d) b=%v (score %d); tracked a=%d b=%d", qa, qb, oka, va.Score, okb, vb.Score, a.Engine.Len(), b.Engine.Len())
	if !okb {
		t.Error("replica b has no merged timing state for an identity replica a saw: its riskiest list and explain view miss it")
	}
}

// Issue 13: "a release through replica 3 frees the client on 1": a release
// clears the identity's ring, so a replica that joins later does not
// replay the times from before the release and admit the client again.
func TestReleaseIsNotUndoneByAReplicaThatJoinsLater(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	start := time.Now().Add(-45 * time.Second)
	rs := following(t, srv.Addr, "r:", 2, start)
	a, b := rs[0], rs[1]
	bot := addrID("203.0.113.120")
	var now time.Time
	for i := 1; i <= 40; i++ {
		now = start.Add(time.Duration(i) * time.Second)
		decide(a, bot, now)
		a.Replica.Tick(ctx, now)
		b.Replica.Tick(ctx, now)
	}
	time.Sleep(100 * time.Millisecond)
	if _, ok := b.Quarantine.Check(bot, now); !ok {
		t.Fatal("setup: b does not hold the quarantine")
	}
	// The operator releases the client through a.
	now = time.Now()
	if !a.Policy.Release(bot, now) {
		t.Fatal("release failed")
	}
	a.Replica.Tick(ctx, now)
	time.Sleep(100 * time.Millisecond)
	now = time.Now()
	if _, ok := b.Quarantine.Check(bot, now); ok {
		ea, qa := a.Quarantine.Check(bot, now)
		eb, _ := b.Quarantine.Check(bot, now)
		out, _ := srv.CLI("--scan", "--pattern", "r:q*")
		t.Fatalf("b did not withdraw the release: a=%v %+v\n b=%+v\n redis=%q stats a=%+v", qa, ea, eb, out, a.Replica.Status())
	}
	// One ordinary request, 5 s later, lands on b.
	time.Sleep(time.Second)
	// b restarts (a rolling deploy, or a new replica scaling up).
	b = following(t, srv.Addr, "r:", 1, time.Now())[0]
	now = time.Now()
	d := decide(b, bot, now)
	t.Logf("first request after release on b: %v", d.Outcome)
	for i := 0; i < 3; i++ {
		b.Replica.Tick(ctx, now.Add(time.Duration(i)*time.Millisecond))
		a.Replica.Tick(ctx, now.Add(time.Duration(i)*time.Millisecond))
	}
	time.Sleep(100 * time.Millisecond)
	now = time.Now()
	ea, qa := a.Quarantine.Check(bot, now)
	eb, qb := b.Quarantine.Check(bot, now)
	t.Logf("after one request post-release: quarantined a=%v (since %v) b=%v (since %v)", qa, ea.Since.Sub(start), qb, eb.Since.Sub(start))
	if qa || qb {
		t.Error("the released client is quarantined again from request times before its release")
	}
}

// Issue 13 budget: "about one Redis command per Check or fewer". With many
// identities each sending a request now and then (people), a Check costs
// one script call to ship it and one to read it back once settled, not a
// poll every batch while it is pending.
func TestFewCommandsPerSparseCheck(t *testing.T) {
	srv := redistest.Start(t)
	s := stack(t, srv.Addr, "c:")
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Replica.Start(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = s.Replica.Run(ctx); close(done) }()
	time.Sleep(100 * time.Millisecond)
	evals := func() string { return srv.Info("commandstats")["cmdstat_evalsha"] }
	before := evals()
	const n = 1000
	for i := 0; i < n; i++ {
		id := identity.FromAddr(netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), 64)
		decide(s, id, time.Now())
		time.Sleep(time.Millisecond) // 1000 Checks/s, each from a different client
	}
	time.Sleep(300 * time.Millisecond)
	after := evals()
	cancel()
	<-done
	t.Logf("%d Checks from %d clients: evalsha before %q after %q", n, n, before, after)
	calls := func(stat string) int {
		v, _, _ := strings.Cut(strings.TrimPrefix(stat, "calls="), ",")
		c, _ := strconv.Atoi(v)
		return c
	}
	// One call ships the time, one asks for it once it has settled.
	if per := float64(calls(after)-calls(before)) / n; per > 2.5 {
		t.Errorf("%.1f script calls per sparse Check, want at most 2.5", per)
	}
}

// One bot, one quarantine, one admission counted over the fleet
// (flowlock_quarantine_admissions_total summed over the replicas).
func TestAdmissionCountedOnce(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	start := time.Now()
	var admits atomic.Int64
	mk := func() *wire.Stack {
		c := config.Default()
		c.RedisAddr, c.RedisKeyPrefix = srv.Addr, "n:"
		return wire.Build(c, wire.Extra{OnSharedAdmit: func(risk.Reason) { admits.Add(1) }})
	}
	rs := []*wire.Stack{mk(), mk(), mk()}
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	for _, s := range rs {
		if err := s.Replica.Start(ctx, start); err != nil {
			t.Fatal(err)
		}
		go s.Replica.Follow(fctx)
	}
	bot := addrID("203.0.113.200")
	for i := 1; i <= 60; i++ {
		now := start.Add(time.Duration(i) * 2 * time.Second)
		for _, s := range rs {
			s.Replica.Tick(ctx, now)
		}
		time.Sleep(2 * time.Millisecond)
		decide(rs[i%3], bot, now)
	}
	t.Logf("one bot quarantined once: admissions counted %d times over three replicas", admits.Load())
	if admits.Load() != 1 {
		t.Errorf("admissions counted %d times for one quarantine", admits.Load())
	}
}

// Issue 12's address flood, with Redis on: a flood of new identities fills
// a Redis with maxmemory and noeviction, and new timing rings are refused
// (the replicas fall back to local timing), but the quarantine's scripts
// run with allow-oom, so bans still reach every replica.
func TestBansPropagateWhileAFloodFillsRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Args("--maxmemory", "30mb", "--maxmemory-policy", "noeviction"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := stack(t, srv.Addr, "f:"), stack(t, srv.Addr, "f:")
	for _, s := range []*wire.Stack{a, b} {
		if err := s.Replica.Start(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
		go s.Replica.Run(ctx)
	}
	t0 := time.Now()
	n := 0
	for time.Since(t0) < 8*time.Second {
		for j := 0; j < floodPerTick; j++ {
			n++
			id := identity.FromAddr(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), 64)
			decide(a, id, time.Now())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	mem := srv.Info("memory")
	t.Logf("fallbacks=%d batches=%d failures=%d", a.Replica.Stats().Fallbacks.Load(), a.Replica.Stats().Batches.Load(), a.Replica.Stats().CallFailures.Load())
	t.Logf("%d new /64 identities in 8 s: redis used_memory_human=%s; replica a status %+v", n, mem["used_memory_human"], a.Replica.Status())
	victim := addrID("198.51.100.200")
	b.Policy.Ban(victim, time.Hour, "operator", time.Now())
	time.Sleep(time.Second)
	if _, ok := a.Quarantine.Check(victim, time.Now()); !ok {
		t.Errorf("a ban through b did not reach a within 1 s during the flood; b status %+v", b.Replica.Status())
	}
}

var floodPerTick = func() int {
	n, _ := strconv.Atoi(os.Getenv("FLOOD"))
	if n == 0 {
		n = 2000
	}
	return n
}()

// A ban on an identity already quarantined for longer keeps the end but
// sets Manual and the operator's reason, on every replica.
func TestBanOverALongerQuarantineIsShared(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	now := time.Now()
	rs := following(t, srv.Addr, "m:", 2, now)
	a, b := rs[0], rs[1]
	time.Sleep(100 * time.Millisecond)
	id := addrID("198.51.100.33")
	a.Policy.Ban(id, 2*time.Hour, "first", now)
	a.Replica.Tick(ctx, now)
	time.Sleep(100 * time.Millisecond)
	b.Policy.Ban(id, 10*time.Minute, "operator: confirmed scraper", now)
	b.Replica.Tick(ctx, now)
	time.Sleep(200 * time.Millisecond)
	a.Replica.Tick(ctx, now)
	ea, _ := a.Quarantine.Check(id, now)
	eb, _ := b.Quarantine.Check(id, now)
	t.Logf("a: reason %q; b: reason %q", ea.Reason, eb.Reason)
	if ea.Reason != eb.Reason {
		t.Errorf("replicas disagree on the quarantine's reason: a %q, b %q", ea.Reason, eb.Reason)
	}
}
