// Package wire turns the one config.Config into the options of each
// component. The service (serve), the backtest (replay) and the simulator
// (flowlock-sim eval) all build their decision path through it, so the same
// settings give the same engine everywhere. Domain packages never import
// config; this package is where the two meet.
package wire

import (
	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/risk"
	"github.com/flowlock/flowlock/internal/volume"
)

// Risk returns the timing engine's options.
func Risk(c config.Config) risk.Options {
	return risk.Options{
		MaxClients:         c.MaxClients,
		Threshold:          uint8(c.RiskThreshold),
		ChallengeThreshold: uint8(c.ChallengeThreshold),
		Confirm:            c.Confirm,
	}
}

// Quarantine returns the quarantine list's options.
func Quarantine(c config.Config) quarantine.Options {
	return quarantine.Options{
		BaseTTL:      c.QuarantineTTL,
		MaxTTL:       c.QuarantineMaxTTL,
		Factor:       c.QuarantineFactor,
		StrikeWindow: c.StrikeWindow,
	}
}

// Volume returns the volume limit's options (Rate 0: no limit).
func Volume(c config.Config) volume.Options {
	return volume.Options{Rate: c.VolumeRate, Burst: c.VolumeBurst, MaxClients: c.MaxClients}
}

// Lists returns the allow and deny lists.
func Lists(c config.Config) *quarantine.Lists {
	return quarantine.NewLists(c.Allow, c.Deny)
}

// Rules returns how the client of a request is found.
func Rules(c config.Config) authz.ClientRules {
	return authz.ClientRules{
		TrustedProxies: c.TrustedProxies,
		XFFTrustedHops: c.XFFTrustedHops,
		IdentityHeader: c.IdentityHeader,
		IPv6Prefix:     c.IPv6Prefix,
	}
}

// Mode returns the policy's mode; config.Load has validated it.
func Mode(c config.Config) authz.Mode {
	m, _ := authz.ParseMode(c.Mode)
	return m
}
