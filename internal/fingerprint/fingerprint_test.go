package fingerprint

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

var t0 = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

func addr(i int) identity.ID {
	return identity.FromAddr(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), 64)
}

func TestFlagAfterDistinctQuarantines(t *testing.T) {
	e := New(Options{FlagAfter: 3, Window: time.Hour, CalmLimit: 5})
	fp := identity.FingerprintKey("t13d1516h2_8daaf6152771_02713d6af862")
	e.Quarantined(fp, addr(1), t0)
	e.Quarantined(fp, addr(1), t0.Add(time.Minute)) // the same identity again
	e.Quarantined(fp, addr(2), t0.Add(2*time.Minute))
	if e.Flagged(fp, t0.Add(3*time.Minute)) {
		t.Fatal("flagged after two distinct identities, want three")
	}
	e.Quarantined(fp, addr(3), t0.Add(3*time.Minute))
	if !e.Flagged(fp, t0.Add(4*time.Minute)) {
		t.Fatal("not flagged after three distinct identities within the window")
	}
	if e.Count(t0.Add(4*time.Minute)) != 1 {
		t.Error("Count")
	}
	flags := e.Flags(t0.Add(4*time.Minute), 0)
	if len(flags) != 1 || flags[0].Key != fp || flags[0].Quarantined != 3 || !flags[0].Since.Equal(t0.Add(3*time.Minute)) {
		t.Errorf("Flags = %+v", flags)
	}
	// The oldest of the three leaves the window: the flag lapses.
	if e.Flagged(fp, t0.Add(time.Hour+2*time.Minute)) {
		t.Error("still flagged once the first quarantine left the window")
	}
	if e.Flagged(identity.FingerprintKey("other"), t0) || e.Flagged("", t0) {
		t.Error("an unknown fingerprint is flagged")
	}
}

// TestCalmIdentitiesPreventAFlag: a fingerprint that calm identities carry
// (a browser build) is never flagged, however many bots share it.
func TestCalmIdentitiesPreventAFlag(t *testing.T) {
	e := New(Options{FlagAfter: 3, Window: time.Hour, CalmLimit: 5})
	fp := identity.FingerprintKey("t13d1516h2_8daaf6152771_02713d6af862")
	for i := range 5 {
		e.Calm(fp, addr(100+i), t0)
		e.Calm(fp, addr(100+i), t0) // counted once
	}
	for i := range 20 {
		e.Quarantined(fp, addr(i), t0.Add(time.Duration(i)*time.Second))
	}
	if e.Flagged(fp, t0.Add(time.Minute)) || e.Count(t0.Add(time.Minute)) != 0 {
		t.Fatal("a fingerprint carried by 5 calm identities (the limit) was flagged")
	}
	// Four calm identities are not yet the limit.
	f := New(Options{FlagAfter: 3, Window: time.Hour, CalmLimit: 5})
	for i := range 4 {
		f.Calm(fp, addr(100+i), t0)
	}
	for i := range 3 {
		f.Quarantined(fp, addr(i), t0)
	}
	if !f.Flagged(fp, t0) {
		t.Error("4 calm identities under a limit of 5 kept the flag off")
	}
	// A calm identity later quarantined no longer counts as calm.
	g := New(Options{FlagAfter: 1, Window: time.Hour, CalmLimit: 1})
	g.Calm(fp, addr(7), t0)
	g.Quarantined(fp, addr(7), t0)
	if !g.Flagged(fp, t0) {
		t.Error("an identity counted calm and then quarantined still counts as calm")
	}
}

func TestEvidenceBounded(t *testing.T) {
	e := New(Options{FlagAfter: 1, Window: time.Hour, MaxFingerprints: 100})
	for i := range 1000 {
		e.Calm(identity.FingerprintKey("fp"+strconv.Itoa(i)), addr(i), t0.Add(time.Duration(i)))
	}
	if e.Len() > 100 {
		t.Fatalf("Len = %d over a cap of 100", e.Len())
	}
	// Flagged entries are not evicted by a flood of new fingerprints.
	bad := identity.FingerprintKey("the-bot")
	e.Quarantined(bad, addr(1), t0)
	for i := range 1000 {
		e.Calm(identity.FingerprintKey("more"+strconv.Itoa(i)), addr(i), t0.Add(time.Second))
	}
	if !e.Flagged(bad, t0.Add(time.Minute)) || e.Len() > 100 {
		t.Errorf("flag lost to a flood of fingerprints (len %d)", e.Len())
	}
	off := New(Options{})
	off.Quarantined(bad, addr(1), t0)
	if off != nil || off.Flagged(bad, t0) || off.Flags(t0, 0) != nil || off.Count(t0) != 0 {
		t.Error("FlagAfter 0 must turn the evidence off")
	}
}

// BenchmarkFlagged is the cost a Check pays when its verdict is over the
// threshold but not yet confirmed.
func BenchmarkFlagged(b *testing.B) {
	e := New(Options{FlagAfter: 5})
	fp := identity.FingerprintKey("t13d1516h2_8daaf6152771_02713d6af862")
	for i := range 5 {
		e.Quarantined(fp, addr(i), t0)
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Flagged(fp, t0)
	}
}
