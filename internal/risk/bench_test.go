package risk

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// benchGaps is a fixed table of jittered gaps (N(1 s, 30 %)): regular enough
// that every component is computed, varied enough that sorting does work.
var benchGaps = func() [1024]time.Duration {
	var g [1024]time.Duration
	r := newRand(42)
	gen := gaussian(time.Second, 0.3)
	for i := range g {
		g[i] = gen(r)
	}
	return g
}()

// benchClients is how many identities the multi-identity benchmarks use,
// a multiple of benchStride.
const benchClients = 1 << 17

// benchStride spaces the identities one goroutine of a parallel benchmark
// uses, so goroutines never share an identity or its clock.
const benchStride = 64

// warm returns an engine tracking benchClients identities, each with 80
// requests, and their next request times.
func warm(b *testing.B) (*Engine, []identity.ID, []time.Time) {
	b.Helper()
	e := New(Options{MaxClients: 2 * benchClients})
	ids := make([]identity.ID, benchClients)
	clocks := make([]time.Time, benchClients)
	for i := range ids {
		ids[i] = testID(i)
		at := epoch
		for j := range 80 {
			at = at.Add(benchGaps[(i+j)%len(benchGaps)])
			e.Observe(ids[i], at)
		}
		clocks[i] = at
	}
	return e, ids, clocks
}

// BenchmarkObserve measures Observe over many known identities, one
// goroutine ("serial") and all of them ("parallel").
func BenchmarkObserve(b *testing.B) {
	e, ids, clocks := warm(b)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k := i % benchClients
			clocks[k] = clocks[k].Add(benchGaps[i%len(benchGaps)])
			e.Observe(ids[k], clocks[k])
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			// Goroutine g owns the identities ≡ g (mod benchStride); they
			// still spread over all shards.
			g := int(next.Add(1)) % benchStride
			i := 0
			for pb.Next() {
				k := (g + benchStride*i) % benchClients
				clocks[k] = clocks[k].Add(benchGaps[i%len(benchGaps)])
				e.Observe(ids[k], clocks[k])
				i++
			}
		})
	})
}

// BenchmarkObserveSingle measures Observe on one known identity: the
// uncontended cost of the update and a full evaluation.
func BenchmarkObserveSingle(b *testing.B) {
	e := New(Options{})
	id := testID(1)
	at := epoch
	for i := range 100 {
		at = at.Add(benchGaps[i])
		e.Observe(id, at)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		at = at.Add(benchGaps[i%len(benchGaps)])
		e.Observe(id, at)
		i++
	}
}

// BenchmarkObserveNew measures the cost of a first request, including
// eviction from a full engine.
func BenchmarkObserveNew(b *testing.B) {
	e := New(Options{MaxClients: 10_000})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		e.Observe(testID(i), epoch.Add(time.Duration(i)*time.Millisecond))
		i++
	}
}

// BenchmarkTop measures Top over benchClients identities.
func BenchmarkTop(b *testing.B) {
	e, _, clocks := warm(b)
	b.ReportAllocs()
	for b.Loop() {
		e.Top(20, clocks[0])
	}
}

// BenchmarkSortedRing backs sortedRing's comment (state.go) and
// RATIONALE's: reading a full ring in value order through the kept order
// (kept) against sorting its values in arrival order when scoring (sort).
func BenchmarkSortedRing(b *testing.B) {
	var r sortedRing
	for i := range ringSize {
		r.push(uint32(benchGaps[i] / time.Millisecond))
	}
	var buf [ringSize]uint32
	b.Run("kept", func(b *testing.B) {
		for b.Loop() {
			r.sorted(&buf)
		}
	})
	b.Run("sort", func(b *testing.B) {
		for b.Loop() {
			insertionSort(r.inOrder(&buf))
		}
	})
}

// insertionSort sorts v in place: the sort a ring of 32 would need.
func insertionSort(v []uint32) {
	for i := 1; i < len(v); i++ {
		x, j := v[i], i
		for ; j > 0 && v[j-1] > x; j-- {
			v[j] = v[j-1]
		}
		v[j] = x
	}
}
