package traffic

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Groups: scenarios of many identities at once (issue 14, fleet detection).
// In a group scenario every client has an identity (an address) of its
// own, or one of Spread shared ones, instead of all clients sharing one:
// fleets of slow bots, each too slow for its own timing to show, and the
// human crowds that must not be mistaken for them. They are not in
// Scenarios, whose streams are one identity each; Groups lists them.

// Groups returns the group scenarios, fleets (F1–F4) then crowds (C1–C4).
// The slice is freshly allocated.
func Groups() []Scenario {
	return append([]Scenario(nil), groups...)
}

// LookupGroup returns the group scenario whose Name or ID equals name,
// ignoring case.
func LookupGroup(name string) (Scenario, bool) { return lookupIn(groups, name) }

// Identity returns the index of the identity that sends the requests of
// member m: m itself, or for a scenario with fewer identities than
// clients (users behind a CDN's edges), m modulo Spread.
func (s Scenario) Identity(m int) int {
	if s.Spread <= 0 {
		return 0
	}
	return m % s.Spread
}

// Group sizes.
const (
	fleetBots       = 25  // the "fleets of ≥ 20 slow bots", with room
	fleetHumans     = 100 // people browsing beside a fleet: its bystanders
	crowdNewsletter = 3000
	crowdApp        = 500
	cdnUsers        = 2000
	cdnEdges        = 40
	alertReaders    = 300
	alertOthers     = 1500
)

// Paths of the group scenarios.
const (
	newsletterPath = "/api/pages/spring-sale" // the newsletter's link
	refreshPath    = "/api/refresh"           // C2's synchronized background refresh, excluded
	articlePath    = "/api/article/42"        // C4's article, linked from every alert
)

// alerts are when C4's app sends its push alerts.
var alerts = []time.Duration{5 * time.Minute, 13 * time.Minute, 22 * time.Minute}

// fleetScript is the ordered path sequence of F3's bots.
var fleetScript = []route{
	{"POST", loginPath},
	{"GET", "/api/users/me"},
	{"GET", "/api/items"},
	{"POST", "/api/cart"},
	{"POST", "/api/checkout"},
	{"GET", "/api/orders"},
}

var groups = []Scenario{
	{
		ID: "F1", Name: "fleet-lockstep", Family: "F1", Label: Bot, Horizon: min15,
		Clients: fleetBots + fleetHumans, Spread: fleetBots + fleetHumans, Fleet: fleetBots,
		Description: "25 slow bots fired by one controller, each on its own address, among 100 people browsing",
		Params:      "controller ticks U[30s, 300s] apart (first U[0, 60s]); each bot U[0, 2s] after a tick, a random endpoint; 100 × H1 sessions beside them",
		group: withBystanders(func(i, n int, r, common *rand.Rand) (proc, string) {
			return &lockstepProc{r: r, c: common, tick: seconds(uniform(common, 0, 60))}, pick(r, scriptAgents)
		}),
	},
	{
		ID: "F2", Name: "fleet-period", Family: "F2", Label: Bot, Horizon: 20 * time.Minute,
		Clients: fleetBots + fleetHumans, Spread: fleetBots + fleetHumans, Fleet: fleetBots,
		Description: "25 slow bots on one configured sleep, each at its own phase and address, among 100 people browsing",
		Params:      "sleep P ~ U[30s, 300s] per fleet, each gap P·U[0.95, 1.05], phase U[0, P]; a random endpoint; 100 × H1 sessions beside them",
		group: withBystanders(func(i, n int, r, common *rand.Rand) (proc, string) {
			p := uniform(common, 30, 300)
			return &sleepProc{r: r, period: p, t: seconds(uniform(r, 0, p))}, pick(r, scriptAgents)
		}),
	},
	{
		ID: "F3", Name: "fleet-script", Family: "F3", Label: Bot, Horizon: min15,
		Clients: fleetBots + fleetHumans, Spread: fleetBots + fleetHumans, Fleet: fleetBots,
		Description: "25 slow bots walking one script, each at its own pace and address, among 100 people browsing",
		Params:      "login, me, items, cart, checkout, orders in turn; gaps U[30s, 300s]; start U[0, 60s]; 100 × H1 sessions beside them",
		group: withBystanders(func(i, n int, r, common *rand.Rand) (proc, string) {
			return &scriptProc{r: r, t: seconds(uniform(r, 0, 60))}, pick(r, desktopAgents)
		}),
	},
	{
		ID: "F4", Name: "fleet-lockstep-private", Family: "F1", Label: Bot, Horizon: min15,
		Clients: fleetBots + fleetHumans, Spread: fleetBots + fleetHumans, Fleet: fleetBots,
		Description: "F1's fleet, each bot also sending two requests of its own at random times: private episodes that would hide it from a key of all its windows",
		Params:      "F1's controller ticks; plus 2 requests per bot at U[0, 15m], a random endpoint; 100 × H1 sessions beside them",
		group: withBystanders(func(i, n int, r, common *rand.Rand) (proc, string) {
			tick := &lockstepProc{r: r, c: common, tick: seconds(uniform(common, 0, 60))}
			return newPair(tick, newPrivateProc(r, 2, min15)), pick(r, scriptAgents)
		}),
	},
	{
		ID: "C1", Name: "crowd-newsletter", Family: "C1", Label: Human, Horizon: min15,
		Clients: crowdNewsletter, Spread: crowdNewsletter,
		Description: "flash crowd: 3,000 people open the newsletter's page within a minute, each from an address of their own",
		Params:      "arrivals U[0, 60s] at " + newsletterPath + ", then H1 for a session of LN(3m, 0.8)",
		group: func(i, n int, r, _ *rand.Rand) (proc, string) {
			at := seconds(uniform(r, 0, 60))
			return newSession(newHuman(h1Model, r, at), at, logNormal{180, 0.8}.draw(r), newsletterPath), pick(r, desktopAgents)
		},
	},
	{
		ID: "C2", Name: "crowd-app-refresh", Family: "C2", Label: Human, Horizon: min15,
		Clients: crowdApp, Spread: crowdApp, ExcludedPaths: []string{refreshPath},
		Description: "500 people using a mobile app whose background refresh fires on every device at the top of each minute (route excluded)",
		Params:      "GET " + refreshPath + " at each whole minute + U[0, 3s] (a push); H1 use of the app beside it",
		group: func(i, n int, r, _ *rand.Rand) (proc, string) {
			refresh := &pushProc{r: r, period: time.Minute, route: route{"GET", refreshPath}}
			return newPair(newHuman(h1Model, r, seconds(uniform(r, 0, 60))), refresh), pick(r, mobileAgents)
		},
	},
	{
		ID: "C3", Name: "crowd-cdn", Family: "C3", Label: Human, Horizon: min15,
		Clients: cdnUsers, Spread: cdnEdges,
		Description: "2,000 people behind one CDN, reaching Flow Lock from its 40 edge addresses",
		Params:      "user u on edge u mod 40; sessions of LN(3m, 0.8) of H1 starting U[0, 12m]",
		group: func(i, n int, r, _ *rand.Rand) (proc, string) {
			at := seconds(uniform(r, 0, 720))
			return newSession(newHuman(h1Model, r, at), at, logNormal{180, 0.8}.draw(r), ""), pick(r, desktopAgents)
		},
	},
	{
		ID: "C4", Name: "crowd-push-alerts", Family: "C4", Label: Human, Horizon: 30 * time.Minute,
		Clients: alertReaders + alertOthers, Spread: alertReaders + alertOthers,
		Description: "300 people each opening a news app's article within 8 s of some of its three push alerts, among 1,500 people browsing",
		Params:      "alerts at 5, 13 and 22 min; each reader opens each with p = ½, U[0, 8s] late, then 2-5 requests of " + articlePath + " U[3s, 13s] apart; 1,500 × H1 sessions of LN(5m, 0.8) starting U[0, 25m]",
		group: func(i, n int, r, _ *rand.Rand) (proc, string) {
			if i < alertReaders {
				return &alertProc{r: r}, pick(r, mobileAgents)
			}
			at := seconds(uniform(r, 0, 1500))
			return newSession(newHuman(h1Model, r, at), at, logNormal{300, 0.8}.draw(r), ""), pick(r, desktopAgents)
		},
	},
}

// withBystanders returns a fleet of fleetBots members made by bot, followed
// by people browsing in sessions spread over the horizon.
func withBystanders(bot func(i, n int, r, common *rand.Rand) (proc, string)) func(i, n int, r, common *rand.Rand) (proc, string) {
	return func(i, n int, r, common *rand.Rand) (proc, string) {
		if i < fleetBots {
			return bot(i, n, r, common)
		}
		at := seconds(uniform(r, 0, 600))
		return newSession(newHuman(h1Model, r, at), at, logNormal{300, 0.8}.draw(r), ""), pick(r, desktopAgents)
	}
}

// never is an offset past any horizon: a process that has ended.
const never = time.Duration(math.MaxInt64)

// sessionProc is a human who arrives at start, optionally on a first page
// everyone shares, and leaves after length seconds.
type sessionProc struct {
	p     proc
	end   time.Duration
	first string // path of the first request; "" keeps the model's
}

func newSession(p proc, start time.Duration, length float64, first string) *sessionProc {
	return &sessionProc{p: p, end: start + seconds(length), first: first}
}

func (s *sessionProc) next() event {
	ev := s.p.next()
	if ev.at >= s.end {
		return event{at: never}
	}
	if s.first != "" {
		ev.route, s.first = route{"GET", s.first}, ""
	}
	return ev
}

// lockstepProc is a bot fired by a controller: every member draws the same
// ticks from its own copy of the common generator, and fires a moment
// after each.
type lockstepProc struct {
	r, c *rand.Rand
	tick time.Duration
}

func (p *lockstepProc) next() event {
	ev := event{at: p.tick + seconds(uniform(p.r, 0, 2)), route: route{"GET", pick(p.r, botEndpoints)}}
	p.tick += seconds(uniform(p.c, 30, 300))
	return ev
}

// sleepProc is a bot that sleeps period seconds ±5 % between requests.
type sleepProc struct {
	r      *rand.Rand
	period float64
	t      time.Duration
}

func (p *sleepProc) next() event {
	ev := event{at: p.t, route: route{"GET", pick(p.r, botEndpoints)}}
	p.t += seconds(p.period * uniform(p.r, 0.95, 1.05))
	return ev
}

// scriptProc is a bot walking fleetScript, U[30s, 300s] between steps.
type scriptProc struct {
	r    *rand.Rand
	t    time.Duration
	step int
}

func (p *scriptProc) next() event {
	ev := event{at: p.t, route: fleetScript[p.step%len(fleetScript)]}
	p.step++
	p.t += seconds(uniform(p.r, 30, 300))
	return ev
}

// pushProc fires at every whole period, a network delay of U[0, 3s] late:
// a push that wakes every device at once.
type pushProc struct {
	r      *rand.Rand
	period time.Duration
	k      int
	route  route
}

func (p *pushProc) next() event {
	p.k++
	return event{at: time.Duration(p.k)*p.period + seconds(uniform(p.r, 0, 3)), route: p.route}
}

// alertProc is a person who opens an app's push alerts: each alert with
// probability ½, a few seconds after it, reading the article for a few
// requests. People react to the same alert together, but not within the
// second or two of a controller's bots.
type alertProc struct {
	r    *rand.Rand
	k    int           // the next alert
	left int           // requests left of the current reading
	t    time.Duration // the next request's time
}

func (p *alertProc) next() event {
	for p.left == 0 {
		if p.k == len(alerts) {
			return event{at: never}
		}
		a := alerts[p.k]
		p.k++
		if p.r.IntN(2) == 0 {
			continue
		}
		p.t, p.left = a+seconds(uniform(p.r, 0, 8)), 2+p.r.IntN(4)
	}
	ev := event{at: p.t, route: route{"GET", articlePath}}
	p.left--
	p.t += seconds(uniform(p.r, 3, 13))
	return ev
}

// privateProc is a fleet bot's requests of its own: n at random times
// within the horizon, apart from its controller's.
type privateProc struct {
	r  *rand.Rand
	at []time.Duration
}

func newPrivateProc(r *rand.Rand, n int, horizon time.Duration) *privateProc {
	p := &privateProc{r: r}
	for range n {
		p.at = append(p.at, seconds(uniform(r, 0, horizon.Seconds())))
	}
	slices.Sort(p.at)
	return p
}

func (p *privateProc) next() event {
	if len(p.at) == 0 {
		return event{at: never}
	}
	ev := event{at: p.at[0], route: route{"GET", pick(p.r, botEndpoints)}}
	p.at = p.at[1:]
	return ev
}
