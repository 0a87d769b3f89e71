package wire

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/traffic"
)

// The fingerprints of the evidence scenarios: a scripting library's TLS
// stack the bot keeps whatever address it uses, and a browser build that
// people share.
const (
	botJA4    = "t13d1311h1_e8f1e7e78f70_3c5b8b3e2d4f"
	chromeJA4 = "t13d1516h2_8daaf6152771_02713d6af862"
)

var evidenceStart = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

// runClient feeds one scenario stream from addr with fingerprint fp into
// the stack, and returns the 1-based request that was admitted to
// quarantine (0: never) and whether a flagged fingerprint confirmed it.
func runClient(t *testing.T, s *Stack, name string, seed uint64, addr netip.Addr, fp string, start time.Time) (admittedAt int, prior bool) {
	t.Helper()
	sc, ok := traffic.Lookup(name)
	if !ok {
		t.Fatalf("no scenario %s", name)
	}
	st := sc.Stream(seed, start)
	for n := 1; ; n++ {
		req, ok := st.Next()
		if !ok {
			return 0, false
		}
		c := s.Rules.ResolveWith(addr, "", "", "", fp)
		d := s.Policy.Decide(authz.Request{Client: c, Path: req.Path, Now: req.TS})
		if d.Outcome == authz.Admitted {
			return n, d.Prior
		}
	}
}

func evidenceConfig() config.Config {
	c := config.Default()
	c.FingerprintHeader = "x-ja4"
	c.FingerprintFlagAfter = 3
	return c
}

// TestFingerprintEvidenceSpeedsUpARotatingBot: a jittered bot that moves
// to a new address after each quarantine, keeping its TLS stack. Once
// three of its addresses are quarantined, its fingerprint is flagged and
// each new address is confirmed on its first evaluation over the
// threshold instead of the third; without the evidence every address
// takes as long as the first.
func TestFingerprintEvidenceSpeedsUpARotatingBot(t *testing.T) {
	rtds := func(c config.Config) (first, later []int, priors int) {
		s := Build(c, Extra{})
		for i := range 8 {
			a := netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)})
			at, prior := runClient(t, s, "uniform-20pct-2s", 7, a, botJA4, evidenceStart.Add(time.Duration(i)*5*time.Minute))
			if at == 0 {
				t.Fatalf("address %d never quarantined", i)
			}
			if prior {
				priors++
			}
			if i < 3 {
				first = append(first, at)
			} else {
				later = append(later, at)
			}
		}
		return first, later, priors
	}
	c := evidenceConfig()
	_, off, offPriors := rtds(func() config.Config { c := c; c.FingerprintFlagAfter = 0; return c }())
	first, on, priors := rtds(c)
	t.Logf("requests to quarantine: first three addresses %v; later ones %v with the evidence, %v without", first, on, off)
	if offPriors != 0 {
		t.Error("a prior was applied with the evidence off")
	}
	if priors != len(on) {
		t.Errorf("%d of %d later addresses were confirmed by the flagged fingerprint", priors, len(on))
	}
	for i := range on {
		if on[i] >= off[i] {
			t.Errorf("address %d: quarantined at request %d with the evidence, %d without: no faster", i+3, on[i], off[i])
		}
	}
}

// TestFingerprintOfPeopleIsNeverFlagged: the bot uses a browser's TLS
// stack that 25 calm people at their own addresses also use. However many
// of its addresses are quarantined, the fingerprint is never flagged, the
// bot gets no prior, and none of the people is quarantined.
func TestFingerprintOfPeopleIsNeverFlagged(t *testing.T) {
	s := Build(evidenceConfig(), Extra{})
	for i := range 25 {
		a := netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i)})
		if at, _ := runClient(t, s, "human-spa", uint64(100+i), a, chromeJA4, evidenceStart); at != 0 {
			t.Fatalf("person %d quarantined at request %d", i, at)
		}
	}
	for i := range 8 {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)})
		at, prior := runClient(t, s, "uniform-20pct-2s", 7, a, chromeJA4, evidenceStart.Add(time.Duration(i)*5*time.Minute))
		if at == 0 {
			t.Fatalf("bot address %d never quarantined", i)
		}
		if prior {
			t.Fatalf("bot address %d confirmed by a prior on a fingerprint 25 calm people carry", i)
		}
	}
	if n := s.Evidence.Count(evidenceStart.Add(9 * time.Hour)); n != 0 {
		t.Errorf("%d fingerprints flagged", n)
	}
	// Later people with that browser are decided as before: no prior.
	if at, _ := runClient(t, s, "human-spa", 999, netip.MustParseAddr("203.0.113.200"), chromeJA4, evidenceStart.Add(9*time.Hour)); at != 0 {
		t.Errorf("a person with the common browser was quarantined at request %d", at)
	}
	if id := identity.FingerprintKey(chromeJA4); s.Evidence.Flagged(id, evidenceStart.Add(9*time.Hour)) {
		t.Error("flagged")
	}
}
