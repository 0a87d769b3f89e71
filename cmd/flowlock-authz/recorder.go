package main

import (
	"github.com/flowlock/flowlock/dashboard"
	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/metrics"
	"github.com/flowlock/flowlock/internal/risk"
	"github.com/prometheus/client_golang/prometheus"
)

// admissionManual is the admission label index of a ban through the admin
// API: the one after the risk reasons (see vocabulary).
var admissionManual = len(risk.Reasons())

// vocabulary gives the metrics their label values from the domain types,
// each list indexed by the type's value: the one place the two meet.
func vocabulary() metrics.Vocabulary {
	var v metrics.Vocabulary
	for _, o := range authz.Outcomes() {
		v.CheckReasons = append(v.CheckReasons, o.String())
	}
	for _, f := range authz.Fallbacks() {
		name := f.String()
		if f == authz.FallbackNone {
			name = "" // never counted: no series
		}
		v.Fallbacks = append(v.Fallbacks, name)
	}
	for _, r := range risk.Reasons() {
		v.Admissions = append(v.Admissions, r.String())
	}
	v.Admissions = append(v.Admissions, "manual") // admissionManual
	return v
}

// newMetrics returns the service's metrics, registered with reg.
func newMetrics(reg prometheus.Registerer) *metrics.Metrics {
	return metrics.New(reg, buildVersion(), vocabulary())
}

// recorder turns Check records into metrics and the dashboard's live
// figures.
type recorder struct {
	m     *metrics.Metrics
	live  *dashboard.Tracker // nil records no live figures
	watch *identity.Watch    // diagnoses proxies that send what the rules cannot read; nil watches nothing
}

var _ authz.Recorder = recorder{}

// RecordCheck implements authz.Recorder without allocating.
func (r recorder) RecordCheck(c authz.Record) {
	if !c.Failed {
		r.watch.Record(uint8(c.Cause), c.Peer, c.Start)
	}
	verdict := metrics.VerdictAllow
	switch {
	case c.Failed:
		verdict = metrics.VerdictError
	case c.Outcome.Denies():
		// In shadow mode the decision label is the one that would have been
		// enforced: that is what an operator compares.
		verdict = metrics.VerdictDeny
	}
	r.m.Check(verdict, int(c.Label()), c.Mode == authz.Shadow)
	if !c.Failed {
		if c.Outcome != authz.NoIdentity && c.Outcome != authz.DenyListed {
			r.m.ObserveRiskScore(int(c.Score))
		}
		if c.Outcome == authz.Admitted {
			r.m.QuarantineAdmitted(int(c.Detector))
		}
	}
	if c.Fallback != authz.FallbackNone {
		r.m.IdentityFallback(int(c.Fallback))
	}
	if c.TimeSkewed {
		r.m.IdentityFallback(int(authz.FallbackRequestTimeSkew))
	}
	if c.Cause == authz.CauseNoIdentityHeader {
		r.m.IdentityFallback(int(authz.FallbackNoIdentityHeader))
	}
	r.m.ObserveCheckDuration(c.Duration)
	r.live.Record(c.Start.Add(c.Duration), !c.Failed && c.Outcome.Denies(), c.Failed, c.Duration)
}
