package load

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestHarnessSmoke runs the whole harness in a small configuration, about
// fifteen seconds: every server starts and answers, the bots are quarantined
// and then denied with 403, the JSON report parses, and every number is
// positive. It checks that the harness works, not how fast anything is.
func TestHarnessSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs four servers (run without -short; CI does)")
	}
	bin, err := Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	cfg := Config{
		Bin: bin,
		// Long enough, and the open loop fast enough, that every server
		// uses several of /proc's 10 ms CPU ticks in each stretch.
		Duration: time.Second, Warmup: 200 * time.Millisecond, Rounds: 1,
		Concurrency: 8, Conns: 1, Rate: 2000,
		Clients: 500, Bots: 50, BotPeriod: 50 * time.Millisecond,
		GC: []string{"off"}, MemLimit: "64MiB",
		Curve:    []int{500, 2000},
		LogDir:   t.TempDir(),
		Progress: &progress,
	}
	rep, err := Run(ctx, cfg)
	t.Log(progress.String())
	if err != nil {
		t.Fatal(err)
	}

	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("the JSON report does not parse: %v\n%s", err, js.String())
	}
	if len(back.Comparisons) != 1 {
		t.Fatalf("comparisons: got %d, want 1", len(back.Comparisons))
	}
	c := back.Comparisons[0]
	if c.Quarantined < cfg.Bots {
		t.Errorf("%d of %d bots quarantined", c.Quarantined, cfg.Bots)
	}
	if c.Rate <= 0 || len(c.Open) != 4 {
		t.Errorf("open loop: rate %v, %d rows; want a rate and 4 rows", c.Rate, len(c.Open))
	}
	for _, rows := range [][]Row{c.Closed, c.Open} {
		if len(rows) != 4 {
			t.Fatalf("got %d rows, want 4 servers", len(rows))
		}
		for _, r := range rows {
			if r.Checks <= 0 || r.Throughput <= 0 || r.P50 <= 0 || r.P99 < r.P50 || r.ServerCPUPerCheck <= 0 || r.VsNoop <= 0 || r.VsFloor <= 0 || r.CPUVsNoop <= 0 || r.P99VsNoop <= 0 {
				t.Errorf("%s: numbers not all positive: %+v", r.Server, r)
			}
			// The deny path is the bot flood: every answer a 403. Every
			// other server allows everything.
			want := r.Allowed
			if r.Server == Enforce {
				want = r.Denied
				if r.VsAllowPath <= 0 {
					t.Errorf("%s: no ratio to the allow path", r.Server)
				}
			}
			if want != r.Checks || r.Other != 0 {
				t.Errorf("%s: %d allowed, %d denied with 403, %d other of %d", r.Server, r.Allowed, r.Denied, r.Other, r.Checks)
			}
		}
	}
	if len(back.Curve) != 2 {
		t.Fatalf("cost curve: got %d points, want 2", len(back.Curve))
	}
	for _, p := range back.Curve {
		if p.Tracked != p.Clients || p.RSS <= 0 || p.RSSPerClient <= 0 || p.Throughput <= 0 || p.P99 <= 0 {
			t.Errorf("cost curve point not all positive, or not every client tracked: %+v", p)
		}
	}
	var table bytes.Buffer
	rep.WriteTable(&table, true)
	t.Log("\n" + table.String())
}
