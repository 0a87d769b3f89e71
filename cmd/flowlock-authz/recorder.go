package main

import (
	"github.com/flowlock/flowlock/dashboard"
	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/metrics"
)

// recorder turns Check records into metrics and the dashboard's live
// figures. It sits in main because it knows all the vocabularies; none of
// the packages needs the others.
type recorder struct {
	m    *metrics.Metrics
	live *dashboard.Tracker // nil records no live figures
}

var _ authz.Recorder = recorder{}

var reasonOf = [...]metrics.Reason{
	authz.Allowed:       metrics.ReasonAllowed,
	authz.Quarantined:   metrics.ReasonQuarantined,
	authz.Admitted:      metrics.ReasonAdmitted,
	authz.DenyListed:    metrics.ReasonDenylist,
	authz.NoIdentity:    metrics.ReasonNoIdentity,
	authz.VolumeLimited: metrics.ReasonVolume,
}

var fallbackOf = [...]metrics.Fallback{
	authz.FallbackBadIdentityHeader: metrics.FallbackBadIdentityHeader,
	authz.FallbackBadForwardedFor:   metrics.FallbackBadForwardedFor,
	authz.FallbackNoIdentity:        metrics.FallbackNoIdentity,
}

// RecordCheck implements authz.Recorder without allocating.
func (r recorder) RecordCheck(c authz.Record) {
	shadow := c.Mode == authz.Shadow
	switch {
	case c.Failed:
		r.m.Check(metrics.DecisionError, metrics.ReasonError, shadow)
	default:
		decision := metrics.DecisionAllow
		if c.Outcome.Denies() {
			// In shadow mode the decision label is the one that would have
			// been enforced: that is what an operator compares.
			decision = metrics.DecisionDeny
		}
		reason := metrics.ReasonOther
		if int(c.Outcome) < len(reasonOf) {
			reason = reasonOf[c.Outcome]
		}
		if c.Outcome == authz.Allowed && c.Excluded {
			reason = metrics.ReasonExcludedPath
		}
		r.m.Check(decision, reason, shadow)
		if c.Outcome != authz.NoIdentity && c.Outcome != authz.DenyListed {
			r.m.ObserveRiskScore(int(c.Score))
		}
		if c.Outcome == authz.Admitted {
			r.m.QuarantineAdmitted(metrics.ParseAdmissionReason(c.Reason))
		}
	}
	if c.Fallback != authz.FallbackNone && int(c.Fallback) < len(fallbackOf) {
		r.m.IdentityFallback(fallbackOf[c.Fallback])
	}
	if c.TimeSkewed {
		r.m.IdentityFallback(metrics.FallbackRequestTimeSkew)
	}
	r.m.ObserveCheckDuration(c.Duration)
	r.live.Record(c.Start.Add(c.Duration), !c.Failed && c.Outcome.Denies(), c.Failed, c.Duration)
}
