package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/fleet"
	"github.com/flowlock/flowlock/internal/traffic"
	"github.com/flowlock/flowlock/internal/wire"
)

// identityScenarios are the scenarios whose clients carry TLS fingerprints:
// they are run once per identity composition for the Identity section.
var identityScenarios = []string{"H15", "B12", "B14"}

// identityStreams is how many streams of each run in each composition.
const identityStreams = 100

// simFingerprintHeader is the header the simulated proxy passes the
// fingerprint in, as deploy/envoy.yaml's example does.
const simFingerprintHeader = "x-tls-ja4"

// identityMode is one column of the comparison: how the service is set up.
type identityMode struct {
	name string
	edit func(*config.Config)
}

// identityModes are today's default and the fingerprint settings, each
// with the fingerprint evidence at its defaults.
var identityModes = []identityMode{
	{"address (default)", func(*config.Config) {}},
	{"address + evidence", func(c *config.Config) { c.FingerprintHeader = simFingerprintHeader }},
	{"address+fingerprint", func(c *config.Config) {
		c.FingerprintHeader, c.Identity = simFingerprintHeader, config.IdentityAddressFingerprint
	}},
	{"fingerprint", func(c *config.Config) {
		c.FingerprintHeader, c.Identity = simFingerprintHeader, config.IdentityFingerprint
	}},
}

// identityResult is what happened to one stream under one mode, by the
// ground truth of its members.
type identityResult struct {
	humanHit   bool // some human member's request was denied
	botHit     bool // some bot member's request was denied
	botFirst   int  // the bot's 1-based request first denied; 0 never
	botReqs    int
	botDenied  int
	priorUsed  bool // a flagged fingerprint confirmed a client early
	identities int  // distinct identities the stream was split into
}

// identityCell sums one scenario under one mode.
type identityCell struct {
	streams, humanHit, botHit, prior int
	botReqs, botDenied               int
	firsts                           []int
	identities                       []int
}

// identityComparison is the Identity section: cells[scenario][mode].
type identityComparison struct {
	scenarios []traffic.Scenario
	cells     [][]identityCell
	streams   int // per scenario and mode
	requests  int64
}

// isBotMember reports whether member m of a stream of sc is a bot: every
// member of a bot scenario, and B12's last member.
func isBotMember(sc traffic.Scenario, m int) bool {
	return sc.Label == traffic.Bot || (sc.Family == "B12" && m == sc.Clients-1)
}

// compareIdentities runs the fingerprinted scenarios under each identity
// mode, with the held-out seeds of o.
func compareIdentities(ctx context.Context, o evalOptions, setup evalSetup) (*identityComparison, error) {
	c := &identityComparison{}
	for _, id := range identityScenarios {
		sc, ok := traffic.Lookup(id)
		if !ok {
			return nil, fmt.Errorf("identity comparison: no scenario %s", id)
		}
		c.scenarios = append(c.scenarios, sc)
	}
	streams := identityStreams
	if o.streams > 0 {
		streams = o.streams
	}
	c.streams = streams
	type job struct{ sc, mode, k int }
	var jobs []job
	res := make([][][]identityResult, len(c.scenarios))
	for i := range c.scenarios {
		res[i] = make([][]identityResult, len(identityModes))
		for m := range identityModes {
			res[i][m] = make([]identityResult, streams)
			for k := range streams {
				jobs = append(jobs, job{i, m, k})
			}
		}
	}
	reqs, err := forEachJob(ctx, o.workers, len(jobs), func(i int) int {
		j := jobs[i]
		cfg := setup.cfg
		identityModes[j.mode].edit(&cfg)
		r, n := runIdentityStream(cfg, c.scenarios[j.sc], o.seed+uint64(j.k), streamAddr(j.k, false), setup)
		res[j.sc][j.mode][j.k] = r
		return n
	})
	if err != nil {
		return nil, err
	}
	c.requests = reqs
	c.cells = make([][]identityCell, len(c.scenarios))
	for i := range c.scenarios {
		c.cells[i] = make([]identityCell, len(identityModes))
		for m := range identityModes {
			cell := &c.cells[i][m]
			for _, r := range res[i][m] {
				cell.streams++
				cell.botReqs += r.botReqs
				cell.botDenied += r.botDenied
				cell.identities = append(cell.identities, r.identities)
				if r.humanHit {
					cell.humanHit++
				}
				if r.botHit {
					cell.botHit++
					cell.firsts = append(cell.firsts, r.botFirst)
				}
				if r.priorUsed {
					cell.prior++
				}
			}
			slices.Sort(cell.firsts)
			slices.Sort(cell.identities)
		}
	}
	return c, nil
}

// runIdentityStream decides one stream of sc through a stack built from
// cfg, resolving every request from its address (moved by its hop) and its
// member's fingerprint, as the service would with the fingerprint header
// set by the proxy. It returns the result and the requests decided.
func runIdentityStream(cfg config.Config, sc traffic.Scenario, seed uint64, addr netip.Addr, setup evalSetup) (identityResult, int) {
	cfg.Mode = config.ModeEnforce
	stack := wire.Build(cfg, wire.Extra{Shards: 1, FleetQueue: fleet.SweepQueueSize})
	var r identityResult
	ids := map[string]bool{}
	st := sc.Stream(seed, setup.start)
	next := setup.start.Add(cfg.SweepInterval)
	n := 0
	for req, ok := st.Next(); ok; req, ok = st.Next() {
		n++
		for !req.TS.Before(next) {
			stack.Sweep(next)
			next = next.Add(cfg.SweepInterval)
		}
		c := stack.Rules.ResolveWith(hopAddr(addr, req.Hop), "", "", "", req.Fingerprint)
		if len(ids) < 1000 {
			ids[c.ID.String()] = true
		}
		d := stack.Policy.Decide(authz.Request{Client: c, Path: req.Path, Now: req.TS})
		r.priorUsed = r.priorUsed || d.Prior
		bot := isBotMember(sc, req.Member)
		if bot {
			r.botReqs++
		}
		if !d.Outcome.Denies() {
			continue
		}
		if bot {
			r.botDenied++
			if !r.botHit {
				r.botHit, r.botFirst = true, r.botReqs
			}
		} else {
			r.humanHit = true
		}
	}
	r.identities = len(ids)
	return r, n
}

// writeIdentitySection writes the Identity section of docs/detection.md.
func writeIdentitySection(w io.Writer, c *identityComparison) {
	fmt.Fprintf(w, `## Identity: address, TLS fingerprint, or both

What `+"`--identity`"+` and `+"`--fingerprint-header`"+` change, on the scenarios whose clients carry a
TLS fingerprint (a JA4-shaped label per browser build, one for the scripted client), %d held-out
streams each, every request resolved by `+"`authz.ClientRules`"+` from its address and the fingerprint
header as a proxy would pass it. *address + evidence* keeps today's identity but lets
`+"`--fingerprint-flag-after`"+` (default 5 distinct quarantined identities within an hour) flag the
bot's fingerprint; each column has the evidence on except the first. Humans quarantined: streams
in which any person's request was denied; bot caught: streams in which the bot's was; bot
requests denied: of all its requests; first denial: the bot's median request number at its first
denial. A dash is a figure that does not apply (H15 has no bot, B14 no person).

`, c.streams)
	mdRow(w, []string{"scenario", "identity", "identities per stream (median)", "humans quarantined", "bot caught", "bot requests denied", "first denial (median)", "streams confirmed early by a flagged fingerprint"})
	mdSeparator(w, 8)
	for i, sc := range c.scenarios {
		for m, mode := range identityModes {
			cell := &c.cells[i][m]
			humans, bot, denied, first := "—", "—", "—", "—"
			if sc.Label != traffic.Bot {
				humans = pct1(float64(cell.humanHit) / float64(cell.streams))
			}
			if cell.botReqs > 0 {
				bot = pct0(float64(cell.botHit) / float64(cell.streams))
				denied = pct1(float64(cell.botDenied) / float64(cell.botReqs))
				if len(cell.firsts) > 0 {
					first = fmt.Sprint(percentile(cell.firsts, 0.5))
				}
			}
			mdRow(w, []string{sc.ID + " " + sc.Name, mode.name, fmt.Sprint(percentile(cell.identities, 0.5)), humans, bot, denied, first, pct0(float64(cell.prior) / float64(cell.streams))})
		}
	}
	fmt.Fprint(w, `
Reading it: behind one NAT address (H15, B12) *address* merges everyone into one shared client,
which timing never confirms, so B12's bot hides among the people; *address+fingerprint* splits
the NAT into one client per TLS stack, so each person is judged alone (like H1) and the bot is
caught. The rotating bot (B14) is a new client at every address under *address* and
*address+fingerprint*, caught again at each; the evidence flags its fingerprint after five of its
addresses, after which each new address is confirmed on its first evaluation over the threshold;
*fingerprint* keeps it one client across addresses, so it stays quarantined wherever it moves.
The price of *fingerprint* is that everyone on one browser build is one client too: a popular
build is then a crowd that timing labels shared and never confirms, and one volume budget
(README, "Identity from TLS fingerprints"). These scenarios give every person a fingerprint of
their own, the best case for composition; in an office where most people run the same browser
build, *address+fingerprint* separates fewer of them.

`)
}
