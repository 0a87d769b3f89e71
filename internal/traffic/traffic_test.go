package traffic

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

// collect drains a stream of s.
func collect(s Scenario, seed uint64, opts ...Option) []Request {
	st := s.Stream(seed, t0, opts...)
	var out []Request
	for {
		r, ok := st.Next()
		if !ok {
			return out
		}
		out = append(out, r)
	}
}

// mustLookup returns the scenario called name or fails the test.
func mustLookup(t testing.TB, name string) Scenario {
	t.Helper()
	s, ok := Lookup(name)
	if !ok {
		t.Fatalf("Lookup(%q) found nothing", name)
	}
	return s
}

func TestScenarioTable(t *testing.T) {
	want := []string{
		"H1", "H2", "H3", "H4", "H5", "H6", "H7", "H8", "H9", "H10", "H11", "H12", "H13",
		"B1-0.5s", "B1-2s", "B1-10s", "B1-60s", "B2-5", "B2-20", "B2-50", "B2b", "B2c",
		"B3-5", "B3-20", "B3-50", "B4", "B5", "B5b", "B6", "B7", "B8", "B9", "B10", "B10b", "B11", "B12",
		"B2-ua",
		"H15", "B14", // identity composition: fingerprints, a rotating address
		// beats.go (issue 14): brisk pagers and multi-beat timers.
		"H14-1s", "H14-2s", "H14-3s", "B13-2f", "B13-2w", "B13-2s", "B13-3", "B13-3g", "B13-4", "B13-4m",
		"B13-ds", "B13-dw", "B13-2d",
		// brisk.go (issue 14): held-out brisk pagers and the near-line bot.
		"H14-1.5s", "H14-2.5s", "H14-1.2s", "H14-2s3", "B7n", "B7s",
	}
	outOfScope := []string{"B5b", "B6", "B7", "B8", "B9", "B10b", "B12"}

	var ids []string
	seen := map[string]bool{}
	for _, s := range Scenarios() {
		ids = append(ids, s.ID)
		for _, key := range []string{strings.ToLower(s.ID), strings.ToLower(s.Name)} {
			if seen[key] {
				t.Errorf("duplicate id or name %q", key)
			}
			seen[key] = true
		}
		if s.Description == "" || s.Params == "" || s.Family == "" {
			t.Errorf("%s: empty description, params or family", s.ID)
		}
		if s.Horizon <= 0 || s.Clients < 1 {
			t.Errorf("%s: horizon %v, clients %d", s.ID, s.Horizon, s.Clients)
		}
		wantLabel := Bot
		switch {
		case strings.HasPrefix(s.ID, "H"):
			wantLabel = Human
		case slices.Contains(outOfScope, s.ID):
			wantLabel = OutOfScope
		}
		if s.Label != wantLabel {
			t.Errorf("%s: label %q, want %q", s.ID, s.Label, wantLabel)
		}
	}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("scenario ids = %v, want %v", ids, want)
	}

	horizons := map[string]time.Duration{
		"H1": 30 * time.Minute, "H3": time.Hour, "H9": 15 * time.Minute, "H12": 8 * time.Hour,
		"B1-60s": 40 * time.Minute, "B2b": 2 * time.Hour, "B2c": 2 * time.Hour, "B4": 2 * time.Hour,
		"B5": 10 * time.Minute, "B5b": 5 * time.Minute, "B6": time.Hour, "B8": time.Hour,
	}
	for id, h := range horizons {
		if got := mustLookup(t, id).Horizon; got != h {
			t.Errorf("%s: horizon %v, want %v", id, got, h)
		}
	}
	clients := map[string]int{"H1": 1, "H7": 10, "H8": 50, "H9": 200, "B5b": 8, "B12": 11}
	for id, n := range clients {
		if got := mustLookup(t, id).Clients; got != n {
			t.Errorf("%s: clients %d, want %d", id, got, n)
		}
	}
	if got := mustLookup(t, "H6").ExcludedPaths; !slices.Equal(got, []string{"/api/poll"}) {
		t.Errorf("H6 excluded paths = %v", got)
	}
}

func TestLookup(t *testing.T) {
	tests := []struct {
		in, wantID string
	}{
		{"H1", "H1"},
		{"h1", "H1"},
		{"human-spa", "H1"},
		{"FIXED-2S", "B1-2s"},
		{"b1-60s", "B1-60s"},
		{"cobalt-50pct-60s", "B2c"},
	}
	for _, tc := range tests {
		s, ok := Lookup(tc.in)
		if !ok || s.ID != tc.wantID {
			t.Errorf("Lookup(%q) = %q, %v; want %q", tc.in, s.ID, ok, tc.wantID)
		}
	}
	for _, in := range []string{"", "B1", "nope"} {
		if s, ok := Lookup(in); ok {
			t.Errorf("Lookup(%q) = %q, want nothing", in, s.ID)
		}
	}
	// Scenarios returns a copy.
	s := Scenarios()
	s[0].Name = "changed"
	if Scenarios()[0].Name == "changed" {
		t.Error("Scenarios shares its backing array")
	}
}

func TestStreamInvariants(t *testing.T) {
	for _, s := range Scenarios() {
		t.Run(s.ID, func(t *testing.T) {
			t.Parallel()
			for _, raw := range []bool{false, true} {
				var opts []Option
				if raw {
					opts = append(opts, Raw())
				}
				a := collect(s, 1, opts...)
				if len(a) == 0 {
					t.Fatalf("raw=%v: empty stream", raw)
				}
				end := t0.Add(s.Horizon)
				members := map[int]bool{}
				for i, r := range a {
					if r.TS.Before(t0) || !r.TS.Before(end) {
						t.Fatalf("raw=%v: request %d at %v outside [%v, %v)", raw, i, r.TS, t0, end)
					}
					if i > 0 && r.TS.Before(a[i-1].TS) {
						t.Fatalf("raw=%v: request %d at %v before request %d at %v", raw, i, r.TS, i-1, a[i-1].TS)
					}
					if !raw && r.TS.Sub(t0)%time.Millisecond != 0 {
						t.Fatalf("observed request %d at %v not on a millisecond", i, r.TS)
					}
					if !strings.HasPrefix(r.Path, "/api/") || r.Method == "" || r.UserAgent == "" {
						t.Fatalf("raw=%v: request %d incomplete: %+v", raw, i, r)
					}
					if r.Member < 0 || r.Member >= s.Clients {
						t.Fatalf("raw=%v: request %d from member %d of %d", raw, i, r.Member, s.Clients)
					}
					members[r.Member] = true
				}
				if s.ID != "B9" && len(members) != s.Clients { // B9 streams are single anyway
					t.Errorf("raw=%v: %d of %d members sent requests", raw, len(members), s.Clients)
				}
				if b := collect(s, 1, opts...); !slices.Equal(a, b) {
					t.Errorf("raw=%v: two streams with seed 1 differ", raw)
				}
				if c := collect(s, 2, opts...); slices.Equal(a, c) {
					t.Errorf("raw=%v: seeds 1 and 2 give the same stream", raw)
				}
			}
		})
	}
}

func TestScenariosDiffer(t *testing.T) {
	// B8 replays the H1 model, but must not replay H1's exact draws.
	h1 := collect(mustLookup(t, "H1"), 7)
	b8 := mustLookup(t, "B8")
	b8.Horizon = mustLookup(t, "H1").Horizon
	if slices.Equal(h1, collect(b8, 7)) {
		t.Error("H1 and B8 give the same stream for one seed")
	}
}

func TestObservationModel(t *testing.T) {
	for _, id := range []string{"H1", "H5", "B1-0.5s", "B5"} {
		s := mustLookup(t, id)
		raw := collect(s, 3, Raw())
		obs := collect(s, 3)
		if len(raw) != len(obs) {
			t.Fatalf("%s: %d raw requests, %d observed", id, len(raw), len(obs))
		}
		var sum, maxAbs float64
		for i := range raw {
			if raw[i].Path != obs[i].Path || raw[i].Member != obs[i].Member {
				t.Fatalf("%s: request %d differs beyond its timestamp: %+v vs %+v", id, i, raw[i], obs[i])
			}
			d := math.Abs(obs[i].TS.Sub(raw[i].TS).Seconds() * 1000)
			sum += d
			maxAbs = max(maxAbs, d)
		}
		// E|N(0, 5 ms)| = 4 ms, plus rounding; clamping to keep the order
		// moves a few burst requests further.
		if mean := sum / float64(len(raw)); mean < 3 || mean > 6 {
			t.Errorf("%s: mean |observed − raw| = %.2f ms, want ≈ 4 ms", id, mean)
		}
		if maxAbs > 60 {
			t.Errorf("%s: max |observed − raw| = %.1f ms", id, maxAbs)
		}
	}
}

func TestHorizonExtendsStream(t *testing.T) {
	for _, id := range []string{"H1", "H7", "B4"} {
		s := mustLookup(t, id)
		short := collect(s, 5, Raw())
		s.Horizon *= 2
		long := collect(s, 5, Raw())
		if len(long) <= len(short) || !slices.Equal(short, long[:len(short)]) {
			t.Errorf("%s: the stream over 2×horizon does not extend the stream over the horizon", id)
		}
	}
}

func TestEmptyStream(t *testing.T) {
	s := mustLookup(t, "H1")
	s.Horizon = 0
	if r, ok := s.Stream(1, t0).Next(); ok {
		t.Errorf("zero horizon gave %+v", r)
	}
	if _, ok := (Scenario{Horizon: time.Hour}).Stream(1, t0).Next(); ok {
		t.Error("the zero Scenario gave a request")
	}
}

func TestClientsResizesNAT(t *testing.T) {
	s := mustLookup(t, "H7")
	s.Clients = 3
	members := map[int]bool{}
	for _, r := range collect(s, 1) {
		members[r.Member] = true
	}
	if len(members) != 3 {
		t.Errorf("H7 with 3 clients has %d members", len(members))
	}
}

// intervals returns the gaps between consecutive requests in seconds.
func intervals(rs []Request) []float64 {
	out := make([]float64, 0, len(rs))
	for i := 1; i < len(rs); i++ {
		out = append(out, rs[i].TS.Sub(rs[i-1].TS).Seconds())
	}
	return out
}

// cv returns the coefficient of variation σ/μ (population σ).
func cv(x []float64) float64 {
	var sum float64
	for _, v := range x {
		sum += v
	}
	mean := sum / float64(len(x))
	var ss float64
	for _, v := range x {
		ss += (v - mean) * (v - mean)
	}
	return math.Sqrt(ss/float64(len(x))) / mean
}

// median returns the median of x (x is not modified).
func median(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// madMedian returns the robust CV: median absolute deviation over median.
func madMedian(x []float64) float64 {
	m := median(x)
	dev := make([]float64, len(x))
	for i, v := range x {
		dev[i] = math.Abs(v - m)
	}
	return median(dev) / m
}

// longRaw returns the raw intervals of scenario id over at least n
// intervals, stretching the horizon as needed.
func longRaw(t testing.TB, id string, horizon time.Duration) []float64 {
	s := mustLookup(t, id)
	s.Horizon = horizon
	return intervals(collect(s, 11, Raw()))
}

// TestStatistics checks long raw streams against the reference values of
// DETECTION.md §1.3.
func TestStatistics(t *testing.T) {
	tests := []struct {
		id      string
		horizon time.Duration
		cv      [2]float64 // want CV within [lo, hi]
		mad     [2]float64 // want MAD/median within [lo, hi]
	}{
		{"B1-2s", 4 * time.Hour, [2]float64{0, 1e-9}, [2]float64{0, 1e-9}},
		{"B2-5", 4 * time.Hour, [2]float64{0.02, 0.04}, [2]float64{0.02, 0.03}},
		{"B2-20", 4 * time.Hour, [2]float64{0.09, 0.15}, [2]float64{0.07, 0.13}},
		{"B2-50", 4 * time.Hour, [2]float64{0.26, 0.32}, [2]float64{0.22, 0.28}},
		{"B2b", 100 * time.Hour, [2]float64{0.26, 0.32}, [2]float64{0.22, 0.28}},
		{"B2c", 200 * time.Hour, [2]float64{0.16, 0.22}, [2]float64{0.14, 0.20}},
		{"B3-20", 4 * time.Hour, [2]float64{0.17, 0.23}, [2]float64{0.11, 0.16}},
		{"B3-50", 4 * time.Hour, [2]float64{0.42, 0.52}, [2]float64{0.29, 0.39}},
		{"B4", 200 * time.Hour, [2]float64{0.38, 0.44}, [2]float64{0.33, 0.39}},
		{"B5", time.Hour, [2]float64{0.38, 0.45}, [2]float64{0.24, 0.30}},
		{"B6", 20 * time.Hour, [2]float64{0.95, 1.05}, [2]float64{0.64, 0.74}},
		{"B7", 200 * time.Hour, [2]float64{1.2, 2.6}, [2]float64{0.63, 0.73}},
		{"B5b", time.Hour, [2]float64{0.8, 1.2}, [2]float64{0.5, 0.9}},
		{"H1", 20 * time.Hour, [2]float64{1.5, 20}, [2]float64{0.6, 10}},
		{"H7", 5 * time.Hour, [2]float64{1.1, 20}, [2]float64{0.6, 10}},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			t.Parallel()
			x := longRaw(t, tc.id, tc.horizon)
			if len(x) < 1000 {
				t.Fatalf("only %d intervals", len(x))
			}
			c, m := cv(x), madMedian(x)
			t.Logf("%s: n=%d CV=%.3f MAD/median=%.3f", tc.id, len(x), c, m)
			if c < tc.cv[0] || c > tc.cv[1] {
				t.Errorf("CV = %.3f, want in %v", c, tc.cv)
			}
			if m < tc.mad[0] || m > tc.mad[1] {
				t.Errorf("MAD/median = %.3f, want in %v", m, tc.mad)
			}
		})
	}
}

func TestHumanShape(t *testing.T) {
	for _, id := range []string{"H1", "H2", "H5", "H11", "H13"} {
		x := intervals(collect(mustLookup(t, id), 4, Raw()))
		var sub, long int
		for _, v := range x {
			if v < 1 {
				sub++
			}
			if v > 3 {
				long++
			}
		}
		fs, fl := float64(sub)/float64(len(x)), float64(long)/float64(len(x))
		t.Logf("%s: n=%d CV=%.2f <1s %.2f >3s %.2f", id, len(x), cv(x), fs, fl)
		if cv(x) <= 1 {
			t.Errorf("%s: CV = %.2f, want > 1 (bursty)", id, cv(x))
		}
		if fs < 0.15 || fl < 0.05 {
			t.Errorf("%s: %.2f of gaps < 1 s and %.2f > 3 s; want both modes", id, fs, fl)
		}
	}
}

func TestCGNATRate(t *testing.T) {
	s := mustLookup(t, "H9")
	for seed := range uint64(3) {
		n := len(collect(s, seed))
		rate := float64(n) / s.Horizon.Seconds()
		t.Logf("H9 seed %d: %.1f req/s", seed, rate)
		if rate < 22 || rate > 40 {
			t.Errorf("H9 seed %d: %.1f req/s, want ≈ 30", seed, rate)
		}
	}
}

func TestPoller(t *testing.T) {
	s := mustLookup(t, "H6")
	var polls []Request
	for _, r := range collect(s, 9, Raw()) {
		if r.Path == "/api/poll" {
			polls = append(polls, r)
		}
	}
	if len(polls) != 60 {
		t.Errorf("%d polls in 30 min, want 60", len(polls))
	}
	for _, g := range intervals(polls) {
		if g != 30 {
			t.Fatalf("poll gap %v s, want exactly 30", g)
		}
	}
}

func TestDistributedRequestsPerIP(t *testing.T) {
	s := mustLookup(t, "B9")
	total := 0
	const streams = 200
	for seed := range uint64(streams) {
		total += len(collect(s, seed))
	}
	if mean := float64(total) / streams; mean < 5 || mean > 7 {
		t.Errorf("B9: %.2f requests per stream, want ≈ 6", mean)
	}
}

func TestRamp(t *testing.T) {
	rs := collect(mustLookup(t, "B11"), 1, Raw())
	var first, last int
	for _, r := range rs {
		switch off := r.TS.Sub(t0); {
		case off < time.Minute:
			first++
		case off >= 9*time.Minute:
			last++
		}
	}
	// The rate goes 1 → 10 req/s linearly over 10 minutes: the first minute
	// averages 1.45 req/s, the last 9.55.
	if first < 75 || first > 100 || last < 540 || last > 610 {
		t.Errorf("B11: %d requests in the first minute, %d in the last; want ≈ 87 and ≈ 573", first, last)
	}
}

func TestBurstMimicStarts(t *testing.T) {
	for _, tc := range []struct {
		id  string
		mad float64 // MAD/median of burst-start intervals: U[1−j, 1+j] has j/2
	}{{"B10", 0.05}, {"B10b", 0.25}} {
		s := mustLookup(t, tc.id)
		s.Horizon = 10 * time.Hour
		rs := collect(s, 2, Raw())
		var starts []Request
		for i, r := range rs {
			if i == 0 || r.TS.Sub(rs[i-1].TS) > time.Second {
				starts = append(starts, r)
			}
		}
		if m := madMedian(intervals(starts)); math.Abs(m-tc.mad) > 0.02 {
			t.Errorf("%s: burst-start MAD/median = %.3f, want ≈ %.2f", tc.id, m, tc.mad)
		}
	}
}

func TestWorkday(t *testing.T) {
	s := mustLookup(t, "H12")
	s.Horizon = 48 * time.Hour
	rs := collect(s, 3, Raw())
	long := 0
	for i, r := range rs {
		if tod := r.TS.Sub(t0) % (24 * time.Hour); tod >= 8*time.Hour {
			t.Fatalf("request %d at %v into its day, after work", i, tod)
		}
		if i > 0 && r.TS.Sub(rs[i-1].TS) > 25*time.Minute {
			long++
		}
	}
	// Two days: per day a meeting, lunch and a meeting, and one night.
	if long < 7 {
		t.Errorf("%d gaps > 25 min in two working days, want ≥ 7", long)
	}
}

func TestFlakyRetries(t *testing.T) {
	rs := collect(mustLookup(t, "H13"), 6, Raw())
	dups := 0
	for i := 1; i < len(rs); i++ {
		g := rs[i].TS.Sub(rs[i-1].TS)
		if rs[i].Path == rs[i-1].Path && g >= time.Second && g < 3*time.Second {
			dups++
		}
	}
	if f := float64(dups) / float64(len(rs)); f < 0.05 || f > 0.2 {
		t.Errorf("H13: %d of %d requests are retries (%.2f), want ≈ 0.1", dups, len(rs), f)
	}
}

func TestNaiveFormula(t *testing.T) {
	var nv Naive
	// One request a second: RPM 60 → 50 points, variance 0 → 50 points.
	var scores []float64
	var quarantinedAt int
	for i := range 30 {
		sc, q := nv.Observe(t0.Add(time.Duration(i) * time.Second))
		scores = append(scores, sc)
		if q && quarantinedAt == 0 {
			quarantinedAt = i + 1
		}
	}
	if scores[0] != 0 || scores[1] != 0 || scores[2] != 100 || scores[29] != 100 {
		t.Errorf("scores %v, want 0 0 100 ... 100", scores)
	}
	if quarantinedAt != 5 {
		t.Errorf("quarantined at request %d, want 5 (3 consecutive scores from the third)", quarantinedAt)
	}

	// Fixed periods: 2 s → RPM 30 → 25 + 50; 10 s → 5 + 50.
	for _, tc := range []struct {
		period time.Duration
		want   float64
	}{{500 * time.Millisecond, 100}, {2 * time.Second, 75}, {10 * time.Second, 55}} {
		nv = Naive{}
		var sc float64
		for i := range 25 {
			sc, _ = nv.Observe(t0.Add(time.Duration(i) * tc.period))
		}
		if math.Abs(sc-tc.want) > 1e-9 {
			t.Errorf("period %v: score %v, want %v", tc.period, sc, tc.want)
		}
	}

	// Alternating gaps of 1 s and 3 s, against a direct computation over
	// the last 20 timestamps.
	nv = Naive{}
	var ts []time.Time
	at := t0
	var sc float64
	for i := range 41 {
		sc, _ = nv.Observe(at)
		ts = append(ts, at)
		at = at.Add(time.Duration(1+2*(i%2)) * time.Second)
	}
	var w []float64
	for i := len(ts) - 19; i < len(ts); i++ {
		w = append(w, ts[i].Sub(ts[i-1]).Seconds())
	}
	var mean, v float64
	for _, g := range w {
		mean += g / float64(len(w))
	}
	for _, g := range w {
		v += (g - mean) * (g - mean) / float64(len(w))
	}
	want := 50*min(1, float64(len(w))/ts[len(ts)-1].Sub(ts[len(ts)-20]).Seconds()) + 50*min(1, 0.25/v)
	if math.Abs(sc-want) > 1e-9 || sc > 40 {
		t.Errorf("alternating 1 s / 3 s: score %v, want %v", sc, want)
	}
	if nv.Quarantined() {
		t.Error("alternating 1 s / 3 s quarantined")
	}
}

func TestNaiveBaseline(t *testing.T) {
	// DETECTION.md §8: the naive score catches fixed bots at 0.5 s and 2 s,
	// misses them at 10 s and 60 s.
	for _, tc := range []struct {
		id   string
		want bool
	}{{"B1-0.5s", true}, {"B1-2s", true}, {"B1-10s", false}, {"B1-60s", false}} {
		s := mustLookup(t, tc.id)
		for seed := range uint64(10) {
			st := s.Stream(seed, t0)
			var nv Naive
			q := false
			for r, ok := st.Next(); ok && !q; r, ok = st.Next() {
				_, q = nv.Observe(r.TS)
			}
			if q != tc.want {
				t.Errorf("%s seed %d: naive quarantined = %v, want %v", tc.id, seed, q, tc.want)
			}
		}
	}
}

func TestStreamAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	for _, id := range []string{"H1", "H6", "H7", "H12", "H13", "B2-20", "B5", "B5b", "B10", "B12"} {
		s := mustLookup(t, id)
		s.Horizon = 1000 * time.Hour
		st := s.Stream(1, t0)
		for range 100 {
			st.Next()
		}
		if a := testing.AllocsPerRun(1000, func() { st.Next() }); a != 0 {
			t.Errorf("%s: %.1f allocations per request", id, a)
		}
	}
}

func TestDistributions(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 200000
	var geo, geoCapped float64
	ln := make([]float64, n)
	par := make([]float64, n)
	for i := range n {
		geo += float64(geometric(r, 3.3, 1000))
		k := geometric(r, 10, 30)
		if k < 1 || k > 30 {
			t.Fatalf("geometric(10, cap 30) = %d", k)
		}
		geoCapped += float64(k)
		ln[i] = logNormal{8, 1.2}.draw(r)
		par[i] = pareto{60, 1.5}.draw(r)
		if par[i] < 60 {
			t.Fatalf("Pareto(60, 1.5) drew %v < 60", par[i])
		}
		if g := truncGauss(r, 2, 1, 0); g <= 0 {
			t.Fatalf("truncated Gaussian drew %v", g)
		}
	}
	if m := geo / n; math.Abs(m-3.3) > 0.05 {
		t.Errorf("geometric mean %.3f, want 3.3", m)
	}
	// Capping at 30 removes the tail above 30: mean 10·(1 − 0.9^30) ≈ 9.58.
	if m := geoCapped / n; math.Abs(m-9.58) > 0.1 {
		t.Errorf("capped geometric mean %.3f, want ≈ 9.58", m)
	}
	if m := median(ln); math.Abs(m-8) > 0.15 {
		t.Errorf("LN(8, 1.2) median %.3f", m)
	}
	if m := median(par); math.Abs(m-60*math.Pow(2, 1/1.5)) > 1 {
		t.Errorf("Pareto(60, 1.5) median %.2f, want %.2f", m, 60*math.Pow(2, 1/1.5))
	}
	if geometric(r, 1, 15) != 1 || geometric(r, 5, 1) != 1 {
		t.Error("geometric with mean 1 or cap 1 is not 1")
	}
	if seconds(math.NaN()) != 0 || seconds(-1) != 0 || seconds(1e300) != maxDraw {
		t.Error("seconds does not clamp")
	}
}

// TestNaiveReproducesSection8 pins the baseline column of DETECTION.md §8:
// the naive score quarantines about a third of single humans, every office
// NAT, and almost no calm humans.
func TestNaiveReproducesSection8(t *testing.T) {
	tests := []struct {
		id     string
		lo, hi float64 // quarantined fraction of streams
	}{
		{"H1", 0.25, 0.50}, // §8: 36.9 %
		{"H4", 0, 0.03},    // §8: 0.1 %
		{"H5", 0.95, 1},    // §8: 100 %
		{"H7", 0.95, 1},    // §8: 100 %
	}
	for _, tc := range tests {
		s := mustLookup(t, tc.id)
		const n = 100
		q := 0
		for seed := range uint64(n) {
			st := s.Stream(1000+seed, t0)
			var nv Naive
			for r, ok := st.Next(); ok; r, ok = st.Next() {
				if _, quarantined := nv.Observe(r.TS); quarantined {
					q++
					break
				}
			}
		}
		if f := float64(q) / n; f < tc.lo || f > tc.hi {
			t.Errorf("%s: naive quarantined %.0f %% of streams, want %.0f–%.0f %%", tc.id, 100*f, 100*tc.lo, 100*tc.hi)
		}
	}
}

func BenchmarkStreamNext(b *testing.B) {
	for _, id := range []string{"H1", "H9", "B2-20"} {
		b.Run(id, func(b *testing.B) {
			s := mustLookup(b, id)
			s.Horizon = 1 << 62
			st := s.Stream(1, t0)
			b.ReportAllocs()
			for b.Loop() {
				st.Next()
			}
		})
	}
}

// TestRotatingAgents: B2-ua draws a user agent per request from browsers,
// with the same timing process a B2-20 bot would have.
func TestRotatingAgents(t *testing.T) {
	st := mustLookup(t, "B2-ua").Stream(7, time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC))
	agents := map[string]int{}
	for range 200 {
		r, ok := st.Next()
		if !ok {
			t.Fatal("stream ended early")
		}
		agents[r.UserAgent]++
	}
	if len(agents) < 4 {
		t.Errorf("%d distinct user agents in 200 requests, want the rotation to show at least 4", len(agents))
	}
	for ua := range agents {
		if !strings.HasPrefix(ua, "Mozilla/5.0") {
			t.Errorf("user agent %q is not a browser's", ua)
		}
	}
}

// TestFingerprintsAndRotation: the fingerprinted scenarios carry one
// fingerprint per member, B14 moves address every RotateEvery requests,
// and the rest carry neither; B12's times are those it had before it
// carried fingerprints (the fingerprint draws no random numbers).
func TestFingerprintsAndRotation(t *testing.T) {
	start := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for _, name := range []string{"H15", "B12", "B14", "H7", "B1-2s"} {
		sc, _ := Lookup(name)
		st := sc.Stream(3, start)
		fps := map[int]string{}
		n := 0
		for req, ok := st.Next(); ok; req, ok = st.Next() {
			if prev, seen := fps[req.Member]; seen && prev != req.Fingerprint {
				t.Fatalf("%s: member %d changed fingerprint", name, req.Member)
			}
			fps[req.Member] = req.Fingerprint
			if want := n / max(sc.RotateEvery, 1); sc.RotateEvery > 0 && req.Hop != want {
				t.Fatalf("%s: request %d at hop %d, want %d", name, n, req.Hop, want)
			} else if sc.RotateEvery == 0 && req.Hop != 0 {
				t.Fatalf("%s: hop %d without rotation", name, req.Hop)
			}
			n++
		}
		distinct := map[string]bool{}
		for _, fp := range fps {
			distinct[fp] = true
		}
		switch name {
		case "H15":
			if len(distinct) != sc.Clients {
				t.Errorf("H15: %d fingerprints for %d browsers", len(distinct), sc.Clients)
			}
		case "B12":
			if fps[sc.Clients-1] != ScriptFingerprint || len(distinct) != sc.Clients {
				t.Errorf("B12: the bot has %q; %d fingerprints", fps[sc.Clients-1], len(distinct))
			}
		case "B14":
			if len(distinct) != 1 || fps[0] != ScriptFingerprint || n < 10*sc.RotateEvery {
				t.Errorf("B14: fingerprints %v over %d requests", distinct, n)
			}
		default:
			if !distinct[""] || len(distinct) != 1 {
				t.Errorf("%s carries fingerprints %v", name, distinct)
			}
		}
	}
}
