package main

import (
	"context"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/fleet"
	"github.com/flowlock/flowlock/internal/risk"
	"github.com/flowlock/flowlock/internal/traffic"
	"github.com/flowlock/flowlock/internal/wire"
)

// Group scenarios (issue 14, fleet detection): fleets of slow bots and the
// human crowds that must not be taken for one. A trial is one stream of a
// group scenario: every identity of it (an address each, or a CDN's edge
// addresses) decided by one stack, built by wire.Build like the service's,
// with the fleet detector swept at the service's interval in virtual time.

// Default trials per group scenario.
const (
	fleetTrials = 100
	crowdTrials = 20
)

// Group targets (the issue: fleets of ≥ 20 slow bots caught within 15
// minutes in ≥ 90 % of trials; no member of a human crowd quarantined).
const (
	fleetCatchWithin = 15 * time.Minute
	minFleetCaught   = 0.90
)

// fleetQuarantine is the quarantine reason of a fleet's members.
var fleetQuarantine = risk.ReasonFleet.String()

// groupResult is what happened in one trial.
type groupResult struct {
	requests int
	// caught is set once cfg.FleetMinMembers of the fleet's identities were
	// quarantined for a fleet, caughtAt how long after the stream's start.
	caught   bool
	caughtAt time.Duration
	kind     string // the kind of the first fleet found
	// Identities at the end of the trial, by what they are and what
	// happened to them.
	bots, botsFleet, botsOwn       int // the fleet's; quarantined as a fleet; by their own timing
	people, peopleFleet, peopleOwn int // people's; the same
	botsNaive, peopleNaive         int // quarantined by the naive formula
}

// groupStats summarises the trials of one group scenario.
type groupStats struct {
	id     string
	sc     traffic.Scenario
	trials int
	res    []groupResult
	caught []float64 // seconds to catch of the caught trials, sorted
	kinds  map[string]int
	sum    groupResult
}

// runGroup runs one trial of the group scenario sc. With s.rep.n > 1
// each request goes to one of that many stacks at random (Envoy's
// balancing), which share state through Redis with s.rep.redis or nothing
// without; a member counts as quarantined for a fleet when any replica
// holds it so, which favours unshared replicas.
func (s evalSetup) runGroup(sc traffic.Scenario, seed uint64) groupResult {
	cfg := s.cfg
	cfg.Mode = config.ModeEnforce
	cfg.ExcludePaths = sc.ExcludedPaths
	shared := s.rep.shared()
	stacks, base, stop, err := s.replicaStacks(cfg, sc.Name, seed, wire.Extra{})
	defer stop()
	if err != nil {
		s.rep.run.fail(err)
		return groupResult{}
	}
	shift := base.Sub(s.start)
	ctx := context.Background()
	pick := mrand.New(mrand.NewPCG(seed, replicaSalt))
	n := max(sc.Spread, 1)
	clients := make([]authz.Client, n)
	for j := range clients {
		clients[j] = stacks[0].Rules.Resolve(streamAddr(j, false), "", "")
	}
	bot := make([]bool, n)
	for m := range sc.Fleet {
		bot[sc.Identity(m)] = true
	}
	const (
		free uint8 = iota
		asFleet
		byOwnTiming
	)
	status := make([]uint8, n)
	naive := make([]traffic.Naive, n)
	naiveHit := make([]bool, n)

	var res groupResult
	var admitted uint64
	caughtBots := 0
	sweep := func(at time.Time) {
		if shared {
			// Ship what each replica queued and noted, then read the
			// others' notes: twice, so the first replica reads the last
			// one's too.
			for range 2 {
				for _, stack := range stacks {
					stack.Replica.Tick(ctx, at)
					stack.Replica.ShareFleet(ctx, at)
				}
			}
		}
		a := uint64(0)
		for _, stack := range stacks {
			stack.Sweep(at)
			a += stack.Fleet.Stats().Admitted
		}
		if a == admitted {
			return
		}
		admitted = a
		if res.kind == "" {
			for _, stack := range stacks {
				if fs := stack.Fleet.Fleets(); len(fs) > 0 {
					res.kind = fs[0].Kind.String()
					break
				}
			}
		}
		for j := range clients {
			if status[j] != free {
				continue
			}
			for _, stack := range stacks {
				if e, ok := stack.Quarantine.Check(clients[j].ID, at); ok && e.Reason == fleetQuarantine {
					status[j] = asFleet
					if bot[j] {
						caughtBots++
					}
					break
				}
			}
		}
		if !res.caught && sc.Fleet > 0 && caughtBots >= cfg.FleetMinMembers {
			res.caught, res.caughtAt = true, at.Sub(base)
		}
	}

	st := sc.Stream(seed, s.start)
	next := base.Add(cfg.SweepInterval)
	for {
		req, ok := st.Next()
		if !ok {
			break
		}
		now := req.TS.Add(shift)
		for !now.Before(next) {
			sweep(next)
			next = next.Add(cfg.SweepInterval)
		}
		res.requests++
		j := sc.Identity(req.Member)
		stack := stacks[pick.IntN(len(stacks))]
		d := stack.Policy.Decide(authz.Request{Client: clients[j], Path: req.Path, Now: now, UserAgent: req.UserAgent})
		if d.Outcome == authz.Admitted && status[j] == free {
			status[j] = byOwnTiming
		}
		if !naiveHit[j] {
			_, naiveHit[j] = naive[j].Observe(now)
		}
	}
	for end := base.Add(sc.Horizon); !next.After(end); next = next.Add(cfg.SweepInterval) {
		sweep(next)
	}
	for j := range clients {
		if bot[j] {
			res.bots++
			res.botsFleet += b2i(status[j] == asFleet)
			res.botsOwn += b2i(status[j] == byOwnTiming)
			res.botsNaive += b2i(naiveHit[j])
			continue
		}
		res.people++
		res.peopleFleet += b2i(status[j] == asFleet)
		res.peopleOwn += b2i(status[j] == byOwnTiming)
		res.peopleNaive += b2i(naiveHit[j])
	}
	return res
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// defaultTrials returns how many trials of the group scenario s the eval
// runs by default.
func defaultTrials(s traffic.Scenario) int {
	if s.Fleet > 0 {
		return fleetTrials
	}
	return crowdTrials
}

// runGroups runs trials[i] trials of every group scenario with a pool of
// workers; trial k uses seed + k. The results do not depend on the
// scheduling.
func runGroups(ctx context.Context, setup evalSetup, scenarios []traffic.Scenario, ids []string, trials []int, seed uint64, workers int) ([]groupStats, int64, error) {
	type job struct{ sc, k int }
	var jobs []job
	out := make([]groupStats, len(scenarios))
	for i, s := range scenarios {
		out[i] = groupStats{id: ids[i], sc: s, trials: trials[i], res: make([]groupResult, trials[i])}
		for k := range trials[i] {
			jobs = append(jobs, job{i, k})
		}
	}
	reqs, err := forEachJob(ctx, workers, len(jobs), func(i int) int {
		j := jobs[i]
		r := setup.runGroup(scenarios[j.sc], seed+uint64(j.k))
		out[j.sc].res[j.k] = r
		return r.requests
	})
	if err != nil {
		return nil, 0, err
	}
	for i := range out {
		out[i].summarise()
	}
	return out, reqs, nil
}

// summarise adds up the trials.
func (g *groupStats) summarise() {
	g.kinds = map[string]int{}
	for _, r := range g.res {
		if r.caught {
			g.caught = append(g.caught, r.caughtAt.Seconds())
		}
		if r.kind != "" {
			g.kinds[r.kind]++
		}
		g.sum.requests += r.requests
		g.sum.bots += r.bots
		g.sum.botsFleet += r.botsFleet
		g.sum.botsOwn += r.botsOwn
		g.sum.botsNaive += r.botsNaive
		g.sum.people += r.people
		g.sum.peopleFleet += r.peopleFleet
		g.sum.peopleOwn += r.peopleOwn
		g.sum.peopleNaive += r.peopleNaive
	}
	slices.Sort(g.caught)
}

// caughtWithin returns the share of trials caught within d of the start.
func (g *groupStats) caughtWithin(d time.Duration) float64 {
	n := 0
	for _, s := range g.caught {
		if s <= d.Seconds() {
			n++
		}
	}
	return float64(n) / float64(max(g.trials, 1))
}

// kind returns the most frequent kind of fleet found first, or "".
func (g *groupStats) kind() string {
	best, n := "", 0
	for k, c := range g.kinds {
		if c > n || c == n && k < best {
			best, n = k, c
		}
	}
	return best
}

// groupTargets checks the targets of the group scenarios that were run.
func groupTargets(stats []groupStats) []targetResult {
	var out []targetResult
	for i := range stats {
		g := &stats[i]
		if strings.HasSuffix(g.id, "-all") {
			continue // without its route exclusion: the documented limitation
		}
		if g.sc.Fleet > 0 {
			within := fleetCatchWithin
			w := g.caughtWithin(within)
			out = append(out, targetResult{
				Target: fmt.Sprintf("fleet of %d slow bots: >= %s of trials caught (%d members quarantined as a fleet) within %s",
					g.sc.Fleet, pct0(minFleetCaught), config.Default().FleetMinMembers, shortDuration(within)),
				Scenario: g.id, Pass: w >= minFleetCaught,
				Measured: fmt.Sprintf("%s of %d within %s; median %s, p90 %s", pct1(w), g.trials, shortDuration(within),
					secs(percentile(g.caught, 0.5)), secs(percentile(g.caught, 0.9))),
			})
			continue
		}
		out = append(out, targetResult{
			Target: "human crowd: 0 members quarantined as a fleet", Scenario: g.id, Pass: g.sum.peopleFleet == 0,
			Measured: fmt.Sprintf("%d of %s identities in %d trials", g.sum.peopleFleet, num(float64(g.sum.people)), g.trials),
		})
	}
	return out
}

// groupHeader is the group table's header.
var groupHeader = []string{"ID", "NAME", "LABEL", "TRIALS", "IDENTITIES", "CAUGHT <=15m", "CAUGHT", "TO CATCH 50/90",
	"KIND", "BOTS AS FLEET", "BOTS BY OWN TIMING", "PEOPLE AS FLEET", "PEOPLE BY OWN TIMING", "NAIVE BOTS", "NAIVE PEOPLE"}

// cells returns g's row of the group table.
func (g *groupStats) cells() []string {
	caught, ever, toCatch, bots, botsOwn, naiveBots := "-", "-", "-", "-", "-", "-"
	if g.sc.Fleet > 0 {
		caught = pct1(g.caughtWithin(fleetCatchWithin))
		ever = pct1(float64(len(g.caught)) / float64(max(g.trials, 1)))
		if len(g.caught) > 0 {
			toCatch = secs(percentile(g.caught, 0.5)) + " / " + secs(percentile(g.caught, 0.9))
		}
		bots = ofIDs(g.sum.botsFleet, g.sum.bots)
		botsOwn = ofIDs(g.sum.botsOwn, g.sum.bots)
		naiveBots = ofIDs(g.sum.botsNaive, g.sum.bots)
	}
	return []string{g.id, g.sc.Name, string(g.sc.Label), fmt.Sprint(g.trials), num(float64(g.sc.Spread)), caught, ever, toCatch,
		orDash(g.kind()), bots, botsOwn, ofIDs(g.sum.peopleFleet, g.sum.people), ofIDs(g.sum.peopleOwn, g.sum.people),
		naiveBots, ofIDs(g.sum.peopleNaive, g.sum.people)}
}

// ofIDs formats k of n as "k of n (p %)".
func ofIDs(k, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%s of %s (%s)", num(float64(k)), num(float64(n)), pct1(float64(k)/float64(n)))
}

// writeGroupsTable prints the group table for people.
func writeGroupsTable(w io.Writer, r *evalReport) error {
	if len(r.groups) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "fleets and crowds: many identities in one stack, fleet detection on (--fleet-min-members "+fmt.Sprint(r.setup.cfg.FleetMinMembers)+")")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(groupHeader, "\t"))
	for i := range r.groups {
		fmt.Fprintln(tw, strings.Join(r.groups[i].cells(), "\t"))
	}
	return tw.Flush()
}

// writeGroupsMarkdown writes docs/detection.md's section on fleets and
// crowds.
func writeGroupsMarkdown(w io.Writer, r *evalReport) {
	if len(r.groups) == 0 {
		return
	}
	cfg := r.setup.cfg
	fmt.Fprintf(w, `## Fleets and crowds

No single client's rhythm catches a botnet whose every address is slow (B9). `+"`internal/fleet`"+`
looks at all identities at once: the Check path hands each timed request to a bounded queue (no
allocation, dropped and counted when full), and at every sweep a background pass turns each
identity's last %d requests into a few 64-bit signatures and counts identities per signature.
A signature shared by at least %d identities (`+"`--fleet-min-members`"+`), and by at least four
times as many as chance explains from how common its parts are, is a fleet; its members are
quarantined with reason `+"`fleet`"+` through the same quarantine list as any other (shared with the
other replicas, allow list honoured, never an identity labelled shared). Signatures:

- **lockstep**: the 10 s arrival windows of the identity's episodes (a request after 20 s of
  silence starts one), on four offset grids; the three windows with the smallest hash on each
  grid (a bottom-3 MinHash), and again of its busy windows only (at least %d episode starts,
  and %d more than the average window), so that a bot's requests of its own between the
  controller's ticks (F4) do not hide it. Bots fired by one controller share them; a lockstep
  group is a fleet only if its middle 80 %% arrive within 3 s in each of the three windows,
  tighter than people opening the same push alert (C4).
- **period**: the geometric mean of the last 2-4 gaps when they are at least 20 s and agree
  within 12 %%, in 10 %% buckets on four offset grids. A fleet on one configured sleep shares it at
  any phase. A member is quarantined on two such gaps when no other identity has a period about
  10-60 %% from the fleet's (the buckets two to four away are empty), and on three otherwise: among
  many slow clients two gaps agree by chance too often.
- **script**: each run of four paths whose three gaps are all at least 20 s. Bots walking one
  script share them; people rarely pause 20 s three times running, and then wander.

Each trial below is one stream of many identities, every one with an address of its own (C3: the
CDN's 40 edge addresses), decided by one stack from `+"`wire.Build`"+` with the service's defaults, swept
every %s of virtual time. A fleet is caught when %d of its bots are quarantined as a fleet; CAUGHT
is within the trial's horizon (15 minutes; F2 20), TO CATCH from the stream's start (the bots start
within the first minute). BOTS/PEOPLE AS FLEET
count identities quarantined with reason `+"`fleet`"+` by the end of the trial, BY OWN TIMING those
the per-identity score quarantined. NAIVE is the brief's formula per identity. C2 excludes the
refresh route (`+"`--exclude-path /api/refresh`"+`); C2-all is the same crowd without the exclusion.
C4 runs 30 minutes.

`, 12, cfg.FleetMinMembers, cfg.FleetMinMembers, cfg.FleetMinMembers/2, shortDuration(cfg.SweepInterval), cfg.FleetMinMembers)
	mdRow(w, groupHeader)
	mdSeparator(w, len(groupHeader))
	for i := range r.groups {
		mdRow(w, r.groups[i].cells())
	}
	fmt.Fprintln(w)
	var by, bp int
	var caught75 []string
	for i := range r.groups {
		g := &r.groups[i]
		if g.sc.Fleet > 0 {
			by, bp = by+g.sum.peopleFleet, bp+g.sum.people
			if w := g.caughtWithin(fleetCatchWithin); w < minFleetCaught {
				caught75 = append(caught75, fmt.Sprintf("%s %s", g.id, pct0(w)))
			}
		}
	}
	if bp > 0 {
		fmt.Fprintf(w, "- **People beside a fleet:** %s of %s quarantined with it. A person whose episodes happen to "+
			"fall in a fleet's windows, or whose gaps match its sleep, is taken for a member; the chance test keeps "+
			"it rare, not impossible.\n", num(float64(by)), num(float64(bp)))
	}
	if len(caught75) > 0 {
		fmt.Fprintf(w, "- **Within 15 minutes:** %s, under the %s target.\n", strings.Join(caught75, ", "), pct0(minFleetCaught))
	}
	for i := range r.groups {
		g := &r.groups[i]
		if strings.HasSuffix(g.id, "-all") {
			fmt.Fprintf(w, "- **%s, no route excluded:** %s of the app's users quarantined as a %s fleet. A push that "+
				"wakes every device at once is a fleet by every measure; put such routes in `--exclude-path`.\n",
				g.id, ofIDs(g.sum.peopleFleet, g.sum.people), orDash(g.kind()))
		}
	}
	fmt.Fprintf(w, `- **Not caught:** a fleet whose bots each draw their own schedule and their own paths shares no
  signature; nor is a fleet that spreads over more identities than the detector tracks (%s)
  without being evicted first. A period fleet among many other slow clients with periods of their
  own waits for each member's third gap (up to 20 minutes at a 300 s sleep).
- **Replicas:** each replica's detector notes the Checks Envoy sent it, a random share of every
  member's requests, and the replicas exchange their notes through Redis every second
  (docs/RATIONALE.md, "Fleets within 15 minutes and across replicas"). `+"`flowlock-sim eval --scenarios F1,F2,F3,F4 --replicas 3 --redis-addr HOST:PORT`"+`
  runs the table above through three replicas behind random balancing (`+"`--unshared`"+` through three that
  share nothing, which catch none of these fleets).
`, num(float64(fleet.DefaultMaxIdentities)))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| id | scenario |")
	fmt.Fprintln(w, "|---|---|")
	for i := range r.groups {
		g := &r.groups[i]
		fmt.Fprintf(w, "| %s | %s. %s |\n", g.id, mdEscape(g.sc.Description), mdEscape(g.sc.Params))
	}
	fmt.Fprintln(w)
}
