package redisstore

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/flowlock/flowlock/internal/redisstore/redistest"
)

// replica is one simulated Flow Lock replica's shipper for one identity.
type replica struct {
	s       *Store
	phase   int64   // when in each batch interval it ships, µs
	buf     []int64 // times seen since the last batch
	after   int64   // last time fed to the engine
	pending bool    // Redis held times back last time
	fed     []int64 // what the engine was fed, in order
}

// TestReplicasSeeTheWholeFlood sends one client's flood (a request every
// 2 ms) to three replicas at random, with random proxy delays, and each
// replica ships its batch every 5 ms at its own phase, with a settle
// window of 20 ms. Every replica's engine must be fed every request, in
// request-time order: the merged stream, not a thinned one. Without the
// settle window (Before = 0) a replica passes over times another replica
// has not shipped yet, which the second half shows.
func TestReplicasSeeTheWholeFlood(t *testing.T) {
	srv := redistest.Start(t)
	const (
		id       = "flooder"
		requests = 1500
		gap      = 2_000 // µs between requests
		batch    = 5_000 // µs between a replica's batches
		settle   = 20_000
		maxDelay = 3_000 // µs from the request to its Check arriving
	)
	t0 := us(0, 0)
	var all []int64
	for i := range requests {
		all = append(all, t0+int64(i)*gap+rand.Int64N(gap/2))
	}

	run := func(prefix string, settleWindow int64) [][]int64 {
		t.Helper()
		reps := make([]*replica, 3)
		for i := range reps {
			reps[i] = &replica{s: open(t, Options{Addrs: []string{srv.Addr}, KeyPrefix: prefix}), phase: rand.Int64N(batch)}
		}
		type arrival struct {
			at, ts int64
			r      *replica
		}
		var arrivals []arrival
		for _, ts := range all {
			arrivals = append(arrivals, arrival{ts + rand.Int64N(maxDelay), ts, reps[rand.IntN(len(reps))]})
		}
		slices.SortFunc(arrivals, func(a, b arrival) int { return int(a.at - b.at) })
		end := all[len(all)-1] + maxDelay + settleWindow + 4*batch
		next := 0
		for now := t0; now <= end; now += 500 { // virtual time in 0.5 ms steps
			for next < len(arrivals) && arrivals[next].at <= now {
				arrivals[next].r.buf = append(arrivals[next].r.buf, arrivals[next].ts)
				next++
			}
			for _, r := range reps {
				if (now-t0)%batch != r.phase/500*500 || (len(r.buf) == 0 && !r.pending && r.after != 0) {
					continue
				}
				before := int64(0)
				if settleWindow > 0 {
					before = now - settleWindow
				}
				got, err := r.s.Merge(ctxT(t), []Observation{{ID: id, After: r.after, Before: before, Times: r.buf}})
				if err != nil {
					t.Fatal(err)
				}
				r.buf = r.buf[:0]
				for _, ts := range got[0].Times {
					r.fed = append(r.fed, ts)
					r.after = ts
				}
				r.pending = got[0].Pending > 0
			}
		}
		fed := make([][]int64, len(reps))
		for i, r := range reps {
			fed[i] = r.fed
		}
		return fed
	}

	for i, fed := range run("settled:", settle) {
		if !slices.Equal(fed, all) {
			t.Errorf("with a settle window, replica %d fed %d of %d requests (first difference at %d)", i, len(fed), len(all), firstDiff(fed, all))
		}
	}
	missed := 0
	for _, fed := range run("unsettled:", 0) {
		missed += len(all) - len(fed)
	}
	if missed == 0 {
		t.Errorf("without a settle window no replica missed a request: the flood does not exercise late times")
	}
	t.Logf("without a settle window the three replicas missed %d of %d requests each on average", missed/3, len(all))
}

func firstDiff(a, b []int64) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
