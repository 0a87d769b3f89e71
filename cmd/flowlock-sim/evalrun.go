package main

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/traffic"
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

	var reqs atomic.Int64
	parallel(ctx, len(jobs), p.workers, func(i int) {
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
			return
		}
		s := p.setup
		s.threshold = j.threshold
		r := s.runStream(sc, seed, addr, nil, limit)
		res.sweep[j.threshold][j.sc][j.k] = r
		reqs.Add(int64(r.requests))
	})
	if err := ctx.Err(); err != nil {
		return evalResults{}, err
	}
	res.reqs = reqs.Load()
	return res, nil
}

// parallel calls do(i) for every i in [0, n) from workers goroutines (0:
// GOMAXPROCS), taking the indexes in order, until ctx is done.
func parallel(ctx context.Context, n, workers int, do func(i int)) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				do(int(i))
			}
		})
	}
	wg.Wait()
}
