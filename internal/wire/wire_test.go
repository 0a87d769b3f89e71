package wire

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/identity"
)

// TestEverySettingReachesItsComponent changes each setting from its default
// and checks the built stack behaves by the new value.
func TestEverySettingReachesItsComponent(t *testing.T) {
	c := config.Default()
	c.RiskThreshold, c.ChallengeThreshold, c.Confirm = 85, 55, 4
	c.QuarantineTTL, c.QuarantineMaxTTL = time.Minute, time.Hour
	c.VolumeRate, c.VolumeBurst = 2.5, 7
	c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	c.XFFTrustedHops, c.IdentityHeader, c.IPv6Prefix = 2, "x-api-key", 56
	c.Allow = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	c.Deny = []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32")}
	c.ExcludePaths = []string{"/poll"}
	c.Mode = config.ModeShadow
	s := Build(c, Extra{})

	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	client := identity.FromAddr(netip.MustParseAddr("203.0.113.1"), 56)
	s.Engine.Observe(client, now)
	ex, ok := s.Engine.Explain(client, now)
	if !ok {
		t.Fatal("engine did not track a client")
	}
	if ex.Threshold != 85 || ex.ChallengeThreshold != 55 || ex.Confirm != 4 {
		t.Errorf("engine thresholds = %d/%d/%d, want 85/55/4", ex.Threshold, ex.ChallengeThreshold, ex.Confirm)
	}
	id := identity.FromAddr(netip.MustParseAddr("203.0.113.9"), 56)
	if e := s.Quarantine.Admit(id, now, "periodic", 90); e.Until.Sub(e.Since) != time.Minute {
		t.Errorf("first quarantine lasts %v, want the 1m TTL", e.Until.Sub(e.Since))
	}
	if s.Limiter == nil {
		t.Error("--volume-rate set but no limiter")
	}
	if r := s.Rules; len(r.TrustedProxies) != 1 || r.XFFTrustedHops != 2 || r.IdentityHeader != "x-api-key" || r.IPv6Prefix != 56 {
		t.Errorf("Rules = %+v", r)
	}
	if !s.Lists.Allowed(netip.MustParseAddr("192.0.2.9")) || !s.Lists.Denied(netip.MustParseAddr("198.51.100.7")) {
		t.Error("Lists lost an allow or deny entry")
	}
	if s.Policy.Mode() != authz.Shadow || Build(config.Default(), Extra{}).Policy.Mode() != authz.Enforce {
		t.Error("Mode not carried over")
	}
	d := s.Policy.Decide(authz.Request{Client: authz.Client{ID: id}, Path: "/poll", Now: now})
	if !d.Excluded {
		t.Error("--exclude-path did not reach the policy")
	}
}

// TestSweepSweepsEveryPart checks Sweep ends quarantines and drops idle
// timing state alike.
func TestSweepSweepsEveryPart(t *testing.T) {
	s := Build(config.Default(), Extra{})
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	id := identity.FromAddr(netip.MustParseAddr("203.0.113.9"), 64)
	s.Engine.Observe(id, now)
	s.Quarantine.Admit(id, now, "periodic", 90)
	if n := s.Sweep(now.Add(48 * time.Hour)); n != 1 {
		t.Errorf("Sweep expired %d quarantines, want 1", n)
	}
	if s.Engine.Len() != 0 {
		t.Errorf("Sweep kept %d idle timing entries", s.Engine.Len())
	}
}

func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := config.Default()
		c.QuarantineTTL = 5 * time.Minute
		s := Build(c, Extra{})
		start := time.Now()
		s.Quarantine.Admit(identity.FromAddr(netip.MustParseAddr("192.0.2.1"), 64), start, "auto", 90)
		s.Quarantine.Admit(identity.FromAddr(netip.MustParseAddr("192.0.2.2"), 64), start.Add(time.Minute), "auto", 90)

		ctx, cancel := context.WithCancel(context.Background())
		var (
			mu     sync.Mutex
			sweeps []int
		)
		done := make(chan error)
		go func() {
			done <- s.Run(ctx, time.Minute, time.Now, func(n int) {
				mu.Lock()
				sweeps = append(sweeps, n)
				mu.Unlock()
			})
		}()

		time.Sleep(7*time.Minute + time.Second) // fake time: seven sweeps
		synctest.Wait()
		mu.Lock()
		got := fmt.Sprint(sweeps)
		mu.Unlock()
		// Sweeps at +1m…+7m; the first quarantine ends at +5m, the second at +6m.
		if want := "[0 0 0 0 1 1 0]"; got != want {
			t.Errorf("sweep results = %s, want %s", got, want)
		}
		if s.Quarantine.Len() != 0 {
			t.Errorf("Len after the sweeps = %d, want 0", s.Quarantine.Len())
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	})
}

func TestRunBadInterval(t *testing.T) {
	if err := Build(config.Default(), Extra{}).Run(context.Background(), 0, time.Now, nil); err == nil {
		t.Error("Run with interval 0 = nil, want an error")
	}
}
