package authz

import (
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/fleet"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/risk"
)

// BenchmarkDecideFleet is one decision for 256 allow-listed clients (timed,
// never quarantined), without a fleet detector ("off", the old policy) and
// with one ("on": the detector's queue is drained between batches, off the
// clock, so every note is queued; "full": the queue is full and every note
// dropped and counted). The difference is fleet detection's cost per Check.
func BenchmarkDecideFleet(b *testing.B) {
	lists := quarantine.NewLists([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, nil)
	var clients [256]Client
	var rules ClientRules
	for i := range clients {
		clients[i] = rules.Resolve(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), "", "")
	}
	start := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for _, mode := range []string{"off", "on", "full"} {
		b.Run(mode, func(b *testing.B) {
			var d *fleet.Detector
			if mode != "off" {
				d = fleet.New(fleet.Options{QueueSize: 1 << 14})
			}
			p := NewPolicy(Options{Engine: risk.New(risk.Options{}), Quarantine: quarantine.New(quarantine.Options{}), Lists: lists, Fleet: d})
			if mode == "full" {
				for i := range 1 << 14 {
					d.Note(clients[0].ID, "/", start.Add(time.Duration(i)))
				}
			}
			b.ReportAllocs()
			i := 0
			cpu0 := cpuTime()
			for b.Loop() {
				if mode == "on" && i%(1<<13) == 0 {
					b.StopTimer()
					d.Sweep(start.Add(time.Duration(i) * time.Millisecond))
					b.StartTimer()
				}
				p.Decide(Request{Client: clients[i%len(clients)], Path: "/api/items?page=2", Now: start.Add(time.Duration(i) * time.Millisecond)})
				i++
			}
			// CPU time too: on a busy machine the clock counts waiting. It
			// includes the off-clock drains of "on", which are the
			// background's cost, so it bounds the Check's share from above.
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime returns the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestDecideFleetDoesNotAllocate: with a fleet detector, a decision still
// allocates nothing, whether its note is queued or dropped.
func TestDecideFleetDoesNotAllocate(t *testing.T) {
	d := fleet.New(fleet.Options{QueueSize: 64})
	var rules ClientRules
	c := rules.Resolve(netip.MustParseAddr("10.1.0.1"), "", "")
	p := NewPolicy(Options{Engine: risk.New(risk.Options{}), Quarantine: quarantine.New(quarantine.Options{}),
		Lists: quarantine.NewLists([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, nil), Fleet: d})
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	p.Decide(Request{Client: c, Path: "/api/x", Now: at}) // the client's state
	n := testing.AllocsPerRun(500, func() {
		at = at.Add(time.Second)
		p.Decide(Request{Client: c, Path: "/api/x", Now: at})
	})
	if n != 0 {
		t.Fatalf("Decide with a fleet detector allocates %v times", n)
	}
	if st := d.Stats(); st.Dropped == 0 {
		t.Fatal("the queue of 64 never filled: the dropping path was not measured")
	}
}
