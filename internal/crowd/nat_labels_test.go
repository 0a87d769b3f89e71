package crowd

import (
	"testing"
	"time"
)

// TestQuarterFullTableLabelsEveryNAT: New(window, n) promises to hold
// "at most maxEntries identities" (and the old map held exactly that). With
// a quarter of DefaultMaxEntries being counted, every identity that shows
// three distinct agents in the window must reach a count of 3. The 4-way
// set-associative table overflows ~1 % of its sets already at a quarter
// (Poisson, mean 1 per set) and evicts the entry whose window started
// first: identities that share an overflowing set and request in turn
// evict each other on every Note (FIFO thrash), so their count never
// passes 1 and those NATs are never labelled shared.
func TestQuarterFullTableLabelsEveryNAT(t *testing.T) {
	const n = DefaultMaxEntries / 4
	a := New(0, DefaultMaxEntries)
	uas := []string{"chrome", "firefox", "safari"}
	got := make([]int, n)
	for r, ua := range uas {
		for i := range n {
			got[i] = a.Note(addr(i), ua, t0.Add(time.Duration(r)*time.Second+time.Duration(i)*time.Microsecond))
		}
	}
	missed := 0
	for _, c := range got {
		if c < len(uas) {
			missed++
		}
	}
	if missed > 0 {
		t.Errorf("%d of %d identities (a table a quarter full) showed 3 agents within the window but counted fewer: never labelled shared", missed, n)
	}
}
