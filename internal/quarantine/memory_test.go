package quarantine

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// BenchmarkMemoryPerEntry measures the heap one quarantined identity costs
// in all (entry, key, strike history, map slot), reported as bytes/entry:
//
//	go test -run '^$' -bench MemoryPerEntry ./internal/quarantine/
func BenchmarkMemoryPerEntry(b *testing.B) {
	const entries = 200_000
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	// One measurement whatever b.N: the figure is heap per entry, not
	// time, and CI's benchmark pass (-benchtime 100x) must stay fast.
	{
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		l := New(Options{MaxEntries: 4 * entries}) // headroom: per-shard caps must not evict
		for i := range entries {
			id := identity.FromAddr(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 64)
			l.Admit(id, t0, "periodic", 97)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if l.Len() != entries {
			b.Fatalf("holding %d, want %d", l.Len(), entries)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/entries, "bytes/entry")
		b.ReportMetric(0, "ns/op")
		runtime.KeepAlive(l)
	}
}
