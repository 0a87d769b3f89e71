package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flowlock/flowlock/internal/redisstore/redistest"
	"github.com/flowlock/flowlock/internal/traffic"
	"github.com/flowlock/flowlock/test/flowlocktest"
)

// TestReplicasShareDetection runs bots and a human through three replicas
// sharing state through a real redis-server, each request to one at
// random (issue 13), beside one replica and three that share nothing, on
// the same streams: the shared replicas quarantine every bot stream one
// replica does, within +20 % of its median requests to detection, never
// the human, and the unshared ones clearly miss the 2 s metronome (which
// is what shows this test can fail).
func TestReplicasShareDetection(t *testing.T) {
	srv := redistest.Start(t)
	o := evalOptions{seedSet: "holdout", seed: holdoutSeed, streams: 6, maxRequests: 400,
		replicas: 3, redisAddr: srv.Addr, markdown: true}
	for _, n := range []string{"fixed-2s", "uniform-20pct-2s", "scraper", "human-spa"} {
		s, ok := traffic.Lookup(n)
		if !ok {
			t.Fatalf("no scenario %s", n)
		}
		o.scenarios = append(o.scenarios, s)
	}
	rep, err := compareReplicas(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	c := rep.replicas
	for i := range c.one {
		one, sh, un := &c.one[i], &c.shared[i], &c.unshared[i]
		t.Logf("%s: quarantined %d/%d one replica (RTD %d), %d shared (RTD %d), %d unshared (RTD %d)",
			one.id, one.quarantined, one.streams, one.medianRTD(), sh.quarantined, sh.medianRTD(), un.quarantined, un.medianRTD())
		if one.sc.Label == traffic.Human {
			if sh.quarantined != 0 {
				t.Errorf("%s: %d human streams quarantined by the shared replicas", one.id, sh.quarantined)
			}
			continue
		}
		if one.quarantined != one.streams {
			t.Fatalf("%s: one replica quarantined %d of %d streams: the scenario no longer suits this test", one.id, one.quarantined, one.streams)
		}
		if sh.quarantined != one.quarantined {
			t.Errorf("%s: shared replicas quarantined %d streams, one replica %d", one.id, sh.quarantined, one.quarantined)
		}
		if sh.medianRTD() > one.medianRTD()*6/5 {
			t.Errorf("%s: median requests to detection %d shared, %d one replica: more than +20 %%", one.id, sh.medianRTD(), one.medianRTD())
		}
		if one.id == "B1-2s" && un.quarantined*2 > one.quarantined && un.medianRTD() < 3*one.medianRTD() {
			t.Errorf("%s: unshared replicas quarantined %d streams (median RTD %d) against %d (%d): sharing should matter here",
				one.id, un.quarantined, un.medianRTD(), one.quarantined, one.medianRTD())
		}
	}
	// On a loaded machine (or under -race) a Merge may run past its
	// deadline and a replica decide a batch alone; the figures above held
	// anyway, so that is only reported.
	if rep.settleTimeouts > 0 || rep.fallbacks > 0 {
		t.Logf("%d settle waits timed out, %d batches decided alone", rep.settleTimeouts, rep.fallbacks)
	}
	// Every key of the run is gone.
	if out, err := srv.CLI("--scan", "--pattern", "flowlock-sim:*"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("keys left in Redis: %q (%v)", out, err)
	}
}

// TestEvalReplicaFlags checks the replica flags' errors, the unshared
// run, and that --replicas-section puts the section into the document.
func TestEvalReplicaFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--replicas", "0"}, "--replicas 0"},
		{[]string{"--replicas", "3"}, "give --redis-addr"},
		{[]string{"--redis-addr", "127.0.0.1:1"}, "--replicas 2 or more"},
		{[]string{"--replicas", "3", "--unshared", "--redis-addr", "127.0.0.1:1"}, "drop --redis-addr"},
		{[]string{"--replicas", "3", "--unshared", "--markdown"}, "drop --unshared"},
		{[]string{"--replicas", "3", "--unshared", "--threshold-sweep"}, "--threshold-sweep"},
		{[]string{"--max-requests", "-1"}, "--max-requests"},
		{[]string{"--replicas-section", "x.md"}, "--replicas-section goes with --markdown"},
		{[]string{"--markdown", "--scenarios", "H1", "--streams", "1", "--replicas-section", "/nonexistent/x.md"}, "--replicas-section"},
		{[]string{"--replicas", "2", "--redis-addr", flowlocktest.FreeAddr(t), "--scenarios", "H1", "--streams", "1"}, "--redis-addr"},
	} {
		_, _, err := runArgs(t, append([]string{"eval"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}

	out, _, err := runArgs(t, "eval", "--replicas", "3", "--unshared", "--scenarios", "fixed-2s", "--streams", "2", "--max-requests", "50")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"one of 3 replicas at random; they share nothing", "stop after 50 requests", "B1-2s"} {
		if !strings.Contains(out, want) {
			t.Errorf("unshared table lacks %q:\n%s", want, out)
		}
	}

	section := filepath.Join(t.TempDir(), "replicas.md")
	if err := os.WriteFile(section, []byte("## Three replicas\n\nthe comparison\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = runArgs(t, "eval", "--markdown", "--scenarios", "fixed-2s", "--streams", "1", "--replicas-section", section)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "## Three replicas\n\nthe comparison\n\n## How to rerun") ||
		!strings.Contains(out, "--replicas-section "+section) {
		t.Errorf("the section is not before How to rerun, or the command lacks the flag:\n%s", out)
	}
}
