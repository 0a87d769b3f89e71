package main

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/flowlock/flowlock/dashboard"
	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/identity"
)

// newWatch returns the Watch that diagnoses a proxy or identity setup that
// keeps Checks from being read the configured way: one WARN line per cause
// and minute naming the cause, the peer and the fix, and a banner on the
// dashboard (see warnings). The recorder feeds it every Check's Cause.
func newWatch(log *slog.Logger, rules authz.ClientRules, window time.Duration) *identity.Watch {
	var names []string
	for _, c := range authz.Causes() {
		names = append(names, c.String())
	}
	o := identity.WatchOptions{
		Logger: log,
		Window: window,
		Names:  names,
		Explain: func(c uint8, peer netip.Addr) (string, string) {
			return rules.Explain(authz.Cause(c), peer)
		},
	}
	if rules.IdentityHeader != "" {
		// The one cause judged against every Check (a missing identity
		// header) exists only with --identity-header; without it no Check
		// needs counting.
		o.Every = func(c uint8) bool { return authz.Cause(c).OnlyWhenEvery() }
	}
	return identity.NewWatch(o)
}

// warnings turns the Watch's findings into the dashboard's banner.
func warnings(w *identity.Watch) func(time.Time) []dashboard.Warning {
	return func(now time.Time) []dashboard.Warning {
		var out []dashboard.Warning
		for _, f := range w.Findings(now) {
			peer := "unknown"
			if f.Peer.IsValid() {
				peer = f.Peer.String()
			}
			out = append(out, dashboard.Warning{
				Cause: f.Cause, Peer: peer, Count: f.Count, Unscored: authz.Cause(f.Code).Unscored(),
				Problem: f.Problem, Fix: f.Fix, Since: f.First, Last: f.Last,
			})
		}
		return out
	}
}
