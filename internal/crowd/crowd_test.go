package crowd

import (
	"fmt"
	"net/netip"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/offheap"
)

var t0 = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

func addr(i int) identity.ID {
	return identity.FromAddr(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 64)
}

func TestNoteCountsDistinctAgentsInAWindow(t *testing.T) {
	a := New(time.Minute, 0)
	id := addr(1)
	steps := []struct {
		ua   string
		at   time.Duration
		want int
	}{
		{"chrome", 0, 1},
		{"chrome", time.Second, 1},
		{"", 2 * time.Second, 0}, // no agent: no evidence, nothing changes
		{"firefox", 3 * time.Second, 2},
		{"safari", 4 * time.Second, 3},
		{"edge", 5 * time.Second, 4},
		{"curl", 6 * time.Second, 4},    // saturates
		{"chrome", 61 * time.Second, 1}, // a new window starts the count again
		{"chrome", 50 * time.Second, 1}, // a clock step back does too
	}
	for _, s := range steps {
		if got := a.Note(id, s.ua, t0.Add(s.at)); got != s.want {
			t.Errorf("Note(%q, +%v) = %d, want %d", s.ua, s.at, got, s.want)
		}
	}
	if got := a.Note(identity.ID{}, "chrome", t0); got != 0 {
		t.Errorf("the zero identity counted %d agents", got)
	}
}

// TestNoteIsBounded: a flood of identities never holds more than the cap.
func TestNoteIsBounded(t *testing.T) {
	const limit = 1024
	a := New(0, limit)
	for i := range 100_000 {
		a.Note(addr(i), "ua", t0)
	}
	if n := a.Len(); n > limit || n < limit/2 {
		t.Errorf("Len = %d after a flood, want at most %d (and most of it used)", n, limit)
	}
}

func TestNoteConcurrent(t *testing.T) {
	a := New(0, 0)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				a.Note(addr(i%50), fmt.Sprint("ua", g%3), t0.Add(time.Duration(i)*time.Millisecond))
			}
		})
	}
	wg.Wait()
	for i := range 50 {
		if got := a.Note(addr(i), "ua0", t0.Add(time.Second)); got < 1 || got > 3 {
			t.Errorf("identity %d: %d agents, want 1-3", i, got)
		}
	}
}

// TestTableOffHeap: the table holds no pointer and is mapped outside the
// Go heap, so a full table costs its 3.7 MB and no GC headroom: a flood
// of identities grows the heap by next to nothing.
func TestTableOffHeap(t *testing.T) {
	if p := offheap.PointerIn(reflect.TypeFor[entry]()); p != "" {
		t.Fatalf("entry holds a pointer (%s): it may not live off the heap", p)
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	a := New(0, 0)
	for i := range 4 * DefaultMaxEntries {
		a.Note(addr(i), "Mozilla/5.0", t0)
	}
	grew := int64(heap()) - int64(before)
	if runtime.GOOS == "linux" && !a.table.Mapped() {
		t.Fatal("the table was not mapped")
	}
	// Sixteen identities a set on average: a few sets may by chance get
	// fewer than four.
	if n := a.Len(); n > DefaultMaxEntries || n < DefaultMaxEntries*999/1000 {
		t.Errorf("Len = %d after a flood, want the table full (%d)", n, DefaultMaxEntries)
	}
	if grew > 256<<10 {
		t.Errorf("the heap grew %d bytes for a full table: it belongs outside the heap", grew)
	}
	runtime.KeepAlive(a)
}

// TestFullSetEvictsTheStalestWindow: an identity that finds its set full
// takes the entry whose window started longest ago, so a busy identity's
// count survives a flood of one-off identities that land beside it.
func TestFullSetEvictsTheStalestWindow(t *testing.T) {
	a := New(time.Hour, ways) // one set: every identity shares it
	busy := addr(1)
	a.Note(busy, "chrome", t0.Add(10*time.Minute))
	a.Note(busy, "firefox", t0.Add(10*time.Minute))
	for i := range 3 {
		a.Note(addr(100+i), "ua", t0.Add(time.Duration(i)*time.Minute)) // older windows
	}
	a.Note(addr(200), "ua", t0.Add(11*time.Minute)) // the set is full: the stalest goes
	if got := a.Note(busy, "safari", t0.Add(12*time.Minute)); got != 3 {
		t.Errorf("the busy identity counts %d agents, want 3: its entry was evicted", got)
	}
	if got := a.Note(addr(100), "other", t0.Add(12*time.Minute)); got != 1 {
		t.Errorf("the stalest identity counts %d agents, want 1 (its entry was the one taken)", got)
	}
}

// TestNoteDoesNotAllocate: Note is on the Check path of calm clients.
func TestNoteDoesNotAllocate(t *testing.T) {
	a := New(0, 0)
	id := addr(7)
	if n := testing.AllocsPerRun(1000, func() { a.Note(id, "Mozilla/5.0", t0) }); n != 0 {
		t.Fatalf("Note allocates %v times", n)
	}
}
