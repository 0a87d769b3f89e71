package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/redisstore/redistest"
)

// entryAt returns an automatic quarantine of id from now for ttl. Tests
// use the wall clock: Redis expires entries by it.
func entryAt(id string, now time.Time, ttl time.Duration, strikes int) Entry {
	return Entry{ID: id, Since: now, Until: now.Add(ttl), Strikes: strikes, Reason: "metronome", Score: 97}
}

// sameEntry compares entries at microsecond precision.
func sameEntry(a, b Entry) bool {
	return a.ID == b.ID && a.Since.UnixMicro() == b.Since.UnixMicro() && a.Until.UnixMicro() == b.Until.UnixMicro() &&
		a.Strikes == b.Strikes && a.Reason == b.Reason && a.Score == b.Score && a.Manual == b.Manual && a.Hits == b.Hits
}

func TestPutMergesLaterUntilAndMoreStrikes(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, Options{Addrs: []string{srv.Addr}})
	ctx := ctxT(t)
	now := time.Now().Truncate(time.Microsecond)
	id := "bot{1}\x00"

	first := entryAt(id, now, time.Minute, 1)
	if got, err := s.Put(ctx, first); err != nil || !sameEntry(got, first) {
		t.Fatalf("Put(first) = %+v, %v; want %+v", got, err, first)
	}
	// A replica with a stale view admits again: shorter, but more strikes.
	shorter := entryAt(id, now.Add(time.Second), 30*time.Second, 2)
	shorter.Reason = "other"
	got, err := s.Put(ctx, shorter)
	if err != nil {
		t.Fatal(err)
	}
	want := first
	want.Strikes = 2
	if !sameEntry(got, want) {
		t.Errorf("after a shorter Put:\n got %+v\nwant %+v (later until kept, larger strikes)", got, want)
	}
	// An operator extends it with a manual ban.
	ban := Entry{ID: id, Since: now.Add(2 * time.Second), Until: now.Add(time.Hour), Reason: "operator", Manual: true}
	got, err = s.Put(ctx, ban)
	if err != nil {
		t.Fatal(err)
	}
	want = ban
	want.Strikes = 2
	if !sameEntry(got, want) {
		t.Errorf("after a ban:\n got %+v\nwant %+v", got, want)
	}
	// The entry key ends with the quarantine.
	ttl, _ := srv.CLI("PTTL", s.keys.qEntry+idHash(id))
	if !strings.HasPrefix(strings.TrimSpace(ttl), "3") || len(strings.TrimSpace(ttl)) != 7 {
		t.Errorf("PTTL of the entry = %q, want about an hour", ttl)
	}
	all, err := s.All(ctx, time.Now())
	if err != nil || len(all) != 1 || !sameEntry(all[0], want) {
		t.Errorf("All = %+v, %v; want [%+v]", all, err, want)
	}
}

func TestPutConcurrentAdmissionsLoseNothing(t *testing.T) {
	srv := redistest.Start(t)
	const replicas = 4
	stores := make([]*Store, replicas)
	for i := range stores {
		stores[i] = open(t, Options{Addrs: []string{srv.Addr}})
	}
	ctx := ctxT(t)
	now := time.Now().Truncate(time.Microsecond)
	// Every replica admits the same 50 identities at once, each with its
	// own until and strikes; the merged entry must carry the maxima.
	const ids = 50
	var wg sync.WaitGroup
	for r, s := range stores {
		wg.Go(func() {
			for i := range ids {
				e := entryAt(fmt.Sprint("id", i), now, time.Duration(10+r*7%replicas+i)*time.Second, 1+(r+i)%replicas)
				if _, err := s.Put(ctx, e); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	all, err := stores[0].All(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != ids {
		t.Fatalf("All has %d entries, want %d", len(all), ids)
	}
	for _, e := range all {
		i, err := strconv.Atoi(strings.TrimPrefix(e.ID, "id"))
		if err != nil {
			t.Fatalf("All returned %q", e.ID)
		}
		var maxUntil time.Time
		for r := range replicas {
			if u := now.Add(time.Duration(10+r*7%replicas+i) * time.Second); u.After(maxUntil) {
				maxUntil = u
			}
		}
		if e.Strikes != replicas || !e.Until.Equal(maxUntil) {
			t.Errorf("%s: strikes %d until %v, want %d and %v", e.ID, e.Strikes, e.Until, replicas, maxUntil)
		}
	}
}

func TestDeleteAndHitsAndAllPrunes(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, Options{Addrs: []string{srv.Addr}})
	ctx := ctxT(t)
	now := time.Now()
	for i := range 1100 { // more than two pages
		if _, err := s.Put(ctx, entryAt(fmt.Sprint("id", i), now, time.Hour, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Put(ctx, entryAt("soon-over", now, 200*time.Millisecond, 1)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.AddHits(ctx, "id7", 5); err != nil || n != 5 {
		t.Errorf("AddHits = %d, %v; want 5", n, err)
	}
	if n, err := s.AddHits(ctx, "id7", 2); err != nil || n != 7 {
		t.Errorf("AddHits = %d, %v; want 7", n, err)
	}
	if n, err := s.AddHits(ctx, "nobody", 2); err != nil || n != 0 {
		t.Errorf("AddHits(nobody) = %d, %v; want 0", n, err)
	}
	if ok, err := s.Delete(ctx, "id3"); !ok || err != nil {
		t.Errorf("Delete(id3) = %t, %v", ok, err)
	}
	if ok, err := s.Delete(ctx, "id3"); ok || err != nil {
		t.Errorf("Delete(id3) again = %t, %v; want false", ok, err)
	}
	time.Sleep(300 * time.Millisecond)
	all, err := s.All(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1099 {
		t.Errorf("All has %d, want 1099 (1100 - id3, soon-over ended)", len(all))
	}
	for _, e := range all {
		if e.ID == "id3" || e.ID == "soon-over" {
			t.Errorf("All has %s", e.ID)
		}
		if e.ID == "id7" && e.Hits != 7 {
			t.Errorf("id7 hits %d, want 7", e.Hits)
		}
	}
	if out, _ := srv.CLI("ZCARD", s.keys.qIndex); strings.TrimSpace(out) != "1099" {
		t.Errorf("index holds %q members after All, want 1099 (ended ones pruned)", out)
	}
}

// collector gathers the changes Subscribe delivers.
type collector struct {
	mu      sync.Mutex // guards the following fields
	changes []Change
}

func (c *collector) add(ch Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changes = append(c.changes, ch)
}

// waitFor waits up to d for a change matching ok, and returns it.
func (c *collector) waitFor(t *testing.T, d time.Duration, what string, ok func(Change) bool) Change {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c.mu.Lock()
		for i, ch := range c.changes {
			if ok(ch) {
				c.changes = c.changes[i+1:]
				c.mu.Unlock()
				return ch
			}
		}
		c.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// retry calls f until it succeeds, for up to 2 s.
func retry(t *testing.T, f func() error) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after 2s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isOp(op Op) func(Change) bool { return func(c Change) bool { return c.Op == op } }

// subscribe runs s.Subscribe until the test ends.
func subscribe(t *testing.T, s *Store) *collector {
	c := &collector{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Subscribe(ctx, c.add)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func TestSubscribeDeliversAndResubscribes(t *testing.T) {
	srv := redistest.Start(t)
	pub := open(t, Options{Addrs: []string{srv.Addr}})
	sub := open(t, Options{Addrs: []string{srv.Addr}, ClientName: "subscriber"})
	c := subscribe(t, sub)
	c.waitFor(t, 2*time.Second, "first resync", isOp(OpResync))
	ctx := ctxT(t)

	checkFlow := func(id string) {
		t.Helper()
		e := entryAt(id, time.Now(), time.Minute, 1)
		if _, err := pub.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
		got := c.waitFor(t, time.Second, "put of "+id, isOp(OpPut))
		if !sameEntry(got.Entry, e) {
			t.Errorf("put event %+v, want %+v", got.Entry, e)
		}
		if _, err := pub.AddHits(ctx, id, 3); err != nil {
			t.Fatal(err)
		}
		if got := c.waitFor(t, time.Second, "hits", isOp(OpHits)); got.Entry.ID != id || got.Entry.Hits != 3 {
			t.Errorf("hits event %+v", got)
		}
		if _, err := pub.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
		if got := c.waitFor(t, time.Second, "delete", isOp(OpDelete)); got.Entry.ID != id {
			t.Errorf("delete event %+v", got)
		}
	}
	checkFlow("a\x00{b}:c")

	// The subscription's connection is killed: it comes back and says resync.
	if out, err := srv.CLI("CLIENT", "KILL", "TYPE", "pubsub"); err != nil || strings.TrimSpace(out) == "0" {
		t.Fatalf("CLIENT KILL TYPE pubsub = %q, %v", out, err)
	}
	c.waitFor(t, 3*time.Second, "resync after CLIENT KILL", isOp(OpResync))
	checkFlow("after-kill")

	// The server restarts (empty): the same. The publisher's first call
	// finds its connection dead and fails, as a caller's would; the
	// next one reconnects.
	srv.Restart()
	c.waitFor(t, 5*time.Second, "resync after restart", isOp(OpResync))
	retry(t, func() error { _, err := pub.AddHits(ctx, "nobody", 1); return err })
	checkFlow("after-restart")
}

func TestParseChangeRefusesGarbage(t *testing.T) {
	for _, msg := range []string{"", "1", "2P1:a", "1P3:ab", "1P1:a", "1X1:a", "1H1:a1:x", "1P-1:a"} {
		if c, err := parseChange(msg); err == nil {
			t.Errorf("parseChange(%q) = %+v, want an error", msg, c)
		}
	}
}

func TestSubscribeSlowCallerGetsResyncNotUnboundedQueue(t *testing.T) {
	srv := redistest.Start(t)
	pub := open(t, Options{Addrs: []string{srv.Addr}})
	sub := open(t, Options{Addrs: []string{srv.Addr}})
	release := make(chan struct{})
	var mu sync.Mutex // guards the following fields
	var puts, resyncs int
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = sub.Subscribe(ctx, func(c Change) {
			mu.Lock()
			defer mu.Unlock()
			switch c.Op {
			case OpResync:
				resyncs++
				if resyncs == 1 {
					mu.Unlock()
					<-release // the caller is stuck while the events pile up
					mu.Lock()
				}
			case OpPut:
				puts++
			}
		})
	}()
	defer func() { cancel(); <-done }()
	time.Sleep(200 * time.Millisecond) // subscribed and stuck in the first resync
	n := subscribeQueue + 1000
	now := time.Now()
	for i := range n {
		if _, err := pub.Put(ctxT(t), entryAt(fmt.Sprint("id", i), now, time.Minute, 1)); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		p, r := puts, resyncs
		mu.Unlock()
		if r >= 2 && p >= subscribeQueue {
			if p >= n {
				t.Errorf("all %d puts delivered: the queue was not bounded at %d", p, subscribeQueue)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the overflow: %d puts, %d resyncs; want a second resync", p, r)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAllPagesByEndTime: All reads every standing entry exactly once, also
// when many share one end time across page boundaries, and in time linear
// in the list (it pages by score, not by offset).
func TestAllPagesByEndTime(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, Options{Addrs: []string{srv.Addr}})
	ctx := context.Background()
	now := time.Now()
	const n = 1500 // three end times, 500 each: every page boundary falls inside a run
	cmds := make([]Entry, 0, n)
	for i := range n {
		cmds = append(cmds, entryAt(fmt.Sprint("id", i), now, time.Duration(1+i%3)*time.Hour, 1))
	}
	for _, e := range cmds {
		if _, err := s.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.All(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range all {
		seen[e.ID]++
	}
	if len(all) != n || len(seen) != n {
		t.Fatalf("All returned %d entries, %d distinct; want %d once each", len(all), len(seen), n)
	}
}

// TestPutGrewAndManualReason: of identical puts, only the first grew the
// quarantine; a manual ban that does not lengthen a quarantine still marks
// it manual with the operator's reason.
func TestPutGrewAndManualReason(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, Options{Addrs: []string{srv.Addr}})
	ctx := context.Background()
	now := time.Now()
	e := entryAt("bot", now, time.Hour, 1)
	if _, grew, err := s.PutGrew(ctx, e); err != nil || !grew {
		t.Fatalf("first put: grew %v, %v", grew, err)
	}
	if _, grew, err := s.PutGrew(ctx, e); err != nil || grew {
		t.Fatalf("same put again: grew %v, %v; want false", grew, err)
	}
	ban := entryAt("bot", now, 10*time.Minute, 1)
	ban.Manual, ban.Reason = true, "operator: confirmed scraper"
	got, grew, err := s.PutGrew(ctx, ban)
	if err != nil || grew {
		t.Fatalf("shorter ban: grew %v, %v", grew, err)
	}
	if !got.Manual || got.Reason != ban.Reason || !got.Until.Equal(e.Until.Truncate(time.Microsecond)) {
		t.Errorf("merged = %+v; want the longer quarantine, manual, with the operator's reason", got)
	}
}
