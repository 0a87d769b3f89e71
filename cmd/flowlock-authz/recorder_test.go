package main

import (
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlock/flowlock/dashboard"
	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/risk"
)

// TestRecorderZeroAllocs pins that recording a Check, metrics and live
// figures together, allocates nothing: it runs on every request.
func TestRecorderZeroAllocs(t *testing.T) {
	r := recorder{m: newMetrics(prometheus.NewRegistry()), live: dashboard.NewTracker(), watch: newWatch(nil, authz.ClientRules{}, 0)}
	misread := authz.Record{Outcome: authz.NoIdentity, Fallback: authz.FallbackBadForwardedFor, Cause: authz.CauseNoForwardedFor,
		Peer: netip.MustParseAddr("127.0.0.1"), Start: time.Now()}
	for range 30 { // past the one report of the window, which logs
		r.RecordCheck(misread)
	}
	for _, rec := range []authz.Record{
		misread,
		{Outcome: authz.Allowed, Score: 12, Detector: risk.ReasonNone, Duration: 40 * time.Microsecond},
		{Outcome: authz.Admitted, Score: 91, Detector: risk.ReasonPeriodic, Duration: 90 * time.Microsecond},
		{Outcome: authz.Quarantined, Score: 95, Detector: risk.ReasonPeriodic, Mode: authz.Shadow},
		{Failed: true, Duration: time.Millisecond},
	} {
		if got := testing.AllocsPerRun(200, func() { r.RecordCheck(rec) }); got != 0 {
			t.Errorf("RecordCheck(%+v): %v allocs/op, want 0", rec, got)
		}
	}
}

func TestRecorderFeedsTracker(t *testing.T) {
	live := dashboard.NewTracker()
	r := recorder{m: newMetrics(prometheus.NewRegistry()), live: live}
	// The checks happened in the previous whole second: the tracker files
	// them by the record's own time, not by when the recorder runs.
	at := time.Now().Truncate(time.Second).Add(-500 * time.Millisecond)
	r.RecordCheck(authz.Record{Outcome: authz.Allowed, Start: at})
	r.RecordCheck(authz.Record{Outcome: authz.Quarantined, Start: at})
	r.RecordCheck(authz.Record{Outcome: authz.Admitted, Mode: authz.Shadow, Start: at}) // would deny
	r.RecordCheck(authz.Record{Failed: true, Start: at})
	st := live.Stats(at.Add(500 * time.Millisecond))
	if st.AllowedTotal != 1 || st.DeniedTotal != 2 || st.FailedTotal != 1 {
		t.Errorf("tracker totals = %d allowed, %d denied, %d failed; want 1, 2, 1", st.AllowedTotal, st.DeniedTotal, st.FailedTotal)
	}
	if st.ChecksPerSec != 4 || st.DeniesPerSec != 2 {
		t.Errorf("tracker rates = %v checks/s, %v denies/s; want 4 and 2 in the second the checks began", st.ChecksPerSec, st.DeniesPerSec)
	}
	recorder{m: newMetrics(nil)}.RecordCheck(authz.Record{}) // a nil tracker records nothing
}

// TestRecorderCountsAMissingIdentityHeader: a Check scored by its address
// because --identity-header was missing shows in the fallback metric, as
// it does in the log and the dashboard's banner.
func TestRecorderCountsAMissingIdentityHeader(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := recorder{m: newMetrics(reg)}
	r.RecordCheck(authz.Record{Outcome: authz.Allowed, Cause: authz.CauseNoIdentityHeader})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "flowlock_authz_identity_fallbacks_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == "no_identity_header" && m.GetCounter().GetValue() == 1 {
				return
			}
		}
	}
	t.Error(`flowlock_authz_identity_fallbacks_total{kind="no_identity_header"} is not 1`)
}
