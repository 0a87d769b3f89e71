package risk

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/flowlock/flowlock/internal/identity"
)

// memoryPerClientBound is the most that one tracked address identity may
// cost in bytes (heap plus mapped slab and index, see memoryPerClient): a
// 280-byte slot and its share of the index, with a little room. It was 445
// with a map and a slice of identity.ID on the heap.
const memoryPerClientBound = 300

// TestMemoryPerClient fails if a tracked client costs more than
// memoryPerClientBound bytes.
func TestMemoryPerClient(t *testing.T) {
	if got := memoryPerClient(t, 100_000); got > memoryPerClientBound {
		t.Errorf("a tracked client costs %.0f B, want at most %d", got, memoryPerClientBound)
	}
}

// BenchmarkMemoryPerClient measures what one tracked identity costs in
// all (slot, index entry, and anything on the heap), reported as
// bytes/client:
//
//	go test -run '^$' -bench MemoryPerClient ./internal/risk/
//
// What the running binary's RSS grows by is measured by
// BenchmarkRSSPerClient in test/memory.
func BenchmarkMemoryPerClient(b *testing.B) {
	// One measurement whatever b.N: the figure is memory per client, not
	// time, and CI's benchmark pass (-benchtime 100x) must stay fast.
	b.ReportMetric(memoryPerClient(b, 1_000_000), "bytes/client")
	b.ReportMetric(0, "ns/op")
}

// memoryPerClient tracks clients identities at the default settings
// (except a higher cap, which reserves nothing), with
// a few requests each, and returns the bytes per client: the live heap
// grown, plus the mapped slab chunks up to the slots in use (the pages
// touched) and the mapped indexes.
func memoryPerClient(tb testing.TB, clients int) float64 {
	tb.Helper()
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e := New(Options{MaxClients: 4 * clients}) // headroom: per-shard caps must not evict
	for i := range clients {
		id := identity.FromAddr(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 64)
		for k := range 3 { // enough requests to fill the rings' first slots
			e.Observe(id, t0.Add(time.Duration(k)*time.Second))
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if e.Len() != clients {
		tb.Fatalf("tracking %d, want %d", e.Len(), clients)
	}
	mapped := 0
	for i := range e.shards {
		sh := &e.shards[i]
		for k, c := range sh.chunks {
			if c.Mapped() {
				inUse := min(len(c.S), int(sh.used-chunkStart(k)))
				mapped += inUse * int(unsafe.Sizeof(slot{}))
			}
		}
		if sh.index.Mapped() {
			mapped += 4 * len(sh.index.S)
		}
	}
	heap := float64(int64(after.HeapAlloc) - int64(before.HeapAlloc))
	tb.Logf("%d clients: %.0f B heap, %.0f B mapped per client", clients, heap/float64(clients), float64(mapped)/float64(clients))
	runtime.KeepAlive(e)
	return (heap + float64(mapped)) / float64(clients)
}
