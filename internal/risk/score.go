package risk

import (
	"math"
	"math/bits"
	"time"
)

// Model constants (DETECTION.md §7.2). Each is named after the component
// that uses it; the doc comment in doc.go gives the formulas.
const (
	// minIntervals is the least evidence for any score: below it the score
	// is 0 whatever the rhythm, and nothing is sorted.
	minIntervals = 8

	confFloor = 4  // conf = clamp((m − confFloor)/confSpan)
	confSpan  = 12 // full weight at 16 intervals

	perCut  = 0.30 // periodic: MAD/median below this counts
	perSpan = 0.25 // … and is certain at perCut − perSpan

	entCut    = 2.0 // low entropy: bits below this count
	entSpan   = 1.2
	entWeight = 0.8 // a weaker sign than MAD/median

	antiMin    = 32  // anti-bursty needs more than this many intervals …
	antiSpan   = 32  // … and is fully weighted antiSpan later (at 64) …
	antiFast   = 8   // … or antiFast later (at 40) with strong machine evidence
	antiWidth  = 0.3 // p_anti rises from 0 to 1 over this much of max(A, A_ew)
	antiWeight = 0.9
	// max(A, A_ew) below the cut counts. The cut moves from antiCutHuman to
	// antiCutMachine with the machine evidence z (symmetric gaps, or a
	// sub-second median): a right-skewed rhythm at a human pace must be
	// more regular before it counts, because that is what a very regular
	// human (DETECTION.md H10, log-normal σ = 0.5) looks like.
	//
	// At a sub-second median the cut is raised to antiCutPace: one
	// person's sub-second gaps are bursty client fan-out, so a sub-second
	// rhythm more regular than Poisson (A = 0) is code.
	//
	// The raise is for one client only: it needs at most
	// paceMaxConcurrent of the requests to have come within 5 ms of
	// another (a batch). Browser fan-out and many clients on one address
	// overlap; a sequential script never does, and a NAT's first seconds,
	// before the shared label can be earned, must not be judged as one
	// fast client.
	antiCutHuman      = -0.25
	antiCutMachine    = -0.05
	antiCutPace       = 0.0
	paceMaxConcurrent = 1.0 / 32
	// Strong regularity reaches full weight at antiMin + antiFast instead
	// of antiMin + antiSpan: with symmetric gaps when max(A, A_ew) ≤
	// antiStrongSym, at a sub-second median when ≤ antiStrongPace; the
	// speed-up fades to none antiStrongWidth above those.
	antiStrongSym   = -0.5
	antiStrongPace  = -0.35
	antiStrongWidth = 0.1

	// Symmetry (DETECTION.md §1.3): human gaps are right-skewed (log-normal
	// think times, pauses), additive jitter is symmetric. sym =
	// clamp((symCut − skewness)/symSpan), with the larger of the moment
	// skewness of the ring and of the EW statistics: symmetric on both
	// horizons, as anti-burstiness must hold on both.
	symCut  = 0.8
	symSpan = 0.5

	bperMin   = 8 // periodic bursts: more than this many burst starts …
	bperSpan  = 8
	bperCut   = 0.20 // … with MAD/median below this
	bperWidth = 0.15

	fastAfter = 60.0  // no pause: seconds without a 3 s pause before it counts
	fastSpan  = 120.0 // certain after fastAfter + fastSpan seconds
	// fastAfterPaused replaces fastAfter once the stream has made a human
	// pause (state.calm): a brisk person paging at 1 s rarely waits 3 s,
	// and a stream that has paused like a person must go longer without
	// it. A script never pauses, so its wait stays fastAfter.
	fastAfterPaused = 180.0

	contSpan  = int64(2 * time.Hour) // continuity needs this much history
	contFloor = 20                   // active buckets of 24 above this count
	contWidth = 4
	// contMaxA: continuity counts only when max(A, A_ew) is below this (no
	// burstier than Poisson on either horizon): calm humans who work for
	// hours without a 5-minute break are Poisson-like, not regular.
	contMaxA = 0.0
	// contWeight: continuity is supporting evidence, never decisive alone:
	// two busy hours are within human reach, and the bitmap sees no
	// further back.
	contWeight = 0.5

	humanShortMin = 0.15 // human signature: share of gaps < 1 s in [min, max]
	humanShortMax = 0.90
	humanLongMin  = 0.10 // share of gaps > 3 s at least this
	humanMinA     = 0.25 // and A above this
	humanDiscount = 0.3

	// Shared (many humans on one address). The label is set when more than
	// sharedMinIntervals intervals have been seen, A_ew ≥ sharedMinAEW
	// (not more regular than Poisson), and the stream shows concurrency:
	// either a 60 s rate of at least sharedFastRate, far beyond one person,
	// or at least sharedMinRate with no pause longer than 3 s for
	// sharedMinStretch. One person, however busy, pauses between actions;
	// ten people on one NAT rarely leave the address quiet for 3 s. A rate
	// alone would label busy single humans too, and the label would become
	// an escape from timing.
	sharedMinIntervals = 64     // more than this many intervals seen
	sharedMinAEW       = -0.2   // and A_ew at least this (Poisson-like or bursty)
	sharedFastRate     = 3.0    // req/s over 60 s: many clients at once
	sharedMinRate      = 0.8    // req/s over 60 s …
	sharedMinStretch   = 40_000 // … and ms without a pause > 3 s
	// Once labelled, the label is renewed while the 60 s rate is at least
	// sharedKeepRate and A_ew ≥ sharedKeepAEW: a NAT whose humans go
	// quiet leaves its regular members (a poller, a bot) in the foreground
	// for a while, and that is no reason to start timing the address.
	sharedKeepRate = 0.5
	sharedKeepAEW  = -0.5

	// Busy streams: at busyRate req/s or more over 60 s (over the
	// stream's life while it is younger than busyWait), periodic bursts
	// are off. A burst (a gap of 1 s or more, then fan-out) is one
	// client's action; at a rate above what one person sustains, gaps of
	// a second mostly separate different clients' requests, and the
	// burst ring measures the mix, not a timer. It also spares a NAT's
	// first minute, before the shared test can pass, and NATs of ten
	// people that never pass it. A bot that fakes bursts on a timer at
	// this rate is left to the main ring and to volume limits.
	busyRate = 0.7
	busyWait = int64(time.Minute)

	// Mixed periodicity: when at least perMixed of the ring's gaps are
	// off the median by more than half (below perOffLo·median or above
	// perOffHi·median), the ring holds a timer mixed with other traffic
	// (a poller or a bot beside people), not a script alone, and periodic
	// evidence gets full weight at confFloor + perMixedSpan = 32 intervals
	// instead of 16. A pure timer, or jitter up to ±50 % uniform or 20 %
	// Gaussian, has almost no such gaps.
	perMixed     = 0.125
	perMixedSpan = 28
	perOffLo     = 0.5
	perOffHi     = 1.5

	// Multi-beat periodicity (periodic_cycle): a job that waits a short
	// list of intervals in turn (a, b, a, b, … or a, b, c, d, a, …) or one
	// period that drifts slowly. On the ring in arrival order, with
	// L = log₂ of each interval, the lag-k deviation
	//
	//	D_k = mean over i of min(|L_i − L_{i−k}|, 1), k = 1 … cycMaxLag,
	//
	// is small at the cycle's length (only the jitter is left: ±10 %
	// uniform gives about 0.1), and at lag 1 for a drifting period. It is
	// compared with the spread S = mean |L_i − median L| of the same
	// intervals: for gaps drawn independently of each other (any human
	// model, any i.i.d. jitter) D_k/S is about √2 at every lag, so the
	// component cannot fire on them, however narrow their spread (that is
	// the periodic component's business). It fires when both D and D/S
	// are small. A comb over the lags k ≤ 4 costs 4·32 subtractions.
	cycMaxLag  = 4
	cycDevCut  = 0.30 // D below this (log₂ units) counts …
	cycDevSpan = 0.12 // … and is certain at cycDevCut − cycDevSpan
	cycEtaCut  = 0.80 // D/S below this counts …
	cycEtaSpan = 0.30 // … and is certain at cycEtaCut − cycEtaSpan
	cycFloor   = 8    // weight from this many intervals …
	cycSpan    = 16   // … full cycSpan later (at 24)

	// Fast, steady humans (issue 14): a person paging through results at
	// an even 1-3 s has log-normal gaps with σ ≈ 0.45, and for the first
	// minutes, before she pauses, her ring is statistically a 50 %-jitter
	// timer's. What tells her apart is evidence that accumulates: she
	// pauses, a timer does not. So moderate regularity counts only after
	// the stream has gone long enough without a human pause, and weak
	// signs need more intervals:
	//
	//   - A human pause is a gap longer than pauseGap and at least
	//     pauseRatio times the EW mean before it (state.calm; jitter up to
	//     ±50 % never makes one).
	//   - Moderate anti-burstiness (max(A, A_ew) above calmStrong, fading
	//     in over antiStrongWidth) and low entropy are weighted by
	//     calm/calmFirst while the stream has never paused, calm/calmLong
	//     once it has: a person who has paused before needs 20 minutes
	//     without a pause to be judged on moderate regularity again. The
	//     wait is waived at a sub-human pace (median < paceMedian) and when
	//     at least two ring gaps are below median/pauseRatio: jitter that
	//     reaches below a third of the median is additive (a Gaussian
	//     timer), not a person's log-normal think time.
	//   - Pace counts as machine evidence below paceMedian, not 1 s: one
	//     call per page at a 1 s median is a brisk person; sustained
	//     single calls under half a second are not.
	//   - Periodicity weaker than perStrong (MAD/median) at a human pace
	//     needs 32 intervals for full weight, as mixed streams do; low
	//     entropy needs confFloor + entConfSpan = 24.
	paceMedian  = 500.0 // ms
	entConfSpan = 20
	pauseRatio  = 3.0
	perStrong   = 0.06
	calmStrong  = -0.63
	calmFirst   = 270_000.0   // ms: 4.5 minutes
	calmLong    = 1_200_000.0 // ms: 20 minutes
	calmPaused  = 1 << 15     // state.calm's flag: the stream has paused

	// Fast, steady humans, second pass (issue 14: 0.1 % per IP-hour). The
	// quarantined pagers left by the pause clock were people whose last
	// 32 gaps, by chance, looked like a jittered timer's, at the moment a
	// gate opened. Each gate that let one through now needs evidence a
	// log-normal think time does not give:
	//
	//   - Additive jitter: a ring gap below median/jitterRatio. A log-normal
	//     think time with σ ≤ 0.5 goes below a sixth of its median about
	//     once in 3,000 gaps (σ = 0.45: 1 in 30,000); Gaussian jitter with
	//     a 50 % sd does it once in 20. Only this waives the calm wait (two
	//     gaps below a third of the median, the rule before, were within a
	//     person's reach once in 25 rings), and with symmetric gaps it is
	//     strong evidence: the anti-bursty weight is full at antiMin +
	//     antiFast, as for strong regularity.
	//   - The calm wait is longer for a right-skewed stream: calmFirst (or
	//     calmLong) × (1 + skewWait·(1 − sym)). Symmetric jitter waits as
	//     before; a stream whose gaps are skewed like think times waits up
	//     to twice as long without a pause.
	//   - no_pause counts only with machine evidence (symmetric gaps or a
	//     sub-second median): a brisk person paging at 1 s may go three
	//     minutes without a 3 s gap, and without a pause her gaps are
	//     still skewed. A timer's are not.
	//   - Periodicity weaker than perStrong on a stream that has paused
	//     like a person counts only as far as the ring is also regular as a
	//     whole: max(A, A_ew) at perPausedCut or below (full at
	//     perPausedCut − perPausedWidth). A person's tight core between
	//     pauses is a fluke of the MAD; a timer's regularity shows in A too.
	jitterRatio    = 6.0
	skewWait       = 1.0
	perPausedCut   = -0.3
	perPausedWidth = 0.2

	// Fast, steady humans, third pass (issue 14, σ 0.3-0.4). Before her
	// first pause such a person's ring is, now and then, as regular as a
	// ±40 % jitter timer's (max(A, A_ew) ≈ −0.6, skewness near 0), and
	// strong regularity needed no wait. What her gaps keep, even then, is
	// a right tail: a log-normal think time with σ = 0.3 goes beyond
	// 1.7 × its mean about once in 40 gaps, uniform jitter up to ±50 %
	// never, Gaussian 20 % once in 4,000, and Gaussian 50 % as often below
	// 0.3 × the mean as above 1.7 ×. So:
	//
	//   - The ring is bounded when it is full and its gaps above tailRatio
	//     × the EW mean are no more than those below (2 − tailRatio) × it.
	//     machine = sym when bounded, else 0.
	//   - Strong regularity waives the calm wait only on a bounded ring,
	//     and it starts at calmStrong = −0.63 (−0.6 before); the short
	//     ramp (antiFast) needs machine, not sym alone.
	//   - Periodicity on a ring with a tail, whatever its strength, counts
	//     only through the same wait as anti-burstiness; periodicity weaker
	//     than perStrong needs symmetric gaps, strong regularity on a
	//     bounded ring, or the wait; periodic bursts need machine evidence
	//     or the wait.
	//   - The doubled wait for a right-skewed stream is for the first
	//     stretch only: once a stream has paused, calmLong (20 minutes) is
	//     already far past the longest pause-free run of a person who
	//     pauses after 2 % of her actions (about ln(N·p)/p ≈ 200 actions
	//     in an hour), and a timer's one pause-like gap by chance (B7n)
	//     must not cost it 40.
	tailRatio = 1.7
)

// features holds every statistic and component of one evaluation, for the
// score and for Explain. Each component has a probability p (what the
// statistic says) and a gate g (how much that is worth: the amount of
// evidence times a fixed weight, 0 when the component is off); its term in
// the fusion is g·p.
type features struct {
	m, mB  int     // intervals in the ring and the burst ring (≤ ringSize)
	nInt   uint32  // intervals seen in all
	median float64 // ms

	rcv           float64 // MAD/median of the ring
	pPer, gPer    float64
	entropy       float64 // bits of the octave histogram
	pLowH, gLowH  float64
	a, aEW        float64 // Kim–Jo A_n of the ring, EW burstiness
	skew, skewEW  float64 // moment skewness of the ring and of the EW statistics
	sym           float64 // symmetry in [0, 1]
	pAnti, gAnti  float64
	bMedian, bRcv float64 // median (ms) and MAD/median of burst starts
	pBper, gBper  float64
	stretch       float64 // seconds without a 3 s pause
	pFast, gFast  float64
	activeN       int     // active 5-minute buckets of the last 24
	span          float64 // seconds observed
	pCont, gCont  float64
	short, long   float64 // share of ring gaps < 1 s and > 3 s
	off           float64 // share of ring gaps off the median by more than half
	cycDev        float64 // least lag-k deviation D_k of log₂ intervals
	cycEta        float64 // D_k / S, the deviation against the spread
	cycLag        int     // the k of cycDev
	calm          float64 // seconds since the last human pause
	jitter        int     // ring gaps below median/jitterRatio
	tail          int     // ring gaps above tailRatio × the EW mean
	machine       float64 // sym if the ring is bounded (see tailRatio), else 0
	pCyc, gCyc    float64
	human         bool
	shared        bool
	rate          float64 // req/s over 60 s
	terms         [numReasons]float64
	risk          float64 // 0–1
	score         uint8
	reason        Reason
}

// Tables for the entropy and Kim–Jo computations, indexed by a count ≤ 33.
var (
	log2Tab  [ringSize + 2]float64 // log₂ c
	clog2Tab [ringSize + 2]float64 // c·log₂ c
	sqrtTab  [ringSize + 3]float64 // √c
	// mantTab[i] = 256·log₂(1 + i/256), rounded: log2ms reads the 8 bits
	// after an interval's leading one here, within 0.01 of the true log₂.
	mantTab [256]uint8
)

func init() {
	for i := range mantTab {
		mantTab[i] = uint8(math.Round(logOne * math.Log2(1+float64(i)/256)))
	}
	for c := range log2Tab {
		if c > 0 {
			log2Tab[c] = math.Log2(float64(c))
			clog2Tab[c] = float64(c) * log2Tab[c]
		}
	}
	for c := range sqrtTab {
		sqrtTab[c] = math.Sqrt(float64(c))
	}
}

// clamp limits x to [0, 1]. Plain comparisons: the min and max builtins
// handle NaN and signed zeros, which costs on the request path, and the
// statistics here are never NaN (FuzzObserve checks).
func clamp(x float64) float64 {
	if x < 0 {
		return 0
	}
	if x > 1 {
		return 1
	}
	return x
}

// evaluate computes the features of s as of now (normally s.last; now only
// moves the shared label and the rate) into f. It does not modify s, and
// with fewer than minIntervals intervals it scores 0 at once. It sorts
// nothing: the rings keep their order as they are filled.
func (s *state) evaluate(now int64, f *features) {
	*f = features{m: int(s.ring.count), mB: int(s.bursts.count), nInt: s.nInt}
	f.shared = s.shared(now)
	f.rate = s.rate(max(now, s.last))
	f.aEW = s.ewBurstiness()
	f.span = float64(s.last-s.first) / float64(time.Second)
	f.stretch = float64(s.stretch) / 100
	f.activeN = bits.OnesCount32(s.active)
	if f.m < minIntervals {
		return
	}
	m := f.m

	// Shape statistics of the ring, already in order.
	var buf [ringSize]uint32
	a := s.ring.sorted(&buf)
	f.median, f.rcv = madRatio(a)

	var sum float64
	var short, long, off, jitter, tail, floor int
	lo, hi := f.median*perOffLo, f.median*perOffHi
	lo6 := f.median / jitterRatio
	tailAt, floorAt := tailRatio*float64(s.ewMean), (2-tailRatio)*float64(s.ewMean)
	run, runBin := 0, -1
	var clog float64 // Σ c·log₂ c over the octave bins
	for _, x := range a {
		sum += float64(x)
		if v := float64(x); v < lo || v > hi {
			off++
			if v < lo6 {
				jitter++
			}
			if v > tailAt {
				tail++
			} else if v < floorAt {
				floor++
			}
		}
		if x < uint32(burstGap/int64(time.Millisecond)) {
			short++
		} else if x > uint32(pauseGap/int64(time.Millisecond)) {
			long++
		}
		// a is sorted, so each octave bin ⌊log₂ x⌋ is one run.
		if b := bits.Len32(x); b != runBin {
			clog += clog2Tab[run]
			run, runBin = 0, b
		}
		run++
	}
	clog += clog2Tab[run]
	f.entropy = max(0, log2Tab[m]-clog/float64(m))

	// Central moments in a second pass over at most 32 values.
	mean := sum / float64(m)
	var m2, m3 float64
	for _, x := range a {
		d := float64(x) - mean
		d2 := d * d
		m2 += d2
		m3 += d2 * d
	}
	m2 /= float64(m)
	m3 /= float64(m)
	sd := math.Sqrt(m2)
	cv := sd / mean
	if m2 > 0 {
		f.skew = m3 / (m2 * sd)
	}
	// Kim & Jo (2016) burstiness for n = m + 1 events, corrected for the
	// finite sample: −1 for a timer, about 0 for Poisson, up to 1.
	sp, sm := sqrtTab[m+2], sqrtTab[m]
	f.a = (sp*cv - sm) / ((sp-2)*cv + sm)
	f.short = float64(short) / float64(m)
	f.long = float64(long) / float64(m)

	conf := clamp(float64(m-confFloor) / confSpan)
	f.off = float64(off) / float64(m)
	f.jitter = jitter
	f.tail = tail
	gPer := conf
	if f.off >= perMixed || f.rcv > perStrong && f.median >= paceMedian {
		gPer = clamp(float64(m-confFloor) / perMixedSpan)
	}
	if s.calm&calmPaused != 0 && f.rcv > perStrong {
		gPer *= clamp((perPausedCut - max(f.a, f.aEW)) / perPausedWidth)
	}
	f.pPer, f.gPer = clamp((perCut-f.rcv)/perSpan), gPer
	f.pLowH, f.gLowH = clamp((entCut-f.entropy)/entSpan), entWeight*clamp(float64(m-confFloor)/entConfSpan)
	// Machine evidence: symmetric gaps on both horizons, or a sub-second
	// median (one person's sub-second gaps are client fan-out, which is
	// bursty, DETECTION.md §1.2; a regular sub-second rhythm is code with
	// no human in the loop).
	f.skewEW = s.ewSkewness()
	f.sym = clamp((symCut - max(f.skew, f.skewEW)) / symSpan)
	// Bounded jitter (see tailRatio): a full ring whose gaps beyond
	// tailRatio × the EW mean, a think time's right tail, are no more than
	// those as far below it. With symmetric moments it is the machine
	// evidence the brisk-human gates ask for.
	bounded := 1.0
	if tail > floor || m < ringSize {
		bounded = 0
	}
	f.machine = f.sym * bounded
	pace := 0.0
	if f.median < paceMedian {
		pace = 1
	}
	x := max(f.a, f.aEW)
	cut := antiCutHuman + (antiCutMachine-antiCutHuman)*max(f.sym, pace)
	if pace == 1 && s.oneClient {
		cut = max(cut, antiCutPace)
	}
	f.pAnti = clamp((cut - x) / antiWidth)
	// Strong evidence needs fewer intervals (a cheap stand-in for a
	// sequential test): the ramp to full weight shortens from antiSpan to
	// antiFast. Symmetric gaps with additive jitter (a gap below
	// median/jitterRatio) are strong evidence too.
	additive := 0.0
	if s.oneClient {
		additive = clamp(float64(f.jitter)) // merged clients make short gaps anyway
	}
	fast := max(f.machine*clamp((antiStrongSym+antiStrongWidth-x)/antiStrongWidth),
		pace*clamp((antiStrongPace+antiStrongWidth-x)/antiStrongWidth), f.sym*additive)
	span := antiSpan - (antiSpan-antiFast)*fast
	f.gAnti = antiWeight * clamp(float64(int64(f.nInt)-antiMin)/span)
	calmMS, need := 100*float64(s.calm&^calmPaused), calmFirst*(1+skewWait*(1-f.sym))
	if s.calm&calmPaused != 0 {
		need = calmLong
	}
	f.calm = calmMS / 1000
	calmGate := clamp(calmMS / need)
	strong := clamp((calmStrong + antiStrongWidth - x) / antiStrongWidth)
	wait := max(pace, calmGate, additive)
	sure := strong * bounded
	f.gAnti *= sure + (1-sure)*wait
	f.gLowH *= wait
	if tail > floor {
		f.gPer *= wait
	} else if f.rcv > perStrong {
		// A ring not yet full may count its bounded gaps: periodicity's
		// own ramp already asks for perMixedSpan intervals. Strong
		// regularity on a bounded ring counts as it does for
		// anti-burstiness (a noisy skewness must not hold back ±20 %).
		f.gPer *= max(f.sym, wait, sure)
	}
	if f.mB > bperMin {
		f.bMedian, f.bRcv = madRatio(s.bursts.sorted(&buf))
		f.pBper = clamp((bperCut - f.bRcv) / bperWidth)
		f.gBper = clamp(float64(f.mB-bperMin)/bperSpan) * max(f.machine, wait)
	}
	after := fastAfter
	if s.calm&calmPaused != 0 {
		after = fastAfterPaused
	}
	f.pFast, f.gFast = clamp((f.stretch-after)/fastSpan), max(f.sym, pace)
	if max(f.a, f.aEW) < contMaxA {
		f.pCont = clamp(float64(f.activeN-contFloor) / contWidth)
	}
	if s.last-s.first >= contSpan {
		f.gCont = contWeight
	}
	s.cycle(m, f)
	f.human = f.short >= humanShortMin && f.short <= humanShortMax &&
		f.long >= humanLongMin && f.a > humanMinA

	// A busy stream: periodic bursts are off (see busyRate). While the
	// stream is young the rate is taken over its life, at least 10 s,
	// since the 60 s window still holds time before the first request.
	r := f.rate
	if age := s.last - s.first; age < busyWait {
		r = max(r, float64(s.nInt+1)/max(float64(age)/float64(time.Second), 10))
	}
	if r >= busyRate {
		f.gBper = 0
	}
	if f.shared {
		// Many humans merged: entropy, regularity against Poisson, lack of
		// pauses and round-the-clock activity are expected, not evidence.
		// A strong periodic component still is. DETECTION.md §7.2 keeps
		// continuity on here; a CGNAT is active 24/7 by nature, so we
		// switch it off as well.
		f.gLowH, f.gAnti, f.gFast, f.gCont = 0, 0, 0, 0
	}

	f.terms = [numReasons]float64{
		ReasonPeriodic:       f.gPer * f.pPer,
		ReasonLowEntropy:     f.gLowH * f.pLowH,
		ReasonAntiBursty:     f.gAnti * f.pAnti,
		ReasonPeriodicBursts: f.gBper * f.pBper,
		ReasonNoPause:        f.gFast * f.pFast,
		ReasonContinuity:     f.gCont * f.pCont,
		ReasonPeriodicCycle:  f.gCyc * f.pCyc,
	}
	t := &f.terms
	pReg := max(t[ReasonPeriodic], t[ReasonLowEntropy], t[ReasonAntiBursty], t[ReasonPeriodicBursts],
		t[ReasonPeriodicCycle])
	f.risk = 1 - (1-pReg)*(1-t[ReasonNoPause])*(1-t[ReasonContinuity])
	if f.human {
		f.risk *= 1 - humanDiscount
	}
	f.risk = clamp(f.risk)
	f.score = uint8(math.Round(100 * f.risk))
	best := 0.0
	for r := ReasonPeriodic; r < numReasons; r++ {
		if t[r] > best {
			best, f.reason = t[r], r
		}
	}
}

// cycle computes the multi-beat component (see cycMaxLag) from the m ≥
// minIntervals intervals of the ring, in arrival order. It allocates
// nothing: the logarithms live in an array on the stack.
func (s *state) cycle(m int, f *features) {
	var buf [ringSize]uint32
	var lg [ringSize]int32
	for i, x := range s.ring.inOrder(&buf) {
		lg[i] = log2ms(x)
	}
	// The spread S around the median of the logarithms; the median of
	// log₂ x is log₂ of the median, which evaluate has found already.
	med := log2ms(uint32(f.median))
	var spread int32
	for _, l := range lg[:m] {
		spread += abs32(l - med)
	}

	// A lag whose mean deviation exceeds bound scores 0 whatever the rest
	// of its terms, so its sum stops there: on human traffic every lag
	// passes the bound within a few terms, and the comb costs little.
	// Sums of at most 31 terms of at most logOne each: no overflow.
	bound := min(cycDevCut*logOne, cycEtaCut*float64(spread)/float64(m))
	// The best lag so far has mean deviation bestD/bestN, compared by
	// cross-multiplying (no division in the loop).
	bestD, bestN, lag := int32(logOne), int32(1), 0
	for k := 1; k <= cycMaxLag; k++ {
		limit := int32(bound * float64(m-k))
		var d int32
		i := k
		for ; i < m && d <= limit; i++ {
			if x := abs32(lg[i] - lg[i-k]); x < logOne {
				d += x
			} else {
				d += logOne
			}
		}
		// A lag stopped early reports the mean of the terms it read, which
		// is above bound.
		if n := int32(i - k); d*bestN < bestD*n {
			bestD, bestN, lag = d, n, k
		}
	}
	best := float64(bestD) / float64(bestN)
	f.cycDev, f.cycLag = best/logOne, lag
	f.cycEta = 2 // no spread at all: a perfect timer, left to periodic
	if spread > 0 {
		f.cycEta = best / (float64(spread) / float64(m))
	}
	f.pCyc = clamp((cycDevCut-f.cycDev)/cycDevSpan) * clamp((cycEtaCut-f.cycEta)/cycEtaSpan)
	f.gCyc = clamp(float64(m-cycFloor) / cycSpan)
}

// logOne is one octave in the fixed point of log2ms.
const logOne = 256

// log2ms returns log₂ x in 1/256ths of an octave, for an interval x ≥ 1
// ms (0 for 0), from the position of the leading one and a table of the
// next 8 bits. Integers keep the comb over lags cheap: it is the inner
// loop of the request path's costliest component.
func log2ms(x uint32) int32 {
	if x == 0 {
		return 0
	}
	e := bits.Len32(x) - 1
	var frac uint32
	if e >= 8 {
		frac = x >> (e - 8) & 255
	} else {
		frac = x << (8 - e) & 255
	}
	return int32(e)*logOne + int32(mantTab[frac])
}

func abs32(x int32) int32 {
	if x < 0 {
		return -x
	}
	return x
}

// madRatio returns the median of the sorted, positive values a and the
// robust coefficient of variation MAD/median. It works on doubled values to
// stay in integers. The absolute deviations left of the middle, read right
// to left, and those right of it are each already in order, so the MAD is
// found by two order-statistic searches on their merge (O(log len(a)))
// instead of by sorting the deviations.
func madRatio(a []uint32) (median, rcv float64) {
	n := len(a)
	p := n / 2                                // deviations on the left: a[p-1] down to a[0]
	med2 := uint64(a[(n-1)/2]) + uint64(a[p]) // 2·median
	if med2 == 0 {
		return 0, 1
	}
	// left(t) is the t-th smallest doubled deviation left of the middle,
	// right(t) the t-th smallest right of it (q = n − p of them).
	left := func(t int) uint64 { return med2 - 2*uint64(a[p-1-t]) }
	right := func(t int) uint64 { return 2*uint64(a[p+t]) - med2 }
	q := n - p

	// Find how many of the k+1 smallest merged deviations come from the
	// left: the least t with left(t) ≥ right(k−t).
	k := (n - 1) / 2
	lo, hi := max(0, k+1-q), min(k+1, p)
	for lo < hi {
		t := int(uint(lo+hi) >> 1)
		if left(t) < right(k-t) {
			lo = t + 1
		} else {
			hi = t
		}
	}
	t := lo
	// The k-th smallest is the larger of the last taken from each side …
	var d0 uint64
	if t > 0 {
		d0 = left(t - 1)
	}
	if k-t >= 0 {
		d0 = max(d0, right(k-t))
	}
	// … and for even n the next one is the smaller of the two next.
	d1 := d0
	if n%2 == 0 {
		d1 = math.MaxUint64
		if t < p {
			d1 = left(t)
		}
		if k+1-t < q {
			d1 = min(d1, right(k+1-t))
		}
	}
	// MAD = (d0 + d1)/4 and median = med2/2.
	return float64(med2) / 2, float64(d0+d1) / float64(2*med2)
}
