package risk

import (
	"fmt"
	"net/netip"
	"reflect"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/offheap"
)

// TestSlotSize pins the slot's size: it is most of what a client costs
// (the budget is 300 B of RSS per client at 1 M clients, issue 10).
func TestSlotSize(t *testing.T) {
	if got := unsafe.Sizeof(slot{}); got > 256 {
		t.Errorf("unsafe.Sizeof(slot{}) = %d, want ≤ 256: the state, its key and the free-list link", got)
	}
}

// TestOffHeapTypes checks that what may be mapped outside the Go heap holds
// no pointer: the GC would neither see nor keep what it points to.
func TestOffHeapTypes(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[slot](), reflect.TypeFor[uint32]()} {
		if p := offheap.PointerIn(typ); p != "" {
			t.Errorf("%v holds a pointer (%s); it may not live off the heap", typ, p)
		}
	}
}

// TestKeyRoundTrip checks that an address identity survives keyOf and
// addrID unchanged, and that distinct identities get distinct keys.
func TestKeyRoundTrip(t *testing.T) {
	name, err := identity.FromName("api-key-1")
	if err != nil {
		t.Fatal(err)
	}
	ids := []identity.ID{
		identity.FromAddr(netip.MustParseAddr("203.0.113.7"), 64),
		identity.FromAddr(netip.MustParseAddr("::ffff:203.0.113.7"), 64), // unmapped: the same as above
		identity.FromAddr(netip.MustParseAddr("0.0.0.0"), 64),
		identity.FromAddr(netip.MustParseAddr("2001:db8:1:2:3:4:5:6"), 64),
		identity.FromAddr(netip.MustParseAddr("2001:db8:1:2:3:4:5:6"), 48),
		identity.FromAddr(netip.MustParseAddr("2001:db8:1:2:3:4:5:6"), 128),
		identity.FromAddr(netip.MustParseAddr("2001:db8:1:2:3:4:5:6"), 127),
		identity.FromAddr(netip.MustParseAddr("::"), 0),
		identity.FromAddr(netip.MustParseAddr("::cb00:7107"), 128), // IPv4-compatible, not IPv4
		name,
		// One address's clients told apart by TLS fingerprint.
		identity.Composed(netip.MustParseAddr("203.0.113.7"), 64, identity.FingerprintKey("ja4-a")),
		identity.Composed(netip.MustParseAddr("203.0.113.7"), 64, identity.FingerprintKey("ja4-b")),
		identity.Composed(netip.MustParseAddr("203.0.113.8"), 64, identity.FingerprintKey("ja4-a")),
	}
	for i, id := range ids {
		k, n := keyOf(id)
		if !k.named() {
			if got := k.addrID(); got != id {
				t.Errorf("%v: key %+v gives back %v", id, k, got)
			}
		} else if n != id.Name() {
			t.Errorf("%v: name %q", id, n)
		}
		for j, other := range ids[:i] {
			k2, n2 := keyOf(other)
			if (k == k2 && n == n2) != (id == other) {
				t.Errorf("ids %d (%v) and %d (%v): keys equal %v, ids equal %v", i, id, j, other, k == k2 && n == n2, id == other)
			}
		}
	}
}

// TestIndexChurn inserts, finds, forgets and evicts many identities in
// small shards (so probe runs wrap around the index and backward-shift
// deletion moves entries), and checks every answer against a Go map.
func TestIndexChurn(t *testing.T) {
	r := newRand(9)
	e := New(Options{Shards: 2, MaxClients: 600})
	model := map[identity.ID]bool{}
	id := func(i int) identity.ID {
		if i%5 == 0 {
			n, err := identity.FromName(fmt.Sprintf("user-%d", i))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		if i%3 == 0 {
			return identity.FromAddr(netip.AddrFrom16([16]byte{0x20, 0x01, 0xd, 0xb8, byte(i >> 8), byte(i)}), 64)
		}
		return testID(i)
	}
	for step := range 40_000 {
		i := r.IntN(1500)
		switch r.IntN(4) {
		case 0:
			e.Forget(id(i))
			delete(model, id(i))
		default:
			// Scores stay below the challenge band (one request each),
			// so a full shard evicts: the model learns which from Len.
			e.Observe(id(i), epoch.Add(time.Duration(step)*time.Second))
			model[id(i)] = true
		}
		if step%1000 == 999 {
			tracked := 0
			for x := range model {
				if _, ok := e.Peek(x, epoch); ok {
					tracked++
				} else {
					delete(model, x) // evicted
				}
			}
			if tracked != e.Len() {
				t.Fatalf("step %d: %d of the model's identities found, engine tracks %d", step, tracked, e.Len())
			}
			listed := map[identity.ID]bool{}
			for _, s := range e.Top(e.Len(), epoch) {
				if listed[s.ID] {
					t.Fatalf("step %d: Top lists %v twice", step, s.ID)
				}
				listed[s.ID] = true
				if !model[s.ID] {
					t.Fatalf("step %d: Top lists %v, which is not tracked", step, s.ID)
				}
			}
			if len(listed) != e.Len() {
				t.Fatalf("step %d: Top lists %d, Len %d", step, len(listed), e.Len())
			}
		}
	}
	if e.Evictions() == 0 {
		t.Error("no eviction: the test did not fill its shards")
	}
}

// TestOffHeapReleased checks that a large engine maps its slab outside the
// heap and gives it back when it is dropped.
func TestOffHeapReleased(t *testing.T) {
	e := New(Options{Shards: 1, MaxClients: 10_000})
	for i := range 5000 {
		e.Observe(testID(i), epoch)
	}
	sh := &e.shards[0]
	mapped := 0
	for _, c := range sh.chunks {
		if c.Mapped() {
			mapped += len(c.S)
		}
	}
	if mapped == 0 || !sh.index.Mapped() {
		t.Fatalf("%d slots and index mapped %v: want the large chunks and index off the heap", mapped, sh.index.Mapped())
	}
	shards := e.shards
	e = nil
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		shards[0].mu.Lock()
		done := shards[0].chunks == nil
		shards[0].mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dropped engine's slab was not released")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestComposedIdentitiesApart: the clients of one address with different
// fingerprints (--identity address+fingerprint) are tracked apart, and
// read back whole.
func TestComposedIdentitiesApart(t *testing.T) {
	e := New(Options{})
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	a := netip.MustParseAddr("203.0.113.7")
	bot := identity.Composed(a, 64, identity.FingerprintKey("script"))
	person := identity.Composed(a, 64, identity.FingerprintKey("browser"))
	for i := range 40 {
		e.Observe(bot, t0.Add(time.Duration(i)*2*time.Second))
	}
	e.Observe(person, t0.Add(time.Second))
	if e.Len() != 2 {
		t.Fatalf("tracking %d identities, want the bot and the person apart", e.Len())
	}
	vb, _ := e.Peek(bot, t0.Add(80*time.Second))
	vp, _ := e.Peek(person, t0.Add(80*time.Second))
	if vb.Requests != 40 || vp.Requests != 1 {
		t.Errorf("requests: bot %d, person %d; want 40 and 1", vb.Requests, vp.Requests)
	}
	for _, s := range e.Top(2, t0.Add(80*time.Second)) {
		if s.ID != bot && s.ID != person {
			t.Errorf("Top gave back %v, not one of the composed identities", s.ID)
		}
	}
}
