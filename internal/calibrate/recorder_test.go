package calibrate

import (
	"fmt"
	"net/netip"
	"reflect"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/offheap"
)

// TestRecorderPeaksAndRoutes: the live recorder counts the same
// identity-hours and peaks as an offline Track, and the per-request score
// distribution per route class.
func TestRecorderPeaksAndRoutes(t *testing.T) {
	start := time.Unix(hour0/1e9, 0).UTC()
	r := NewRecorder(1024, start)
	bot := identity.FromAddr(netip.MustParseAddr("192.0.2.1"), 64)
	human := identity.FromAddr(netip.MustParseAddr("192.0.2.2"), 64)
	for i := range 10 {
		at := start.Add(time.Duration(i) * time.Second)
		r.Record(bot, "/api/v1/items?page=2", 95, false, false, at)
		r.Record(human, "/", 10, false, false, at)
	}
	r.Record(human, "/bad segment", 10, false, false, start.Add(time.Minute))

	snap := r.Snapshot(start.Add(30 * time.Minute))
	if snap.Histogram.Windows != 0 || snap.Current.Windows != 2 || snap.Current.Over(95, 8) != 1 {
		t.Fatalf("within the hour: %d identity-hours closed, %d current (%d at 95 over 8); want 0, 2, 1",
			snap.Histogram.Windows, snap.Current.Windows, snap.Current.Over(95, 8))
	}
	snap = r.Snapshot(start.Add(61 * time.Minute))
	if snap.Histogram.Windows != 2 || snap.Current.Windows != 0 || snap.Histogram.Over(95, 8) != 1 || snap.Histogram.Over(11, 1) != 1 {
		t.Errorf("after the hour: %d identity-hours, %d at 95 over 8 evaluations, %d at 11 over 1; want 2, 1, 1",
			snap.Histogram.Windows, snap.Histogram.Over(95, 8), snap.Histogram.Over(11, 1))
	}
	got := map[string]RouteScores{}
	for _, rs := range snap.Routes {
		got[rs.Class] = rs
	}
	if a := got["/api"]; a.Requests != 10 || a.Buckets[95/BucketWidth] != 10 {
		t.Errorf("/api: %+v; want 10 requests in the 95-99 bucket", a)
	}
	if a := got["/"]; a.Requests != 10 || a.Buckets[2] != 10 {
		t.Errorf("/: %+v; want 10 requests in the 10-14 bucket", a)
	}
	if a := got[OtherClass]; a.Requests != 1 {
		t.Errorf("other: %+v; want the one request with a bad segment", a)
	}
}

// TestRecorderClassesAreBounded: attacker-chosen first segments name at
// most maxClasses classes; the rest count as "other".
func TestRecorderClassesAreBounded(t *testing.T) {
	now := time.Unix(hour0/1e9, 0)
	r := NewRecorder(64, now)
	id := identity.FromAddr(netip.MustParseAddr("192.0.2.9"), 64)
	for i := range 100 {
		r.Record(id, fmt.Sprintf("/x%d/y", i), 50, false, false, now)
	}
	snap := r.Snapshot(now)
	if len(snap.Routes) != maxClasses+1 || snap.Routes[maxClasses].Class != OtherClass || snap.Routes[maxClasses].Requests != 100-maxClasses {
		t.Errorf("%d classes, last %+v; want %d classes and %d requests under other", len(snap.Routes), snap.Routes[len(snap.Routes)-1], maxClasses+1, 100-maxClasses)
	}
}

// TestRecordDoesNotAllocate: Record runs on every Check.
func TestRecordDoesNotAllocate(t *testing.T) {
	now := time.Unix(hour0/1e9, 0)
	r := NewRecorder(0, now)
	id := identity.FromAddr(netip.MustParseAddr("192.0.2.1"), 64)
	r.Record(id, "/api/x", 1, false, false, now) // names the class
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		i++
		r.Record(id, "/api/x", uint8(i%101), false, false, now.Add(time.Duration(i)*time.Second))
	}); n != 0 {
		t.Errorf("Record allocates %v times", n)
	}
}

func BenchmarkRecord(b *testing.B) {
	now := time.Unix(hour0/1e9, 0)
	r := NewRecorder(0, now)
	ids := make([]identity.ID, 4096)
	for i := range ids {
		ids[i] = identity.FromAddr(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 64)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			r.Record(ids[i%len(ids)], "/api/items", uint8(i%101), false, false, now.Add(time.Duration(i)*time.Millisecond))
		}
	})
}

// TestRecorderSetsAbsorbCollisions: identities that share a set keep their
// own slots; only a fifth evicts, and it takes the one idle longest.
func TestRecorderSetsAbsorbCollisions(t *testing.T) {
	start := time.Unix(hour0/1e9, 0)
	r := NewRecorder(ways, start) // one set: every identity collides
	ids := make([]identity.ID, ways+1)
	for i := range ids {
		ids[i] = identity.FromAddr(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), 64)
	}
	for round := range 5 {
		for _, id := range ids[:ways] {
			r.Record(id, "/", 10, false, false, start.Add(time.Duration(round)*time.Second))
		}
	}
	if n := r.takeovers.Load(); n != 0 {
		t.Fatalf("%d takeovers among %d identities in a set of %d", n, ways, ways)
	}
	r.Record(ids[ways], "/", 10, false, false, start.Add(10*time.Second))
	snap := r.Snapshot(start.Add(10 * time.Second))
	if snap.Takeovers != 1 || snap.Histogram.Windows != 1 || snap.Current.Windows != ways {
		t.Errorf("a fifth identity: %d takeovers, %d closed and %d current identity-hours; want 1, 1, %d",
			snap.Takeovers, snap.Histogram.Windows, snap.Current.Windows, ways)
	}
}

// TestSlotSize keeps DefaultSlots' documented memory (48 bytes a slot)
// true.
func TestSlotSize(t *testing.T) {
	if n := unsafe.Sizeof(slot{}); n != 48 {
		t.Errorf("a slot is %d bytes; the docs say 48", n)
	}
}

// TestRecorderSlotsOffHeap: the slots hold no pointer and are mapped
// outside the Go heap (3 MB that would cost about 6 MB of RSS there).
func TestRecorderSlotsOffHeap(t *testing.T) {
	if p := offheap.PointerIn(reflect.TypeFor[slot]()); p != "" {
		t.Fatalf("slot holds a pointer (%s): it may not live off the heap", p)
	}
	r := NewRecorder(0, time.Unix(0, 0))
	if runtime.GOOS == "linux" && !r.table.Mapped() {
		t.Fatal("the slots were not mapped")
	}
}
