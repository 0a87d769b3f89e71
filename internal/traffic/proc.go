package traffic

import (
	"math"
	"math/rand/v2"
	"time"
)

// event is one raw request of one client, before the observation model.
type event struct {
	at    time.Duration // offset from the stream start
	route route
}

// proc generates the requests of one client. next returns them forever, with
// non-decreasing offsets; the Stream stops at the horizon. Implementations
// must not allocate in steady state.
type proc interface {
	next() event
}

// humanModel holds the parameters of one human's request process: actions
// (bursts of k calls made by the SPA) separated by think times, with rare
// away periods. See DETECTION.md §1.2 and §6.2.
type humanModel struct {
	think     logNormal // gap from the last call of an action to the next action
	burstMean float64   // mean calls per action (geometric); ≤ 1 means exactly one
	burstCap  int       // most calls per action
	intra     logNormal // gap between the calls of one action
	awayP     float64   // probability that a think time is an away period instead
	away      pareto    // length of an away period

	// retryP is the probability that a call times out on a flaky network and
	// is sent again, unchanged, retryAfter later (H13). Calls are tried at
	// most maxAttempts times.
	retryP      float64
	retryAfter  [2]float64 // U(lo, hi) seconds
	maxAttempts int

	// workday switches on the diurnal schedule of H12: 8 working hours a day
	// with two meetings and a lunch break (no requests), then 16 hours off,
	// and a think-time median that swings by a factor e^±0.5 over a 4 h cycle.
	workday bool
}

// Human process parameters shared by several scenarios (DETECTION.md §6.2).
var (
	h1Model = humanModel{
		think:     logNormal{8, 1.2},
		burstMean: 3.3,
		burstCap:  15,
		intra:     logNormal{0.150, 0.8},
		awayP:     0.05,
		away:      pareto{60, 1.5},
	}
	h10Model = humanModel{
		think:     logNormal{4, 0.5},
		burstMean: 1,
		burstCap:  1,
		intra:     logNormal{0.150, 0.8},
		awayP:     0.05,
		away:      pareto{60, 1.5},
	}
)

// humanProc is one human driving an SPA.
type humanProc struct {
	m       humanModel
	r       *rand.Rand
	paths   humanPaths
	t       time.Duration // offset of the pending call
	cur     route         // the pending call
	left    int           // calls of the current action after the pending one
	attempt int           // attempts of the pending call so far, from 1
	day     int           // the day plan belongs to (workday only)
	plan    dayPlan
}

// newHuman returns a human whose first action starts at offset at.
func newHuman(m humanModel, r *rand.Rand, at time.Duration) *humanProc {
	h := &humanProc{m: m, r: r, day: -1}
	h.startAction(at)
	return h
}

func (h *humanProc) next() event {
	ev := event{at: h.t, route: h.cur}
	h.advance()
	return ev
}

// advance moves to the call after the pending one.
func (h *humanProc) advance() {
	r := h.r
	if h.m.retryP > 0 && h.attempt < h.m.maxAttempts && r.Float64() < h.m.retryP {
		h.attempt++
		h.t += seconds(uniform(r, h.m.retryAfter[0], h.m.retryAfter[1]))
		return // the same call again
	}
	if h.left > 0 {
		h.left--
		h.attempt = 1
		h.t += seconds(h.m.intra.draw(r))
		h.cur = h.paths.fanout(r)
		return
	}
	var gap float64
	if h.m.awayP > 0 && r.Float64() < h.m.awayP {
		gap = h.m.away.draw(r)
	} else {
		th := h.m.think
		if h.m.workday {
			th.Median *= h.thinkScale(h.t)
		}
		gap = th.draw(r)
	}
	h.startAction(h.t + seconds(gap))
}

// startAction begins a new action at offset at (moved out of breaks on a
// workday).
func (h *humanProc) startAction(at time.Duration) {
	if h.m.workday {
		at = h.working(at)
	}
	h.t = at
	h.left = geometric(h.r, h.m.burstMean, h.m.burstCap) - 1
	h.attempt = 1
	h.cur = h.paths.nav(h.r)
}

// Workday schedule (H12).
const (
	day     = 24 * time.Hour
	workLen = 8 * time.Hour
)

// dayPlan lists the breaks of one working day as offsets from the day's
// start; the day ends at workLen.
type dayPlan [3][2]time.Duration

// plan draws the breaks of a day: a meeting in the morning, lunch, a meeting
// in the afternoon.
func (h *humanProc) newPlan() dayPlan {
	r := h.r
	between := func(lo, hi float64) time.Duration { return seconds(uniform(r, lo, hi) * 60) }
	var p dayPlan
	p[0][0] = between(60, 150) // meeting: starts 1:00–2:30 into the day
	p[0][1] = p[0][0] + between(25, 60)
	p[1][0] = between(210, 270) // lunch: 3:30–4:30
	p[1][1] = p[1][0] + between(40, 70)
	p[2][0] = between(330, 420) // meeting: 5:30–7:00
	p[2][1] = p[2][0] + between(25, 60)
	return p
}

// working returns the first moment at or after at when the human is at work:
// after a break it adds a trickle-back delay of up to 2 minutes, after the
// end of a day it moves to the next morning (up to 10 minutes late).
func (h *humanProc) working(at time.Duration) time.Duration {
	for range 16 { // a handful of moves always suffices; bound it anyway
		d := int(at / day)
		if d != h.day {
			h.day, h.plan = d, h.newPlan()
		}
		base := time.Duration(d) * day
		tod := at - base
		moved := false
		if tod >= workLen {
			at = base + day + seconds(uniform(h.r, 0, 600))
			continue
		}
		for _, b := range h.plan {
			if tod >= b[0] && tod < b[1] {
				at = base + b[1] + seconds(uniform(h.r, 0, 120))
				moved = true
				break
			}
		}
		if !moved {
			return at
		}
	}
	return at
}

// thinkScale is the diurnal factor on the think-time median: e^(0.5·sin) over
// a 4 h cycle, so the human is quicker and slower at different hours.
func (h *humanProc) thinkScale(at time.Duration) float64 {
	tod := (at % day).Hours()
	return math.Exp(0.5 * math.Sin(2*math.Pi*tod/4))
}

// timerProc is a poller on an exact period: H6's background setInterval.
type timerProc struct {
	t      time.Duration
	period time.Duration
	route  route
}

func (p *timerProc) next() event {
	ev := event{at: p.t, route: p.route}
	p.t += p.period
	return ev
}

// gapKind selects the distribution of a bot's gaps.
type gapKind uint8

const (
	gapFixed     gapKind = iota // exactly a seconds
	gapUniform                  // U[a, b) seconds
	gapGauss                    // N(a, b²) seconds, truncated > 0
	gapLogNormal                // LN(median a, log-sd b)
	gapExp                      // exponential, mean a seconds
	gapRamp                     // 1/rate(t)·U[0.9, 1.1); rate goes a → b req/s over c seconds
)

// gap is the distribution of the gaps of a bot.
type gap struct {
	kind    gapKind
	a, b, c float64
}

// draw returns a gap in seconds; at is the bot's current offset.
func (g gap) draw(r *rand.Rand, at time.Duration) float64 {
	switch g.kind {
	case gapUniform:
		return uniform(r, g.a, g.b)
	case gapGauss:
		return truncGauss(r, g.a, g.b, 0)
	case gapLogNormal:
		return logNormal{g.a, g.b}.draw(r)
	case gapExp:
		return exponential(r, g.a)
	case gapRamp:
		f := min(1, at.Seconds()/g.c)
		rate := g.a + (g.b-g.a)*f
		return uniform(r, 0.9, 1.1) / rate
	}
	return g.a
}

// botPaths selects what a bot requests.
type botPaths uint8

const (
	botFixed      botPaths = iota // one endpoint (chosen per stream) every time
	botRandom                     // a random endpoint per request
	botSequential                 // /api/items/{id}, id growing by stride
	botLogin                      // POST /api/login
	botHuman                      // one human "view" per request (mimics)
)

// botProc is a scripted client: requests separated by i.i.d. gaps.
type botProc struct {
	r      *rand.Rand
	gap    gap
	t      time.Duration
	paths  botPaths
	route  route      // the pending request
	id     int        // next item id (botSequential)
	stride int        // id step (botSequential)
	human  humanPaths // botHuman
}

func newBot(r *rand.Rand, g gap, paths botPaths) *botProc {
	b := &botProc{r: r, gap: g, paths: paths, stride: 1}
	switch paths {
	case botFixed:
		b.route = route{"GET", pick(r, botEndpoints)}
	case botSequential:
		b.id = 1 + r.IntN(catalog)
	}
	return b
}

// start sets the offset of the first request and picks its path.
func (b *botProc) start(at time.Duration) *botProc {
	b.t = at
	b.pickRoute()
	return b
}

func (b *botProc) next() event {
	ev := event{at: b.t, route: b.route}
	b.t += seconds(b.gap.draw(b.r, b.t))
	b.pickRoute()
	return ev
}

func (b *botProc) pickRoute() {
	switch b.paths {
	case botRandom:
		b.route = route{"GET", pick(b.r, botEndpoints)}
	case botSequential:
		b.route = route{"GET", itemPath(b.id)}
		b.id += b.stride
	case botLogin:
		b.route = route{"POST", loginPath}
	case botHuman:
		b.route = b.human.nav(b.r)
	}
}

// burstProc fakes the burst structure of a human, but starts its bursts on a
// jittered timer (B10, B10b): the burst-start interval is P·U[1−j, 1+j].
type burstProc struct {
	r      *rand.Rand
	period float64   // seconds
	jitter float64   // fraction
	calls  int       // calls per burst
	intra  logNormal // gaps inside a burst
	paths  humanPaths
	t      time.Duration // pending call
	start  time.Duration // start of the current burst
	left   int           // calls of this burst after the pending one
	route  route
}

func (b *burstProc) begin(at time.Duration) *burstProc {
	b.start, b.t = at, at
	b.left = b.calls - 1
	b.route = b.paths.nav(b.r)
	return b
}

func (b *burstProc) next() event {
	ev := event{at: b.t, route: b.route}
	if b.left > 0 {
		b.left--
		b.t += seconds(b.intra.draw(b.r))
		b.route = b.paths.fanout(b.r)
		return ev
	}
	nextStart := b.start + seconds(b.period*uniform(b.r, 1-b.jitter, 1+b.jitter))
	b.begin(max(nextStart, b.t))
	return ev
}
