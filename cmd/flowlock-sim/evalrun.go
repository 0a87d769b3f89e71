package main

import (
	"context"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/traffic"
	"github.com/flowlock/flowlock/internal/wire"
)

// Seed sets (DETECTION.md §6.1): thresholds are tuned on one and reported on
// the other. Stream k of every scenario uses the set's first seed plus k;
// scenarios differ because the generator salts its random numbers with the
// scenario id.
const (
	tuneSeed    = 1
	holdoutSeed = 1_000_000
)

// sharedWithin is how soon after its first request a shared-address stream
// (H7-H9) should carry the shared label (DETECTION.md §9).
const sharedWithin = 2 * time.Minute

// sweepThresholds are the risk thresholds of --threshold-sweep
// (DETECTION.md §6.3).
var sweepThresholds = []uint8{50, 60, 70, 80, 90}

// streamResult is what happened to one stream.
type streamResult struct {
	requests int
	// detected is set when the stream was quarantined (an Admitted decision)
	// at some point; rtd is the 1-based index of that request, std the time
	// from the stream's first request, reason the reason it was admitted
	// for.
	detected bool
	rtd      int
	std      time.Duration
	reason   string
	// maxScore is the highest score of any decision, and maxReason the
	// reason given with it.
	maxScore  uint8
	maxReason string
	// shared is set when the engine labelled the identity shared at some
	// point, sharedAt is how long after the first request.
	shared   bool
	sharedAt time.Duration
	// naive reports that the naive baseline quarantined the stream;
	// naiveRTD is the 1-based index of the request it first did so at,
	// naiveSTD the time from the stream's first request. The baseline has
	// no challenge band and gives no reason.
	naive    bool
	naiveRTD int
	naiveSTD time.Duration
}

// evalSetup is how a stream is run: the service's defaults with a
// possibly different risk threshold.
type evalSetup struct {
	cfg       config.Config
	threshold uint8 // 0: cfg.RiskThreshold
	start     time.Time
	rep       replicaSetup // --replicas: spread each stream over replicas
}

// newSetup returns the service's default configuration.
func newSetup() evalSetup {
	start, _ := time.Parse(time.RFC3339, defaultStart)
	return evalSetup{cfg: config.Default(), start: start}
}

// runStream runs one stream of sc through a fresh decision stack built by
// wire.Build, the way the service decides: the service's configuration
// with the scenario's excluded paths, the
// client resolved by authz.ClientRules from its own address, every request
// decided by Policy.Decide in virtual time, and the periodic sweep of the
// service run at the same virtual interval. The naive baseline sees the
// same requests. A nil naive skips it (threshold sweeps). limit > 0 stops
// the stream after that many requests.
func (s evalSetup) runStream(sc traffic.Scenario, seed uint64, addr netip.Addr, naive *traffic.Naive, limit int) streamResult {
	if s.rep.n > 1 {
		return s.runReplicated(sc, seed, addr, naive, limit)
	}
	cfg := s.cfg
	cfg.Mode = config.ModeEnforce
	cfg.ExcludePaths = sc.ExcludedPaths
	if s.threshold != 0 {
		cfg.RiskThreshold = int(s.threshold)
	}
	// One identity per stack: sharding changes nothing but the set-up cost.
	stack := wire.Build(cfg, wire.Extra{Shards: 1})
	client := stack.Rules.Resolve(addr, "", "")

	var res streamResult
	st := sc.Stream(seed, s.start)
	var first time.Time
	nextSweep := s.start.Add(cfg.SweepInterval)
	for limit <= 0 || res.requests < limit {
		req, ok := st.Next()
		if !ok {
			break
		}
		res.requests++
		if res.requests == 1 {
			first = req.TS
		}
		for !req.TS.Before(nextSweep) {
			stack.Sweep(nextSweep)
			nextSweep = nextSweep.Add(cfg.SweepInterval)
		}
		d := stack.Policy.Decide(authz.Request{Client: client, Path: req.Path, Now: req.TS})
		if d.Score > res.maxScore || res.maxReason == "" {
			res.maxScore, res.maxReason = d.Score, d.Reason
		}
		if d.Outcome == authz.Admitted && !res.detected {
			res.detected, res.rtd, res.std, res.reason = true, res.requests, req.TS.Sub(first), d.Reason
		}
		if !res.shared {
			if v, ok := stack.Engine.Peek(client.ID, req.TS); ok && v.Shared {
				res.shared, res.sharedAt = true, req.TS.Sub(first)
			}
		}
		// The baseline's quarantine never expires, so once it has fired
		// there is nothing more to observe.
		if naive != nil && !res.naive {
			if _, quarantined := naive.Observe(req.TS); quarantined {
				res.naive, res.naiveRTD, res.naiveSTD = true, res.requests, req.TS.Sub(first)
			}
		}
	}
	return res
}

// evalPlan is the set of scenarios and streams to evaluate.
type evalPlan struct {
	scenarios []traffic.Scenario
	streams   []int  // per scenario
	limits    []int  // per scenario: stop each stream after this many requests; nil or 0: at the horizon
	seed      uint64 // stream k uses seed + k
	setup     evalSetup
	sweep     bool // also run sweepThresholds
	workers   int  // 0: GOMAXPROCS
}

// evalResults holds every stream's result, indexed like the plan.
type evalResults struct {
	main  [][]streamResult           // [scenario][stream]
	sweep map[uint8][][]streamResult // threshold → [scenario][stream]; nil without a sweep
	reqs  int64                      // requests decided in all
}

// job is one stream to run.
type job struct {
	sc, k     int
	threshold uint8 // 0: the main run
}

// run evaluates the plan with a pool of workers. The results do not depend
// on how the streams are scheduled: every stream has its own policy, seed
// and address, and is stored at its own index.
func (p evalPlan) run(ctx context.Context) (evalResults, error) {
	res := evalResults{main: make([][]streamResult, len(p.scenarios))}
	thresholds := []uint8{0}
	if p.sweep {
		res.sweep = make(map[uint8][][]streamResult)
		for _, t := range sweepThresholds {
			if int(t) == p.setup.cfg.RiskThreshold {
				continue // the main run
			}
			res.sweep[t] = make([][]streamResult, len(p.scenarios))
			thresholds = append(thresholds, t)
		}
	}
	var jobs []job
	for i := range p.scenarios {
		res.main[i] = make([]streamResult, p.streams[i])
		for _, t := range thresholds[1:] {
			res.sweep[t][i] = make([]streamResult, p.streams[i])
		}
		for k := range p.streams[i] {
			for _, t := range thresholds {
				jobs = append(jobs, job{sc: i, k: k, threshold: t})
			}
		}
	}
	// Long streams first, so that no worker is left with one at the end.
	cost := func(j job) float64 {
		s := p.scenarios[j.sc]
		return s.Horizon.Seconds() * float64(max(1, s.Clients))
	}
	slices.SortStableFunc(jobs, func(a, b job) int {
		ca, cb := cost(a), cost(b)
		switch {
		case ca > cb:
			return -1
		case ca < cb:
			return 1
		}
		return 0
	})

	workers := p.workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var next, reqs atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(jobs)) {
					return
				}
				j := jobs[i]
				sc := p.scenarios[j.sc]
				seed := p.seed + uint64(j.k)
				addr := streamAddr(j.k, false)
				limit := 0
				if j.sc < len(p.limits) {
					limit = p.limits[j.sc]
				}
				if j.threshold == 0 {
					var nv traffic.Naive
					r := p.setup.runStream(sc, seed, addr, &nv, limit)
					res.main[j.sc][j.k] = r
					reqs.Add(int64(r.requests))
					continue
				}
				s := p.setup
				s.threshold = j.threshold
				r := s.runStream(sc, seed, addr, nil, limit)
				res.sweep[j.threshold][j.sc][j.k] = r
				reqs.Add(int64(r.requests))
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return evalResults{}, err
	}
	res.reqs = reqs.Load()
	return res, nil
}
