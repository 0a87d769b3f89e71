package main

import (
	"testing"

	"github.com/flowlock/flowlock/internal/metrics"
	"github.com/flowlock/flowlock/internal/risk"
)

// TestEveryRiskReasonHasAnAdmissionLabel: the detector's reasons and the
// admissions metric's label values are two lists in two packages that must
// not know each other; a new detector must not be counted as "other".
func TestEveryRiskReasonHasAnAdmissionLabel(t *testing.T) {
	for _, r := range risk.Reasons() {
		if r == risk.ReasonNone {
			continue
		}
		if metrics.ParseAdmissionReason(r.String()) == metrics.AdmissionOther {
			t.Errorf("risk reason %q has no flowlock_quarantine_admissions_total label", r)
		}
	}
}
