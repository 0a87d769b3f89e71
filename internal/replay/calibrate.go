package replay

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/flowlock/flowlock/internal/calibrate"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/traffic"
)

// Collect replays recs through the decision stack cfg describes (as Run
// does) and gathers what calibration needs: the innocent identities'
// peak-score histogram and the bots' detection times (see
// calibrate.Collector for how labels count).
func Collect(ctx context.Context, recs []Record, cfg config.Config) (*calibrate.Collector, []*calibrate.Bot, error) {
	c := new(calibrate.Collector)
	_, _, err := RunScored(ctx, recs, cfg, func(rec *Record, id identity.ID, score uint8, shared, caught bool) {
		c.Observe(id, rec.Label, rec.TS, score, shared, caught)
	})
	if err != nil {
		return nil, nil, err
	}
	return c, c.Finish(), nil
}

// Simulation is a set of simulated streams to turn into records.
type Simulation struct {
	// Scenarios are run with Streams streams each; stream k of a scenario
	// uses seed Seed + k (the generator salts it with the scenario id).
	Scenarios []traffic.Scenario
	Streams   int
	Seed      uint64
	// Start is when the first stream may begin; each stream begins at a
	// random offset in [0, Spread) after it (drawn from Seed), so that the
	// streams of a simulated week overlap as real clients do.
	Start  time.Time
	Spread time.Duration
	// First is the address of the first stream; the others follow it.
	// Invalid means 10.0.0.1.
	First netip.Addr
}

// Records returns the simulation's requests as records sorted by time,
// labelled with each scenario's label and name, and the address after the
// last one used.
func (s Simulation) Records() ([]Record, netip.Addr) {
	addr := s.First
	if !addr.IsValid() {
		addr = netip.AddrFrom4([4]byte{10, 0, 0, 1})
	}
	r := rand.New(rand.NewPCG(s.Seed, 0x63616c6962726174)) // "calibrat"
	var recs []Record
	agents := map[string]map[string]string{} // one header map per user agent, shared by its records
	for _, sc := range s.Scenarios {
		for k := range s.Streams {
			start := s.Start
			if s.Spread > 0 {
				start = start.Add(time.Duration(r.Int64N(int64(s.Spread))))
			}
			st := sc.Stream(s.Seed+uint64(k), start)
			ip := addr
			for {
				req, ok := st.Next()
				if !ok {
					break
				}
				h := agents[req.UserAgent]
				if h == nil {
					h = map[string]string{"user-agent": req.UserAgent}
					agents[req.UserAgent] = h
				}
				recs = append(recs, Record{
					Source: "simulated", TS: req.TS, Addr: ip, Method: req.Method, Path: req.Path,
					Headers: h,
					Label:   string(sc.Label), Scenario: sc.Name,
				})
			}
			addr = addr.Next()
		}
	}
	slices.SortStableFunc(recs, func(a, b Record) int { return a.TS.Compare(b.TS) })
	return recs, addr
}
