package shared_test

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/redisstore/redistest"
	"github.com/flowlock/flowlock/internal/shared"
)

// TestFleetNotesReachTheOtherReplicas: the requests one replica's fleet
// detector noted reach another replica's through Redis; while Redis hangs
// (SIGSTOP) an exchange returns within its deadlines and the notes wait in
// the outbox, and once Redis answers again they arrive, each once.
func TestFleetNotesReachTheOtherReplicas(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	start := time.Now()
	rs := following(t, srv.Addr, "fn:", 2, start)
	a, b := rs[0], rs[1]
	if a.Fleet == nil || b.Fleet == nil {
		t.Fatal("no fleet detector in the default stack")
	}
	send := func(first, n int, at time.Time) {
		for i := range n {
			decide(a, addrID("198.51.100."+strconv.Itoa(first+i)), at)
		}
	}
	exchange := func(at time.Time) {
		a.Replica.ShareFleet(ctx, at)
		b.Replica.ShareFleet(ctx, at)
	}

	send(1, 30, start)
	exchange(start)
	if got := b.Fleet.Stats().Imported; got != 30 {
		t.Fatalf("b imported %d of a's 30 requests", got)
	}
	if got := a.Fleet.Stats().Imported; got != 0 {
		t.Fatalf("a imported %d requests: its own came back", got)
	}

	if err := srv.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = srv.Signal(syscall.SIGCONT)
		}
	}()
	send(31, 30, start.Add(time.Second))
	t0 := time.Now()
	for i := range 5 {
		now := time.Now()
		exchange(now)
		a.Replica.Tick(ctx, now.Add(time.Duration(i)*time.Millisecond))
	}
	if took := time.Since(t0); took > 2*time.Second {
		t.Errorf("five exchanges with Redis hung took %v", took)
	}
	if got := b.Fleet.Stats().Imported; got != 30 {
		t.Fatalf("b imported %d requests while Redis hung, want the first 30", got)
	}

	if err := srv.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	deadline := time.Now().Add(15 * time.Second)
	for b.Fleet.Stats().Imported < 60 && time.Now().Before(deadline) {
		exchange(time.Now())
		time.Sleep(50 * time.Millisecond)
	}
	if got := b.Fleet.Stats().Imported; got != 60 {
		t.Errorf("b imported %d requests once Redis answered again, want 60", got)
	}
	if st := a.Fleet.Stats(); st.Unshipped != 0 {
		t.Errorf("a dropped %d notes from its outbox", st.Unshipped)
	}
}

// TestRunExchangesFleetNotes: Run exchanges fleet notes by itself, every
// second, as the service runs it.
func TestRunExchangesFleetNotes(t *testing.T) {
	srv := redistest.Start(t)
	start := time.Now()
	a, b := started(t, srv.Addr, "fr:", start), started(t, srv.Addr, "fr:", start)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	for _, r := range []*shared.Replica{a.Replica, b.Replica} {
		go func() { _ = r.Run(ctx); done <- struct{}{} }()
	}
	defer func() { stop(); <-done; <-done }()
	for i := range 10 {
		decide(a, addrID("198.51.100."+strconv.Itoa(i+1)), time.Now())
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.Fleet.Stats().Imported < 10 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := b.Fleet.Stats().Imported; got != 10 {
		t.Errorf("b imported %d of a's 10 requests in 10 s", got)
	}
}
