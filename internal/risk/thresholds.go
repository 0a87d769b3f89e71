package risk

import (
	"fmt"
	"time"
)

// thresholds says, for the explain view, when each component fires. Every
// number comes from the constants the score uses (score.go, state.go), so
// the text cannot drift from the model; it is built once, at start-up.
var thresholds = struct {
	periodic, lowEntropy, antiBursty, periodicBursts, noPause, continuity, human, shared string
	periodicCycle                                                                        string
}{
	periodic: fmt.Sprintf("MAD/median of the last %d intervals < %.2f (certain at %.2f); weight full at %d intervals, "+
		"or at %d when >= %s of them are off the median by more than half or MAD/median > %.2f; "+
		"once the stream has made a human pause, MAD/median > %.2f counts only while max(A_n, EW burstiness) < %.1f (full at %.1f)",
		ringSize, perCut, perCut-perSpan, confFloor+confSpan, confFloor+perMixedSpan, fraction(perMixed), perStrong,
		perStrong, perPausedCut, perPausedCut-perPausedWidth),
	lowEntropy: fmt.Sprintf("entropy of log2(ms) octaves < %.1f bits (certain at %.1f); weight %.1f, full at %d intervals "+
		"and after %v without a human pause (%v once the stream has paused); off while shared",
		entCut, entCut-entSpan, entWeight, confFloor+entConfSpan, msDur(calmFirst), msDur(calmLong)),
	antiBursty: fmt.Sprintf("max(Kim-Jo A_n, EW burstiness) < %.2f (certain at %.2f), moving to < %.2f (certain at %.2f) "+
		"with symmetric gaps (skewness < %.1f on ring and EW) or a sub-second median, and to < %.0f (certain at %.1f) "+
		"at a sub-second median with at most %s of requests batched (one client, no fan-out); "+
		"weight %.1f from %d intervals, full at %d, or at %d when strong (symmetric and <= %.1f, or sub-second and <= %.2f, "+
		"or symmetric with a ring gap < median/%.0f from one client); off while shared",
		antiCutHuman, antiCutHuman-antiWidth, antiCutMachine, antiCutMachine-antiWidth,
		symCut-symSpan, antiCutPace, antiCutPace-antiWidth, fraction(paceMaxConcurrent),
		antiWeight, antiMin, antiMin+antiSpan, antiMin+antiFast, antiStrongSym, antiStrongPace, jitterRatio) +
		fmt.Sprintf("; above %.1f it also needs %v without a human pause (a gap > %v and >= %.0fx the EW mean), "+
			"%v once the stream has paused, up to %.0fx as long for right-skewed gaps, unless the median is < %v "+
			"or a ring gap is < median/%.0f (additive jitter, one client)",
			calmStrong, msDur(calmFirst), secs(pauseGap), pauseRatio, msDur(calmLong), 1+skewWait,
			msDur(paceMedian), jitterRatio),
	periodicBursts: fmt.Sprintf("MAD/median of burst-start intervals (a burst starts after a gap >= %v) < %.2f (certain at %.2f); "+
		"weight from %d bursts, full at %d; off at >= %.1f req/s over %v (over the stream's life while under %v old)",
		secs(burstGap), bperCut, bperCut-bperWidth, bperMin, bperMin+bperSpan, busyRate,
		secs(rateWindow), secs(busyWait)),
	noPause: fmt.Sprintf("seconds without a pause > %v above %.0f (certain at %.0f), above %.0f once the stream has "+
		"made a human pause; weight: symmetric gaps (skewness < %.1f on ring and EW, full at %.1f) or a median < %v; off while shared",
		secs(pauseGap), fastAfter, fastAfter+fastSpan, fastAfterPaused, symCut, symCut-symSpan, msDur(paceMedian)),
	continuity: fmt.Sprintf("active %d-minute buckets of the last 24 above %d (certain at %d) while max(A_n, EW burstiness) < %.0f; "+
		"weight %.1f after %d h observed; off while shared",
		bucketLen/int64(time.Minute), contFloor, contFloor+contWidth, contMaxA, contWeight, contSpan/int64(time.Hour)),
	human: fmt.Sprintf("%.0f-%.0f%% of gaps < %v, >= %.0f%% > %v and A_n > %.2f: score x %.1f",
		100*humanShortMin, 100*humanShortMax, secs(burstGap), 100*humanLongMin, secs(pauseGap),
		humanMinA, 1-humanDiscount),
	shared: fmt.Sprintf("> %d intervals, EW burstiness >= %.1f and over %v either >= %.0f req/s or >= %.1f req/s "+
		"with no pause > %v for %v; renewed while >= %.1f req/s and EW burstiness >= %.1f; holds %v, never confirmed; "+
		"or on crowd evidence (distinct user agents) with >= %d intervals, EW burstiness >= %.1f, >= %.1f req/s "+
		"and a score below the challenge band, for %v",
		sharedMinIntervals, sharedMinAEW, secs(rateWindow), sharedFastRate, sharedMinRate,
		secs(pauseGap), secs(sharedMinStretch*int64(time.Millisecond)), sharedKeepRate, sharedKeepAEW,
		secs(sharedFor), crowdMinIntervals, crowdMinAEW, crowdMinRate, secs(crowdFor)),
	periodicCycle: fmt.Sprintf("value D/S: least lag-k deviation D of log2 intervals (k = 1-%d, in arrival order) over their spread S "+
		"around the median; D < %.2f (certain at %.2f) and D/S < %.2f (certain at %.2f; about 1.4 for independent gaps); "+
		"weight from %d intervals, full at %d (a lag past what can score stops early and shows the mean of the terms it read)",
		cycMaxLag, cycDevCut, cycDevCut-cycDevSpan, cycEtaCut, cycEtaCut-cycEtaSpan, cycFloor, cycFloor+cycSpan),
}

// secs writes a duration in nanoseconds as seconds, e.g. "3 s".
func secs(ns int64) string {
	return fmt.Sprintf("%g s", float64(ns)/float64(time.Second))
}

// msDur writes a duration in ms as Go does, e.g. "4m0s" or "500ms".
func msDur(ms float64) time.Duration { return time.Duration(ms) * time.Millisecond }

// fraction writes a share such as 0.125 as "1/8".
func fraction(x float64) string {
	return fmt.Sprintf("1/%.0f", 1/x)
}
