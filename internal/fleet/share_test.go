package fleet

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// exchange hands every note each detector's outbox holds to the others, as
// the replica link does through Redis, at at on every clock.
func exchange(t *testing.T, at time.Time, ds ...*Detector) {
	t.Helper()
	exchangeSkewed(t, at, make([]time.Duration, len(ds)), ds...)
}

// exchangeSkewed is exchange with detector i's clock off Redis's (at) by
// offset[i]: it stamps its batches at at+offset[i]. A batch refused for
// its clock is no error here; any other is.
func exchangeSkewed(t *testing.T, at time.Time, offset []time.Duration, ds ...*Detector) {
	t.Helper()
	for i, from := range ds {
		for {
			b, n := from.Outbox(100, at.Add(offset[i]))
			if n == 0 {
				break
			}
			from.Shipped(n, at) // Redis took it at at
			for j, to := range ds {
				if j != i {
					if err := to.Import(b, at); err != nil && !errors.Is(err, ErrClock) {
						t.Fatal(err)
					}
				}
			}
		}
	}
}

// replay hands every request of reqs, in time order, to note, and calls
// sweep every 10 s of virtual time until end: several replicas' run.
func replay(reqs []request, end time.Time, note func(request), sweep func(at time.Time)) {
	next := t0.Add(10 * time.Second)
	for _, q := range reqs {
		for !q.at.Before(next) {
			sweep(next)
			next = next.Add(10 * time.Second)
		}
		note(q)
	}
	for ; !next.After(end); next = next.Add(10 * time.Second) {
		sweep(next)
	}
}

// TestOutboxImport: three replicas that each see a random third of a
// period fleet's requests, and exchange their notes at every sweep, find
// the fleet one detector that saw everything finds; without the exchange
// none of them does.
func TestOutboxImport(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	reqs := append(periodFleet(r, 0, 25, 200*time.Second, 15*time.Minute), browsers(r, 1000, 100, 15*time.Minute)...)
	sortByTime(reqs)
	end := t0.Add(15 * time.Minute)
	one := New(Options{})
	run(one, reqs, end)
	want := one.Fleets()
	if len(want) == 0 {
		t.Fatal("one detector that saw everything found no fleet")
	}
	for _, share := range []bool{false, true} {
		var ds [3]*Detector
		for i := range ds {
			ds[i] = New(Options{Outbox: 1 << 12})
		}
		replay(reqs, end, func(q request) { ds[r.IntN(3)].Note(q.id, q.path, q.at) }, func(at time.Time) {
			if share {
				exchange(t, at, ds[:]...)
			}
			for _, d := range ds {
				d.Sweep(at)
			}
		})
		for i, d := range ds {
			got := d.Fleets()
			found := len(got) > 0 && got[0].Key == want[0].Key && got[0].Size == want[0].Size
			if share && !found {
				t.Errorf("replica %d, sharing, found %+v; one detector %+v", i, got, want)
			}
			if !share && len(got) > 0 {
				t.Errorf("replica %d, not sharing, found %+v from a third of the requests", i, got)
			}
			if st := d.Stats(); share && (st.Imported == 0 || st.Unshipped != 0) {
				t.Errorf("replica %d: %+v", i, st)
			}
		}
	}
}

// TestOutboxBounded: notes beyond Options.Outbox are dropped and counted;
// a detector without an outbox keeps none.
func TestOutboxBounded(t *testing.T) {
	d := New(Options{Outbox: 10})
	for i := range 25 {
		d.Note(addr(i), "/x", t0)
	}
	if b, n := d.Outbox(100, t0); n != 10 || len(b) == 0 {
		t.Fatalf("Outbox = %d notes, want 10", n)
	}
	if st := d.Stats(); st.Unshipped != 15 || st.Tracked != 25 {
		t.Fatalf("%+v, want 15 unshipped and 25 tracked", st)
	}
	d.Shipped(10, t0)
	if _, n := d.Outbox(100, t0); n != 0 {
		t.Fatalf("%d notes left after Shipped", n)
	}
	none := New(Options{})
	none.Note(addr(1), "/x", t0)
	if _, n := none.Outbox(100, t0); n != 0 {
		t.Fatalf("a detector without an outbox kept %d notes", n)
	}
}

// TestImportMalformed: a damaged batch is an error, never a panic, and a
// request in it is imported at most once whatever the damage.
func TestImportMalformed(t *testing.T) {
	src := New(Options{Outbox: 10})
	src.Note(addr(1), "/api/items", t0)
	src.Note(addr(2), "/api/cart", t0.Add(time.Second))
	good, _ := src.Outbox(10, t0)
	for _, b := range [][]byte{nil, {}, {9}, {1, 0}, {notesFormat, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}} {
		if err := New(Options{}).Import(b, t0); err == nil {
			t.Errorf("Import(%x) = nil, want an error", b)
		}
	}
	for cut := 1; cut < len(good); cut++ {
		d := New(Options{})
		_ = d.Import(good[:cut], t0)
		if st := d.Stats(); st.Imported > 2 {
			t.Fatalf("a batch cut at %d imported %d requests", cut, st.Imported)
		}
	}
	d := New(Options{})
	if err := d.Import(good, t0); err != nil || d.Stats().Imported != 2 {
		t.Fatalf("Import(good) = %v, %+v", err, d.Stats())
	}
}

// FuzzImport: whatever Redis hands back, Import neither panics nor grows
// past its bounds.
func FuzzImport(f *testing.F) {
	src := New(Options{Outbox: 10})
	src.Note(addr(1), "/api/items?x=1", t0)
	src.Note(addr(2), "/\u202e", t0.Add(time.Second))
	good, _ := src.Outbox(10, t0)
	f.Add(good)
	f.Add([]byte{notesFormat})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := New(Options{MaxIdentities: 16})
		_ = d.Import(b, t0)
		if st := d.Stats(); st.Tracked > 16 {
			t.Fatalf("tracked %d, cap 16", st.Tracked)
		}
		for _, n := range d.paths {
			if len(n) > 4*MaxPathName+16 {
				t.Fatalf("path name of %d bytes", len(n))
			}
		}
	})
}

// TestOutboxHoldsNoRequest: a note waiting in the outbox (for as long as
// Redis is away) keeps its own copy of the path, not the request it was cut
// from: 2,000 short paths cut from 64 KB requests stay within MemoryCap.
func TestOutboxHoldsNoRequest(t *testing.T) {
	o := Options{Outbox: 2000, MaxIdentities: 2000, QueueSize: 2048}
	d := New(o)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 2000 {
		req := "/api/items/" + strconv.Itoa(i) + strings.Repeat("x", 64<<10)
		d.Note(addr(i), req[:20], t0) // a substring of its own request
	}
	d.Sweep(t0)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if _, n := d.Outbox(1, t0); n != 1 {
		t.Fatal("nothing in the outbox")
	}
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew %.1f MB (cap %.1f MB)", float64(grew)/1e6, float64(MemoryCap(o))/1e6)
	if grew > MemoryCap(o) {
		t.Errorf("heap grew %d bytes with 2,000 notes waiting, cap %d", grew, MemoryCap(o))
	}
	runtime.KeepAlive(d)
}
