package quarantine

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// eventLines formats events for comparison: kind, identity, time and end
// as offsets from t0, reason and strikes.
func eventLines(evs []Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = fmt.Sprintf("%d %s %s @%v until %v %s/%d", e.Seq, e.Kind, e.ID, e.Time.Sub(t0), e.Until.Sub(t0), e.Reason, e.Strikes)
	}
	return out
}

func TestEvents(t *testing.T) {
	l := New(Options{BaseTTL: 5 * time.Minute, MaxTTL: time.Hour})
	a, b := ipID("192.0.2.1"), nameID(t, "key-b")
	if evs, next := l.Events(0); evs != nil || next != 0 {
		t.Fatalf("Events on a new List = %v, %d", evs, next)
	}
	l.Admit(a, t0, "periodic", 90)
	l.Admit(a, at(time.Minute), "periodic", 95) // already in: nothing happens
	l.Extend(a, at(time.Minute), 10*time.Minute)
	l.Extend(a, at(time.Minute), 0) // no change
	l.Extend(b, at(time.Minute), time.Minute)
	l.Ban(b, at(2*time.Minute), time.Hour, "manual")
	l.Ban(a, at(3*time.Minute), time.Minute, "by hand") // keeps the later end
	l.Release(b, at(4*time.Minute))
	l.Release(b, at(4*time.Minute)) // not in: nothing happens
	l.Sweep(at(14 * time.Minute))   // a, until +15m, still in
	l.Sweep(at(16 * time.Minute))   // a ran out at +15m
	l.Admit(b, at(20*time.Minute), "burst", 80)
	l.Admit(b, at(40*time.Minute), "burst", 80) // b ran out at +25m, noticed now
	evs, next := l.Events(0)
	want := []string{
		"1 admitted 192.0.2.1 @0s until 5m0s periodic/1",
		"2 extended 192.0.2.1 @1m0s until 15m0s periodic/1",
		"3 banned key-b @2m0s until 1h2m0s manual/0",
		"4 banned 192.0.2.1 @3m0s until 15m0s by hand/1",
		"5 released key-b @4m0s until 4m0s manual/0",
		"6 expired 192.0.2.1 @15m0s until 15m0s by hand/1",
		"7 admitted key-b @20m0s until 25m0s burst/1", // BaseTTL: the ban was no strike
		"8 expired key-b @25m0s until 25m0s burst/1",
		"9 admitted key-b @40m0s until 50m0s burst/2",
	}
	if got := eventLines(evs); !slices.Equal(got, want) {
		t.Errorf("events =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if next != 9 || evs[0].Manual || !evs[2].Manual || evs[0].Score != 90 {
		t.Errorf("next = %d; first events %+v, %+v", next, evs[0], evs[2])
	}

	// The cursor gives what came after it, and nothing when nothing did.
	if tail, n := l.Events(7); !slices.Equal(eventLines(tail), want[7:]) || n != 9 {
		t.Errorf("Events(7) = %v, %d", eventLines(tail), n)
	}
	if tail, n := l.Events(9); tail != nil || n != 9 {
		t.Errorf("Events(9) = %v, %d; want nothing, 9", tail, n)
	}
	if tail, n := l.Events(100); tail != nil || n != 9 {
		t.Errorf("Events(100) = %v, %d; want nothing, 9", tail, n)
	}
	if n := testing.AllocsPerRun(100, func() { l.Events(9) }); n != 0 {
		t.Errorf("Events with nothing new: %v allocs, want 0", n)
	}
}

func TestEventsEviction(t *testing.T) {
	l := New(Options{MaxEntries: 2})
	l.Ban(ipID("192.0.2.1"), t0, time.Minute, "first")
	l.Ban(ipID("192.0.2.2"), t0, time.Hour, "second")
	l.Ban(ipID("192.0.2.3"), at(time.Second), time.Hour, "third") // evicts the first, active
	evs, _ := l.Events(2)
	want := []string{
		"3 evicted 192.0.2.1 @1s until 1s first/0",
		"4 banned 192.0.2.3 @1s until 1h0m1s third/0",
	}
	if got := eventLines(evs); !slices.Equal(got, want) {
		t.Errorf("events =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestEventsBounded(t *testing.T) {
	l := New(Options{})
	const n = EventsKept*3 + 5
	for i := range n {
		l.Ban(nameID(t, fmt.Sprintf("key-%d", i)), t0, time.Hour, "manual")
	}
	evs, next := l.Events(0)
	if next != n || len(evs) != EventsKept || evs[0].Seq != n-EventsKept+1 || evs[len(evs)-1].Seq != n {
		t.Fatalf("Events(0) after %d = %d events, %d..%d, next %d; want the latest %d", n, len(evs), evs[0].Seq, evs[len(evs)-1].Seq, next, EventsKept)
	}
	for i, e := range evs {
		if want := fmt.Sprintf("key-%d", n-EventsKept+i); e.ID.Name() != want || e.Seq != uint64(n-EventsKept+1+i) {
			t.Fatalf("event %d = %d %s, want %s", i, e.Seq, e.ID, want)
		}
	}
	if evs, _ := l.Events(n - 3); len(evs) != 3 {
		t.Errorf("Events(n-3) = %d events, want 3", len(evs))
	}
}

func TestEventsReadState(t *testing.T) {
	src := New(Options{MaxEntries: 1})
	src.Ban(ipID("192.0.2.1"), t0, time.Hour, "manual")
	var buf bytes.Buffer
	if err := src.WriteState(&buf, t0); err != nil {
		t.Fatal(err)
	}
	dst := New(Options{MaxEntries: 1})
	dst.Ban(ipID("192.0.2.2"), t0, time.Hour, "manual")
	_, before := dst.Events(0)
	if err := dst.ReadState(&buf, t0); err != nil {
		t.Fatal(err)
	}
	if evs, _ := dst.Events(before); evs != nil {
		t.Errorf("ReadState recorded %v", eventLines(evs))
	}
	dst.Release(ipID("192.0.2.1"), at(time.Minute))
	if evs, _ := dst.Events(before); len(evs) != 1 || evs[0].Kind != EventReleased {
		t.Errorf("after ReadState, a release recorded %v", eventLines(evs))
	}
}

// TestEventsConcurrent pins that every mutation is recorded once, with
// distinct consecutive numbers, and one identity's events in order.
func TestEventsConcurrent(t *testing.T) {
	l := New(Options{})
	const workers, rounds = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			id := ipID(fmt.Sprintf("192.0.2.%d", w))
			for i := range rounds {
				now := at(time.Duration(i) * time.Second)
				l.Ban(id, now, time.Hour, "manual")
				l.Release(id, now)
			}
		})
	}
	var seen []Event
	var cursor uint64
	for range 50 {
		evs, next := l.Events(cursor)
		seen = append(seen, evs...)
		cursor = next
	}
	wg.Wait()
	evs, _ := l.Events(cursor)
	seen = append(seen, evs...)
	// The reader may have fallen behind; what it saw is in order.
	for i := 1; i < len(seen); i++ {
		if seen[i].Seq <= seen[i-1].Seq {
			t.Fatalf("event %d has Seq %d after %d", i, seen[i].Seq, seen[i-1].Seq)
		}
	}
	all, last := l.Events(0)
	if last != workers*rounds*2 {
		t.Errorf("%d events recorded, want %d", last, workers*rounds*2)
	}
	prev := map[string]EventKind{}
	for _, e := range all {
		want := EventBanned
		if prev[e.ID.String()] == EventBanned {
			want = EventReleased
		}
		if e.Kind != want && prev[e.ID.String()] != 0 {
			t.Fatalf("event %d: %s %s after %s", e.Seq, e.Kind, e.ID, prev[e.ID.String()])
		}
		prev[e.ID.String()] = e.Kind
	}
}

// TestLatest: newest first, limited, filtered by identity, and bounded by
// the events kept.
func TestLatest(t *testing.T) {
	l := New(Options{})
	a, b := ipID("192.0.2.1"), ipID("192.0.2.2")
	l.Admit(a, t0, "periodic", 90)
	l.Admit(b, t0.Add(time.Second), "periodic", 91)
	l.Extend(a, t0.Add(2*time.Second), time.Minute)
	got := l.Latest(10, identity.ID{})
	if len(got) != 3 || got[0].Kind != EventExtended || got[2].ID != a {
		t.Fatalf("Latest = %+v", got)
	}
	if of := l.Latest(10, b); len(of) != 1 || of[0].ID != b {
		t.Errorf("Latest of b = %+v", of)
	}
	if one := l.Latest(1, a); len(one) != 1 || one[0].Kind != EventExtended {
		t.Errorf("Latest 1 of a = %+v", one)
	}
	for i := range EventsKept + 10 {
		l.Ban(ipID(fmt.Sprintf("10.0.%d.%d", i/256, i%256)), t0, time.Hour, "x")
	}
	if n := len(l.Latest(2*EventsKept, identity.ID{})); n != EventsKept {
		t.Errorf("Latest kept %d events, want %d", n, EventsKept)
	}
	if of := l.Latest(10, a); len(of) != 0 {
		t.Errorf("events that left the log are still returned: %+v", of)
	}
}
