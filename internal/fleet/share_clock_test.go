package fleet

// Regression tests of the fleet-exchange review (w3-review, reviewer A):
// each failed before notes carried hashes and Import bounded their times.

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// TestOutboxCarriesNoSecrets: the batch written to Redis must not
// carry a request's query string (reset tokens, API keys in ?api_key=) nor
// an identity-header value (an API key) in clear. The fleet signatures only
// need the route's hash and a stable key per identity.
func TestOutboxCarriesNoSecrets(t *testing.T) {
	d := New(Options{Outbox: 10})
	key, err := identity.FromName("sk_live_IDENTITYSECRET")
	if err != nil {
		t.Fatal(err)
	}
	d.Note(key, "/reset?token=QUERYSECRET", t0)
	b, n := d.Outbox(10, t0)
	if n != 1 {
		t.Fatalf("outbox holds %d notes", n)
	}
	if bytes.Contains(b, []byte("QUERYSECRET")) {
		t.Errorf("the batch for Redis carries the request's query string in clear: %q", b)
	}
	if bytes.Contains(b, []byte("sk_live_IDENTITYSECRET")) {
		t.Errorf("the batch for Redis carries the identity-header value in clear: %q", b)
	}
}

// futureBatch is one batch another replica (or anything that can write the
// stream) might write: one note per identity, at a time far from now, as a
// replica whose clock jumped would write it. stamp is the writer's clock
// when it encoded the batch: at itself (a clock that jumped), or Redis's
// time (notes dated ahead by whatever wrote them).
func futureBatch(t *testing.T, ids []identity.ID, at, stamp time.Time) []byte {
	t.Helper()
	src := New(Options{Outbox: len(ids)})
	for _, id := range ids {
		src.Note(id, "/api/items", at)
	}
	b, n := src.Outbox(len(ids), stamp)
	if n != len(ids) {
		t.Fatalf("outbox %d, want %d", n, len(ids))
	}
	return b
}

// TestFutureNoteBlindsDetector: Import takes any time. One note per
// member dated a day ahead (a replica whose clock jumped, a garbage stream
// entry) hides a period fleet from every replica: the member's last gap is
// a day long, so it has no period, and its track never ages out of the
// window, so the member stays hidden for as long as the note is in the
// future. Import refuses the batch of a writer whose clock is off Redis's,
// and drops notes outside [Redis's time − Window, + skew] from any other.
func TestFutureNoteBlindsDetector(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	reqs := append(periodFleet(r, 0, 25, 100*time.Second, 15*time.Minute), browsers(r, 1000, 200, 15*time.Minute)...)
	sortByTime(reqs)
	var members []identity.ID
	for i := range 25 {
		members = append(members, addr(i))
	}
	for _, poison := range []poisoning{none, jumpedClock, futureNotes} {
		got := map[identity.ID]bool{}
		d := New(Options{Admit: func(id identity.ID, _ *Fleet, _ time.Time) bool { got[id] = true; return true }})
		poison.apply(t, d, members, t0.Add(24*time.Hour))
		run(d, reqs, t0.Add(15*time.Minute))
		admitted := len(got)
		t.Logf("poisoned=%v: %d admitted, %d fleets", poison, admitted, len(d.Fleets()))
		if admitted < 20 {
			t.Errorf("poisoned=%v: %d of 25 period-fleet members admitted within 15 minutes", poison, admitted)
		}
		// An hour after the last request every track is past the window.
		d.Sweep(t0.Add(2 * time.Hour))
		if st := d.Stats(); st.Tracked != 0 {
			t.Errorf("poisoned=%v: %d tracks still held an hour past the window", poison, st.Tracked)
		}
	}
}

// TestFutureNotesFillTheTable: the tracks of future-dated notes are
// also the last ones eviction picks (the stalest goes first), so a batch of
// MaxIdentities of them leaves no room for real clients: the real tracks
// evict one another while the future ones stay, and a fleet among 400
// browsers (425 identities, under the cap of 500) is never found.
func TestFutureNotesFillTheTable(t *testing.T) {
	for _, poison := range []poisoning{none, jumpedClock, futureNotes} {
		r := rand.New(rand.NewPCG(5, 5))
		reqs := append(periodFleet(r, 0, 25, 100*time.Second, 15*time.Minute), browsers(r, 1000, 400, 15*time.Minute)...)
		sortByTime(reqs)
		d := New(Options{MaxIdentities: 500})
		var junk []identity.ID
		for i := range 500 {
			junk = append(junk, addr(50_000+i))
		}
		poison.apply(t, d, junk, t0.Add(365*24*time.Hour))
		run(d, reqs, t0.Add(15*time.Minute))
		t.Logf("poisoned=%v: %+v", poison, d.Stats())
		if len(d.Fleets()) == 0 {
			t.Errorf("poisoned=%v: a 25-bot period fleet among 400 browsers was never found", poison)
		}
	}
}

// TestRedeliveredBatchSameMillisecond: a batch written twice (an
// XADD that outlived its deadline and was sent again) adds nothing the
// second time, the design says; but a client's two requests in the same
// millisecond on different paths are re-added, since Import compares only
// with the request just before the insertion point.
func TestRedeliveredBatchSameMillisecond(t *testing.T) {
	src := New(Options{Outbox: 10})
	src.Note(addr(1), "/api/page", t0)
	src.Note(addr(1), "/api/data", t0)
	b, _ := src.Outbox(10, t0)
	d := New(Options{})
	for range 2 {
		if err := d.Import(b, t0); err != nil {
			t.Fatal(err)
		}
	}
	if got := d.Stats().Imported; got != 2 {
		t.Errorf("a batch of 2 requests delivered twice imported %d", got)
	}
	if n := d.tracks[d.index[idKey(addr(1))]].n; n != 2 {
		t.Errorf("the track holds %d requests, want 2", n)
	}
}

// TestSkewedReplicasMakePeopleAFleet: Import accepts any request
// time, and a replica whose clock is off by more than --clock-skew (5 s)
// notes its own clock's time. With three replicas at -30 s, 0 and +30 s,
// a visitor whose three quick requests (a page and two API calls within
// 3 s) land on the three replicas reads, merged, as two agreeing 30 s
// gaps: a period, the same for every such visitor. Nobody else has a
// period near it, so the new two-gap rule quarantines them all as a fleet.
// With the replicas' clocks in step none is. The skewed replicas' batches
// are refused by the others, and they refuse the others' while Redis's
// clock tells them theirs is off: each works on its own share.
func TestSkewedReplicasMakePeopleAFleet(t *testing.T) {
	for _, skew := range []time.Duration{0, 30 * time.Second} {
		r := rand.New(rand.NewPCG(9, 9))
		var reqs []request
		for i := range 1000 {
			at := time.Duration(r.Float64() * float64(14*time.Minute))
			for k := range 3 {
				reqs = append(reqs, request{addr(i), endpoints[k], t0.Add(at + time.Duration(k)*time.Second + time.Duration(r.Float64()*1e9))})
			}
		}
		reqs = append(reqs, browsers(r, 5000, 100, 15*time.Minute)...)
		sortByTime(reqs)
		offset := [3]time.Duration{-skew, 0, skew}
		admitted := map[identity.ID]bool{}
		var ds [3]*Detector
		for i := range ds {
			ds[i] = New(Options{Outbox: 1 << 14, Admit: func(id identity.ID, _ *Fleet, _ time.Time) bool {
				admitted[id] = true
				return true
			}})
		}
		replay(reqs, t0.Add(15*time.Minute), func(q request) {
			k := r.IntN(3)
			ds[k].Note(q.id, q.path, q.at.Add(offset[k]))
		}, func(at time.Time) {
			exchangeSkewed(t, at, offset[:], ds[:]...)
			for i, d := range ds {
				d.Sweep(at.Add(offset[i]))
			}
		})
		t.Logf("replica clocks at ±%v: %d people quarantined as a fleet; fleets %d", skew, len(admitted), len(ds[1].Fleets()))
		if len(admitted) > 0 {
			t.Errorf("replica clocks at ±%v: %d of 1,100 people quarantined as a fleet", skew, len(admitted))
		}
	}
}

// poisoning is what a test's detector imported before the traffic.
type poisoning int

const (
	none        poisoning = iota
	jumpedClock           // a batch from a replica whose clock jumped to at
	futureNotes           // a batch stamped at Redis's time, its notes dated at
)

func (p poisoning) String() string { return [...]string{"no", "jumped clock", "future notes"}[p] }

// apply imports one note per identity in ids dated at, as p says, Redis
// taking the batch at t0, and checks that nothing of it was added.
func (p poisoning) apply(t *testing.T, d *Detector, ids []identity.ID, at time.Time) {
	t.Helper()
	var err error
	switch p {
	case none:
		return
	case jumpedClock:
		if err = d.Import(futureBatch(t, ids, at, at), t0); !errors.Is(err, ErrClock) {
			t.Fatalf("a batch stamped %v off Redis's clock: Import = %v, want ErrClock", at.Sub(t0), err)
		}
	case futureNotes:
		if err = d.Import(futureBatch(t, ids, at, t0), t0); err != nil {
			t.Fatal(err)
		}
	}
	if st := d.Stats(); st.Imported != 0 || st.Tracked != 0 {
		t.Fatalf("%s: imported %d notes dated %v ahead", p, st.Imported, at.Sub(t0))
	}
}

// TestOnlySeenMembersAdmitted: another replica's notes name an identity
// by its hash, so a replica admits only the members it saw itself; each
// member reaches at least one replica, so the three together still admit
// the fleet, and each knows the fleet's size from every replica's notes.
func TestOnlySeenMembersAdmitted(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	reqs := append(periodFleet(r, 0, 25, 100*time.Second, 15*time.Minute), browsers(r, 1000, 100, 15*time.Minute)...)
	sortByTime(reqs)
	var ds [3]*Detector
	seen := [3]map[identity.ID]bool{{}, {}, {}}
	admitted := map[identity.ID]bool{}
	for i := range ds {
		ds[i] = New(Options{Outbox: 1 << 12, Admit: func(id identity.ID, _ *Fleet, _ time.Time) bool {
			if !seen[i][id] {
				t.Errorf("replica %d admitted %s, which it never saw", i, id)
			}
			admitted[id] = true
			return true
		}})
	}
	replay(reqs, t0.Add(15*time.Minute), func(q request) {
		k := r.IntN(3)
		seen[k][q.id] = true
		ds[k].Note(q.id, q.path, q.at)
	}, func(at time.Time) {
		exchange(t, at, ds[:]...)
		for _, d := range ds {
			d.Sweep(at)
		}
	})
	if len(admitted) < 20 {
		t.Errorf("%d of 25 members admitted by the three replicas", len(admitted))
	}
	for i, d := range ds {
		fs := d.Fleets()
		if len(fs) == 0 || fs[0].Size < 20 {
			t.Errorf("replica %d: fleets %+v, want the 25 members' fleet", i, fs)
			continue
		}
		for _, m := range fs[0].Members {
			if !seen[i][m] {
				t.Errorf("replica %d lists %s, which it never saw", i, m)
			}
		}
	}
}

// TestOffClockRefusesImports: a replica whose own batch Redis took more
// than the skew from its stamp knows its clock is off; its notes are then
// the ones out of step with everybody's, so it imports nothing until a
// later batch of its own agrees with Redis again.
func TestOffClockRefusesImports(t *testing.T) {
	other := New(Options{Outbox: 10})
	other.Note(addr(2), "/api/items", t0)
	good, _ := other.Outbox(10, t0)
	d := New(Options{Outbox: 10})
	for _, off := range []time.Duration{0, 30 * time.Second, -30 * time.Second, time.Second} {
		d.Note(addr(1), "/api/items", t0.Add(off))
		_, n := d.Outbox(10, t0.Add(off))
		d.Shipped(n, t0) // Redis took it at t0
		err := d.Import(good, t0)
		if off.Abs() > DefaultSkew && !errors.Is(err, ErrClock) {
			t.Errorf("own clock %v off Redis's: Import = %v, want ErrClock", off, err)
		}
		if off.Abs() <= DefaultSkew && err != nil {
			t.Errorf("own clock %v off Redis's: Import = %v, want nil", off, err)
		}
	}
	if st := d.Stats(); st.Refused != 2 || st.Imported != 1 {
		t.Errorf("%+v: want 2 batches refused and the request imported once", st)
	}
}
