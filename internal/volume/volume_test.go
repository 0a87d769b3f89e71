package volume

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func ip(s string) identity.ID { return identity.FromAddr(netip.MustParseAddr(s), 64) }

func TestNilLimiterAllowsEverything(t *testing.T) {
	l := New(Options{Rate: 0})
	if l != nil {
		t.Fatal("rate 0 gave a limiter")
	}
	if ok, _ := l.Allow(ip("192.0.2.1"), t0); !ok || l.Len() != 0 || l.Sweep(t0) != 0 {
		t.Error("nil limiter limited")
	}
}

func TestBurstThenSustainedRate(t *testing.T) {
	l := New(Options{Rate: 10, Burst: 5}) // T = 100 ms, tolerance 500 ms
	id := ip("192.0.2.1")
	// An idle client may send 1 + burst requests at once.
	for i := range 6 {
		if ok, _ := l.Allow(id, t0); !ok {
			t.Fatalf("request %d of the initial burst rejected", i+1)
		}
	}
	ok, wait := l.Allow(id, t0)
	if ok || wait != 100*time.Millisecond {
		t.Fatalf("7th request at once = %v, retry after %v; want rejected, 100ms", ok, wait)
	}
	// At exactly the sustained rate it conforms forever.
	now := t0
	for i := range 100 {
		now = now.Add(100 * time.Millisecond)
		if ok, _ := l.Allow(id, now); !ok {
			t.Fatalf("request %d at the sustained rate rejected", i)
		}
	}
	// Another identity is unaffected.
	if ok, _ := l.Allow(ip("192.0.2.2"), t0); !ok {
		t.Error("second identity limited by the first")
	}
}

func TestRejectedRequestsDoNotCount(t *testing.T) {
	l := New(Options{Rate: 1, Burst: 1})
	id := ip("192.0.2.3")
	l.Allow(id, t0)
	l.Allow(id, t0)
	for range 1000 { // a flood of rejected requests
		l.Allow(id, t0)
	}
	if ok, _ := l.Allow(id, t0.Add(time.Second)); !ok {
		t.Error("rejected requests pushed the limit further out")
	}
}

func TestDefaultBurst(t *testing.T) {
	l := New(Options{Rate: 2})
	id := ip("192.0.2.4")
	n := 0
	for {
		ok, _ := l.Allow(id, t0)
		if !ok {
			break
		}
		n++
	}
	if n != 21 { // 1 + 10 × rate
		t.Errorf("default burst let %d through at once, want 21", n)
	}
}

func TestBoundedMemory(t *testing.T) {
	l := New(Options{Rate: 1, MaxClients: 640})
	for i := range 10000 {
		l.Allow(ip(fmt.Sprintf("10.%d.%d.1", i/250, i%250)), t0)
	}
	if n := l.Len(); n > 640 {
		t.Errorf("tracking %d identities, cap 640", n)
	}
	if n := l.Sweep(t0.Add(time.Hour)); n == 0 || l.Len() != 0 {
		t.Errorf("sweep dropped %d, %d left; want all recovered entries gone", n, l.Len())
	}
}

func TestAllowDoesNotAllocate(t *testing.T) {
	l := New(Options{Rate: 1000})
	id := ip("192.0.2.9")
	now := t0
	l.Allow(id, now)
	if a := testing.AllocsPerRun(1000, func() { now = now.Add(time.Millisecond); l.Allow(id, now) }); a != 0 {
		t.Errorf("Allow allocated %v times for a known identity", a)
	}
}

func BenchmarkAllow(b *testing.B) {
	l := New(Options{Rate: 1e6})
	ids := make([]identity.ID, 1024)
	for i := range ids {
		ids[i] = ip(fmt.Sprintf("10.0.%d.%d", i/256, i%256))
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(ids[i%len(ids)], time.Now())
			i++
		}
	})
}
