package risk

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// BenchmarkMemoryPerClient measures the heap that one tracked identity
// costs in all (state, key, map slot), reported as bytes/client:
//
//	go test -run '^$' -bench MemoryPerClient ./internal/risk/
func BenchmarkMemoryPerClient(b *testing.B) {
	const clients = 200_000
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	// One measurement whatever b.N: the figure is heap per client, not
	// time, and CI's benchmark pass (-benchtime 100x) must stay fast.
	{
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
			b.Fatalf("tracking %d, want %d", e.Len(), clients)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/clients, "bytes/client")
		b.ReportMetric(0, "ns/op")
		runtime.KeepAlive(e)
	}
}
