package shared_test

// Regression tests of the fleet-exchange review (w3-review, reviewer A):
// each failed while a read took 64 batches of identities and paths through
// the timing batches' breaker.

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/fleet"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/redisstore"
	"github.com/flowlock/flowlock/internal/redisstore/redistest"
)

// fullBatches writes n full batches, as a busy replica's Outbox encodes
// them, to the notes stream under prefix: the most a replica that fell
// behind has to read.
func fullBatches(t *testing.T, addr, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	s, err := redisstore.Open(ctx, redisstore.Options{Addrs: []string{addr}, KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	path := "/api/" + strings.Repeat("x", 115)
	at := time.Now()
	for k := range n {
		d := fleet.New(fleet.Options{Outbox: 4096, QueueSize: 4096, MaxIdentities: 4096})
		for i := range 4096 {
			d.Note(identity.FromAddr(netip.AddrFrom4([4]byte{10, byte(k), byte(i >> 8), byte(i)}), 64), path, at)
		}
		b, m := d.Outbox(4096, at)
		if m != 4096 {
			t.Fatalf("outbox %d", m)
		}
		if _, err := s.AddNotes(ctx, "busy-writer", b); err != nil {
			t.Fatal(err)
		}
	}
}

// gigabit is a TCP proxy to addr whose answers (Redis to client) go at
// 125 MB/s: a Redis on another host behind a 1 Gbit/s link.
func gigabit(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); s.Close() })
			go func() { _, _ = io.Copy(s, c) }()
			go func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
						time.Sleep(time.Duration(n) * time.Second / 125e6)
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestBehindReplicaCatchesUpOverGigabit: a replica 64 batches behind, with
// Redis one gigabit link away, catches up. Before reads were bounded, one
// read took 37 MB (about 300 ms, six times the call deadline): it never
// succeeded, the cursor never moved, and the failures opened the breaker
// the timing and quarantine sharing use.
func TestBehindReplicaCatchesUpOverGigabit(t *testing.T) {
	srv := redistest.Start(t)
	fullBatches(t, srv.Addr, "rg:", 64)
	b := started(t, gigabit(t, srv.Addr), "rg:", time.Now())
	ctx := context.Background()
	for range 10 {
		b.Replica.ShareFleet(ctx, time.Now())
		time.Sleep(500 * time.Millisecond)
	}
	st := b.Fleet.Stats()
	t.Logf("after 10 exchanges over 5 s: imported %d, call failures %d, status %+v", st.Imported, b.Replica.Stats().CallFailures.Load(), b.Replica.Status())
	if st.Imported == 0 {
		t.Errorf("a replica 64 batches behind, over a 1 Gbit/s link, imported nothing in 10 exchanges")
	}
}

// TestFleetReadLeavesTimingAlone: the fleet exchange shares the replica's
// one pipelined connection (AlwaysPipelining) with the timing batches.
// With Redis one gigabit link away and the replica behind, the exchange
// (once a second, as Run does it) must not make the timing batches miss
// their 50 ms deadline and fall back to local decisions: its reads are
// small, and its failures open a breaker of its own. Before, a 37 MB
// answer sat on the connection and 343 batches fell back in 3 s.
func TestFleetReadLeavesTimingAlone(t *testing.T) {
	srv := redistest.Start(t)
	fullBatches(t, srv.Addr, "rs:", 64)
	b := started(t, gigabit(t, srv.Addr), "rs:", time.Now())
	ctx := context.Background()
	run := func(d time.Duration, exchange bool) (batches, fallbacks uint64) {
		b0, f0 := b.Replica.Stats().Batches.Load(), b.Replica.Stats().Fallbacks.Load()
		var wg sync.WaitGroup
		stop := make(chan struct{})
		if exchange {
			wg.Go(func() {
				tk := time.NewTicker(time.Second)
				defer tk.Stop()
				for {
					b.Replica.ShareFleet(ctx, time.Now())
					select {
					case <-stop:
						return
					case <-tk.C:
					}
				}
			})
		}
		end := time.Now().Add(d)
		for i := 0; time.Now().Before(end); i++ {
			decide(b, addrID("198.51.100."+strconv.Itoa(i%200+1)), time.Now())
			b.Replica.Tick(ctx, time.Now())
			time.Sleep(5 * time.Millisecond)
		}
		close(stop)
		wg.Wait()
		return b.Replica.Stats().Batches.Load() - b0, b.Replica.Stats().Fallbacks.Load() - f0
	}
	nb, nf := run(3*time.Second, false)
	t.Logf("3 s without the exchange: %d timing batches shipped, %d fed locally", nb, nf)
	eb, ef := run(3*time.Second, true)
	t.Logf("3 s with the exchange once a second: %d timing batches shipped, %d fed locally, status %+v", eb, ef, b.Replica.Status())
	if ef > nf+5 {
		t.Errorf("the fleet exchange made %d timing batches fall back to local (%d without it)", ef, nf)
	}
}

// TestNotesStreamMemory: docs/RATIONALE.md bounds the notes stream at
// about 256 batches, about 25 MB. Clients choose their paths, and a note
// once carried its path (with the query string) up to 120 bytes: 300 full
// batches of such notes left the stream at 168 MB. Notes of hashes are 20
// bytes whatever the client sends.
func TestNotesStreamMemory(t *testing.T) {
	srv := redistest.Start(t)
	fullBatches(t, srv.Addr, "rm:", 300)
	n, err := srv.CLI("XLEN", "rm:fleet")
	if err != nil {
		t.Fatal(err)
	}
	mem, err := srv.CLI("MEMORY", "USAGE", "rm:fleet")
	if err != nil {
		t.Fatal(err)
	}
	bytes, _ := strconv.Atoi(strings.TrimSpace(mem))
	t.Logf("notes stream: %s batches, %.1f MB", strings.TrimSpace(n), float64(bytes)/1e6)
	if bytes > 30e6 {
		t.Errorf("the notes stream holds %.1f MB, documented at most about 25 MB", float64(bytes)/1e6)
	}
}

// TestFleetReadsWhenWritesFail: a Redis at its memory limit refuses the
// exchange's XADD but still serves XRANGE, so a replica whose write
// failed reads the others' notes all the same; its own wait in the outbox
// and go out once Redis takes writes again.
func TestFleetReadsWhenWritesFail(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	start := time.Now()
	rs := following(t, srv.Addr, "fw:", 2, start)
	a, b := rs[0], rs[1]
	for i := range 30 {
		decide(a, addrID("198.51.100."+strconv.Itoa(i+1)), start)
		decide(b, addrID("203.0.113."+strconv.Itoa(i+1)), start)
	}
	a.Replica.ShareFleet(ctx, start)
	if _, err := srv.CLI("CONFIG", "SET", "maxmemory", "1"); err != nil {
		t.Fatal(err)
	}
	b.Replica.ShareFleet(ctx, start)
	if _, err := srv.CLI("CONFIG", "SET", "maxmemory", "0"); err != nil {
		t.Fatal(err)
	}
	if got := b.Replica.Stats().FleetFailures.Load(); got == 0 {
		t.Fatal("Redis at its memory limit took b's notes: the test writes nothing it refuses")
	}
	if got := b.Fleet.Stats().Imported; got != 30 {
		t.Errorf("b imported %d of a's 30 requests after its own write was refused", got)
	}
	b.Replica.ShareFleet(ctx, start)
	a.Replica.ShareFleet(ctx, start)
	if got := a.Fleet.Stats().Imported; got != 30 {
		t.Errorf("a imported %d of b's 30 requests once Redis took writes again", got)
	}
}

// TestFleetFailuresLeaveTimingClosed: the exchange has a breaker of its
// own. With every exchange call failing (the stream's key holds a string,
// so XADD and XRANGE answer WRONGTYPE), the timing batches' breaker stays
// closed and they still reach Redis.
func TestFleetFailuresLeaveTimingClosed(t *testing.T) {
	srv := redistest.Start(t)
	if _, err := srv.CLI("SET", "ff:fleet", "not a stream"); err != nil {
		t.Fatal(err)
	}
	b := started(t, srv.Addr, "ff:", time.Now())
	ctx := context.Background()
	b0 := b.Replica.Stats().Batches.Load()
	for i := range 10 {
		now := time.Now()
		decide(b, addrID("198.51.100."+strconv.Itoa(i+1)), now)
		b.Replica.ShareFleet(ctx, now) // a write and a read, failing
		b.Replica.ShareFleet(ctx, now)
		if st := b.Replica.Status(); st.Breaker != redisstore.BreakerClosed.String() {
			t.Fatalf("timing breaker %s after the exchange's failures, want closed", st.Breaker)
		}
		b.Replica.Tick(ctx, now)
	}
	if got := b.Replica.Stats().FleetFailures.Load(); got == 0 {
		t.Fatal("no exchange call failed: the test breaks nothing")
	}
	if got := b.Replica.Stats().Batches.Load() - b0; got == 0 {
		t.Error("no timing batch reached Redis while the exchange failed")
	}
}

// TestNoteKeyNamesTheTimingRing: the key a fleet note carries for an
// identity is the hash that names the identity's timing ring in Redis, so
// every replica derives the same one and the stream adds no new way to
// name a client.
func TestNoteKeyNamesTheTimingRing(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	now := time.Now()
	a := started(t, srv.Addr, "nk:", now)
	decide(a, addrID("198.51.100.7"), now)
	a.Replica.Tick(ctx, now)
	a.Replica.ShareFleet(ctx, now)
	out, err := srv.CLI("--scan", "--pattern", "nk:t:{*")
	if err != nil {
		t.Fatal(err)
	}
	rings := strings.Fields(out)
	if len(rings) != 1 {
		t.Fatalf("timing rings %q, want one", rings)
	}
	key, err := hex.DecodeString(strings.TrimSuffix(strings.TrimPrefix(rings[0], "nk:t:{"), "}"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := redisstore.Open(ctx, redisstore.Options{Addrs: []string{srv.Addr}, KeyPrefix: "nk:"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.ReadNotes(ctx, "", 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("ReadNotes = %d batches, %v; want one", len(got), err)
	}
	if !bytes.Contains(got[0].Data, key) {
		t.Errorf("the note's batch %x does not carry the timing ring's hash %x", got[0].Data, key)
	}
}
