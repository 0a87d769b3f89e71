package quarantine

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// t0 is the hand-moved clock's start.
var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func ipID(s string) identity.ID { return identity.FromAddr(netip.MustParseAddr(s), 64) }

func nameID(t testing.TB, s string) identity.ID {
	t.Helper()
	id, err := identity.FromName(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func at(d time.Duration) time.Time { return t0.Add(d) }

// drain empties l.Changed and reports whether it held a signal.
func drain(l *List) bool {
	select {
	case <-l.Changed():
		return true
	default:
		return false
	}
}

func TestAdmitEscalation(t *testing.T) {
	type step struct {
		at          time.Duration // when Admit is called
		wantUntil   time.Duration // the returned Until, from t0
		wantStrikes int
	}
	tests := []struct {
		name  string
		opts  Options
		steps []step
	}{
		{
			name:  "first admit lasts BaseTTL",
			steps: []step{{0, 5 * time.Minute, 1}},
		},
		{
			name: "repeat strikes double, then quadruple",
			steps: []step{
				{0, 5 * time.Minute, 1},
				{10 * time.Minute, 20 * time.Minute, 2},          // 2 x 5m
				{30 * time.Minute, 50 * time.Minute, 3},          // 4 x 5m
				{2 * time.Hour, 2*time.Hour + 40*time.Minute, 4}, // 8 x 5m
			},
		},
		{
			name: "admit while quarantined returns the entry unchanged",
			steps: []step{
				{0, 5 * time.Minute, 1},
				{time.Minute, 5 * time.Minute, 1},
				{5*time.Minute - time.Nanosecond, 5 * time.Minute, 1},
				{5 * time.Minute, 15 * time.Minute, 2}, // over at exactly Until
			},
		},
		{
			name: "escalation capped at MaxTTL",
			opts: Options{BaseTTL: time.Hour, MaxTTL: 3 * time.Hour},
			steps: []step{
				{0, time.Hour, 1},
				{time.Hour, 3 * time.Hour, 2},
				{3 * time.Hour, 6 * time.Hour, 3}, // 4h capped to 3h
				{6 * time.Hour, 9 * time.Hour, 4},
			},
		},
		{
			name: "strike older than the window is forgotten",
			opts: Options{StrikeWindow: time.Hour},
			steps: []step{
				{0, 5 * time.Minute, 1},
				{2 * time.Hour, 2*time.Hour + 5*time.Minute, 1},
			},
		},
		{
			name: "strike is forgotten exactly StrikeWindow after it",
			opts: Options{StrikeWindow: time.Hour},
			steps: []step{
				{0, 5 * time.Minute, 1},
				{time.Hour - time.Nanosecond, time.Hour - time.Nanosecond + 10*time.Minute, 2},
				{3 * time.Hour, 3*time.Hour + 5*time.Minute, 1},
			},
		},
		{
			name: "strikes leave the window one by one",
			opts: Options{StrikeWindow: time.Hour},
			steps: []step{
				{0, 5 * time.Minute, 1},
				{30 * time.Minute, 40 * time.Minute, 2},
				{70 * time.Minute, 80 * time.Minute, 2}, // the strike at 0 is gone
			},
		},
		{
			name: "factor 3",
			opts: Options{Factor: 3},
			steps: []step{
				{0, 5 * time.Minute, 1},
				{5 * time.Minute, 20 * time.Minute, 2},
				{20 * time.Minute, 65 * time.Minute, 3},
			},
		},
		{
			name: "factor below 1 means no escalation",
			opts: Options{Factor: 0.5},
			steps: []step{
				{0, 5 * time.Minute, 1},
				{5 * time.Minute, 10 * time.Minute, 2},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := New(tc.opts)
			id := ipID("203.0.113.7")
			for i, s := range tc.steps {
				now := at(s.at)
				e := l.Admit(id, now, "fixed-interval", 90)
				if !e.Until.Equal(at(s.wantUntil)) || e.Strikes != s.wantStrikes {
					t.Fatalf("step %d: Admit at +%v = until +%v, strikes %d; want until +%v, strikes %d",
						i, s.at, e.Until.Sub(t0), e.Strikes, s.wantUntil, s.wantStrikes)
				}
				// Active until exactly Until, then over.
				if _, ok := l.Check(id, e.Until.Add(-time.Nanosecond)); !ok {
					t.Errorf("step %d: Check 1ns before Until = not quarantined", i)
				}
				if _, ok := l.Check(id, e.Until); ok {
					t.Errorf("step %d: Check at Until = still quarantined", i)
				}
			}
		})
	}
}

func TestCheck(t *testing.T) {
	l := New(Options{})
	id := ipID("203.0.113.7")
	if _, ok := l.Check(id, t0); ok {
		t.Fatal("unknown identity is quarantined")
	}
	want := l.Admit(id, t0, "fixed-interval", 88)
	got, ok := l.Check(id, at(time.Minute))
	if !ok {
		t.Fatal("admitted identity is not quarantined")
	}
	if got != want {
		t.Errorf("Check = %+v, want %+v", got, want)
	}
	if got.ID != id || got.Reason != "fixed-interval" || got.Score != 88 || got.Manual || !got.Since.Equal(t0) {
		t.Errorf("Check = %+v: wrong fields", got)
	}
	if _, ok := l.Check(ipID("203.0.113.8"), at(time.Minute)); ok {
		t.Error("a neighbour address is quarantined too")
	}
	// IPv6 clients in one /64 share the quarantine.
	l.Admit(ipID("2001:db8:1:2::1"), t0, "burst", 70)
	if _, ok := l.Check(ipID("2001:db8:1:2:ffff::9"), t0); !ok {
		t.Error("another address in the quarantined /64 is not quarantined")
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	tests := []struct {
		left time.Duration
		want int
	}{
		{1200 * time.Millisecond, 2},
		{300 * time.Millisecond, 1},
		{time.Nanosecond, 1},
		{time.Second, 1},
		{time.Second + time.Nanosecond, 2},
		{2 * time.Second, 2},
		{5 * time.Minute, 300},
		{0, 1},
		{-time.Hour, 1},
	}
	for _, tc := range tests {
		t.Run(tc.left.String(), func(t *testing.T) {
			e := Entry{Since: t0, Until: t0.Add(tc.left)}
			if got := e.RetryAfterSeconds(t0); got != tc.want {
				t.Errorf("RetryAfterSeconds with %v left = %d, want %d", tc.left, got, tc.want)
			}
			if got, want := e.Remaining(t0), max(tc.left, 0); got != want {
				t.Errorf("Remaining = %v, want %v", got, want)
			}
		})
	}
}

func TestBan(t *testing.T) {
	id := ipID("198.51.100.1")
	tests := []struct {
		name        string
		before      func(l *List) // prior state at t0
		banAt       time.Duration
		ttl         time.Duration
		wantSince   time.Duration
		wantUntil   time.Duration
		wantStrikes int
		wantScore   uint8
	}{
		{name: "ttl 0 means BaseTTL", ttl: 0, wantUntil: 5 * time.Minute},
		{name: "negative ttl means BaseTTL", ttl: -time.Hour, wantUntil: 5 * time.Minute},
		{name: "explicit ttl", ttl: 7 * 24 * time.Hour, wantUntil: 7 * 24 * time.Hour},
		{name: "capped at MaxBanTTL", ttl: 10 * MaxBanTTL, wantUntil: MaxBanTTL},
		{
			name:   "extends an active quarantine",
			before: func(l *List) { l.Admit(id, t0, "auto", 90) },
			banAt:  time.Minute, ttl: time.Hour,
			wantSince: 0, wantUntil: time.Hour + time.Minute, wantStrikes: 1, wantScore: 90,
		},
		{
			name:   "never shortens an active quarantine",
			before: func(l *List) { l.Admit(id, t0, "auto", 90) },
			banAt:  time.Minute, ttl: time.Second,
			wantSince: 0, wantUntil: 5 * time.Minute, wantStrikes: 1, wantScore: 90,
		},
		{
			name:   "after an expired quarantine, starts anew without a strike",
			before: func(l *List) { l.Admit(id, t0, "auto", 90) },
			banAt:  time.Hour, ttl: time.Hour,
			wantSince: time.Hour, wantUntil: 2 * time.Hour, wantStrikes: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := New(Options{})
			if tc.before != nil {
				tc.before(l)
			}
			drain(l)
			e := l.Ban(id, at(tc.banAt), tc.ttl, "abuse ticket 42")
			if !e.Manual || e.Reason != "abuse ticket 42" {
				t.Errorf("Ban = %+v, want Manual with the operator's reason", e)
			}
			if !e.Since.Equal(at(tc.wantSince)) || !e.Until.Equal(at(tc.wantUntil)) {
				t.Errorf("Ban = since +%v until +%v, want since +%v until +%v",
					e.Since.Sub(t0), e.Until.Sub(t0), tc.wantSince, tc.wantUntil)
			}
			if e.Strikes != tc.wantStrikes || e.Score != tc.wantScore {
				t.Errorf("Ban = strikes %d score %d, want strikes %d score %d", e.Strikes, e.Score, tc.wantStrikes, tc.wantScore)
			}
			if got, ok := l.Check(id, at(tc.banAt)); !ok || got != e {
				t.Errorf("Check after Ban = %+v, %v; want %+v, true", got, ok, e)
			}
			if !drain(l) {
				t.Error("Ban did not signal Changed")
			}
		})
	}
}

func TestBanDoesNotStrike(t *testing.T) {
	l := New(Options{})
	id := ipID("198.51.100.1")
	l.Ban(id, t0, time.Minute, "manual")
	if e := l.Admit(id, at(time.Hour), "auto", 80); e.Strikes != 1 || e.Until.Sub(e.Since) != 5*time.Minute {
		t.Errorf("Admit after a ban = strikes %d ttl %v, want a first strike of 5m", e.Strikes, e.Until.Sub(e.Since))
	}
}

func TestExtend(t *testing.T) {
	id := ipID("198.51.100.2")
	tests := []struct {
		name      string
		before    func(l *List)
		extendAt  time.Duration
		by        time.Duration
		wantOK    bool
		wantUntil time.Duration
	}{
		{name: "not quarantined", by: time.Hour, wantOK: false},
		{
			name:     "expired quarantine is not extended",
			before:   func(l *List) { l.Admit(id, t0, "auto", 90) },
			extendAt: 5 * time.Minute, by: time.Hour, wantOK: false,
		},
		{
			name:     "adds to the end",
			before:   func(l *List) { l.Admit(id, t0, "auto", 90) },
			extendAt: time.Minute, by: time.Hour, wantOK: true, wantUntil: time.Hour + 5*time.Minute,
		},
		{
			name:     "capped at now plus MaxTTL",
			before:   func(l *List) { l.Admit(id, t0, "auto", 90) },
			extendAt: time.Minute, by: 100 * time.Hour, wantOK: true, wantUntil: 24*time.Hour + time.Minute,
		},
		{
			name:     "zero changes nothing",
			before:   func(l *List) { l.Admit(id, t0, "auto", 90) },
			extendAt: time.Minute, by: 0, wantOK: true, wantUntil: 5 * time.Minute,
		},
		{
			name:     "negative changes nothing",
			before:   func(l *List) { l.Admit(id, t0, "auto", 90) },
			extendAt: time.Minute, by: -time.Hour, wantOK: true, wantUntil: 5 * time.Minute,
		},
		{
			name:     "a ban beyond the cap is not shortened",
			before:   func(l *List) { l.Ban(id, t0, 7*24*time.Hour, "manual") },
			extendAt: time.Minute, by: time.Hour, wantOK: true, wantUntil: 7 * 24 * time.Hour,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := New(Options{})
			if tc.before != nil {
				tc.before(l)
			}
			drain(l)
			e, ok := l.Extend(id, at(tc.extendAt), tc.by)
			if ok != tc.wantOK {
				t.Fatalf("Extend ok = %v, want %v", ok, tc.wantOK)
			}
			if !ok {
				if drain(l) {
					t.Error("a failed Extend signalled Changed")
				}
				return
			}
			if !e.Until.Equal(at(tc.wantUntil)) {
				t.Errorf("Extend until = +%v, want +%v", e.Until.Sub(t0), tc.wantUntil)
			}
			if got, _ := l.Check(id, at(tc.extendAt)); got != e {
				t.Errorf("Check after Extend = %+v, want %+v", got, e)
			}
		})
	}
}

func TestReleaseKeepsStrikes(t *testing.T) {
	l := New(Options{})
	id := ipID("203.0.113.9")
	l.Admit(id, t0, "auto", 90)                      // strike 1: 5m
	e := l.Admit(id, at(10*time.Minute), "auto", 90) // strike 2: 10m
	if e.Strikes != 2 {
		t.Fatalf("strikes = %d, want 2", e.Strikes)
	}
	drain(l)
	if !l.Release(id, at(11*time.Minute)) {
		t.Fatal("Release of a quarantined identity = false")
	}
	if !drain(l) {
		t.Error("Release did not signal Changed")
	}
	if _, ok := l.Check(id, at(11*time.Minute)); ok {
		t.Error("released identity is still quarantined")
	}
	if l.Release(id, at(11*time.Minute)) {
		t.Error("second Release = true, want false")
	}
	if got := l.Len(); got != 0 {
		t.Errorf("Len after Release = %d, want 0", got)
	}
	e = l.Admit(id, at(12*time.Minute), "auto", 90)
	if e.Strikes != 3 || e.Until.Sub(e.Since) != 20*time.Minute {
		t.Errorf("Admit after Release = strikes %d ttl %v, want strike 3 with 20m", e.Strikes, e.Until.Sub(e.Since))
	}
	// The first and third quarantines ran out; the released one does not count.
	if got := l.Sweep(at(time.Hour)); got != 2 {
		t.Errorf("Sweep = %d expired, want 2", got)
	}
}

func TestReleaseWithoutStrikesForgets(t *testing.T) {
	l := New(Options{})
	id := ipID("203.0.113.10")
	l.Ban(id, t0, time.Hour, "manual")
	l.Release(id, at(time.Minute))
	if st := l.Stats(); st.Entries != 0 || st.Active != 0 {
		t.Errorf("Stats after releasing a plain ban = %+v, want empty", st)
	}
}

func TestCheckAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	l := New(Options{})
	hit := ipID("203.0.113.7")
	l.Admit(hit, t0, "fixed-interval", 90)
	name := nameID(t, "api-key-123")
	l.Admit(name, t0, "fixed-interval", 90)
	miss := ipID("2001:db8::1")
	now := at(time.Minute)
	for _, id := range []identity.ID{hit, name, miss} {
		if n := testing.AllocsPerRun(1000, func() { l.Check(id, now) }); n != 0 {
			t.Errorf("Check(%v) allocates %v times, want 0", id, n)
		}
		if n := testing.AllocsPerRun(1000, func() { l.Hit(id, now) }); n != 0 {
			t.Errorf("Hit(%v) allocates %v times, want 0", id, n)
		}
	}
	// The same with many shards.
	big := New(Options{MaxEntries: 1 << 20})
	big.Admit(hit, t0, "fixed-interval", 90)
	if n := testing.AllocsPerRun(1000, func() { big.Check(hit, now) }); n != 0 {
		t.Errorf("Check on a sharded List allocates %v times, want 0", n)
	}
}

// TestHits: Hit counts refused requests in the active quarantine's Hits;
// Check does not; a new quarantine starts again from 0; misses count
// nothing.
func TestHits(t *testing.T) {
	l := New(Options{BaseTTL: time.Minute})
	id := ipID("203.0.113.7")
	if _, ok := l.Hit(id, t0); ok {
		t.Fatal("Hit on an empty list reported a quarantine")
	}
	l.Admit(id, t0, "periodic", 90)
	for i := range 3 {
		e, ok := l.Hit(id, at(time.Duration(i)*time.Second))
		if !ok || e.Hits != uint64(i+1) {
			t.Fatalf("Hit #%d = %+v, %v; want Hits %d", i+1, e, ok, i+1)
		}
	}
	if e, _ := l.Check(id, at(5*time.Second)); e.Hits != 3 {
		t.Errorf("Check after 3 hits: Hits = %d, want 3 (and Check adds none)", e.Hits)
	}
	if e, _ := l.Check(id, at(6*time.Second)); e.Hits != 3 {
		t.Errorf("Check counted itself: Hits = %d", e.Hits)
	}
	if entries, _ := l.SnapshotN(at(7*time.Second), 10); len(entries) != 1 || entries[0].Hits != 3 {
		t.Errorf("SnapshotN = %+v, want one entry with Hits 3", entries)
	}
	// After it heals, a miss counts nothing and the next quarantine starts
	// from 0.
	if _, ok := l.Hit(id, at(2*time.Minute)); ok {
		t.Fatal("Hit after the quarantine ended reported a quarantine")
	}
	e := l.Admit(id, at(3*time.Minute), "periodic", 90)
	if e.Hits != 0 {
		t.Errorf("a new quarantine starts with Hits %d, want 0", e.Hits)
	}
	if e := l.Ban(ipID("203.0.113.8"), t0, time.Hour, "manual"); e.Hits != 0 {
		t.Errorf("a ban starts with Hits %d", e.Hits)
	}
}

func TestChanged(t *testing.T) {
	l := New(Options{})
	id := ipID("203.0.113.7")
	steps := []struct {
		name string
		do   func()
		want bool
	}{
		{"check", func() { l.Check(id, t0) }, false},
		{"admit", func() { l.Admit(id, t0, "auto", 90) }, true},
		{"admit while active", func() { l.Admit(id, at(time.Minute), "auto", 90) }, false},
		{"extend", func() { l.Extend(id, at(time.Minute), time.Minute) }, true},
		{"extend by 0", func() { l.Extend(id, at(time.Minute), 0) }, false},
		{"ban", func() { l.Ban(id, at(time.Minute), time.Hour, "manual") }, true},
		{"snapshot", func() { l.Snapshot(at(time.Minute)) }, false},
		{"release", func() { l.Release(id, at(2*time.Minute)) }, true},
		{"release again", func() { l.Release(id, at(2*time.Minute)) }, false},
		{"sweep with nothing to do", func() { l.Sweep(at(3 * time.Minute)) }, false},
		{"admit 2", func() { l.Admit(id, at(3*time.Minute), "auto", 90) }, true},
		{"sweep that expires", func() { l.Sweep(at(time.Hour)) }, true},
		{"sweep that forgets", func() { l.Sweep(at(48 * time.Hour)) }, true},
		{"read state", func() {
			if err := l.ReadState(emptyState(t), t0); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	drain(l)
	for _, s := range steps {
		s.do()
		if got := drain(l); got != s.want {
			t.Errorf("%s: Changed signalled = %v, want %v", s.name, got, s.want)
		}
	}
	// Signals coalesce and never block a mutation.
	for i := range 10 {
		l.Admit(ipID(fmt.Sprintf("192.0.2.%d", i)), t0, "auto", 90)
	}
	if !drain(l) || drain(l) {
		t.Error("ten mutations did not leave exactly one pending signal")
	}
}

func emptyState(t *testing.T) io.Reader {
	t.Helper()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(New(Options{}).WriteState(pw, t0)) }()
	return pr
}

func TestSweep(t *testing.T) {
	l := New(Options{StrikeWindow: time.Hour})
	a, b, c, d := ipID("192.0.2.1"), ipID("192.0.2.2"), ipID("192.0.2.3"), ipID("192.0.2.4")
	l.Admit(a, t0, "auto", 90)                // until +5m
	l.Ban(b, t0, 10*time.Minute, "manual")    // until +10m, no strikes
	l.Ban(c, t0, 30*time.Minute, "manual")    // until +30m
	l.Admit(d, t0, "auto", 90)                // until +5m
	l.Admit(d, at(6*time.Minute), "auto", 90) // expired, re-admitted before any Sweep: until +16m
	if got, want := l.Len(), 4; got != want {
		t.Errorf("Len = %d, want %d", got, want)
	}
	steps := []struct {
		at          time.Duration
		wantExpired int
		wantLen     int
		wantEntries int
	}{
		{time.Minute, 1, 4, 4},               // d's first quarantine expired before re-admission
		{4 * time.Minute, 0, 4, 4},           // nothing new
		{11 * time.Minute, 2, 2, 3},          // a (history stays), b (no strikes: forgotten)
		{11 * time.Minute, 0, 2, 3},          // counted once
		{time.Hour, 2, 0, 1},                 // c and d expire; a's strike (+0) and c are forgotten, d keeps its +6m strike
		{time.Hour + 6*time.Minute, 0, 0, 0}, // d's last strike is forgotten
	}
	for i, s := range steps {
		if got := l.Sweep(at(s.at)); got != s.wantExpired {
			t.Errorf("step %d: Sweep(+%v) = %d, want %d", i, s.at, got, s.wantExpired)
		}
		if st := l.Stats(); st.Active != s.wantLen || st.Entries != s.wantEntries || l.Len() != s.wantLen {
			t.Errorf("step %d: after Sweep(+%v) Stats = %+v, Len = %d; want active %d entries %d",
				i, s.at, st, l.Len(), s.wantLen, s.wantEntries)
		}
	}
}

func TestSnapshot(t *testing.T) {
	l := New(Options{})
	l.Ban(ipID("192.0.2.3"), t0, 3*time.Hour, "manual")
	l.Ban(ipID("192.0.2.1"), t0, time.Hour, "manual")
	l.Ban(ipID("192.0.2.2"), t0, 2*time.Hour, "manual")
	l.Ban(nameID(t, "key-b"), t0, 2*time.Hour, "manual")
	l.Ban(ipID("192.0.2.9"), t0, time.Minute, "manual") // over by the snapshot
	var got []string
	for _, e := range l.Snapshot(at(30 * time.Minute)) {
		got = append(got, e.ID.String())
	}
	if g, want := fmt.Sprint(got), "[192.0.2.1 192.0.2.2 key-b 192.0.2.3]"; g != want {
		t.Errorf("Snapshot order = %s, want %s", g, want)
	}
}

func TestMaxEntries(t *testing.T) {
	l := New(Options{MaxEntries: 3})
	hist, soon, later := ipID("192.0.2.1"), ipID("192.0.2.2"), ipID("192.0.2.3")
	l.Admit(hist, t0, "auto", 90)           // ends +5m, then history only
	l.Ban(soon, t0, time.Hour, "manual")    // active, ends +1h
	l.Ban(later, t0, 2*time.Hour, "manual") // active, ends +2h
	now := at(10 * time.Minute)

	l.Ban(ipID("192.0.2.4"), now, 3*time.Hour, "manual") // full: drops the history first
	if st := l.Stats(); st.Entries != 3 || st.EvictedHistory != 1 || st.EvictedActive != 0 {
		t.Errorf("after the 4th identity Stats = %+v, want 3 entries, 1 history eviction", st)
	}
	if e := l.Admit(hist, at(11*time.Minute), "auto", 90); e.Strikes != 1 {
		// hist was forgotten, so it starts over; this evicts the soonest active.
		t.Errorf("re-admitted evicted identity strikes = %d, want 1", e.Strikes)
	}
	if _, ok := l.Check(soon, at(11*time.Minute)); ok {
		t.Error("the active quarantine ending soonest was not the one evicted")
	}
	if _, ok := l.Check(later, at(11*time.Minute)); !ok {
		t.Error("a later-ending quarantine was evicted")
	}
	if st := l.Stats(); st.Entries != 3 || st.Active != 3 || st.EvictedActive != 1 {
		t.Errorf("Stats = %+v, want 3 active entries, 1 active eviction", st)
	}
	// hist's first quarantine ran out before its eviction and its second
	// ends at +16m; the quarantine evicted while active does not count.
	if got := l.Sweep(at(time.Hour)); got != 2 {
		t.Errorf("Sweep = %d, want 2", got)
	}
}

func TestShardedMaxEntries(t *testing.T) {
	const max = 4096
	l := New(Options{MaxEntries: max})
	if n := len(l.shards); n < 2 {
		t.Fatalf("List with MaxEntries %d has %d shard(s), want several", max, n)
	}
	for i := range 3 * max {
		l.Ban(ipID(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()), t0, time.Hour, "manual")
	}
	if st := l.Stats(); st.Entries > max || st.Active != st.Entries || st.Active != l.Len() {
		t.Errorf("Stats = %+v, Len %d; want at most %d entries, all active", st, l.Len(), max)
	}
}

func TestOptionsDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Options
		want Options
	}{
		{"zero", Options{}, Options{5 * time.Minute, 24 * time.Hour, 2, 24 * time.Hour, 1_000_000}},
		{"negative", Options{-1, -1, -1, -1, -1}, Options{5 * time.Minute, 24 * time.Hour, 1, 24 * time.Hour, 1_000_000}},
		{"max below base", Options{BaseTTL: time.Hour, MaxTTL: time.Minute}, Options{time.Hour, time.Hour, 2, 24 * time.Hour, 1_000_000}},
		{"kept", Options{time.Minute, time.Hour, 1.5, time.Hour, 10}, Options{time.Minute, time.Hour, 1.5, time.Hour, 10}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := New(tc.in).Options(); got != tc.want {
				t.Errorf("Options() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	l := New(Options{MaxEntries: 200})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				id := ipID(fmt.Sprintf("10.0.%d.%d", g, i%200))
				now := at(time.Duration(i) * time.Second)
				switch i % 7 {
				case 0:
					l.Ban(id, now, time.Minute, "manual")
				case 1:
					l.Release(id, now)
				case 2:
					l.Extend(id, now, time.Minute)
				case 3:
					l.Sweep(now)
				case 4:
					l.Snapshot(now)
					l.Len()
				case 5:
					if err := l.WriteState(io.Discard, now); err != nil {
						t.Error(err)
					}
				default:
					l.Admit(id, now, "auto", 90)
				}
				l.Check(id, now)
			}
		})
	}
	wg.Wait()
	if st := l.Stats(); st.Entries > 200 {
		t.Errorf("Stats = %+v, want at most 200 entries", st)
	}
}

// BenchmarkCheck measures the per-request lookup from many goroutines:
// "miss" is the common case (client not quarantined), "hit" a quarantined
// client; shards=1 is the single-RWMutex design, for comparison.
func BenchmarkCheck(b *testing.B) {
	ids := make([]identity.ID, 4096)
	for i := range ids {
		ids[i] = ipID(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String())
	}
	for _, shards := range []int{1, 64} {
		for _, quarantined := range []bool{false, true} {
			// shards=1 is the single-RWMutex design.
			l := newList(Options{}.withDefaults(), shards)
			// Always some population, so a miss probes a real map.
			for i := range 1000 {
				l.Ban(ipID(netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}).String()), t0, time.Hour, "manual")
			}
			if quarantined {
				for _, id := range ids {
					l.Ban(id, t0, time.Hour, "manual")
				}
			}
			kind := "miss"
			if quarantined {
				kind = "hit"
			}
			b.Run(fmt.Sprintf("shards=%d/%s", len(l.shards), kind), func(b *testing.B) {
				b.ReportAllocs()
				now := at(time.Minute)
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						if _, ok := l.Check(ids[i&4095], now); ok != quarantined {
							b.Fatalf("Check = %v, want %v", ok, quarantined)
						}
						i++
					}
				})
			})
		}
	}
}

// snapshotList returns a List with entries of every kind of identity,
// many ending at the same time, some over or released by at(time.Hour),
// and the entries active then in the order Snapshot promises, worked out
// from what was put in rather than read back.
func snapshotList(t *testing.T, n int) (*List, []Entry) {
	t.Helper()
	l := New(Options{MaxEntries: 4 * n})
	now := at(time.Hour)
	type put struct {
		id    identity.ID
		until time.Time
	}
	var active []put
	for i := range n {
		var id identity.ID
		switch i % 3 {
		case 0:
			id = identity.FromAddr(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 64)
		case 1:
			id = identity.FromAddr(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 6: byte(i >> 8), 7: byte(i)}), 64)
		default:
			id = nameID(t, fmt.Sprintf("key-%d", i))
		}
		ttl := time.Duration(1+(i*7919)%40) * 3 * time.Minute // 40 distinct ends: many ties
		e := l.Ban(id, t0, ttl, "manual")
		switch {
		case i%11 == 0:
			l.Release(id, at(time.Minute))
		case e.Until.After(now):
			active = append(active, put{id, e.Until})
		}
	}
	slices.SortFunc(active, func(a, b put) int {
		if c := a.until.Compare(b.until); c != 0 {
			return c
		}
		return identity.Compare(a.id, b.id)
	})
	want := make([]Entry, len(active))
	for i, p := range active {
		want[i], _ = l.Check(p.id, now)
	}
	return l, want
}

func TestSnapshotNOrder(t *testing.T) {
	l, want := snapshotList(t, 3000)
	now := at(time.Hour)
	if len(want) < 1000 {
		t.Fatalf("only %d active entries; the test needs many", len(want))
	}
	if got := l.Snapshot(now); !slices.Equal(got, want) {
		t.Errorf("Snapshot differs from the brute-force order (%d vs %d entries)", len(got), len(want))
	}
	for _, limit := range []int{-1, 0, 1, 2, 7, 100, len(want) - 1, len(want), len(want) + 1, 1 << 30} {
		got, total := l.SnapshotN(now, limit)
		if total != len(want) {
			t.Errorf("SnapshotN(%d) total = %d, want %d", limit, total, len(want))
		}
		if w := want[:min(max(limit, 0), len(want))]; !slices.Equal(got, w) {
			t.Errorf("SnapshotN(%d) = %d entries differing from the first %d of the brute-force order", limit, len(got), len(w))
		}
	}
	// An empty list, and a list whose every entry is over.
	if got, total := New(Options{}).SnapshotN(now, 10); got != nil || total != 0 {
		t.Errorf("empty SnapshotN = %v, %d", got, total)
	}
	if got, total := l.SnapshotN(at(1000*time.Hour), 10); len(got) != 0 || total != 0 {
		t.Errorf("SnapshotN after every end = %d entries, total %d", len(got), total)
	}
}

func TestSnapshotNAllocs(t *testing.T) {
	l, want := snapshotList(t, 25_000)
	now := at(time.Hour)
	if len(want) < 10_000 {
		t.Fatalf("only %d active entries; the test needs 10k", len(want))
	}
	// One allocation for the limit entries, whatever the number of active
	// ones (a little slack for -race, which may add its own).
	for limit, most := range map[int]float64{0: 0, 10: 2, 200: 2} {
		if n := testing.AllocsPerRun(5, func() { l.SnapshotN(now, limit) }); n > most {
			t.Errorf("SnapshotN(%d) over %d entries: %v allocs/op, want at most %v", limit, len(want), n, most)
		}
	}
}

// TestRefuse: Refuse answers what Hit's Entry says about a refusal (reason,
// Retry-After, start), counts the refusal in Hits as Hit does, on an entry of
// its own and through a range Regroup kept, and allocates nothing.
func TestRefuse(t *testing.T) {
	l := New(Options{BaseTTL: time.Minute})
	own := ipID("203.0.113.7")
	l.Admit(own, t0, "periodic", 90)
	l.Ban(v6("2001:db8:1::", 48), t0, time.Hour, "manual: scraper")
	l.Regroup(128, t0)
	inRange := v6("2001:db8:1:2::9", 128)
	if q, ok := l.Refuse(inRange, t0); !ok || q.Reason != "manual: scraper" {
		t.Fatalf("Refuse in a kept range = %+v, %v; want the range's ban", q, ok)
	}
	for _, now := range []time.Time{at(0), at(1500 * time.Millisecond), at(59*time.Second + 1), at(time.Minute)} {
		for _, id := range []identity.ID{own, inRange, ipID("203.0.113.8")} {
			before, _ := l.Check(id, now)
			q, ok := l.Refuse(id, now)
			e, hit := l.Hit(id, now)
			want := Refusal{Reason: e.Reason, Since: e.Since}
			if hit {
				want.RetryAfter = e.RetryAfterSeconds(now)
			}
			if ok != hit || q != want {
				t.Errorf("Refuse(%v, %v) = %+v, %v; Hit says %+v, %v", id, now, q, ok, want, hit)
			}
			if ok && e.Hits != before.Hits+2 {
				t.Errorf("Refuse(%v) did not count: Hits %d after Refuse and Hit, want %d", id, e.Hits, before.Hits+2)
			}
		}
	}
	if raceEnabled {
		return // the race detector changes allocation counts
	}
	for _, id := range []identity.ID{own, inRange, ipID("203.0.113.8")} {
		if n := testing.AllocsPerRun(1000, func() { l.Refuse(id, at(time.Second)) }); n != 0 {
			t.Errorf("Refuse(%v) allocates %v times, want 0", id, n)
		}
	}
}
