package calibrate

import (
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// Collector gathers what calibration needs from a replayed trace: the
// peaks of the identities that may not be quarantined (labelled human, or,
// in an unlabelled trace, everyone), and the bots' detection times. It is
// not safe for concurrent use.
type Collector struct {
	// Humans holds the identity-hours counted against the false-positive
	// budget.
	Humans Histogram
	// Caught holds the identity-hours of an unlabelled trace in which the
	// replay refused the identity as quarantined: bots caught at the
	// replayed settings, kept out of Humans as the live Recorder keeps
	// them (a labelled human is innocent whatever the replay did, and
	// stays in Humans).
	Caught Histogram
	// Labelled reports that the trace labelled its identities (label
	// "human" or "bot"); without labels every identity counts as a
	// possible false positive, which overstates the rate when bots are
	// present and so errs towards higher thresholds.
	Labelled bool
	// Skipped counts identities left out: out-of-scope bots (label
	// "out_of_scope"), which are neither false positives nor detection
	// targets, and unknown labels.
	Skipped int

	humans map[identity.ID]*Track
	bots   map[identity.ID]*Bot
	order  []*Bot // bots in order of first appearance
	other  map[identity.ID]bool
}

// Observe notes one scored request of the identity key (as the service
// keys it) with the trace's label for it, at ts, with the verdict's score
// and shared label, and whether the replay refused it as quarantined.
// Requests left out of timing (--exclude-path) must not be passed.
func (c *Collector) Observe(key identity.ID, label string, ts time.Time, score uint8, shared, caught bool) {
	now := ts.UnixNano()
	switch label {
	case "", "human":
		if label != "" {
			c.Labelled = true
		}
		if c.humans == nil {
			c.humans = make(map[identity.ID]*Track)
		}
		t := c.humans[key]
		if t == nil {
			t = new(Track)
			c.humans[key] = t
		}
		t.Observe(now, score, shared, caught && label == "", c.sink())
	case "bot":
		c.Labelled = true
		if c.bots == nil {
			c.bots = make(map[identity.ID]*Bot)
		}
		b := c.bots[key]
		if b == nil {
			b = new(Bot)
			c.bots[key] = b
			c.order = append(c.order, b)
		}
		var discard Histogram
		b.Observe(now, score, shared, caught, &discard)
	default:
		if c.other == nil {
			c.other = make(map[identity.ID]bool)
		}
		if !c.other[key] {
			c.other[key] = true
			c.Skipped++
		}
	}
}

// Finish closes every open identity-hour and returns the bots, in order of
// first appearance. Call it once, after the last Observe.
func (c *Collector) Finish() []*Bot {
	for _, t := range c.humans {
		t.Close(c.sink())
	}
	return c.order
}

func (c *Collector) sink() Split { return Split{Innocent: &c.Humans, Caught: &c.Caught} }
