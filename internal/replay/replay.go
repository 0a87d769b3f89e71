package replay

import (
	"context"
	"slices"
	"time"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/fleet"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/wire"
)

// Result is what the policy did to one identity over the replay.
type Result struct {
	// Identity is the client as Flow Lock keys it: an address (IPv6 by
	// prefix) or an identity-header value.
	Identity string `json:"identity"`
	// Requests is the number of records of the identity.
	Requests int `json:"requests"`
	// Quarantined reports that at least one request would have been denied
	// as quarantined (or deny-listed), in enforce mode.
	Quarantined bool `json:"quarantined"`
	// FirstQuarantineRequest is the 1-based index, among the identity's
	// requests, of the first one denied; 0 if none was.
	FirstQuarantineRequest int `json:"first_quarantine_request"`
	// FirstQuarantineTS is that request's time, null if none was denied.
	FirstQuarantineTS *time.Time `json:"first_quarantine_ts"`
	// Denied is how many of the identity's requests would have been denied
	// as quarantined or deny-listed.
	Denied int `json:"denied"`
	// Limited is how many were over the volume limit (429, not a
	// quarantine); always 0 without one.
	Limited int `json:"limited"`
	// MaxRisk is the highest risk score (0–100) of any of its decisions.
	MaxRisk int `json:"max_risk"`
	// Reason is why it was first denied, or, if it never was, the reason
	// given with its highest score ("none" below the challenge band).
	Reason string `json:"reason"`
	// Shared reports that the engine labelled the identity a shared
	// address (NAT, CGNAT) at some point.
	Shared bool `json:"shared"`
	// FirstTS and LastTS are the times of its first and last request.
	FirstTS time.Time `json:"first_ts"`
	LastTS  time.Time `json:"last_ts"`
	// Label and Scenario echo a simulated trace's ground truth (the first
	// value seen for the identity), so that a replay can be scored.
	Label    string `json:"label,omitempty"`
	Scenario string `json:"scenario,omitempty"`
}

// Summary counts what a replay saw.
type Summary struct {
	// Records is the number of records decided.
	Records int
	// Identities is the number of distinct identities.
	Identities int
	// Quarantined is the number of identities with a denied request.
	Quarantined int
	// NoIdentity counts records whose client could not be determined (no
	// usable address or identity header); the service allows them unscored,
	// and they belong to no Result.
	NoIdentity int
	// OutOfOrder counts records earlier than the record before them in the
	// input; when it is not 0, Run sorted the records by time.
	OutOfOrder int
}

// Run replays recs through a fresh decision stack built from cfg (see
// wire.Build: the service's own, on local state: --redis-addr is ignored), in time order, sweeping it every
// cfg.SweepInterval of virtual time as the service does on its clock, and returns one Result per identity in the
// order identities first appear, with a Summary. It sorts recs in place
// (stably) when they are out of order. It stops early, returning ctx's
// error, when ctx is done.
func Run(ctx context.Context, recs []Record, cfg config.Config) ([]Result, Summary, error) {
	return RunScored(ctx, recs, cfg, nil)
}

// Scored is told of each request a replay timed (one with an identity,
// not on an excluded path): the record, its identity, the score after it
// whether the engine labelled the identity shared at that moment, and
// whether the replay refused it as quarantined (or admitted it).
type Scored func(rec *Record, id identity.ID, score uint8, shared, caught bool)

// RunScored is Run that also passes every timed request to scored (nil:
// none), for calibration.
func RunScored(ctx context.Context, recs []Record, cfg config.Config, scored Scored) ([]Result, Summary, error) {
	// A backtest runs in virtual time on its own: it shares nothing with
	// running replicas, whatever the configuration says about Redis.
	cfg.RedisAddr = ""
	var sum Summary
	for i := 1; i < len(recs); i++ {
		if recs[i].TS.Before(recs[i-1].TS) {
			sum.OutOfOrder++
		}
	}
	if sum.OutOfOrder > 0 {
		slices.SortStableFunc(recs, func(a, b Record) int { return a.TS.Compare(b.TS) })
	}

	stack := wire.Build(cfg, wire.Extra{FleetQueue: fleet.SweepQueueSize}) // swept in virtual time
	every := cfg.SweepInterval
	var results []Result
	index := make(map[identity.ID]int)
	var nextSweep time.Time
	for i := range recs {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, Summary{}, err
			}
		}
		rec := &recs[i]
		now := rec.TS.UTC() // report every time in UTC, whatever zone the log wrote
		if i == 0 {
			nextSweep = now.Add(every)
		}
		if !now.Before(nextSweep) {
			// Sweep once, at the last tick not after now: sweeping at every
			// tick of a long gap would drop the same entries.
			tick := nextSweep.Add(now.Sub(nextSweep) / every * every)
			stack.Sweep(tick)
			nextSweep = tick.Add(every)
		}

		// Access logs hold headers, never Envoy's metadata: no JWT claim.
		client := stack.Rules.ResolveWith(rec.Addr, rec.XFF, rec.Header(stack.Rules.IdentityHeader), "", rec.Header(stack.Rules.FingerprintHeader))
		d := stack.Policy.Decide(authz.Request{Client: client, Path: rec.Path, Now: now, UserAgent: rec.Header("user-agent")})
		sum.Records++
		if client.ID.IsZero() {
			sum.NoIdentity++
			continue
		}
		k, ok := index[client.ID]
		if !ok {
			k = len(results)
			index[client.ID] = k
			results = append(results, Result{Identity: client.ID.String(), FirstTS: now, Reason: "none"})
		}
		r := &results[k]
		r.Requests++
		r.LastTS = now
		if r.Label == "" {
			r.Label = rec.Label
		}
		if r.Scenario == "" {
			r.Scenario = rec.Scenario
		}
		switch d.Outcome {
		case authz.VolumeLimited:
			r.Limited++
		case authz.Quarantined, authz.Admitted, authz.DenyListed:
			r.Denied++
			if !r.Quarantined {
				ts := now
				r.Quarantined, r.FirstQuarantineRequest, r.FirstQuarantineTS, r.Reason = true, r.Requests, &ts, d.Reason
			}
		}
		if int(d.Score) > r.MaxRisk {
			r.MaxRisk = int(d.Score)
			if !r.Quarantined {
				r.Reason = d.Reason
			}
		}
		if !r.Shared {
			if v, ok := stack.Engine.Peek(client.ID, now); ok && v.Shared {
				r.Shared = true
			}
		}
		if scored != nil && !d.Excluded && d.Outcome != authz.DenyListed {
			v, _ := stack.Engine.Peek(client.ID, now)
			scored(rec, client.ID, d.Score, v.Shared, d.Outcome == authz.Quarantined || d.Outcome == authz.Admitted)
		}
	}
	sum.Identities = len(results)
	for i := range results {
		if results[i].Quarantined {
			sum.Quarantined++
		}
	}
	return results, sum, nil
}
