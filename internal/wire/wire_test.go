package wire

import (
	"net/netip"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
)

// TestEverySettingReachesItsComponent changes each setting from its default
// and checks the component options carry the new value.
func TestEverySettingReachesItsComponent(t *testing.T) {
	c := config.Default()
	c.MaxClients, c.RiskThreshold, c.ChallengeThreshold, c.Confirm = 5000, 85, 55, 4
	c.QuarantineTTL, c.QuarantineMaxTTL, c.QuarantineFactor, c.StrikeWindow = time.Minute, time.Hour, 3, 2*time.Hour
	c.VolumeRate, c.VolumeBurst = 2.5, 7
	c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	c.XFFTrustedHops, c.IdentityHeader, c.IPv6Prefix = 2, "x-api-key", 56
	c.Allow = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	c.Deny = []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32")}
	c.Mode = config.ModeShadow

	if r := Risk(c); r.MaxClients != 5000 || r.Threshold != 85 || r.ChallengeThreshold != 55 || r.Confirm != 4 {
		t.Errorf("Risk = %+v", r)
	}
	if q := Quarantine(c); q.BaseTTL != time.Minute || q.MaxTTL != time.Hour || q.Factor != 3 || q.StrikeWindow != 2*time.Hour {
		t.Errorf("Quarantine = %+v", q)
	}
	if v := Volume(c); v.Rate != 2.5 || v.Burst != 7 || v.MaxClients != 5000 {
		t.Errorf("Volume = %+v", v)
	}
	if r := Rules(c); len(r.TrustedProxies) != 1 || r.XFFTrustedHops != 2 || r.IdentityHeader != "x-api-key" || r.IPv6Prefix != 56 {
		t.Errorf("Rules = %+v", r)
	}
	l := Lists(c)
	if !l.Allowed(netip.MustParseAddr("192.0.2.9")) || !l.Denied(netip.MustParseAddr("198.51.100.7")) {
		t.Error("Lists lost an allow or deny entry")
	}
	if Mode(c) != authz.Shadow || Mode(config.Default()) != authz.Enforce {
		t.Error("Mode not carried over")
	}
}
