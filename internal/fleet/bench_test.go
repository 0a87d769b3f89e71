package fleet

import (
	"syscall"
	"testing"
	"time"
)

// BenchmarkNote is the Check path's share: one hand-over to the queue
// ("queued": drained off the clock between batches; "full": dropped and
// counted).
func BenchmarkNote(b *testing.B) {
	for _, mode := range []string{"queued", "full"} {
		b.Run(mode, func(b *testing.B) {
			d := New(Options{QueueSize: 1 << 14})
			id := addr(7)
			if mode == "full" {
				for i := range 1 << 14 {
					d.Note(id, "/x", t0.Add(time.Duration(i)))
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if mode == "queued" && i%(1<<13) == 0 {
					b.StopTimer()
					d.mu.Lock()
					for len(d.queue) > 0 {
						<-d.queue
					}
					d.mu.Unlock()
					b.StartTimer()
				}
				d.Note(id, "/api/items?page=2", t0)
				i++
			}
		})
	}
}

// BenchmarkSweep is the background's cost: each op notes one request for
// each of 20,000 identities (DefaultMaxIdentities, full tracks after warm-up)
// and sweeps. It reports the CPU per noted request, drain and analysis
// together.
func BenchmarkSweep(b *testing.B) {
	const n = DefaultMaxIdentities
	d := New(Options{})
	at := t0
	step := func() {
		for i := range n {
			d.Note(addr(i), endpoints[i%len(endpoints)], at.Add(time.Duration(i)*time.Microsecond))
		}
		d.Sweep(at.Add(time.Second))
		at = at.Add(45 * time.Second)
	}
	for range RingSize {
		step()
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		step()
	}
	// CPU time as well as the clock's: on a busy machine the clock counts
	// the waiting too.
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/request")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*n), "cpu-ns/request")
}

// cpuTime returns the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkExchange is a replica's share of the exchange across replicas,
// per request: encoding a batch of 4,096 noted requests (Outbox, Shipped)
// and importing one (Import) into a detector that tracks those identities.
func BenchmarkExchange(b *testing.B) {
	const n = 4096
	from, to := New(Options{Outbox: n}), New(Options{})
	at := t0
	b.ReportAllocs()
	for b.Loop() {
		at = at.Add(30 * time.Second)
		for i := range n {
			from.Note(addr(i), endpoints[i%len(endpoints)], at)
		}
		batch, k := from.Outbox(n, at)
		from.Shipped(k, at)
		if err := to.Import(batch, at); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/request")
}
