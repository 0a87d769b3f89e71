package main

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/flowlock/flowlock/dashboard"
	"github.com/flowlock/flowlock/internal/fleet"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/metrics"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/risk"
	"github.com/flowlock/flowlock/internal/wire"
)

// explainRefresh bounds the read of an identity's merged times for the
// explain view.
const explainRefresh = 100 * time.Millisecond

// backend adapts the engine, the quarantine and the policy to the views the
// dashboard needs, so the dashboard depends on none of them.
type backend struct {
	stack *wire.Stack
	state *persister // nil without --state-file
	m     *metrics.Metrics
}

var _ dashboard.Backend = (*backend)(nil)

func (b *backend) Identities(limit int, now time.Time) []dashboard.Identity {
	top := b.stack.Engine.Top(limit, now)
	out := make([]dashboard.Identity, 0, len(top))
	for _, s := range top {
		_, quarantined := b.stack.Quarantine.Check(s.ID, now)
		out = append(out, dashboard.Identity{
			Identity:    dashboard.IdentityText(s.ID),
			Score:       int(s.Score),
			Reason:      s.Reason.String(),
			Requests:    uint64(s.Requests),
			FirstSeen:   s.FirstSeen,
			LastSeen:    s.LastSeen,
			Shared:      s.Shared,
			Quarantined: quarantined,
			Recent:      s.Recent,
		})
	}
	return out
}

func (b *backend) Quarantined(limit int, now time.Time) ([]dashboard.Quarantine, int) {
	entries, total := b.stack.Quarantine.SnapshotN(now, limit)
	out := make([]dashboard.Quarantine, 0, len(entries))
	for _, e := range entries {
		out = append(out, quarantineView(e, now))
	}
	return out, total
}

func (b *backend) QuarantineOf(id identity.ID, now time.Time) (dashboard.Quarantine, bool) {
	e, ok := b.stack.Quarantine.Check(id, now)
	if !ok {
		return dashboard.Quarantine{}, false
	}
	return quarantineView(e, now), true
}

func (b *backend) Decisions(limit int, of identity.ID) []dashboard.Decision {
	evs := b.stack.Quarantine.Latest(limit, of)
	out := make([]dashboard.Decision, 0, len(evs))
	for _, e := range evs {
		out = append(out, decisionView(e))
	}
	return out
}

func (b *backend) Ban(id identity.ID, ttl time.Duration, reason string, now time.Time) (dashboard.Quarantine, error) {
	e, err := b.stack.Policy.Ban(id, ttl, reason, now)
	if err != nil {
		return dashboard.Quarantine{}, fmt.Errorf("%w: %w", dashboard.ErrInvalid, err)
	}
	b.m.QuarantineAdmitted(admissionManual)
	return quarantineView(e, now), b.flush()
}

func (b *backend) Release(id identity.ID, now time.Time) (bool, error) {
	ok := b.stack.Policy.Release(id, now)
	if !ok {
		return false, nil
	}
	b.m.QuarantineReleased(metrics.ReleaseManual)
	return true, b.flush()
}

func (b *backend) Extend(id identity.ID, by time.Duration, now time.Time) (dashboard.Quarantine, bool, error) {
	e, ok := b.stack.Quarantine.Extend(id, now, by)
	if !ok {
		return dashboard.Quarantine{}, false, nil
	}
	return quarantineView(e, now), true, b.flush()
}

func (b *backend) Explain(id identity.ID, now time.Time) (dashboard.Explanation, bool) {
	if rep := b.stack.Replica; rep != nil {
		// Read the identity's merged times first: this replica may have had
		// no Check for it lately, while the others had.
		ctx, cancel := context.WithTimeout(context.Background(), explainRefresh)
		rep.Refresh(ctx, id, now)
		cancel()
	}
	x, ok := b.stack.Engine.Explain(id, now)
	if !ok {
		return dashboard.Explanation{}, false
	}
	_, quarantined := b.stack.Quarantine.Check(id, now)
	features := make([]dashboard.Feature, len(x.Features))
	for i, f := range x.Features {
		features[i] = dashboard.Feature{
			Name: f.Name, Value: finite(f.Value), Probability: finite(f.Probability), Gate: finite(f.Gate), Threshold: f.Threshold,
		}
	}
	if d := b.stack.Fleet; d != nil {
		features = append(features, fleetFeature(d, id))
	}
	return dashboard.Explanation{
		Identity: dashboard.Identity{
			Identity:    dashboard.IdentityText(x.ID),
			Score:       int(x.Score),
			Reason:      x.Reason.String(),
			Requests:    uint64(x.Requests),
			FirstSeen:   x.FirstSeen,
			LastSeen:    x.LastSeen,
			Shared:      x.Shared,
			Quarantined: quarantined,
			Recent:      x.Recent,
		},
		Features:           features,
		Intervals:          x.Intervals,
		Threshold:          int(x.Threshold),
		ChallengeThreshold: int(x.ChallengeThreshold),
		Confirm:            x.Confirm,
		Consecutive:        x.Consecutive,
		Confirmed:          x.Confirmed,
	}, true
}

func (b *backend) Tracked() int { return b.stack.Engine.Len() }

func (b *backend) Lists() dashboard.Lists {
	l := b.stack.Policy.Lists()
	out := dashboard.Lists{Allow: []string{}, Deny: []string{}}
	for _, p := range l.Allow() {
		out.Allow = append(out.Allow, p.String())
	}
	for _, p := range l.Deny() {
		out.Deny = append(out.Deny, p.String())
	}
	return out
}

// finite replaces NaN and infinities, which encoding/json refuses, by 0.
func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return x
}

// flush writes an operator's change to the state file before answering, so
// that a 200 means the change survives a restart, unless the answer says
// "persisted": false: a failed write is wrapped in dashboard.ErrNotPersisted,
// since the change is in force all the same.
func (b *backend) flush() error {
	if b.state == nil {
		return nil
	}
	if err := b.state.Flush(); err != nil {
		return fmt.Errorf("%w: %w", dashboard.ErrNotPersisted, err) // enforced all the same
	}
	return nil
}

func quarantineView(e quarantine.Entry, now time.Time) dashboard.Quarantine {
	return dashboard.Quarantine{
		Identity:   dashboard.IdentityText(e.ID),
		Reason:     e.Reason,
		Score:      int(e.Score),
		Strikes:    e.Strikes,
		Manual:     e.Manual,
		Since:      e.Since,
		Until:      e.Until,
		RetryAfter: e.RetryAfterSeconds(now),
		Hits:       e.Hits,
	}
}

// decisionView is the dashboard's view of a quarantine transition.
func decisionView(e quarantine.Event) dashboard.Decision {
	d := dashboard.Decision{
		Time:     e.Time,
		Identity: dashboard.IdentityText(e.ID),
		Action:   e.Kind.String(),
		By:       e.Kind.Actor(),
		Reason:   e.Reason,
		Strikes:  e.Strikes,
	}
	switch e.Kind {
	case quarantine.EventAdmitted:
		d.Score, d.Until = int(e.Score), e.Until
	case quarantine.EventBanned, quarantine.EventExtended:
		d.Until = e.Until
	}
	return d
}

// fleetFeature is the explain view's line for fleet detection: the size of
// the fleet id belongs to (0: none), against the smallest group called one.
func fleetFeature(d *fleet.Detector, id identity.ID) dashboard.Feature {
	ft := dashboard.Feature{Name: risk.ReasonFleet.String(), Gate: 1,
		Threshold: fmt.Sprintf(">= %d identities share one schedule or script, %gx more than chance", d.MinMembers(), fleet.Surprise)}
	if f, ok := d.Of(id); ok {
		ft.Value, ft.Probability = float64(f.Size), 1
		ft.Threshold += "; shares " + f.Kind.String() + ": " + f.Signature
	}
	return ft
}
