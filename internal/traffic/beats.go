package traffic

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Schedules with more than one beat (issue 14): a job that waits a short
// list of intervals in turn, or a timer whose period drifts, and the fast,
// steady humans that come closest to them. The parameters here are the
// held-out set; internal/risk tunes on its own, different ones
// (gen_test.go, cycle and pager streams).

// driftKind selects how a cycle's period moves over time.
type driftKind uint8

const (
	driftNone driftKind = iota
	driftSine           // period × e^(amp·sin(2π·t/span + phase))
	driftWalk           // period × a log random walk, sd amp per request, within [1/3, 3]
)

// maxWalk bounds the random-walk drift: the period stays within a factor 3.
var maxWalk = math.Log(3)

// cycleProc is a scripted client whose gaps follow a short repeating list
// of beats, each multiplied by its own jitter: U[1−j, 1+j], or N(1, j²)
// when gauss is set. The whole list may drift.
type cycleProc struct {
	r      *rand.Rand
	beats  []float64 // seconds
	jitter float64
	gauss  bool
	drift  driftKind
	amp    float64 // drift amplitude (log scale)
	span   float64 // sine drift: seconds per cycle
	phase  float64 // sine drift: radians
	walk   float64 // random-walk drift: current log multiplier
	i      int     // next beat
	t      time.Duration
	route  route
}

func (c *cycleProc) next() event {
	ev := event{at: c.t, route: c.route}
	c.t += seconds(c.beats[c.i] * c.scale() * c.jitterDraw())
	c.i = (c.i + 1) % len(c.beats)
	return ev
}

// jitterDraw returns the multiplicative jitter of one gap.
func (c *cycleProc) jitterDraw() float64 {
	if c.gauss {
		return truncGauss(c.r, 1, c.jitter, 0)
	}
	return uniform(c.r, 1-c.jitter, 1+c.jitter)
}

// scale returns the drift multiplier of the next gap, advancing the walk.
func (c *cycleProc) scale() float64 {
	switch c.drift {
	case driftSine:
		return math.Exp(c.amp * math.Sin(2*math.Pi*c.t.Seconds()/c.span+c.phase))
	case driftWalk:
		c.walk += c.amp * c.r.NormFloat64()
		c.walk = max(-maxWalk, min(maxWalk, c.walk))
		return math.Exp(c.walk)
	}
	return 1
}

// cycleBot returns a Bot scenario of family B13 whose client waits beats
// (seconds) in turn with uniform jitter ±jitter, starting at a random beat
// and phase.
func cycleBot(id, name string, beats []float64, jitter float64, horizon time.Duration) Scenario {
	return cycleScenario(id, name, "cycle of "+strconv.Itoa(len(beats))+" beats",
		beatList(beats)+" in turn, each × U[1−j, 1+j], j = "+pctString(jitter), horizon,
		cycleProc{beats: beats, jitter: jitter})
}

// cycleScenario wraps the cycle process proto (its beats, jitter and drift;
// the random state is set per client) in a B13 Bot scenario.
func cycleScenario(id, name, desc, params string, horizon time.Duration, proto cycleProc) Scenario {
	return Scenario{
		ID: id, Name: name, Family: "B13", Label: Bot, Horizon: horizon, Clients: 1,
		Description: "multi-beat timer: " + desc,
		Params:      params + "; one endpoint",
		member: func(i, n int, r *rand.Rand) (proc, string) {
			ua := pick(r, scriptAgents)
			c := proto
			c.r = r
			c.i = r.IntN(len(c.beats))
			c.phase = uniform(r, 0, 2*math.Pi)
			c.route = route{"GET", pick(r, botEndpoints)}
			c.t = seconds(r.Float64() * c.beats[c.i])
			return &c, ua
		},
	}
}

// beatList formats beats as "(0.35s, 0.9s)".
func beatList(beats []float64) string {
	s := make([]string, len(beats))
	for i, b := range beats {
		s[i] = strconv.FormatFloat(b, 'g', -1, 64) + "s"
	}
	return "(" + strings.Join(s, ", ") + ")"
}

// pctString formats a fraction as a percentage, e.g. "10 %".
func pctString(f float64) string {
	return strconv.FormatFloat(math.Round(1000*f)/10, 'g', -1, 64) + " %"
}

// brisk is the model of one person paging through results with the
// keyboard: one call per page, a log-normal think time with a small σ, and
// now and then a pause to read.
func brisk(think logNormal, pauseP float64, pause pareto) humanModel {
	return humanModel{think: think, burstMean: 1, burstCap: 1, intra: logNormal{0.150, 0.8}, awayP: pauseP, away: pause}
}

// beatScenarios are the multi-beat bots (B13) and the brisk pagers (H14),
// appended to the scenario table.
var beatScenarios = []Scenario{
	briskPager("H14-1s", "brisk-pager-1s", "fast, steady human paging through results with the keyboard, one call per page",
		logNormal{1, 0.5}, 0.04, pareto{6, 1.5}),
	briskPager("H14-2s", "brisk-pager-2s", "fast, steady human paging through results with the keyboard, one call per page",
		logNormal{2, 0.45}, 0.03, pareto{10, 1.5}),
	briskPager("H14-3s", "brisk-pager-3s", "fast, steady human paging through results with the keyboard, one call per page",
		logNormal{3, 0.45}, 0.05, pareto{15, 1.5}),
	cycleBot("B13-2f", "cycle2-fast", []float64{0.35, 0.9}, 0.10, min30),
	cycleBot("B13-2w", "cycle2-wide", []float64{0.5, 30}, 0.10, hour2),
	cycleBot("B13-2s", "cycle2-slow", []float64{8, 20}, 0.10, hour2),
	cycleBot("B13-3", "cycle3", []float64{1.2, 2.5, 4}, 0.07, min30),
	cycleScenario("B13-3g", "cycle3-gauss", "cycle of 3 beats, Gaussian jitter",
		beatList([]float64{0.6, 1.8, 1})+" in turn, each × N(1, 0.05²)", min30,
		cycleProc{beats: []float64{0.6, 1.8, 1}, jitter: 0.05, gauss: true}),
	cycleBot("B13-4", "cycle4", []float64{3, 1, 1, 6}, 0.10, hour),
	cycleBot("B13-4m", "cycle4-minute", []float64{15, 40, 25, 60}, 0.10, 3*hour),
	cycleScenario("B13-ds", "drift-sine", "one period drifting slowly (sine)",
		"4s × e^(0.5·sin(2π·t/20min + φ)), each × U[0.95, 1.05]", hour,
		cycleProc{beats: []float64{4}, jitter: 0.05, drift: driftSine, amp: 0.5, span: 1200}),
	cycleScenario("B13-dw", "drift-walk", "one period drifting slowly (random walk)",
		"2.5s × e^W, W a random walk with steps N(0, 0.04²) within ±ln 3, each × U[0.95, 1.05]", hour,
		cycleProc{beats: []float64{2.5}, jitter: 0.05, drift: driftWalk, amp: 0.04}),
	cycleScenario("B13-2d", "cycle2-drift", "cycle of 2 beats whose period drifts (sine)",
		beatList([]float64{1.5, 4})+" in turn × e^(0.4·sin(2π·t/15min + φ)), each × U[0.92, 1.08]", hour,
		cycleProc{beats: []float64{1.5, 4}, jitter: 0.08, drift: driftSine, amp: 0.4, span: 900}),
}
