package main

import (
	"time"

	"github.com/flowlock/flowlock/dashboard"
	"github.com/flowlock/flowlock/internal/fingerprint"
)

// flaggedView gives the dashboard the flagged fingerprints of ev; nil
// without fingerprint evidence, so the page says it is off.
func flaggedView(ev *fingerprint.Evidence) func(time.Time) []dashboard.FlaggedFingerprint {
	if ev == nil {
		return nil
	}
	return func(now time.Time) []dashboard.FlaggedFingerprint {
		flags := ev.Flags(now, 200)
		out := make([]dashboard.FlaggedFingerprint, len(flags))
		for i, f := range flags {
			out[i] = dashboard.FlaggedFingerprint{Key: f.Key, Quarantined: f.Quarantined, Calm: f.Calm, Since: f.Since, Last: f.Last}
		}
		return out
	}
}
