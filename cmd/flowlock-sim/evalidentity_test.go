package main

import (
	"context"
	"testing"
)

// TestIdentityComparison runs the Identity section on a few streams and
// checks what it is there to show: composing the fingerprint splits a NAT
// into its browsers without quarantining a person and catches the bot
// hidden in it; keying by fingerprint holds a rotating bot wherever it
// moves; the evidence flags its fingerprint under address identity.
func TestIdentityComparison(t *testing.T) {
	o := evalOptions{seed: holdoutSeed, streams: 6, workers: 2}
	c, err := compareIdentities(context.Background(), o, newSetup())
	if err != nil {
		t.Fatal(err)
	}
	cell := func(sc string, mode string) identityCell {
		for i, s := range c.scenarios {
			for m, md := range identityModes {
				if s.ID == sc && md.name == mode {
					return c.cells[i][m]
				}
			}
		}
		t.Fatalf("no cell %s %s", sc, mode)
		return identityCell{}
	}
	if h := cell("H15", "address+fingerprint"); h.humanHit != 0 || h.identities[0] != 20 {
		t.Errorf("H15 composed: %d streams with a person quarantined, %v identities", h.humanHit, h.identities)
	}
	if h := cell("H15", "address (default)"); h.identities[len(h.identities)-1] != 1 {
		t.Errorf("H15 by address: %v identities, want the one NAT address", h.identities)
	}
	if b := cell("B12", "address+fingerprint"); b.botHit != b.streams || b.humanHit != 0 {
		t.Errorf("B12 composed: bot caught in %d of %d streams, people in %d", b.botHit, b.streams, b.humanHit)
	}
	addr, fp := cell("B14", "address (default)"), cell("B14", "fingerprint")
	share := func(c identityCell) float64 { return float64(c.botDenied) / float64(c.botReqs) }
	if share(fp) <= share(addr) || share(fp) < 0.9 {
		t.Errorf("B14: %.2f of the rotating bot's requests denied by fingerprint, %.2f by address", share(fp), share(addr))
	}
	if ev := cell("B14", "address + evidence"); ev.prior == 0 || share(ev) <= share(addr) {
		t.Errorf("B14 with evidence: %d streams used the prior, %.2f denied vs %.2f", ev.prior, share(ev), share(addr))
	}
}
