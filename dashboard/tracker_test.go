package dashboard

import (
	"math"
	"sync"
	"testing"
	"time"
)

func TestTrackerCounts(t *testing.T) {
	tr := NewTracker()
	base := time.Unix(1_790_000_000, 0)
	// 3 checks (1 denied) in second 0, 5 (2 denied, 1 failed) in second 1.
	tr.Record(base, false, false, 40*time.Microsecond)
	tr.Record(base.Add(100*time.Millisecond), true, false, 40*time.Microsecond)
	tr.Record(base.Add(900*time.Millisecond), false, false, 40*time.Microsecond)
	for i := range 5 {
		tr.Record(base.Add(time.Second+time.Duration(i)*time.Millisecond), i < 2, i == 4, 40*time.Microsecond)
	}

	st := tr.Stats(base.Add(2 * time.Second))
	if st.ChecksPerSec != 5 || st.DeniesPerSec != 2 {
		t.Errorf("per second = %v checks, %v denies; want 5, 2", st.ChecksPerSec, st.DeniesPerSec)
	}
	if st.AllowedTotal != 4 || st.DeniedTotal != 3 || st.FailedTotal != 1 {
		t.Errorf("totals = %d allowed, %d denied, %d failed; want 4, 3, 1", st.AllowedTotal, st.DeniedTotal, st.FailedTotal)
	}
	if len(st.ChecksSeries) != 60 || st.ChecksSeries[58] != 3 || st.ChecksSeries[59] != 5 || st.DeniesSeries[58] != 1 {
		t.Errorf("series tail = %v / %v", st.ChecksSeries[55:], st.DeniesSeries[55:])
	}

	// A minute later the old seconds have left the series, and a slot
	// reused by a new second starts from zero.
	later := base.Add(time.Duration(trackerSlots) * time.Second)
	tr.Record(later, false, false, time.Millisecond)
	st = tr.Stats(later.Add(time.Second))
	if st.ChecksPerSec != 1 {
		t.Errorf("after a ring turn: %v checks/s, want 1", st.ChecksPerSec)
	}
	var sum uint64
	for _, n := range st.ChecksSeries {
		sum += n
	}
	if sum != 1 {
		t.Errorf("after a ring turn the series sums to %d, want 1", sum)
	}

	// A sample from the second the slot held before is dropped, not
	// allowed to reset the newer count.
	tr.Record(base, false, false, time.Millisecond)
	if st := tr.Stats(later.Add(time.Second)); st.ChecksPerSec != 1 {
		t.Errorf("a late sample changed the newer second: %v", st.ChecksPerSec)
	}
}

func TestTrackerLatency(t *testing.T) {
	tr := NewTracker()
	now := time.Unix(1_790_000_000, 0)
	if st := tr.Stats(now); st.LatencyP50 != 0 || st.LatencyP99 != 0 {
		t.Errorf("no checks: p50 %v p99 %v, want 0", st.LatencyP50, st.LatencyP99)
	}
	// 98 fast checks (~60 µs) and 2 slow ones (~20 ms), spread over 5 s.
	for i := range 100 {
		d := 60 * time.Microsecond
		if i%50 == 49 {
			d = 20 * time.Millisecond
		}
		tr.Record(now.Add(time.Duration(i)*50*time.Millisecond), false, false, d)
	}
	st := tr.Stats(now.Add(5 * time.Second))
	if st.LatencyP50 < 0.050 || st.LatencyP50 > 0.075 {
		t.Errorf("p50 = %v ms, want within the 50-75 µs bucket", st.LatencyP50)
	}
	if st.LatencyP99 < 14 || st.LatencyP99 > 21 {
		t.Errorf("p99 = %v ms, want within the 14-21 ms bucket", st.LatencyP99)
	}
	// Ten seconds later they have left the window.
	if st := tr.Stats(now.Add(20 * time.Second)); st.LatencyP50 != 0 {
		t.Errorf("p50 after the window = %v, want 0", st.LatencyP50)
	}
	// Beyond the last bound, the quantile is the last bound.
	tr.Record(now.Add(time.Minute), false, false, time.Second)
	if st := tr.Stats(now.Add(time.Minute)); st.LatencyP99 != 100 {
		t.Errorf("p99 of a 1 s check = %v ms, want 100 (the last bound)", st.LatencyP99)
	}
}

func TestLatencyBucket(t *testing.T) {
	for i, b := range latencyBounds {
		if got := latencyBucket(b); got != i {
			t.Errorf("bucket(%v) = %d, want %d", b, got, i)
		}
		if got := latencyBucket(b + 1); got != i+1 {
			t.Errorf("bucket(%v+1ns) = %d, want %d", b, got, i+1)
		}
	}
	if latencyBucket(0) != 0 || latencyBucket(time.Hour) != len(latencyBounds) {
		t.Error("extremes land in the wrong buckets")
	}
}

func TestTrackerConcurrent(t *testing.T) {
	tr := NewTracker()
	now := time.Unix(1_790_000_000, 0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 1000 {
				tr.Record(now.Add(time.Duration(i%2)*time.Second), i%4 == 0, false, 30*time.Microsecond)
			}
		})
	}
	wg.Wait()
	st := tr.Stats(now.Add(2 * time.Second))
	if got := st.ChecksSeries[58] + st.ChecksSeries[59]; got != 8000 {
		t.Errorf("counted %d checks, want exactly 8000", got)
	}
	if st.DeniedTotal != 2000 || st.AllowedTotal != 6000 {
		t.Errorf("totals %d/%d, want 2000 denied, 6000 allowed", st.DeniedTotal, st.AllowedTotal)
	}
	if st.DeniesSeries[58]+st.DeniesSeries[59] != 2000 {
		t.Errorf("denies series %v", st.DeniesSeries[58:])
	}
}

func TestTrackerNil(t *testing.T) {
	var tr *Tracker
	tr.Record(time.Now(), true, false, time.Millisecond) // no panic
	if st := tr.Stats(time.Now()); st.DeniedTotal != 0 || len(st.ChecksSeries) != 60 {
		t.Errorf("nil tracker stats = %+v", st)
	}
}

// TestTrackerRecordZeroAllocs pins that Record, which runs on every Check,
// never allocates.
func TestTrackerRecordZeroAllocs(t *testing.T) {
	tr := NewTracker()
	now := time.Unix(1_790_000_000, 0)
	i := 0
	got := testing.AllocsPerRun(1000, func() {
		i++
		tr.Record(now.Add(time.Duration(i)*time.Millisecond), i%3 == 0, false, time.Duration(i)*time.Microsecond)
	})
	if got != 0 {
		t.Errorf("Record: %v allocs/op, want 0", got)
	}
}

func BenchmarkTrackerRecord(b *testing.B) {
	tr := NewTracker()
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tr.Record(now, false, false, 50*time.Microsecond)
		}
	})
}

func TestQuantileMonotone(t *testing.T) {
	var hist [len(latencyBounds) + 1]uint64
	for i := range hist {
		hist[i] = uint64(i + 1)
	}
	var total uint64
	for _, n := range hist {
		total += n
	}
	prev := -1.0
	for q := 0.01; q <= 1; q += 0.01 {
		v := quantile(&hist, total, q)
		if v < prev || math.IsNaN(v) {
			t.Fatalf("quantile(%v) = %v after %v", q, v, prev)
		}
		prev = v
	}
}
