package traffic

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Label is the ground truth of a stream.
type Label string

// The labels. A stream is labelled as a whole: an office NAT with one bot
// among ten humans (B12) is OutOfScope, not Bot.
const (
	// Human streams must not be quarantined.
	Human Label = "human"
	// Bot streams should be quarantined: their timing is machine-like.
	Bot Label = "bot"
	// OutOfScope streams are bots that request timing alone cannot honestly
	// tell from humans (DETECTION.md §4, §6.3): Poisson or log-normal
	// mimics, replayed human traces, parallel and distributed bots, a bot on a
	// ±50 % burst timer, a bot hidden in a NAT. Detection is reported, not
	// targeted; a high rate there means the scorer overfits the generator.
	OutOfScope Label = "out_of_scope"
)

// Scenario is one named traffic pattern of DETECTION.md §6.2. It is a plain
// value: callers may change Horizon and Clients before calling Stream.
type Scenario struct {
	// ID is the short, unique id, e.g. "H1" or "B1-2s"; variants of one
	// DETECTION.md scenario share a Family.
	ID string
	// Name is the unique, descriptive name, e.g. "human-spa" or "fixed-2s".
	Name string
	// Family is the DETECTION.md §6.2 id the scenario belongs to, e.g. "B1"
	// for all fixed-interval bots; equal to ID for single scenarios.
	Family string
	// Label is the ground truth for every stream of the scenario.
	Label Label
	// Description says what the scenario models, in a sentence.
	Description string
	// Params gives the generating parameters in DETECTION.md's notation:
	// LN(m, s) is log-normal with median m and log-sd s, Pareto(xm, α),
	// U[a, b] uniform, N(μ, σ²) Gaussian, Exp(mean).
	Params string
	// Horizon is how long a stream runs (from its start time).
	Horizon time.Duration
	// Clients is the number of clients merged on the one identity of a
	// stream: 10 for an office NAT of 10 humans, 8 for a parallel scraper, 1
	// for a single client. Changing it resizes NAT and parallel scenarios;
	// raising it on a single-client scenario puts that many independent
	// clients of the same kind behind one address.
	Clients int
	// ExcludedPaths are the routes an operator would leave out of timing
	// (--exclude-path), such as H6's poller route.
	ExcludedPaths []string
	// RotateEvery, when above 0, moves each client to a new address after
	// that many requests (a bot rotating through proxies): Request.Hop
	// counts the moves. Identities keyed by address then change with it.
	RotateEvery int

	// member builds client i of n, drawing from r; it returns the client's
	// process and user agent.
	member func(i, n int, r *rand.Rand) (proc, string)
	// rotateAgents, when set, replaces the members' user agents: every
	// request carries one drawn at random from it (a bot faking a crowd).
	rotateAgents []string
	// fingerprint returns client i of n's TLS fingerprint; nil for a
	// scenario that models none. It draws no random numbers, so adding one
	// leaves the times unchanged.
	fingerprint func(i, n int) string

	// Spread is, for a group scenario (Groups), the number of identities
	// the clients send from: client i from identity Identity(i). 0 for
	// the scenarios of one identity.
	Spread int
	// Fleet is, for a group scenario, how many of the first clients are
	// a fleet of bots; the others are people.
	Fleet int
	// group builds client i of n of a group scenario, like member, with
	// common, a generator that starts alike for every client of a stream
	// (a fleet's controller).
	group func(i, n int, r, common *rand.Rand) (proc, string)
}

// Scenarios returns every scenario in a stable order, humans (H1–H13) then
// bots (B1–B12) as DETECTION.md §6.2 lists them. The slice is freshly
// allocated; callers may modify it.
func Scenarios() []Scenario {
	return append([]Scenario(nil), all...)
}

// Lookup returns the scenario whose Name or ID equals name, ignoring case.
func Lookup(name string) (Scenario, bool) { return lookupIn(all, name) }

// lookupIn returns the scenario of list whose Name or ID equals name,
// ignoring case.
func lookupIn(list []Scenario, name string) (Scenario, bool) {
	for _, s := range list {
		if strings.EqualFold(s.Name, name) || strings.EqualFold(s.ID, name) {
			return s, true
		}
	}
	return Scenario{}, false
}

// Default horizons of DETECTION.md §6.2.
const (
	min5  = 5 * time.Minute
	min10 = 10 * time.Minute
	min15 = 15 * time.Minute
	min30 = 30 * time.Minute
	hour  = time.Hour
	hour2 = 2 * time.Hour
)

// Stagger is the spread of start offsets of the clients behind one NAT.
const natStagger = 60.0 // seconds

// humans returns clients that each follow m; with more than one client, each
// starts at a random offset within the first natStagger seconds.
func humans(m humanModel, agents []string) func(i, n int, r *rand.Rand) (proc, string) {
	return func(i, n int, r *rand.Rand) (proc, string) {
		ua := pick(r, agents)
		var at time.Duration
		if n > 1 {
			at = seconds(uniform(r, 0, natStagger))
		}
		return newHuman(m, r, at), ua
	}
}

// bots returns clients that each send requests separated by draws from g,
// starting at a random phase within one gap.
func bots(g gap, paths botPaths, agents []string) func(i, n int, r *rand.Rand) (proc, string) {
	return func(i, n int, r *rand.Rand) (proc, string) {
		ua := pick(r, agents)
		b := newBot(r, g, paths)
		return b.start(seconds(r.Float64() * g.draw(r, 0))), ua
	}
}

// pairProc merges two processes of one client (H6: a human and the poller
// of the same browser tab).
type pairProc struct {
	a, b   proc
	ea, eb event
}

func newPair(a, b proc) *pairProc {
	return &pairProc{a: a, b: b, ea: a.next(), eb: b.next()}
}

func (p *pairProc) next() event {
	if p.eb.at < p.ea.at {
		ev := p.eb
		p.eb = p.b.next()
		return ev
	}
	ev := p.ea
	p.ea = p.a.next()
	return ev
}

// all is the scenario table, in the order Scenarios returns it.
var all = []Scenario{
	// Humans.
	{
		ID: "H1", Name: "human-spa", Label: Human, Horizon: min30, Clients: 1,
		Description: "single human on an SPA: bursts of API calls per action, heavy-tailed think times",
		Params:      "think LN(8s, 1.2); calls/action geometric mean 3.3 cap 15; intra-burst LN(150ms, 0.8); p=0.05 away Pareto(60s, 1.5)",
		member:      humans(h1Model, desktopAgents),
	},
	{
		ID: "H2", Name: "power-user", Label: Human, Horizon: min30, Clients: 1,
		Description: "fast power user",
		Params:      "think LN(2s, 1.0); otherwise as H1",
		member:      humans(with(h1Model, func(m *humanModel) { m.think = logNormal{2, 1.0} }), desktopAgents),
	},
	{
		ID: "H3", Name: "slow-reader", Label: Human, Horizon: hour, Clients: 1,
		Description: "slow reader",
		Params:      "think LN(30s, 1.0); calls/action geometric mean 2 cap 15; otherwise as H1",
		member: humans(with(h1Model, func(m *humanModel) {
			m.think, m.burstMean = logNormal{30, 1.0}, 2
		}), desktopAgents),
	},
	{
		ID: "H4", Name: "calm-api", Label: Human, Horizon: min30, Clients: 1,
		Description: "calm API human without fan-out: one call per action",
		Params:      "think LN(8s, 1.2); 1 call/action; p=0.05 away Pareto(60s, 1.5)",
		member:      humans(with(h1Model, func(m *humanModel) { m.burstMean, m.burstCap = 1, 1 }), desktopAgents),
	},
	{
		ID: "H5", Name: "heavy-spa", Label: Human, Horizon: min30, Clients: 1,
		Description: "heavy SPA: many API calls per action",
		Params:      "think LN(6s, 1.2); calls/action geometric mean 10 cap 30; intra-burst LN(60ms, 0.8); p=0.05 away Pareto(60s, 1.5)",
		member: humans(with(h1Model, func(m *humanModel) {
			m.think, m.burstMean, m.burstCap, m.intra = logNormal{6, 1.2}, 10, 30, logNormal{0.060, 0.8}
		}), desktopAgents),
	},
	{
		ID: "H6", Name: "human-poller", Label: Human, Horizon: min30, Clients: 1,
		Description:   "H1 with a background setInterval poller in the same tab (exclude its route)",
		Params:        "H1 merged with an exact 30s timer on " + pollPath + " (random phase)",
		ExcludedPaths: []string{pollPath},
		member: func(i, n int, r *rand.Rand) (proc, string) {
			ua := pick(r, desktopAgents)
			poll := &timerProc{
				t:      seconds(uniform(r, 0, 30)),
				period: 30 * time.Second,
				route:  route{"GET", pollPath},
			}
			return newPair(newHuman(h1Model, r, 0), poll), ua
		},
	},
	{
		ID: "H7", Name: "nat-10", Label: Human, Horizon: min30, Clients: 10,
		Description: "office NAT: 10 humans on one address",
		Params:      "10 × H1, starts staggered U[0, 60s]",
		member:      humans(h1Model, desktopAgents),
	},
	{
		ID: "H8", Name: "nat-50", Label: Human, Horizon: min30, Clients: 50,
		Description: "office NAT: 50 humans on one address",
		Params:      "50 × H1, starts staggered U[0, 60s]",
		member:      humans(h1Model, desktopAgents),
	},
	{
		ID: "H9", Name: "cgnat-200", Label: Human, Horizon: min15, Clients: 200,
		Description: "CGNAT / mobile carrier: 200 humans on one address (~30 req/s)",
		Params:      "200 × H1, starts staggered U[0, 60s]",
		member:      humans(h1Model, append(append([]string(nil), desktopAgents...), mobileAgents...)),
	},
	{
		ID: "H10", Name: "worker-1call", Label: Human, Horizon: min30, Clients: 1,
		Description: "very regular repetitive worker, one call per action (statistically close to 50 % jitter)",
		Params:      "think LN(4s, 0.5); 1 call/action; p=0.05 away Pareto(60s, 1.5)",
		member:      humans(h10Model, desktopAgents),
	},
	{
		ID: "H11", Name: "worker-3calls", Label: Human, Horizon: min30, Clients: 1,
		Description: "regular repetitive worker, three calls per action",
		Params:      "as H10 with calls/action geometric mean 3 cap 15, intra-burst LN(150ms, 0.8)",
		member:      humans(with(h10Model, func(m *humanModel) { m.burstMean, m.burstCap = 3, 15 }), desktopAgents),
	},
	{
		ID: "H12", Name: "diurnal", Label: Human, Horizon: 8 * time.Hour, Clients: 1,
		Description: "diurnal human over a working day with two meetings and a lunch break",
		Params: "H1 with think median ×e^(0.5·sin(2π·t/4h)); breaks without requests: meeting at 1:00–2:30 for 25–60 min, " +
			"lunch at 3:30–4:30 for 40–70 min, meeting at 5:30–7:00 for 25–60 min; work ends at 8h, resumes next day",
		member: humans(with(h1Model, func(m *humanModel) { m.workday = true }), desktopAgents),
	},
	{
		ID: "H13", Name: "mobile-flaky", Label: Human, Horizon: min30, Clients: 1,
		Description: "mobile human on a flaky network: timed-out calls are sent again 1-3 s later",
		Params:      "H1 with intra-burst LN(250ms, 0.8); each call times out with p=0.1 and is repeated after U[1s, 3s], at most 3 attempts",
		member: humans(with(h1Model, func(m *humanModel) {
			m.intra = logNormal{0.250, 0.8}
			m.retryP, m.retryAfter, m.maxAttempts = 0.1, [2]float64{1, 3}, 3
		}), mobileAgents),
	},

	// Bots. Those labelled OutOfScope are beyond what timing alone can
	// honestly catch.
	fixed("B1-0.5s", "fixed-0.5s", 0.5, min30),
	fixed("B1-2s", "fixed-2s", 2, min30),
	fixed("B1-10s", "fixed-10s", 10, min30),
	fixed("B1-60s", "fixed-60s", 60, 40*time.Minute),
	jittered("B2-5", "uniform-5pct-2s", "B2", "uniform jitter ±5 % (Empire/PoshC2 style)",
		"U[1.9s, 2.1s]", gap{kind: gapUniform, a: 1.9, b: 2.1}, min30),
	jittered("B2-20", "uniform-20pct-2s", "B2", "uniform jitter ±20 % (Empire/PoshC2 style)",
		"U[1.6s, 2.4s]", gap{kind: gapUniform, a: 1.6, b: 2.4}, min30),
	jittered("B2-50", "uniform-50pct-2s", "B2", "uniform jitter ±50 % (Empire/PoshC2 style)",
		"U[1s, 3s]", gap{kind: gapUniform, a: 1, b: 3}, min30),
	jittered("B2b", "uniform-50pct-30s", "B2b", "uniform jitter ±50 % on a slow 30 s beacon",
		"U[15s, 45s]", gap{kind: gapUniform, a: 15, b: 45}, hour2),
	jittered("B2c", "cobalt-50pct-60s", "B2c", "Cobalt-Strike-style jitter: sleep shortened by up to 50 %",
		"U[30s, 60s] (P=60s, j=50 %)", gap{kind: gapUniform, a: 30, b: 60}, hour2),
	jittered("B3-5", "gauss-5pct-2s", "B3", "Gaussian jitter, sd 5 %",
		"N(2s, (0.1s)²) truncated > 0", gap{kind: gapGauss, a: 2, b: 0.1}, min30),
	jittered("B3-20", "gauss-20pct-2s", "B3", "Gaussian jitter, sd 20 %",
		"N(2s, (0.4s)²) truncated > 0", gap{kind: gapGauss, a: 2, b: 0.4}, min30),
	jittered("B3-50", "gauss-50pct-2s", "B3", "Gaussian jitter, sd 50 %",
		"N(2s, (1s)²) truncated > 0", gap{kind: gapGauss, a: 2, b: 1}, min30),
	jittered("B4", "low-and-slow", "B4", "low-and-slow bot: one request every 10-60 s, never pausing",
		"i.i.d. U[10s, 60s]", gap{kind: gapUniform, a: 10, b: 60}, hour2),
	{
		ID: "B5", Name: "scraper", Family: "B5", Label: Bot, Horizon: min10, Clients: 1,
		Description: "sequential scraper, latency-bound, walking item ids",
		Params:      "gaps LN(170ms, 0.4); GET /api/items/{id}, id+1 each request",
		member: func(i, n int, r *rand.Rand) (proc, string) {
			b := newBot(r, gap{kind: gapLogNormal, a: 0.170, b: 0.4}, botSequential)
			return b.start(0), scraperAgent
		},
	},
	{
		ID: "B5b", Name: "parallel-scraper", Family: "B5b", Label: OutOfScope, Horizon: min5, Clients: 8,
		Description: "parallel scraper: 8 sequential workers on one address, merged stream is Poisson-like",
		Params:      "8 × B5 (gaps LN(170ms, 0.4)), worker w of n fetches ids w+1, w+1+n, ...; starts U[0, 1s]",
		member: func(i, n int, r *rand.Rand) (proc, string) {
			b := newBot(r, gap{kind: gapLogNormal, a: 0.170, b: 0.4}, botSequential)
			b.id, b.stride = i+1, n
			return b.start(seconds(uniform(r, 0, 1))), scraperAgent
		},
	},
	{
		ID: "B6", Name: "poisson", Family: "B6", Label: OutOfScope, Horizon: hour, Clients: 1,
		Description: "Poisson bot at a human rate",
		Params:      "Exp(mean 3s); random endpoint per request",
		member:      bots(gap{kind: gapExp, a: 3}, botRandom, scriptAgents),
	},
	{
		ID: "B7", Name: "lognormal-mimic", Family: "B7", Label: OutOfScope, Horizon: hour, Clients: 1,
		Description: "log-normal mimic: i.i.d. human think times, no bursts",
		Params:      "i.i.d. LN(8s, 1.2); human page paths; browser user agent",
		member:      bots(gap{kind: gapLogNormal, a: 8, b: 1.2}, botHuman, desktopAgents),
	},
	{
		ID: "B8", Name: "replay", Family: "B8", Label: OutOfScope, Horizon: hour, Clients: 1,
		Description: "human-model replay: a bot replaying human timing, bursts included",
		Params:      "the H1 generator itself",
		member:      humans(h1Model, desktopAgents),
	},
	{
		ID: "B9", Name: "distributed", Family: "B9", Label: OutOfScope, Horizon: min30, Clients: 1,
		Description: "distributed bot: one of many addresses, ~6 requests each (use many streams)",
		Params:      "LN(300s, 0.3) between requests; POST " + loginPath + "; browser user agent",
		member:      bots(gap{kind: gapLogNormal, a: 300, b: 0.3}, botLogin, desktopAgents),
	},
	{
		ID: "B10", Name: "burst-mimic-10pct", Family: "B10", Label: Bot, Horizon: min30, Clients: 1,
		Description: "burst mimic: human-looking bursts started by a ±10 % timer",
		Params:      "3 calls/burst, intra-burst LN(150ms, 0.8); burst starts every U[9s, 11s]",
		member:      burstMimic(0.10),
	},
	{
		ID: "B10b", Name: "burst-mimic-50pct", Family: "B10b", Label: OutOfScope, Horizon: min30, Clients: 1,
		Description: "burst mimic on a ±50 % timer",
		Params:      "3 calls/burst, intra-burst LN(150ms, 0.8); burst starts every U[5s, 15s]",
		member:      burstMimic(0.50),
	},
	{
		ID: "B11", Name: "ramp", Family: "B11", Label: Bot, Horizon: min10, Clients: 1,
		Description: "rate ramp: a script accelerating from 1 to 10 req/s",
		Params:      "gap = U[0.9, 1.1]/rate, rate linear 1 → 10 req/s over 10 min, then 10 req/s",
		member:      bots(gap{kind: gapRamp, a: 1, b: 10, c: 600}, botFixed, scriptAgents),
	},
	{
		ID: "B12", Name: "nat-bot", Family: "B12", Label: OutOfScope, Horizon: min30, Clients: 11,
		Description: "a fixed 2 s bot behind the H7 office NAT: flag the address for volume, do not quarantine it",
		Params:      "10 × H1 staggered U[0, 60s] + 1 × B1 fixed 2s (the last member)",
		member: func(i, n int, r *rand.Rand) (proc, string) {
			if i == n-1 {
				return bots(gap{kind: gapFixed, a: 2}, botFixed, scriptAgents)(i, n, r)
			}
			return humans(h1Model, desktopAgents)(i, n, r)
		},
		fingerprint: func(i, n int) string {
			if i == n-1 {
				return ScriptFingerprint
			}
			return BrowserFingerprint(i)
		},
	},
	{
		ID: "B2-ua", Name: "rotating-ua-20pct-2s", Family: "B2", Label: Bot, Horizon: min30, Clients: 1,
		Description:  "B2-20 rotating its user agent on every request, to pass for a shared address",
		Params:       "U[1.6s, 2.4s]; one endpoint; user agent drawn per request from 4 desktop and 2 mobile browsers",
		member:       bots(gap{kind: gapUniform, a: 1.6, b: 2.4}, botFixed, scriptAgents),
		rotateAgents: append(append([]string(nil), desktopAgents...), mobileAgents...),
	},
	// Identity composition (--identity, --fingerprint-header): scenarios
	// whose clients carry TLS fingerprints.
	{
		ID: "H15", Name: "nat-browsers", Family: "H15", Label: Human, Horizon: min30, Clients: 20,
		Description: "an office NAT of 20 humans, each on a browser build of its own (distinct TLS fingerprints)",
		Params:      "20 × H1, starts staggered U[0, 60s]; member i has fingerprint browser-i",
		member:      humans(h1Model, desktopAgents),
		fingerprint: func(i, _ int) string { return BrowserFingerprint(i) },
	},
	{
		ID: "B14", Name: "rotating-bot", Family: "B14", Label: Bot, Horizon: min30, Clients: 1,
		Description: "a jittered 2 s bot that moves to a new address every 50 requests and keeps its TLS stack",
		Params:      "U[1.6s, 2.4s]; one endpoint; new address every 50 requests; one fingerprint",
		RotateEvery: 50,
		member:      bots(gap{kind: gapUniform, a: 1.6, b: 2.4}, botFixed, scriptAgents),
		fingerprint: func(int, int) string { return ScriptFingerprint },
	},
}

// ScriptFingerprint is the TLS fingerprint of the scripted clients of the
// fingerprinted scenarios (a JA4 of an HTTP library, not a browser), and
// BrowserFingerprint(i) that of browser build i.
const ScriptFingerprint = "t13d1311h1_e8f1e7e78f70_3c5b8b3e2d4f"

// BrowserFingerprint returns a JA4-shaped fingerprint for browser build i.
func BrowserFingerprint(i int) string {
	return "t13d1516h2_8daaf6152771_" + strconv.Itoa(100000+i) + "beef0"
}

func init() {
	all = append(all, beatScenarios...)  // beats.go: B13 multi-beat bots, H14 brisk pagers
	all = append(all, briskScenarios...) // brisk.go: held-out brisk pagers, B7n
	for i := range all {
		if all[i].Family == "" {
			all[i].Family = all[i].ID
		}
	}
}

// with returns a copy of m changed by f.
func with(m humanModel, f func(*humanModel)) humanModel {
	f(&m)
	return m
}

// fixed returns a B1 fixed-interval bot with period p seconds.
func fixed(id, name string, p float64, horizon time.Duration) Scenario {
	return Scenario{
		ID: id, Name: name, Family: "B1", Label: Bot, Horizon: horizon, Clients: 1,
		Description: "fixed-interval bot",
		Params:      "exactly " + strconv.FormatFloat(p, 'g', -1, 64) + "s between requests; one endpoint",
		member:      bots(gap{kind: gapFixed, a: p}, botFixed, scriptAgents),
	}
}

// jittered returns a scripted bot with i.i.d. gaps from g.
func jittered(id, name, family, desc, params string, g gap, horizon time.Duration) Scenario {
	return Scenario{
		ID: id, Name: name, Family: family, Label: Bot, Horizon: horizon, Clients: 1,
		Description: desc,
		Params:      params + "; one endpoint",
		member:      bots(g, botFixed, scriptAgents),
	}
}

// burstMimic returns B10-style clients: 3-call bursts every 10 s ± jitter.
func burstMimic(jitter float64) func(i, n int, r *rand.Rand) (proc, string) {
	return func(i, n int, r *rand.Rand) (proc, string) {
		ua := pick(r, desktopAgents)
		b := &burstProc{r: r, period: 10, jitter: jitter, calls: 3, intra: logNormal{0.150, 0.8}}
		return b.begin(seconds(uniform(r, 0, 10))), ua
	}
}
