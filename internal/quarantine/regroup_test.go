package quarantine

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// v6 is the identity of addr when IPv6 clients are grouped by prefix.
func v6(addr string, prefix int) identity.ID {
	return identity.FromAddr(netip.MustParseAddr(addr), prefix)
}

func TestRegroup(t *testing.T) {
	const week = 7 * 24 * time.Hour
	type probe struct {
		client identity.ID // as the service names it under the new prefix
		until  time.Time   // zero: not quarantined
		entry  string      // the entry's identity, when quarantined
	}
	tests := []struct {
		name   string
		setup  func(t *testing.T, l *List)
		prefix int
		want   Regrouped
		probes []probe
	}{{
		name: "same prefix changes nothing",
		setup: func(t *testing.T, l *List) {
			l.Ban(v6("2001:db8:1:2::9", 64), t0, time.Hour, "manual")
		},
		prefix: 64,
		want:   Regrouped{Prefix: 64},
		probes: []probe{
			{v6("2001:db8:1:2::ffff", 64), at(time.Hour), "2001:db8:1:2::/64"},
			{v6("2001:db8:1:3::1", 64), time.Time{}, ""},
		},
	}, {
		name: "coarser: /64 entries merge into their /56, the later end wins",
		setup: func(t *testing.T, l *List) {
			l.Ban(v6("2001:db8:1:2::9", 64), t0, week, "abuse ticket 42")
			l.Admit(v6("2001:db8:1:3::9", 64), t0, "periodic", 90)
			l.Admit(v6("2001:db8:2:3::9", 64), t0, "burst", 80) // another /56
		},
		prefix: 56,
		want:   Regrouped{Prefix: 56, From: []int{64}, Coarsened: 3, Merged: 1},
		probes: []probe{
			{v6("2001:db8:1:3::1", 56), at(week), "2001:db8:1::/56"},
			{v6("2001:db8:1:ff::1", 56), at(week), "2001:db8:1::/56"},
			{v6("2001:db8:2:1::1", 56), at(5 * time.Minute), "2001:db8:2::/56"},
			{v6("2001:db8:1:100::1", 56), time.Time{}, ""},
		},
	}, {
		name: "coarser: a merge never shortens the ban, whichever sorts first",
		setup: func(t *testing.T, l *List) {
			l.Admit(v6("2001:db8:1:2::9", 64), t0, "periodic", 90)
			l.Ban(v6("2001:db8:1:3::9", 64), t0, week, "abuse ticket 42")
		},
		prefix: 48,
		want:   Regrouped{Prefix: 48, From: []int{64}, Coarsened: 2, Merged: 1},
		probes: []probe{{v6("2001:db8:1:77::1", 48), at(week), "2001:db8:1::/48"}},
	}, {
		name: "coarser: single addresses (/128) join their /64",
		setup: func(t *testing.T, l *List) {
			l.Ban(v6("2001:db8::1", 128), t0, time.Hour, "manual")
			l.Ban(v6("2001:db8::2", 128), t0, 2*time.Hour, "manual")
		},
		prefix: 64,
		want:   Regrouped{Prefix: 64, From: []int{128}, Coarsened: 2, Merged: 1},
		probes: []probe{{v6("2001:db8::77", 64), at(2 * time.Hour), "2001:db8::/64"}},
	}, {
		name: "coarser: an entry already at the new prefix absorbs its /64s",
		setup: func(t *testing.T, l *List) {
			l.Ban(v6("2001:db8:1::", 56), t0, time.Hour, "older")
			l.Ban(v6("2001:db8:1:2::", 64), t0, 3*time.Hour, "newer")
		},
		prefix: 56,
		want:   Regrouped{Prefix: 56, From: []int{64}, Coarsened: 1, Merged: 1},
		probes: []probe{{v6("2001:db8:1:9::1", 56), at(3 * time.Hour), "2001:db8:1::/56"}},
	}, {
		name: "finer: a /64 is kept as a range for single addresses",
		setup: func(t *testing.T, l *List) {
			l.Ban(v6("2001:db8:1:2::9", 64), t0, time.Hour, "manual")
		},
		prefix: 128,
		want:   Regrouped{Prefix: 128, From: []int{64}, Ranges: 1},
		probes: []probe{
			{v6("2001:db8:1:2::9", 128), at(time.Hour), "2001:db8:1:2::/64"},
			{v6("2001:db8:1:2:ffff:ffff:ffff:ffff", 128), at(time.Hour), "2001:db8:1:2::/64"},
			{v6("2001:db8:1:3::9", 128), time.Time{}, ""},
		},
	}, {
		name: "finer: a /64 is kept as a range for /72 groups",
		setup: func(t *testing.T, l *List) {
			l.Ban(v6("2001:db8:1:2::9", 64), t0, time.Hour, "manual")
		},
		prefix: 72,
		want:   Regrouped{Prefix: 72, From: []int{64}, Ranges: 1},
		probes: []probe{
			{v6("2001:db8:1:2:ff00::1", 72), at(time.Hour), "2001:db8:1:2::/64"},
			{v6("2001:db8:1:3::9", 72), time.Time{}, ""},
		},
	}, {
		name: "finer: the most specific of nested ranges, then the client's own entry",
		setup: func(t *testing.T, l *List) {
			l.Ban(v6("2001:db8:1::", 48), t0, time.Hour, "wide")
			l.Ban(v6("2001:db8:1:2::", 64), t0, 2*time.Hour, "narrow")
			l.Ban(v6("2001:db8:1:2::9", 128), t0, 3*time.Hour, "own")
		},
		prefix: 128,
		want:   Regrouped{Prefix: 128, From: []int{48, 64}, Ranges: 2},
		probes: []probe{
			{v6("2001:db8:1:2::9", 128), at(3 * time.Hour), "2001:db8:1:2::9"},
			{v6("2001:db8:1:2::8", 128), at(2 * time.Hour), "2001:db8:1:2::/64"},
			{v6("2001:db8:1:3::8", 128), at(time.Hour), "2001:db8:1::/48"},
		},
	}, {
		name: "mixed: /64s coarsen to /56, a /48 stays a range",
		setup: func(t *testing.T, l *List) {
			l.Ban(v6("2001:db8:1:2::", 64), t0, time.Hour, "a")
			l.Ban(v6("2001:db8:2::", 48), t0, 2*time.Hour, "b")
		},
		prefix: 56,
		want:   Regrouped{Prefix: 56, From: []int{48, 64}, Coarsened: 1, Ranges: 1},
		probes: []probe{
			{v6("2001:db8:1:5::1", 56), at(time.Hour), "2001:db8:1::/56"},
			{v6("2001:db8:2:7700::1", 56), at(2 * time.Hour), "2001:db8:2::/48"},
		},
	}, {
		name: "IPv4 and name identities are untouched",
		setup: func(t *testing.T, l *List) {
			l.Ban(ipID("203.0.113.7"), t0, time.Hour, "manual")
			l.Ban(nameID(t, "api-key-123"), t0, time.Hour, "manual")
			l.Ban(nameID(t, "2001:db8:1:2::/64"), t0, time.Hour, "a header that looks like a prefix")
		},
		prefix: 48,
		want:   Regrouped{Prefix: 48},
		probes: []probe{
			{ipID("203.0.113.7"), at(time.Hour), "203.0.113.7"},
			{nameID(t, "api-key-123"), at(time.Hour), "api-key-123"},
			{nameID(t, "2001:db8:1:2::/64"), at(time.Hour), "2001:db8:1:2::/64"},
			{v6("2001:db8:1:2::1", 48), time.Time{}, ""},
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := New(Options{})
			tc.setup(t, l)
			before := l.Stats()
			drain(l)
			got := l.Regroup(tc.prefix, t0)
			if !slices.Equal(got.From, tc.want.From) || got.Prefix != tc.want.Prefix ||
				got.Coarsened != tc.want.Coarsened || got.Merged != tc.want.Merged || got.Ranges != tc.want.Ranges {
				t.Errorf("Regroup(%d) = %+v, want %+v", tc.prefix, got, tc.want)
			}
			if signalled := drain(l); signalled != (got.Coarsened > 0) {
				t.Errorf("Changed signalled = %v, want it only when entries were re-keyed", signalled)
			}
			if st := l.Stats(); st.Entries != before.Entries-got.Merged || st.Active != before.Active-got.Merged {
				t.Errorf("Stats after Regroup = %+v, want %+v less %d merged", st, before, got.Merged)
			}
			now := at(time.Minute)
			for _, p := range tc.probes {
				e, ok := l.Check(p.client, now)
				switch {
				case p.until.IsZero() && ok:
					t.Errorf("Check(%v) = %+v, want not quarantined", p.client, e)
				case !p.until.IsZero() && !ok:
					t.Errorf("Check(%v) = not quarantined, want quarantined by %s until %v", p.client, p.entry, p.until)
				case ok && (!e.Until.Equal(p.until) || e.ID.String() != p.entry):
					t.Errorf("Check(%v) = %v until %v, want %s until %v", p.client, e.ID, e.Until, p.entry, p.until)
				}
			}
		})
	}
}

// TestRegroupMergeKeepsStrikes: a merged group escalates from its worst
// member's history, not from the sum of them, and keeps the winner's fields.
func TestRegroupMergeKeepsStrikes(t *testing.T) {
	l := New(Options{}) // 5m, doubling
	repeat := v6("2001:db8:1:2::9", 64)
	for _, d := range []time.Duration{-3 * time.Hour, -2 * time.Hour, -time.Hour} {
		l.Admit(repeat, at(d), "periodic", 90)
	}
	once := v6("2001:db8:1:3::9", 64)
	want := l.Admit(once, t0, "burst", 77) // active: the later end

	g := l.Regroup(56, t0)
	if g.Merged != 1 {
		t.Fatalf("Regroup = %+v, want one merge", g)
	}
	group := v6("2001:db8:1::", 56)
	e, ok := l.Check(group, t0)
	if !ok || !e.Until.Equal(want.Until) || !e.Since.Equal(want.Since) || e.Reason != "burst" || e.Score != 77 || e.Manual {
		t.Fatalf("merged entry = %+v, %v; want the active quarantine %+v", e, ok, want)
	}
	if e.Strikes != 3 {
		t.Errorf("merged Strikes = %d, want 3, the larger count", e.Strikes)
	}
	// The longest history (3 strikes) is kept, not 3+1: the next offence
	// is the 4th strike, 5m*2^3.
	next := l.Admit(group, e.Until, "periodic", 90)
	if next.Strikes != 4 || next.Until.Sub(next.Since) != 40*time.Minute {
		t.Errorf("next admission = %d strikes, %v; want 4 strikes, 40m", next.Strikes, next.Until.Sub(next.Since))
	}
}

// TestRegroupRanges: a range kept for a finer prefix can be extended and
// released by naming a client inside it, and once it is gone Check stops
// looking for ranges.
func TestRegroupRanges(t *testing.T) {
	l := New(Options{})
	l.Ban(v6("2001:db8:1:2::", 64), t0, time.Hour, "manual")
	l.Ban(v6("2001:db8:9:9::", 64), t0, 2*time.Hour, "manual")
	l.Regroup(128, t0)
	client := v6("2001:db8:1:2::9", 128)

	e, ok := l.Extend(client, t0, 30*time.Minute)
	if !ok || !e.Until.Equal(at(90*time.Minute)) || e.ID.String() != "2001:db8:1:2::/64" {
		t.Errorf("Extend(client) = %+v, %v; want the /64 extended to +90m", e, ok)
	}
	if !l.Release(client, t0) {
		t.Fatal("Release(client) = false, want the range released")
	}
	if e, ok := l.Check(client, t0); ok {
		t.Errorf("after Release, Check(client) = %+v", e)
	}
	if l.Release(client, t0) {
		t.Error("a second Release = true")
	}
	if _, ok := l.Check(v6("2001:db8:9:9::1", 128), t0); !ok {
		t.Error("the other range was released too")
	}
	// Refusals by a range count in the range's Hits.
	l.Hit(v6("2001:db8:9:9::1", 128), t0)
	if e, ok := l.Hit(v6("2001:db8:9:9::2", 128), t0); !ok || e.Hits != 2 || e.ID.String() != "2001:db8:9:9::/64" {
		t.Errorf("Hit by two clients in a range = %+v, %v; want the /64 with Hits 2", e, ok)
	}
	if l.wide.Load() == nil {
		t.Fatal("ranges forgotten while one is active")
	}
	l.Sweep(at(3 * time.Hour))
	if w := l.wide.Load(); w != nil {
		t.Errorf("after the ranges ended, Check still looks for lengths %v", w.bits)
	}
}

// TestRegroupSweepKeepsLengthsInUse: Sweep drops only the lengths no entry
// has any more.
func TestRegroupSweepKeepsLengthsInUse(t *testing.T) {
	l := New(Options{})
	l.Ban(v6("2001:db8:1::", 48), t0, time.Hour, "short")
	l.Ban(v6("2001:db8:2:2::", 64), t0, 3*time.Hour, "long")
	l.Regroup(128, t0)
	l.Sweep(at(2 * time.Hour))
	if w := l.wide.Load(); w == nil || !slices.Equal(w.bits, []int{64}) {
		t.Errorf("after the /48 ended, lengths = %v, want [64]", w)
	}
	if _, ok := l.Check(v6("2001:db8:2:2::1", 128), at(2*time.Hour)); !ok {
		t.Error("the /64 range stopped matching")
	}
}

// TestRegroupKeepsPendingExpiry: a quarantine that ran out before Regroup
// is still counted once by the next Sweep.
func TestRegroupKeepsPendingExpiry(t *testing.T) {
	l := New(Options{})
	l.Admit(v6("2001:db8:1:2::", 64), t0, "periodic", 90) // ends at +5m
	l.Admit(v6("2001:db8:1:3::", 64), t0, "periodic", 90)
	l.Regroup(56, at(10*time.Minute))
	if n := l.Sweep(at(11 * time.Minute)); n != 2 {
		t.Errorf("Sweep after Regroup = %d expired, want 2", n)
	}
	if n := l.Sweep(at(12 * time.Minute)); n != 0 {
		t.Errorf("second Sweep = %d expired, want 0", n)
	}
}

// TestRegroupStateRoundTrip: a regrouped List writes its new keys, and the
// next start with the same prefix has nothing to regroup.
func TestRegroupStateRoundTrip(t *testing.T) {
	src, _ := sampleList(t)
	var buf bytes.Buffer
	if err := src.WriteState(&buf, t0); err != nil {
		t.Fatal(err)
	}
	l := New(Options{})
	if err := l.ReadState(bytes.NewReader(buf.Bytes()), t0); err != nil {
		t.Fatal(err)
	}
	if g := l.Regroup(56, t0); g.Coarsened != 2 || !slices.Equal(g.From, []int{64, 128}) {
		t.Errorf("Regroup(56) = %+v, want the /64 and the /128 coarsened", g)
	}
	buf.Reset()
	if err := l.WriteState(&buf, t0); err != nil {
		t.Fatal(err)
	}
	again := New(Options{})
	if err := again.ReadState(&buf, t0); err != nil {
		t.Fatal(err)
	}
	if g := again.Regroup(56, t0); g.Changed() {
		t.Errorf("Regroup of a regrouped file = %+v, want nothing to do", g)
	}
	if got, want := again.Snapshot(t0), l.Snapshot(t0); !slices.Equal(got, want) {
		t.Errorf("Snapshot after the round trip =\n%+v\nwant\n%+v", got, want)
	}
	// ReadState forgets ranges: the entries are as written until Regroup.
	l.Regroup(128, t0)
	if l.wide.Load() == nil {
		t.Fatal("Regroup(128) kept no ranges")
	}
	if err := l.ReadState(emptyState(t), t0); err != nil {
		t.Fatal(err)
	}
	if l.wide.Load() != nil {
		t.Error("ReadState kept the ranges of the entries it replaced")
	}
}

func TestCheckAllocsWithRanges(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	l := New(Options{})
	l.Ban(v6("2001:db8:1::", 48), t0, time.Hour, "manual")
	l.Ban(v6("2001:db8:1:2::", 64), t0, time.Hour, "manual")
	l.Regroup(128, t0)
	now := at(time.Minute)
	for _, id := range []identity.ID{
		v6("2001:db8:1:2::9", 128), // in a range
		v6("2001:db8:2::9", 128),   // a miss that probes every length
		ipID("203.0.113.7"),
	} {
		if n := testing.AllocsPerRun(1000, func() { l.Check(id, now) }); n != 0 {
			t.Errorf("Check(%v) allocates %v times, want 0", id, n)
		}
		if n := testing.AllocsPerRun(1000, func() { l.Hit(id, now) }); n != 0 {
			t.Errorf("Hit(%v) allocates %v times, want 0", id, n)
		}
	}
}

// BenchmarkCheckRanges is BenchmarkCheck's miss for IPv6 clients, without
// ranges and with one range length kept by Regroup (64 -> 128): the price of
// the second look while old /64 bans last.
func BenchmarkCheckRanges(b *testing.B) {
	ids := make([]identity.ID, 4096)
	for i := range ids {
		ids[i] = identity.FromAddr(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, byte(i >> 8), byte(i), 15: 1}), 128)
	}
	for _, ranges := range []bool{false, true} {
		l := New(Options{})
		for i := range 1000 {
			l.Ban(identity.FromAddr(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 2, byte(i >> 8), byte(i)}), 64), t0, time.Hour, "manual")
		}
		if ranges {
			l.Regroup(128, t0)
		}
		b.Run(fmt.Sprintf("ranges=%v/miss", ranges), func(b *testing.B) {
			b.ReportAllocs()
			now := at(time.Minute)
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, ok := l.Check(ids[i&4095], now); ok {
						b.Fatal("Check = true, want a miss")
					}
					i++
				}
			})
		})
	}
}

// TestRegroupIgnoresEndedRanges: an entry from a shorter prefix whose
// quarantine is over only holds strike history no client can reach; it is
// not a range, costs Check nothing and is not reported as one. An active
// range that ends stops costing lookups at the next Sweep, although its
// strike history is kept for the strike window.
func TestRegroupIgnoresEndedRanges(t *testing.T) {
	l := New(Options{BaseTTL: 5 * time.Minute})
	l.Admit(v6("2001:db8:1:2::", 64), t0, "periodic", 90) // ends at +5m, one strike
	if g := l.Regroup(128, at(time.Hour)); g.Ranges != 0 || l.wide.Load() != nil {
		t.Errorf("Regroup after the quarantine ended: %+v, ranges looked up: %v", g, l.wide.Load() != nil)
	}

	l = New(Options{BaseTTL: 5 * time.Minute})
	l.Admit(v6("2001:db8:1:2::", 64), t0, "periodic", 90)
	if g := l.Regroup(128, at(time.Minute)); g.Ranges != 1 || l.wide.Load() == nil {
		t.Fatalf("Regroup of an active quarantine: %+v", g)
	}
	l.Sweep(at(10 * time.Minute))
	if st := l.Stats(); st.Entries != 1 {
		t.Errorf("strike history dropped early: %+v", st)
	}
	if w := l.wide.Load(); w != nil {
		t.Errorf("after the range ended, Check still looks for lengths %v", w.bits)
	}
}
