package risk

import (
	"math/rand/v2"
	"testing"
	"time"
)

// Fast, steady humans, second pass (issue 14): each gate a brisk pager's
// false positives went through now needs evidence a log-normal think time
// does not give (score.go, jitterRatio). The streams below are built gap
// by gap, so that each test isolates one gate; TestBriskPagersOfTheIssue
// runs the class itself.

// briskState records the gaps (ms) on a fresh state and returns it with
// its features.
func briskState(gapsMS []int64) (*state, features) {
	var s state
	now := int64(0)
	s.start(now)
	for _, g := range gapsMS {
		now += g * int64(time.Millisecond)
		s.record(now)
	}
	var f features
	s.evaluate(s.last, &f)
	return &s, f
}

// repeat returns n gaps cycling through pattern.
func repeat(pattern []int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = pattern[i%len(pattern)]
	}
	return out
}

// symmetric2s is a symmetric pattern around 2 s (spread like ±35 %
// jitter), skewed is a right-skewed one with the same median, like a
// log-normal think time: neither has a gap > 3 s long enough to be a
// pause.
var (
	symmetric2s = []int64{750, 3250, 1050, 2950, 1350, 2650, 1650, 2350, 2000, 2000}
	skewed2s    = []int64{1200, 1400, 1550, 1700, 1850, 2000, 2150, 2350, 2600, 3000, 4600}
)

// TestAdditiveJitterWaivesTheCalmWait: before a stream has gone
// calmFirst without a pause, moderate anti-burstiness counts only with
// additive jitter, a gap below median/jitterRatio. Two gaps at a quarter of
// the median (a brisk person now and then) no longer open the gate; one at
// a tenth (a Gaussian timer's) does, and shortens the ramp as strong
// evidence does.
func TestAdditiveJitterWaivesTheCalmWait(t *testing.T) {
	base := repeat(symmetric2s, 60) // 2 minutes: the calm gate is about half open
	quarter := append([]int64(nil), base...)
	quarter[40], quarter[50] = 500, 500
	tenth := append([]int64(nil), base...)
	tenth[50] = 200

	_, fq := briskState(quarter)
	_, ft := briskState(tenth)
	if fq.jitter != 0 || ft.jitter != 1 {
		t.Fatalf("gaps below median/%.0f: %d with two at a quarter, %d with one at a tenth; want 0 and 1", jitterRatio, fq.jitter, ft.jitter)
	}
	if fq.pAnti < 0.9 || ft.pAnti < 0.9 {
		t.Fatalf("anti-bursty p = %.2f and %.2f, want both near 1: the streams differ in the gate only", fq.pAnti, ft.pAnti)
	}
	if fq.gAnti > 0.6*antiWeight {
		t.Errorf("two gaps at a quarter of the median: anti-bursty weight %.2f, want the calm gate (<= %.2f)", fq.gAnti, 0.6*antiWeight)
	}
	if ft.gAnti < antiWeight-1e-9 {
		t.Errorf("a gap at a tenth of the median: anti-bursty weight %.2f, want full (%.1f)", ft.gAnti, antiWeight)
	}
}

// TestSkewedStreamsWaitLonger: after calmFirst without a pause, symmetric
// gaps count in full, right-skewed ones (think times) only half: their
// wait is calmFirst × (1 + skewWait·(1 − sym)).
func TestSkewedStreamsWaitLonger(t *testing.T) {
	n := int(calmFirst/2000) + 10 // a little past calmFirst at 2 s
	_, fs := briskState(repeat(symmetric2s, n))
	_, fk := briskState(repeat(skewed2s, n))
	if fs.sym < 1 || fk.sym > 0 {
		t.Fatalf("sym = %.2f and %.2f, want 1 for the symmetric pattern and 0 for the skewed one", fs.sym, fk.sym)
	}
	if fs.calm*1000 < calmFirst || fk.calm*1000 < calmFirst {
		t.Fatalf("calm %.0f s and %.0f s, want both past %v", fs.calm, fk.calm, msDur(calmFirst))
	}
	// Both are below the strong level, so the gate is the calm clock.
	gate := func(f features) float64 {
		return f.gAnti / (antiWeight * clamp(float64(int64(f.nInt)-antiMin)/antiSpan))
	}
	if g := gate(fs); g < 1-1e-9 {
		t.Errorf("symmetric gaps after %.0f s without a pause: gate %.2f, want 1", fs.calm, g)
	}
	want := fk.calm * 1000 / (calmFirst * (1 + skewWait))
	if g := gate(fk); g > want+1e-9 || g < want-1e-9 {
		t.Errorf("right-skewed gaps after %.0f s without a pause: gate %.3f, want %.3f", fk.calm, g, want)
	}
}

// TestNoPauseNeedsMachineEvidence: three minutes without a 3 s gap count
// for a symmetric stream, not for a right-skewed one at a human pace (a
// brisk person at 1 s), nor do they count against it in the score.
func TestNoPauseNeedsMachineEvidence(t *testing.T) {
	half := func(p []int64) []int64 {
		out := make([]int64, len(p))
		for i, g := range p {
			out[i] = g / 2
		}
		return out
	}
	n := 200 // 200 s at 1 s
	_, fs := briskState(repeat(half(symmetric2s), n))
	_, fk := briskState(repeat(half(skewed2s), n))
	if fs.pFast < 0.9 || fk.pFast < 0.9 {
		t.Fatalf("no_pause p = %.2f and %.2f after %.0f s, want both near 1", fs.pFast, fk.pFast, fk.stretch)
	}
	if fs.terms[ReasonNoPause] < 0.9 {
		t.Errorf("symmetric 1 s stream: no_pause term %.2f, want the full p", fs.terms[ReasonNoPause])
	}
	if fk.gFast != 0 || fk.terms[ReasonNoPause] != 0 {
		t.Errorf("right-skewed 1 s stream: no_pause gate %.2f, term %.2f; want 0", fk.gFast, fk.terms[ReasonNoPause])
	}
}

// TestPeriodicAfterAPauseNeedsARegularRing: a person who has paused and
// then pages with a tight core (MAD/median about 0.1) between longer gaps
// is not periodic; the same core without a pause is, as a jittered timer
// is.
func TestPeriodicAfterAPauseNeedsARegularRing(t *testing.T) {
	core := []int64{1600, 1750, 1850, 2000, 2150, 2250, 2400, 2000, 5000, 1900, 2100, 5500, 700, 800}
	paused := append(repeat([]int64{2000, 1800, 2200}, 20), 30_000) // a human pause
	paused = append(paused, repeat(core, 200)...)
	ps, fp := briskState(paused)
	ns, fn := briskState(repeat(core, 261))
	if ps.calm&calmPaused == 0 || ns.calm&calmPaused != 0 {
		t.Fatal("want a pause at the 30 s gap and none in the core")
	}
	if fp.rcv <= perStrong || fp.pPer < 0.5 {
		t.Fatalf("MAD/median %.3f, periodic p %.2f: want moderate periodicity", fp.rcv, fp.pPer)
	}
	if x := max(fp.a, fp.aEW); x < perPausedCut {
		t.Fatalf("max(A, A_ew) = %.2f, want above %.2f: the long gaps make the ring irregular", x, perPausedCut)
	}
	if fp.gPer != 0 {
		t.Errorf("after a pause: periodic weight %.2f, want 0", fp.gPer)
	}
	if fn.gPer < 1 {
		t.Errorf("the same core, never paused: periodic weight %.2f, want 1", fn.gPer)
	}
}

// TestBriskPagersOfTheIssue: pagers of issue 14's class (log-normal think
// times with a median of 1-3 s and a small σ, a short pause now and then),
// on this package's seeds, are not quarantined in half an hour; Gaussian
// 50 % jitter at the same pace still is, within 150 requests. Before the
// gates above, 2 of these 900 pagers were quarantined (periodic after a
// pause, anti_bursty).
func TestBriskPagersOfTheIssue(t *testing.T) {
	class := []human{
		{think: time.Second, thinkSigma: 0.5, burstMean: 1, burstCap: 1, away: 0.04, awayMin: 6 * time.Second},
		{think: 2 * time.Second, thinkSigma: 0.45, burstMean: 1, burstCap: 1, away: 0.03, awayMin: 10 * time.Second},
		{think: 3 * time.Second, thinkSigma: 0.45, burstMean: 1, burstCap: 1, away: 0.05, awayMin: 15 * time.Second},
	}
	neverQuarantined(t, class)
	bot := runSeeds(seeds(100, 30), func(r *rand.Rand) []time.Duration {
		return gaps(r, 150, gaussian(2*time.Second, 0.5))
	})
	caught := 0
	for _, got := range bot {
		if got.confirmedAt > 0 {
			caught++
		}
	}
	if caught < len(bot)*9/10 {
		t.Errorf("Gaussian 50 %% jitter at 2 s: %d of %d confirmed within 150 requests, want >= 90 %%", caught, len(bot))
	}
}

// Fast, steady humans, third pass (issue 14, a smaller σ): strong
// regularity waives the calm wait only with bounded, symmetric jitter
// (features.machine): symmetric moments, a full ring, and no gap beyond
// tailRatio × the EW mean, the right tail a think time has and ±50 %
// jitter never reaches.

// tight2s is a symmetric pattern around 2 s, spread like ±15 % jitter:
// strongly regular (max(A, A_ew) well below calmStrong).
var tight2s = []int64{1700, 2300, 1800, 2200, 1900, 2100, 2000, 2000}

// withTail returns gaps with one think-time tail, a gap of tailMS, placed
// at i.
func withTail(gaps []int64, i int, tailMS int64) []int64 {
	out := append([]int64(nil), gaps...)
	out[i] = tailMS
	return out
}

// TestStrongRegularityWithATailWaits: a strongly regular stream that has
// never paused counts at once when its gaps are bounded, but only through
// the calm clock when its ring holds a gap beyond tailRatio × the EW mean
// (3.7 s at 2 s: no pause, a think time's tail).
func TestStrongRegularityWithATailWaits(t *testing.T) {
	n := 60 // 2 minutes at 2 s: well inside the calm wait
	_, fb := briskState(repeat(tight2s, n))
	_, ft := briskState(withTail(repeat(tight2s, n), n-5, 3700))
	if x := max(ft.a, ft.aEW); x > calmStrong {
		t.Fatalf("max(A, A_ew) = %.2f with the tail gap, want strong regularity (<= %.2f)", x, calmStrong)
	}
	if fb.tail != 0 || ft.tail != 1 {
		t.Fatalf("tail gaps: %d bounded, %d with the 3.7 s gap; want 0 and 1", fb.tail, ft.tail)
	}
	if fb.machine < 1 || ft.machine != 0 {
		t.Fatalf("machine evidence %.2f bounded, %.2f with the tail gap; want 1 and 0", fb.machine, ft.machine)
	}
	if fb.gAnti < antiWeight-1e-9 {
		t.Errorf("bounded strong regularity: anti-bursty weight %.2f, want full (%.1f)", fb.gAnti, antiWeight)
	}
	if want := antiWeight * clamp(ft.calm*1000/(calmFirst*(1+skewWait))); ft.gAnti > want+1e-9 {
		t.Errorf("strong regularity with a tail gap: anti-bursty weight %.2f, want the calm gate's %.2f", ft.gAnti, want)
	}
}

// TestTightCoreWithATailWaits: a tight core (MAD/median at most
// perStrong) between think-time tails at a human pace is periodic only
// through the calm clock; the same core without them is periodic at once,
// as a timer is.
func TestTightCoreWithATailWaits(t *testing.T) {
	core := []int64{1950, 2000, 2050, 2000, 1980, 2020, 2000, 2000}
	n := 40
	_, fb := briskState(repeat(core, n))
	_, ft := briskState(withTail(withTail(repeat(core, n), n-3, 3700), n-12, 3900))
	if fb.rcv > perStrong || ft.rcv > perStrong {
		t.Fatalf("MAD/median %.3f and %.3f, want both at most %.2f", fb.rcv, ft.rcv, perStrong)
	}
	if fb.gPer < 1 {
		t.Errorf("tight core alone: periodic weight %.2f, want 1", fb.gPer)
	}
	if ft.gPer > 0.5 {
		t.Errorf("tight core with think-time tails, %.0f s without a pause: periodic weight %.2f, want the calm gate (<= 0.5)", ft.calm, ft.gPer)
	}
}

// TestMachineEvidenceNeedsAFullRing: before the ring holds ringSize gaps,
// its moments are too noisy to call the jitter bounded and symmetric.
func TestMachineEvidenceNeedsAFullRing(t *testing.T) {
	_, fs := briskState(repeat(tight2s, ringSize-1))
	_, ff := briskState(repeat(tight2s, ringSize))
	if fs.machine != 0 || ff.machine < 1 {
		t.Errorf("machine evidence %.2f with %d gaps, %.2f with %d; want 0 and 1", fs.machine, ringSize-1, ff.machine, ringSize)
	}
}

// TestOnePauseWaitsCalmLong: once a stream has paused, the wait for
// moderate regularity is calmLong whatever the skew. A person who pauses
// after 2 % of her actions goes that long without a pause about never; a
// timer with a small σ that made one pause-like gap by chance (B7n) is
// judged again after calmLong, not twice that.
func TestOnePauseWaitsCalmLong(t *testing.T) {
	g := append(repeat(skewed2s, 40), 30_000) // one human pause
	g = append(g, repeat(skewed2s, int(calmLong)/2200+20)...)
	s, f := briskState(g)
	if s.calm&calmPaused == 0 || f.calm*1000 < calmLong {
		t.Fatalf("paused %v, calm %.0f s; want a pause and more than %v since", s.calm&calmPaused != 0, f.calm, msDur(calmLong))
	}
	if f.sym > 0 {
		t.Fatalf("sym = %.2f, want a right-skewed stream (0)", f.sym)
	}
	if g := f.gAnti / (antiWeight * clamp(float64(int64(f.nInt)-antiMin)/antiSpan)); g < 1-1e-9 {
		t.Errorf("right-skewed stream %.0f s after its pause: anti-bursty gate %.2f, want 1", f.calm, g)
	}
}
