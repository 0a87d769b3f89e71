package risk

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/flowlock/flowlock/internal/identity"
)

func TestStateSize(t *testing.T) {
	// With its 18-byte key and 4-byte free-list link it fills a 264-byte
	// slot (TestSlotSize): 232 bytes and the 4-byte pause clock of issue
	// 14, padded to 8; 8 more would cost 8 MB at 1 M clients.
	if got := unsafe.Sizeof(state{}); got > 240 {
		t.Errorf("unsafe.Sizeof(state{}) = %d, want ≤ 240", got)
	}
}

func TestNewDefaults(t *testing.T) {
	e := New(Options{})
	if got := len(e.shards); got != DefaultShards {
		t.Errorf("shards = %d, want %d", got, DefaultShards)
	}
	total := 0
	for i := range e.shards {
		total += e.shards[i].limit
	}
	if total != DefaultMaxClients {
		t.Errorf("sum of shard limits = %d, want %d", total, DefaultMaxClients)
	}
	if e.threshold != DefaultThreshold || e.challenge != DefaultChallengeThreshold || e.confirm != DefaultConfirm {
		t.Errorf("threshold, challenge, confirm = %d, %d, %d; want %d, %d, %d",
			e.threshold, e.challenge, e.confirm, DefaultThreshold, DefaultChallengeThreshold, DefaultConfirm)
	}
	if e.idleTTL != int64(DefaultIdleTTL) || e.highTTL != int64(DefaultHighRiskIdleTTL) {
		t.Errorf("idle TTLs = %v, %v", time.Duration(e.idleTTL), time.Duration(e.highTTL))
	}
}

func TestNewShards(t *testing.T) {
	tests := []struct {
		shards, maxClients int
		want               int
	}{
		{0, 0, 256},
		{1, 10, 1},
		{3, 1000, 4},   // rounded up to a power of two
		{256, 100, 64}, // never more shards than clients
		{256, 1, 1},    //
		{1 << 20, 0, maxShards},
	}
	for _, tc := range tests {
		e := New(Options{Shards: tc.shards, MaxClients: tc.maxClients})
		if got := len(e.shards); got != tc.want {
			t.Errorf("New(Shards: %d, MaxClients: %d) has %d shards, want %d", tc.shards, tc.maxClients, got, tc.want)
		}
		if tc.maxClients > 0 {
			total := 0
			for i := range e.shards {
				total += e.shards[i].limit
			}
			if total != tc.maxClients {
				t.Errorf("New(Shards: %d, MaxClients: %d): shard limits sum to %d", tc.shards, tc.maxClients, total)
			}
		}
	}
}

func TestZeroIDNotTracked(t *testing.T) {
	e := New(Options{})
	if v := e.Observe(identity.ID{}, epoch); v != (Verdict{}) {
		t.Errorf("Observe(zero ID) = %+v, want the zero Verdict", v)
	}
	if e.Len() != 0 {
		t.Errorf("Len() = %d after observing the zero ID, want 0", e.Len())
	}
}

func TestNameAndAddressIdentities(t *testing.T) {
	e := New(Options{Shards: 4})
	name, err := identity.FromName("api-key-1")
	if err != nil {
		t.Fatal(err)
	}
	addr := testID(1)
	for i := range 20 {
		at := epoch.Add(time.Duration(i) * time.Second)
		e.Observe(name, at)
		if i%2 == 0 {
			e.Observe(addr, at)
		}
	}
	vn, okn := e.Peek(name, epoch)
	va, oka := e.Peek(addr, epoch)
	if !okn || !oka || vn.Requests != 20 || va.Requests != 10 {
		t.Errorf("Peek: name %+v %v, addr %+v %v; want 20 and 10 requests", vn, okn, va, oka)
	}
}

// observeBot drives id as a 1 s timer for n requests from at and returns
// the time of the last request.
func observeBot(e *Engine, id identity.ID, at time.Time, n int) (time.Time, Verdict) {
	var v Verdict
	for range n {
		at = at.Add(time.Second)
		v = e.Observe(id, at)
	}
	return at, v
}

func TestBatchingAndOutOfOrder(t *testing.T) {
	e := New(Options{})
	id := testID(1)
	at := epoch
	e.Observe(id, at)
	// Fan-out within 5 ms of the batch start, and timestamps from the
	// past: requests, but no intervals.
	for _, d := range []time.Duration{time.Millisecond, 4 * time.Millisecond, -time.Hour, -time.Millisecond, 0} {
		e.Observe(id, at.Add(d))
	}
	x, ok := e.Explain(id, at)
	if !ok || x.Requests != 6 || x.Intervals != 0 {
		t.Fatalf("after a batch: requests %d, intervals %d; want 6, 0", x.Requests, x.Intervals)
	}
	if !x.LastSeen.Equal(at) {
		t.Errorf("LastSeen = %v, want the batch start %v", x.LastSeen, at)
	}
	// A batch is measured from its start: 3 ms steps make 6 ms intervals.
	for i := 1; i <= 4; i++ {
		e.Observe(id, at.Add(time.Duration(3*i)*time.Millisecond))
	}
	x, _ = e.Explain(id, at)
	if want := []uint32{6, 6}; !slices.Equal(x.Recent, want) {
		t.Errorf("Recent = %v, want %v", x.Recent, want)
	}
}

func TestEvictionKeepsHighRisk(t *testing.T) {
	const maxClients = 64
	e := New(Options{MaxClients: maxClients, Shards: 4})
	at := epoch
	// Eight bots, confirmed.
	var bots []identity.ID
	for i := range 8 {
		id := testID(1_000_000 + i)
		bots = append(bots, id)
		var v Verdict
		_, v = observeBot(e, id, at, 30)
		if !v.Confirmed {
			t.Fatalf("bot %d not confirmed: %+v", i, v)
		}
	}
	at = at.Add(time.Minute)
	// A flood of new identities, a few requests each.
	for i := range 10_000 {
		at = at.Add(time.Millisecond)
		id := testID(i)
		e.Observe(id, at)
		e.Observe(id, at.Add(20*time.Millisecond))
		if n := e.Len(); n > maxClients {
			t.Fatalf("Len() = %d after %d new identities, want ≤ %d", n, i+1, maxClients)
		}
	}
	if e.Evictions() == 0 {
		t.Error("Evictions() = 0 after a flood, want > 0")
	}
	if got, want := e.Evictions(), uint64(10_000+8-maxClients); got != want {
		t.Errorf("Evictions() = %d, want %d (every insert past the cap evicts one)", got, want)
	}
	for i, id := range bots {
		v, ok := e.Peek(id, at)
		if !ok || !v.Confirmed {
			t.Errorf("bot %d after the flood: %+v, tracked %v; want confirmed", i, v, ok)
		}
	}
}

func TestFullOfHighRiskRefusesNewIdentities(t *testing.T) {
	e := New(Options{MaxClients: 4, Shards: 1})
	at := epoch
	for i := range 4 {
		observeBot(e, testID(i), at, 30)
	}
	v := e.Observe(testID(99), at.Add(time.Hour))
	if v != (Verdict{}) {
		t.Errorf("Observe(new) with a cap full of bots = %+v, want the zero Verdict", v)
	}
	if _, ok := e.Peek(testID(99), at); ok {
		t.Error("new identity tracked although every entry is protected")
	}
	if e.Len() != 4 || e.Evictions() != 0 {
		t.Errorf("Len() = %d, Evictions() = %d; want 4, 0", e.Len(), e.Evictions())
	}
}

func TestSweep(t *testing.T) {
	e := New(Options{Shards: 2, IdleTTL: 10 * time.Minute, HighRiskIdleTTL: time.Hour})
	at := epoch
	bot := testID(1)
	observeBot(e, bot, at, 30)
	humans := []identity.ID{testID(2), testID(3)}
	for _, id := range humans {
		e.Observe(id, at)
		e.Observe(id, at.Add(300*time.Millisecond))
	}
	fresh := testID(4)
	e.Observe(fresh, at.Add(15*time.Minute))

	if n := e.Sweep(at.Add(5 * time.Minute)); n != 0 {
		t.Errorf("Sweep before IdleTTL dropped %d, want 0", n)
	}
	if n := e.Sweep(at.Add(20 * time.Minute)); n != len(humans) {
		t.Errorf("Sweep after IdleTTL dropped %d, want %d (the idle humans)", n, len(humans))
	}
	for _, id := range humans {
		if _, ok := e.Peek(id, at); ok {
			t.Errorf("idle human %v survived Sweep", id)
		}
	}
	if _, ok := e.Peek(bot, at); !ok {
		t.Error("idle bot dropped by Sweep before HighRiskIdleTTL")
	}
	if _, ok := e.Peek(fresh, at); !ok {
		t.Error("active identity dropped by Sweep")
	}
	if n := e.Sweep(at.Add(2 * time.Hour)); n != 2 {
		t.Errorf("Sweep after HighRiskIdleTTL dropped %d, want 2 (bot and the now idle one)", n)
	}
	if e.Len() != 0 {
		t.Errorf("Len() = %d after sweeping everything, want 0", e.Len())
	}
	// Freed slots are reused.
	e.Observe(testID(5), at.Add(3*time.Hour))
	if e.Len() != 1 {
		t.Errorf("Len() = %d, want 1", e.Len())
	}
}

func TestForget(t *testing.T) {
	e := New(Options{})
	id := testID(1)
	at, v := observeBot(e, id, epoch, 30)
	if !v.Confirmed {
		t.Fatalf("bot not confirmed: %+v", v)
	}
	e.Forget(id)
	e.Forget(testID(2)) // unknown: no-op
	if _, ok := e.Peek(id, at); ok || e.Len() != 0 {
		t.Fatalf("after Forget: tracked %v, Len() %d", ok, e.Len())
	}
	if v := e.Observe(id, at.Add(time.Second)); v.Requests != 1 || v.Confirmed || v.Score != 0 {
		t.Errorf("first request after Forget = %+v, want a fresh record", v)
	}
}

func TestPeekDoesNotMutate(t *testing.T) {
	e := New(Options{})
	id := testID(1)
	at, v := observeBot(e, id, epoch, 20)
	for range 3 {
		p, ok := e.Peek(id, at.Add(time.Second))
		if !ok || p != v {
			t.Fatalf("Peek = %+v, %v; want %+v", p, ok, v)
		}
	}
	if _, ok := e.Peek(testID(2), at); ok {
		t.Error("Peek(unknown) reported true")
	}
}

func TestSharedLabelExpires(t *testing.T) {
	e := New(Options{})
	id := testID(1)
	r := newRand(1)
	ts := observe(r, nat(r, h1, 50, 5*time.Minute), 2*time.Millisecond)
	var last time.Time
	for _, at := range ts {
		e.Observe(id, at)
		last = at
	}
	if v, _ := e.Peek(id, last); !v.Shared {
		t.Fatalf("NAT not shared: %+v", v)
	}
	// The label is kept in whole seconds, so it may hold up to 1 s longer.
	if v, _ := e.Peek(id, last.Add(time.Duration(sharedFor)-time.Second)); !v.Shared {
		t.Errorf("shared label off 1 s before sharedFor after the last request: %+v", v)
	}
	if v, _ := e.Peek(id, last.Add(time.Duration(sharedFor)+time.Second)); v.Shared {
		t.Errorf("shared label still on 1 s after sharedFor after the last request: %+v", v)
	}
}

func TestTop(t *testing.T) {
	e := New(Options{Shards: 8})
	at := epoch
	// Bots confirmed at different times; humans at score 0.
	var bots []identity.ID
	for i := range 5 {
		id := testID(100 + i)
		bots = append(bots, id)
		at, _ = observeBot(e, id, at, 30)
	}
	for i := range 20 {
		e.Observe(testID(i), at)
		e.Observe(testID(i), at.Add(time.Duration(i+10)*time.Millisecond))
	}
	if got := e.Top(0, at); got != nil {
		t.Errorf("Top(0) = %v, want nil", got)
	}
	top := e.Top(3, at)
	if len(top) != 3 {
		t.Fatalf("Top(3) returned %d", len(top))
	}
	// Equal scores: most recently seen first.
	for i, s := range top {
		if want := bots[len(bots)-1-i]; s.ID != want || s.Score != 100 {
			t.Errorf("Top(3)[%d] = %v score %d, want %v score 100", i, s.ID, s.Score, want)
		}
		if s.Reason != ReasonPeriodic || s.Requests != 30 || len(s.Recent) != 29 || s.Recent[0] != 1000 {
			t.Errorf("Top(3)[%d] = %+v", i, s)
		}
	}
	all := e.Top(1000, at)
	if len(all) != 25 {
		t.Fatalf("Top(1000) returned %d, want 25", len(all))
	}
	if !slices.IsSortedFunc(all, func(a, b Summary) int {
		if a.Score != b.Score {
			return int(b.Score) - int(a.Score)
		}
		return b.LastSeen.Compare(a.LastSeen)
	}) {
		t.Error("Top is not ordered by score, then last seen, descending")
	}
	for _, s := range all[5:] {
		if s.Reason != ReasonNone || s.Score != 0 {
			t.Errorf("human %v: score %d reason %v", s.ID, s.Score, s.Reason)
		}
	}
}

func TestRecentOldestFirst(t *testing.T) {
	e := New(Options{})
	id := testID(1)
	at := epoch
	e.Observe(id, at)
	for i := 1; i <= 40; i++ {
		at = at.Add(time.Duration(100+i) * time.Millisecond)
		e.Observe(id, at)
	}
	x, _ := e.Explain(id, at)
	if len(x.Recent) != 32 || x.Recent[0] != 109 || x.Recent[31] != 140 {
		t.Errorf("Recent = %v, want 109…140", x.Recent)
	}
}

func TestExplain(t *testing.T) {
	e := New(Options{})
	id := testID(1)
	at, v := observeBot(e, id, epoch, 25)
	x, ok := e.Explain(id, at)
	if !ok {
		t.Fatal("Explain: not tracked")
	}
	if x.Score != v.Score || x.Reason != v.Reason || x.Confirmed != v.Confirmed || x.Shared != v.Shared {
		t.Errorf("Explain summary %+v disagrees with verdict %+v", x.Summary, v)
	}
	if x.Intervals != 24 || x.Consecutive == 0 || x.Threshold != DefaultThreshold {
		t.Errorf("Explain: intervals %d, consecutive %d, threshold %d", x.Intervals, x.Consecutive, x.Threshold)
	}
	names := make([]string, len(x.Features))
	for i, f := range x.Features {
		names[i] = f.Name
		if f.Probability < 0 || f.Probability > 1 || math.IsNaN(f.Value) || f.Threshold == "" {
			t.Errorf("feature %+v out of range", f)
		}
	}
	want := []string{"periodic", "low_entropy", "anti_bursty", "periodic_bursts", "no_pause", "continuity", "human_signature", "shared", "periodic_cycle"}
	if !slices.Equal(names, want) {
		t.Errorf("feature names = %v, want %v", names, want)
	}
	per := x.Features[0]
	if per.Value != 0 || per.Probability != 1 || per.Gate != 1 {
		t.Errorf("periodic feature of a timer = %+v, want value 0, probability 1, gate 1", per)
	}
	if _, ok := e.Explain(testID(2), at); ok {
		t.Error("Explain(unknown) reported true")
	}
}

func TestReason(t *testing.T) {
	rs := Reasons()
	want := []string{"none", "periodic", "low_entropy", "anti_bursty", "periodic_bursts", "no_pause", "continuity", "fleet", "periodic_cycle"}
	if len(rs) != len(want) {
		t.Fatalf("Reasons() has %d entries, want %d", len(rs), len(want))
	}
	for i, r := range rs {
		if r.String() != want[i] {
			t.Errorf("Reasons()[%d] = %q, want %q", i, r, want[i])
		}
	}
	if s := Reason(200).String(); s != "reason(200)" {
		t.Errorf("Reason(200).String() = %q", s)
	}
}

func TestMADRatio(t *testing.T) {
	r := newRand(3)
	for range 2000 {
		n := 1 + r.IntN(ringSize)
		a := make([]uint32, n)
		for i := range a {
			a[i] = 5 + uint32(r.IntN(1+r.IntN(100_000)))
		}
		slices.Sort(a)
		med, rcv := madRatio(a)
		wantMed := medianOf(a)
		dev := make([]float64, n)
		for i, x := range a {
			dev[i] = math.Abs(float64(x) - wantMed)
		}
		slices.Sort(dev)
		wantRCV := (dev[(n-1)/2] + dev[n/2]) / 2 / wantMed
		if med != wantMed || math.Abs(rcv-wantRCV) > 1e-12 {
			t.Fatalf("madRatio(%v) = %g, %g; want %g, %g", a, med, rcv, wantMed, wantRCV)
		}
	}
}

func medianOf(a []uint32) float64 { return (float64(a[(len(a)-1)/2]) + float64(a[len(a)/2])) / 2 }

func TestPackMS(t *testing.T) {
	prev := uint16(0)
	for _, x := range []uint32{0, 1, 1000, 2047, 2048, 2049, 4095, 4096, 10_000, 65_432, 1 << 20, 3_600_000, math.MaxUint32} {
		p := packMS(x)
		if p < prev {
			t.Errorf("packMS(%d) = %d < previous %d: not monotonic", x, p, prev)
		}
		prev = p
		back := unpackMS(p)
		if back > x || float64(x-back) > float64(x)/1024 {
			t.Errorf("unpackMS(packMS(%d)) = %d, off by more than 0.1%%", x, back)
		}
	}
}

func TestUnixNanoClamps(t *testing.T) {
	if got := unixNano(time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)); got != 0 {
		t.Errorf("unixNano(1900) = %d, want 0", got)
	}
	if got := unixNano(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)); got <= 0 {
		t.Errorf("unixNano(3000) = %d, want a large positive value", got)
	}
	if got := unixNano(epoch); !fromUnixNano(got).Equal(epoch) {
		t.Errorf("round trip of %v gave %v", epoch, fromUnixNano(got))
	}
}

func TestObserveAllocs(t *testing.T) {
	e := New(Options{})
	name, _ := identity.FromName("api-key-allocs")
	for _, id := range []identity.ID{testID(1), name} {
		at := epoch
		r := newRand(1)
		// Warm up past every gate so the full scoring path runs.
		for range 200 {
			at = at.Add(gaussian(time.Second, 0.3)(r))
			e.Observe(id, at)
		}
		allocs := testing.AllocsPerRun(1000, func() {
			at = at.Add(gaussian(time.Second, 0.3)(r))
			e.Observe(id, at)
		})
		if allocs != 0 {
			t.Errorf("Observe(%v) on a known identity: %v allocs, want 0", id, allocs)
		}
		if allocs := testing.AllocsPerRun(100, func() { e.Peek(id, at) }); allocs != 0 {
			t.Errorf("Peek(%v): %v allocs, want 0", id, allocs)
		}
	}
}

// TestConcurrentUse runs every entry point at once; run it with -race.
func TestConcurrentUse(t *testing.T) {
	e := New(Options{MaxClients: 512, Shards: 8, IdleTTL: time.Second})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			at := epoch
			for i := range 5000 {
				at = at.Add(time.Duration(r.IntN(2000)) * time.Millisecond)
				id := testID(r.IntN(1000))
				e.Observe(id, at)
				switch i % 500 {
				case 0:
					e.Top(10, at)
				case 1:
					e.Sweep(at)
				case 2:
					e.Forget(id)
				case 3:
					e.Explain(id, at)
				}
			}
		})
	}
	wg.Wait()
	if n := e.Len(); n < 0 || n > 512 {
		t.Errorf("Len() = %d, want within [0, 512]", n)
	}
	count := 0
	for i := range e.shards {
		count += e.shards[i].count
	}
	if count != e.Len() {
		t.Errorf("Len() = %d, but the shards hold %d", e.Len(), count)
	}
}

func TestSortedRing(t *testing.T) {
	r := newRand(5)
	var ring sortedRing
	var all []uint32
	for i := range 500 {
		x := uint32(r.IntN(1 + r.IntN(5000)))
		if i%50 == 0 {
			x = uint32(r.Uint32()) // huge values too
		}
		ring.push(x)
		all = append(all, unpackMS(packMS(x)))
		want := all[max(0, len(all)-ringSize):]
		if got := ring.recent(); !slices.Equal(got, want) {
			t.Fatalf("push %d: recent() = %v, want %v", i, got, want)
		}
		var buf [ringSize]uint32
		if got := ring.inOrder(&buf); !slices.Equal(got, want) {
			t.Fatalf("push %d: inOrder() = %v, want %v", i, got, want)
		}
		got := ring.sorted(&buf)
		sorted := slices.Sorted(slices.Values(want))
		if !slices.Equal(got, sorted) {
			t.Fatalf("push %d: sorted() = %v, want %v", i, got, sorted)
		}
	}
	var buf [ringSize]uint32
	if n := testing.AllocsPerRun(100, func() { ring.inOrder(&buf) }); n != 0 {
		t.Errorf("inOrder allocates %v times, want 0", n)
	}
}

// scoreFromFeatures recomputes a score from an Explanation's features with
// the fusion documented in doc.go, so tests can check that what operators
// are shown is what was scored.
func scoreFromFeatures(fs []Feature) uint8 {
	term := func(i int) float64 { return fs[i].Gate * fs[i].Probability }
	pReg := max(term(0), term(1), term(2), term(3), term(8))
	risk := 1 - (1-pReg)*(1-term(4))*(1-term(5))
	risk *= 1 - fs[6].Gate*fs[6].Probability
	return uint8(math.Round(100 * min(1, max(0, risk))))
}

func TestExplainMatchesScore(t *testing.T) {
	streams := map[string][]time.Duration{}
	r := newRand(11)
	streams["human"] = h1.times(r, 0, 30*time.Minute)
	streams["nat"] = nat(r, h1, 30, 10*time.Minute)
	streams["jitter"] = gaps(r, 150, uniform(time.Second, 3*time.Second))
	streams["mimic"] = burstMimic(r, 10*time.Second, 0.1, 10*time.Minute)
	streams["worker"] = h10.times(r, 0, 3*time.Hour)
	for name, ts := range streams {
		e := New(Options{})
		id := testID(1)
		for i, at := range observe(r, ts, 2*time.Millisecond) {
			v := e.Observe(id, at)
			x, _ := e.Explain(id, at)
			if got := scoreFromFeatures(x.Features); got != v.Score {
				t.Fatalf("%s request %d: features give score %d, verdict %d: %+v", name, i+1, got, v.Score, x.Features)
			}
		}
	}
}

// TestEWSkewness checks the EW third moment against the batch moment
// skewness while the weights are still exact (Welford, 1/k).
func TestEWSkewness(t *testing.T) {
	var s state
	s.start(0)
	xs := []int64{100, 250, 180, 900, 120, 300, 150, 2000, 170, 110}
	now := int64(0)
	for _, x := range xs {
		now += x * int64(time.Millisecond)
		s.record(now)
	}
	var mean, m2, m3 float64
	for _, x := range xs {
		mean += float64(x)
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		d := float64(x) - mean
		m2 += d * d
		m3 += d * d * d
	}
	m2 /= float64(len(xs))
	m3 /= float64(len(xs))
	want := m3 / (m2 * math.Sqrt(m2))
	if got := s.ewSkewness(); math.Abs(got-want) > 1e-3*math.Abs(want) {
		t.Errorf("ewSkewness = %v, want %v", got, want)
	}
}
