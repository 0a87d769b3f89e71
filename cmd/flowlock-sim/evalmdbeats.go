package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/flowlock/flowlock/internal/traffic"
)

// writeBeatsSection prints docs/detection.md's section on issue 14's first
// two frontiers: schedules with more than one beat (B13) and fast, steady
// humans (H14). Its numbers come from r; the "before" figures are those of
// the model without periodic_cycle and the pause clock, measured with the
// same command on the same seeds (commit 00a5123 plus the scenarios).
func writeBeatsSection(w io.Writer, r *evalReport) {
	var beats, brisk []*scenarioStats
	for i := range r.stats {
		switch s := &r.stats[i]; {
		case in(s.id, multiBeat):
			beats = append(beats, s)
		case in(s.id, briskHumans), in(s.id, briskHeldOut), s.id == "B7n", s.id == "B7s":
			brisk = append(brisk, s)
		}
	}
	if len(beats) == 0 && len(brisk) == 0 {
		return
	}
	fmt.Fprint(w, `## Multi-beat schedules and fast, steady humans

**Multi-beat schedules (B13).** A job that waits a short list of intervals in turn (a, b, a, b, …
or a, b, c, d, a, …, each with a few percent of jitter), or one period that drifts slowly, is
regular to the eye, but its sorted gaps are not: two beats make a bimodal ring with a large
MAD/median and two octaves of entropy, so only the slow anti-burstiness test could catch it, late.
The component `+"`periodic_cycle`"+` reads the interval ring in arrival order and, with L = log₂ of
each interval, computes the lag-k deviation D_k = mean min(|L_i − L_{i−k}|, 1) for k = 1…4 (a comb
over the candidate cycle lengths) and compares the smallest with the spread S = mean |L_i − median L|.
At the cycle's length only the jitter is left in D (about 0.1 for ±10 % uniform), and at lag 1 a
drifting period's steps are small; for gaps drawn independently of each other, human or
i.i.d. jitter, D_k/S is about √2 at every lag whatever the spread, so the component fires only
when both D and D/S are small (certain at D ≤ 0.18 and D/S ≤ 0.5) and never adds a false
positive on a stream whose order carries no structure. We chose it over the alternatives the
issue lists: lag-k autocorrelation of the gaps needs a mean and variance per lag and is swamped
by one long pause (the logarithm and the cap at one octave bound each term); a small-alphabet
recurrence test needs a quantisation that jitter near a bin edge breaks; a spectral method needs
far more than 32 intervals. The comb is 32 table look-ups and at most 4 × 31 integer subtractions
per evaluation (a lag stops once it is past what can score), allocation-free. Scenarios (internal/traffic/beats.go; internal/risk tunes on
other beats, jitters and drifts): cycles of 2-4 beats from 0.35 s to 60 s with ±7-10 % uniform or
5 % Gaussian jitter, a sine and a random-walk drift, and a two-beat cycle whose period drifts.
Before the component the model caught the two- and three-beat cycles after a median of 43-64
requests (B13-4m 106), and **B13-4 not at all** (0 of 100).

`)
	if len(beats) > 0 {
		mdRow(w, []string{"scenario", "what it is", "quarantined", "RTD 50/90", "reason", "naive"})
		mdSeparator(w, 6)
		for _, s := range beats {
			mdRow(w, []string{s.id + " " + s.sc.Name, s.sc.Params, pct1(s.rate(s.quarantined)),
				fmt.Sprintf("%d/%d", s.medianRTD(), percentile(s.rtd, 0.9)), orDash(s.reason), pct1(s.rate(s.naive))})
		}
		fmt.Fprintln(w)
	}
	fmt.Fprint(w, `**Fast, steady humans (H14).** A person paging through results with the keyboard, one call
per page, log-normal think times with a median of 1-3 s and σ = 0.45-0.5, and a pause now and
then. For her first minutes, before she pauses, her ring of 32 gaps is statistically a 50 %-jitter
timer's (the same A_n, skewness and tail), and the model quarantined 7.8 %, 2.4 % and 2.1 % of
these streams (H14-1s, H14-2s, H14-3s; reasons anti_bursty, low_entropy, periodic). No statistic
of one ring separates them; evidence over time does: **a person pauses, a timer does not.** The
risk model now keeps a pause clock (4 bytes per client: time since the last gap longer than 3 s
and at least 3 × the EW mean, and whether there ever was one) and gates the weak signs on it,
not on a higher threshold: moderate anti-burstiness and low entropy count only after 4.5
minutes without a pause (20 once the stream has paused like a person), unless the regularity is strong
(max(A, A_ew) ≤ −0.6), the pace is sub-human (median under 0.5 s; one call per page at 1 s is a
brisk person, so pace no longer starts at 1 s) or the gaps reach below a third of the median
(additive jitter, not a log-normal think time); no_pause waits 3 minutes instead of 1 once the
stream has paused; periodicity weaker than MAD/median 0.06 and low entropy need 32 and 24
intervals instead of 16 (at a human pace). Bots in scope never pause, so they only wait where
their regularity is moderate; the cost is in requests to detection, median (p90) before → now:
`+rtdShift(r, "B2-20", 19, 41)+`, `+rtdShift(r, "B2-50", 42, 45)+`, `+rtdShift(r, "B2c", 19, 19)+`,
`+rtdShift(r, "B3-50", 64, 113)+`, `+rtdShift(r, "B11", 17, 18)+` (see Targets for whether each
still meets its target). Challenged H10 workers: 10.8 % before. A timer that pauses like a person at least every 20 minutes is judged
by periodic, periodic_cycle and periodic bursts alone: that is the price of not quarantining
brisk people, and such a bot is close to the log-normal mimic (B7) anyway.

**Second pass: evidence a think time does not give.** The pause clock left 0.5 %, 0.7 % and 0.2 %
per IP-hour quarantined (H14-1s, H14-2s, H14-3s; 14 of 6,000 streams), against the 0.1 % target.
Replaying each through the explain view showed which gate let it through: at 1 s, no_pause after
2.5 minutes without a 3 s gap, on gaps that were still right-skewed; at 2-3 s, anti_bursty on a
ring that by chance looked like a timer's (max(A, A_ew) ≈ −0.45, skewness near 0), let through by
the old additive-jitter waiver (two gaps below a third of the median, which a person with σ = 0.45
makes in about one ring in 25) or by 4.5 minutes without a pause; once, periodic on a tight core
between pauses. No statistic of those 32 gaps separates them from a jittered timer, so each gate
now asks for evidence the person does not give, rather than a higher threshold for everyone:
additive jitter is a gap below **a sixth** of the median (a log-normal think time with σ = 0.45
goes there once in 30,000 gaps, Gaussian jitter with a 50 % sd once in 20), from one client, and
with symmetric gaps it is strong evidence (full weight at 40 intervals); a right-skewed stream
waits up to **twice** as long without a pause (4.5 minutes × (1 + (1 − sym))); **no_pause needs
machine evidence** (symmetric gaps or a sub-second median); and **periodicity weaker than
MAD/median 0.06 after a human pause** counts only as far as max(A, A_ew) ≤ −0.3 (full at −0.5): a
timer's regularity shows in the whole ring, a person's tight core is a fluke of the MAD. No state
was added (the slot stays 256 bytes). In requests to detection, median (p90) before → now:
`+rtdShift(r, "B3-50", 68, 123)+` (the jitter evidence makes it faster), `+rtdShift(r, "B2-50", 58, 71)+`,
`+rtdShift(r, "B3-20", 42, 46)+`; every other bot row is unchanged, and every human row is
unchanged or better (`+chalShift(r, "H10", 0.038)+`). The held-out pagers below vary what a hidden
sample of the class may vary (median, σ, pause law; internal/traffic/brisk.go); before this pass
they were quarantined at 3.3 % (H14-1.5s), 5.4 % (H14-2.5s) and 0 % (H14-1.2s) of streams.
**B7n** is the pager without her pauses, a log-normal timer with σ = 0.3: it is still caught,
later than before (median 110 requests before this pass), since a right-skewed stream now waits
up to 9 minutes without a pause.

**Third pass: a smaller σ.** At σ = 0.3-0.4 with pauses after 2-3 % of the actions the second pass
still quarantined people, almost all before their first pause: a ring of such a person is now and
then as regular as B3-20's (max(A, A_ew) ≈ −0.6 to −0.69, skewness near 0), which was strong enough
to need no wait, and her moderate periodicity and periodic bursts had no wait at all. The
suggestion to make right-skewed streams wait does not reach these rings: they are not right-skewed.
What they keep is a right tail: a think time with σ = 0.3 goes beyond 1.7 × its mean about once in
40 gaps, uniform jitter up to ±50 % never, Gaussian 20 % once in 4,000, Gaussian 50 % as often
below 0.3 × the mean as above 1.7 ×. A ring is now **bounded** when it is full and its gaps beyond
1.7 × the EW mean are no more than those below 0.3 × it (no state: one more comparison per gap),
and the machine evidence the gates ask for is symmetric moments on a bounded ring. Strong
regularity waives the wait only on a bounded ring, from max(A, A_ew) ≤ −0.63 (−0.6 before);
periodicity on a ring with a tail, and periodic bursts without machine evidence, wait like
anti-burstiness. Once a stream has paused, its wait is 20 minutes whatever the skew (it was up to
40): a person who pauses after 2 % of her actions goes about ln(N·p)/p ≈ 200 actions without a
pause in an hour, and with 40 B7n lost a stream to one pause-like gap by chance. Per IP-hour, before →
now: `+ipShift(r, "H14-1.5s", 0.008)+`, `+ipShift(r, "H14-2.5s", 0.031)+`, `+ipShift(r, "H14-2s3", 0.147)+`
(H14-2s3 is new: σ = 0.3, the low end of the class). In requests to detection, median (p90):
`+rtdShift(r, "B2-50", 58, 74)+` (its rings are not strong enough without the old level and it is
caught by no_pause), `+rtdShift(r, "B3-20", 42, 46)+`, `+rtdShift(r, "B11", 17, 33)+`,
`+rtdShift(r, "B13-dw", 17, 21)+`, `+rtdShift(r, "B7n", 181, 253)+`, `+rtdShift(r, "B7s", 60, 106)+`
(B7s is new: B7n with σ = 0.25). Every bot keeps its caught share and its target.

`)
	if len(brisk) > 0 {
		mdRow(w, []string{"scenario", "params", "quarantined", "/IP-h", "challenged", "RTD 50/90", "reason", "target"})
		mdSeparator(w, 8)
		var missed, heldOut []string
		for _, s := range brisk {
			perIPH := "-"
			if s.sc.Label == traffic.Human {
				perIPH = pct3(s.perIPHour())
			}
			mdRow(w, []string{s.id + " " + s.sc.Name, s.sc.Params, pct2(s.rate(s.quarantined)), perIPH,
				pct1(s.rate(s.challenged)), rtdCell(s.rtd), orDash(s.reason), scenarioTarget(s.id)})
			switch {
			case in(s.id, briskHumans) && s.perIPHour() > maxHumanPerIPHour:
				missed = append(missed, s.id)
			case in(s.id, briskHeldOut) && s.perIPHour() > maxHumanPerIPHour:
				heldOut = append(heldOut, s.id)
			}
		}
		fmt.Fprintln(w)
		if len(missed) > 0 {
			fmt.Fprintf(w, "The 0.1 %% per IP-hour target is **missed** on %s.\n\n", strings.Join(missed, ", "))
		}
		if len(heldOut) > 0 {
			fmt.Fprintf(w, "Held-out pagers above 0.1 %% per IP-hour: %s. The ones left are people "+
				"who had not paused yet: a ring with no think-time tail that is as regular as B3-20's "+
				"(max(A, A_ew) ≈ −0.63 to −0.69, about 40 requests in), or a first stretch without a "+
				"pause longer than the wait (7-9 minutes). Neither can be told from a timer by one "+
				"stream's timing without letting B3-20, B2-50 and B7n wait longer; that is a known "+
				"limit of the class, reported here rather than tuned away.\n\n", strings.Join(heldOut, ", "))
		}
	}
}

// ipShift describes how scenario id's quarantined share per IP-hour moved
// from before (the second pass of the brisk-human gates) to r's.
func ipShift(r *evalReport, id string, before float64) string {
	if s := r.find(id); s != nil {
		return fmt.Sprintf("%s %s → %s", id, pct3(before), pct3(s.perIPHour()))
	}
	return fmt.Sprintf("%s %s → not run", id, pct3(before))
}

// chalShift describes how scenario id's challenged share moved from before
// (the model without the brisk-human gates) to r's.
func chalShift(r *evalReport, id string, before float64) string {
	if s := r.find(id); s != nil {
		return fmt.Sprintf("%s challenged %s → %s", id, pct1(before), pct1(s.rate(s.challenged)))
	}
	return fmt.Sprintf("%s challenged %s → not run", id, pct1(before))
}

// rtdShift describes how scenario id's requests to detection moved from
// the median and p90 before (measured without the pause clock) to r's.
func rtdShift(r *evalReport, id string, med, p90 int) string {
	if s := r.find(id); s != nil {
		return fmt.Sprintf("%s %d (%d) → %d (%d)", id, med, p90, s.medianRTD(), percentile(s.rtd, 0.9))
	}
	return fmt.Sprintf("%s %d (%d) → not run", id, med, p90)
}

// find returns the statistics of scenario id in r, or nil if it was not run.
func (r *evalReport) find(id string) *scenarioStats {
	for i := range r.stats {
		if r.stats[i].id == id {
			return &r.stats[i]
		}
	}
	return nil
}
