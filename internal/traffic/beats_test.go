package traffic

import (
	"math"
	"testing"
)

// TestCycleBeats: a raw B13 stream waits its beats in turn, each within
// its jitter, and a drifting one stays within its drift bounds.
func TestCycleBeats(t *testing.T) {
	beats := []float64{3, 1, 1, 6}
	gaps := intervals(collect(mustLookup(t, "B13-4"), 7, Raw()))
	if len(gaps) < 100 {
		t.Fatalf("%d gaps, want a full hour's", len(gaps))
	}
	// Find the phase from the first two gaps; then every gap must match
	// its beat.
	start := -1
	for i, b := range beats {
		if math.Abs(gaps[0]/b-1) <= 0.1 && math.Abs(gaps[1]/beats[(i+1)%4]-1) <= 0.1 {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("first gaps %.3f, %.3f match no phase of %v", gaps[0], gaps[1], beats)
	}
	for i, g := range gaps {
		if b := beats[(start+i)%4]; math.Abs(g/b-1) > 0.1+1e-6 {
			t.Fatalf("gap %d = %.3fs, want %gs ± 10 %%", i, g, b)
		}
	}

	lo, hi := 2.5/3*0.95, 2.5*3*1.05
	for i, g := range intervals(collect(mustLookup(t, "B13-dw"), 7, Raw())) {
		if g < lo-1e-6 || g > hi+1e-6 {
			t.Fatalf("drift-walk gap %d = %.3fs, outside [%.2f, %.2f]", i, g, lo, hi)
		}
	}
}
