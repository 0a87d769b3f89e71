package replay

import (
	"context"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/traffic"
)

// TestCollectKeepsCaughtBotsApart: in an unlabelled trace every identity
// is taken for innocent, except in the identity-hours the replay refused
// it as quarantined: those are caught bots, kept apart, or calibration
// would raise the threshold above them. Labelled, a human stays innocent
// whatever the replay did, and a bot is never in the innocent histogram.
func TestCollectKeepsCaughtBotsApart(t *testing.T) {
	var sim Simulation
	for _, name := range []string{"human-spa", "fixed-2s"} {
		sc, ok := traffic.Lookup(name)
		if !ok {
			t.Fatalf("no scenario %q", name)
		}
		sim.Scenarios = append(sim.Scenarios, sc)
	}
	sim.Streams, sim.Seed = 10, 3
	sim.Start = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	labelled, _ := sim.Records()
	unlabelled := append([]Record(nil), labelled...)
	for i := range unlabelled {
		unlabelled[i].Label = ""
	}

	all, _, err := Collect(context.Background(), labelled, config.Default())
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := Collect(context.Background(), unlabelled, config.Default())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("labelled: %d human identity-hours, %d caught; unlabelled: %d innocent, %d caught",
		all.Humans.Windows, all.Caught.Windows, c.Humans.Windows, c.Caught.Windows)
	if all.Caught.Windows != 0 {
		t.Errorf("labelled trace: %d caught identity-hours; want none (labels decide)", all.Caught.Windows)
	}
	if c.Caught.Windows == 0 {
		t.Fatal("unlabelled trace: the fixed 2 s bots were never counted as caught")
	}
	// The bots were caught at the default settings (80, confirm 3): what
	// is left as innocent at those settings is what the humans alone give.
	if got, want := c.Humans.Over(80, 3), all.Humans.Over(80, 3); got != want {
		t.Errorf("unlabelled trace: %d innocent identity-hours at 80 with confirm 3; want the humans' %d (the caught bots left out)", got, want)
	}
}
