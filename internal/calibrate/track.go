package calibrate

import (
	"time"

	"github.com/flowlock/flowlock/internal/risk"
)

// MaxConfirm is the longest run of evaluations calibration follows: it can
// suggest --confirm from 1 to MaxConfirm. Longer runs only delay detection.
const MaxConfirm = 8

// MaxScore is the highest risk score.
const MaxScore = 100

// window is the unit of exposure: one identity active in one clock hour.
const window = int64(time.Hour)

// Histogram is the distribution calibration needs: for each run length c
// (a candidate --confirm) the per-identity-hour peak of the lowest score
// over c consecutive evaluations. The service quarantines an identity when
// Confirm consecutive evaluations score at least Threshold while it is not
// labelled shared; so an identity-hour would see a quarantine at (T, c)
// exactly when its peak for c is at least T, and one histogram answers
// every pair (T, c). Histograms add: replicas' and traces' merge by sum.
type Histogram struct {
	// Windows counts identity-hours: (identity, clock hour) pairs with at
	// least one scored request.
	Windows uint64 `json:"windows"`
	// AtRisk[c-1] counts the identity-hours that could have seen a
	// quarantine with confirm c: at least one evaluation in the hour, while
	// the identity was not shared, ended a run of c evaluations. Only these
	// are evidence of innocence at confirm c; an identity seen once (one
	// request is never an evaluation) is not, or a flood of one-request
	// identities would dilute the budget (see the package doc).
	AtRisk [MaxConfirm]uint64 `json:"at_risk"`
	// Peaks[c-1][v] counts the identity-hours whose peak for confirm c was
	// exactly v: v is the highest score that c consecutive evaluations
	// ending in that hour all reached while the identity was not shared.
	Peaks [MaxConfirm][MaxScore + 1]uint64 `json:"peaks"`
}

// Add adds o's counts to h.
func (h *Histogram) Add(o *Histogram) {
	h.Windows += o.Windows
	for c := range h.AtRisk {
		h.AtRisk[c] += o.AtRisk[c]
	}
	for c := range h.Peaks {
		for v := range h.Peaks[c] {
			h.Peaks[c][v] += o.Peaks[c][v]
		}
	}
}

// Over returns how many identity-hours would see a quarantine at threshold
// t with confirm c: those whose peak for c is at least t.
func (h *Histogram) Over(t, c int) uint64 {
	if c < 1 || c > MaxConfirm {
		return 0
	}
	var n uint64
	for v := max(t, 0); v <= MaxScore; v++ {
		n += h.Peaks[c-1][v]
	}
	return n
}

// Exposed returns how many identity-hours could have seen a quarantine
// with confirm c (AtRisk[c-1]): the denominator of the false-positive rate.
func (h *Histogram) Exposed(c int) uint64 {
	if c < 1 || c > MaxConfirm {
		return 0
	}
	return h.AtRisk[c-1]
}

// close counts one identity-hour, caught or not: a Histogram as a sink
// takes every hour (Split keeps the caught ones apart).
func (h *Histogram) close(p *[MaxConfirm]uint8, longest uint8, _ bool) {
	h.Windows++
	for c := range int(min(longest, MaxConfirm)) {
		h.AtRisk[c]++
	}
	for c, v := range p {
		h.Peaks[c][min(v, MaxScore)]++
	}
}

// sink receives each identity-hour as it closes: its peaks, the longest
// run an unshared evaluation in it ended (the confirms it was at risk at),
// and whether any of its requests was refused as quarantined.
type sink interface {
	close(peaks *[MaxConfirm]uint8, longest uint8, caught bool)
}

// Split is a sink that keeps apart the identity-hours in which the service
// refused the identity as quarantined (Caught: bots it caught, as far as
// it knows) from the others (Innocent).
type Split struct {
	Innocent, Caught *Histogram
}

func (s Split) close(p *[MaxConfirm]uint8, longest uint8, caught bool) {
	if caught {
		s.Caught.close(p, longest, true)
	} else {
		s.Innocent.close(p, longest, false)
	}
}

// runs holds an identity's latest MaxConfirm evaluation scores.
type runs struct {
	last [MaxConfirm]uint8 // a ring; last[pos] is the newest
	pos  uint8
	n    uint8 // evaluations held, at most MaxConfirm
}

// push adds score s and returns, in mins[c-1], the lowest score of the
// last c evaluations for c up to the evaluations seen, and how many of
// mins are set.
func (r *runs) push(s uint8) (mins [MaxConfirm]uint8, n int) {
	r.pos = (r.pos + 1) % MaxConfirm
	r.last[r.pos] = s
	r.n = min(r.n+1, MaxConfirm)
	m := s
	for c := range int(r.n) {
		m = min(m, r.last[(int(r.pos)-c+MaxConfirm)%MaxConfirm])
		mins[c] = m
	}
	return mins, int(r.n)
}

// Track follows one identity's scored requests: which of them the engine
// evaluated (it mirrors the engine's batching, risk.BatchGap, because
// Confirm counts evaluations, not requests), the runs of its latest
// scores, and its peaks in the current clock hour. The zero Track is ready;
// it is 40 bytes and holds no pointer.
type Track struct {
	batch   int64 // Unix ns of the current batch's start; 0 before the first request
	window  int64 // clock hour (Unix ns / 1 h) of peaks
	open    bool  // the identity-hour in window is not yet counted
	caught  bool  // a request of the identity-hour was refused as quarantined
	longest uint8 // the longest run an unshared evaluation of the hour ended
	runs    runs
	peaks   [MaxConfirm]uint8
}

// Observe notes one scored request at now (Unix ns) whose verdict had the
// given score and shared label; caught says the service refused it as
// quarantined (or admitted the quarantine with it). An hour that ends goes
// to h. It returns the run minimums of this evaluation as runs.push does,
// with n = 0 when the request was batched (no evaluation) or the identity
// was shared (no confirmation possible).
func (t *Track) Observe(now int64, score uint8, shared, caught bool, h sink) (mins [MaxConfirm]uint8, n int) {
	hour := now / window
	if t.open && hour > t.window {
		t.Close(h)
	}
	if !t.open && (hour > t.window || t.batch == 0) {
		t.open, t.window, t.peaks, t.caught, t.longest = true, hour, [MaxConfirm]uint8{}, false, 0
	}
	t.caught = t.caught || caught
	if t.batch == 0 {
		t.batch = now // the first request starts the record: no evaluation
		return mins, 0
	}
	if now-t.batch < int64(risk.BatchGap) {
		return mins, 0 // joins the batch (or is out of order): no evaluation
	}
	t.batch = now
	mins, n = t.runs.push(score)
	if shared {
		return mins, 0
	}
	t.longest = max(t.longest, uint8(n))
	for c := range n {
		t.peaks[c] = max(t.peaks[c], mins[c])
	}
	return mins, n
}

// Close counts the current identity-hour, if one is open, into h.
func (t *Track) Close(h sink) {
	if t.open {
		h.close(&t.peaks, t.longest, t.caught)
		t.open = false
	}
}

// Bot follows a labelled (or simulated) bot: a Track plus, for each run
// length, the requests at which its running peak rose, so that the first
// request quarantined at any threshold can be read back.
type Bot struct {
	Track
	requests uint32
	first    int64
	best     [MaxConfirm]uint8
	rises    [MaxConfirm][]rise
}

// rise is the moment a bot's peak for one run length first reached score.
type rise struct {
	score   uint8
	request uint32        // 1-based index of the request
	after   time.Duration // since the bot's first request
}

// Observe notes one scored request, as Track.Observe does.
func (b *Bot) Observe(now int64, score uint8, shared, caught bool, h sink) {
	if b.requests == 0 {
		b.first = now
	}
	b.requests++
	mins, n := b.Track.Observe(now, score, shared, caught, h)
	for c := range n {
		if mins[c] > b.best[c] {
			b.best[c] = mins[c]
			b.rises[c] = append(b.rises[c], rise{mins[c], b.requests, time.Duration(now - b.first)})
		}
	}
}

// Detected reports when the bot would first have been quarantined at
// threshold t with confirm c: the 1-based request and the time since its
// first request; ok is false when it never would.
func (b *Bot) Detected(t, c int) (request int, after time.Duration, ok bool) {
	if c < 1 || c > MaxConfirm {
		return 0, 0, false
	}
	for _, r := range b.rises[c-1] {
		if int(r.score) >= t {
			return int(r.request), r.after, true
		}
	}
	return 0, 0, false
}
